//! Rule evaluation throughput: message × rule evaluations per second for 10, 100 and 1,000 rules.
//!
//! The rules mix Outlook-style conditions with regexes and body conditions; one HTML message of
//! about 12 KB is evaluated per iteration (so its body is rendered to text once per iteration, as
//! in production). 1,000 rules are two rule sets of 500 (the per-set limit) chained, as a mailbox
//! with its own rules plus integration-wide rules would have. `validate/500` is the cost of
//! validating and compiling a full rule set (regexes included).
//!
//! Run: `cargo bench -p outlook-core --bench rules` (or append `-- --quick`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use outlook_core::message::{Address, Body, BodyType, Header, MailMessage};
use outlook_core::rules::{
    Action, CompiledRuleSet, Condition, EvalContext, RegexCondition, RegexField, Rule, RuleSet,
    SenderDomain, evaluate, validate,
};

fn rule(i: usize) -> Rule {
    let word = format!("project{i}");
    let mut conditions = vec![match i % 4 {
        0 => Condition::SubjectContains(vec![word.clone(), format!("ticket #{i}")]),
        1 => Condition::SenderDomain(SenderDomain {
            domain: format!("vendor{i}.com"),
            include_subdomains: true,
        }),
        2 => Condition::FromAddresses(vec![
            format!("billing{i}@example.com"),
            format!("noreply{i}@example.org"),
        ]),
        _ => Condition::any([
            Condition::HeaderContains(vec![format!("list-id: <news{i}.")]),
            Condition::RecipientContains(vec![format!("team{i}")]),
        ]),
    }];
    if i.is_multiple_of(5) {
        conditions.push(Condition::Regex(RegexCondition {
            field: RegexField::Subject,
            pattern: format!(r"(?:inv|rechnung|facture)[-\s#]*{i}\d{{2,6}}\b"),
            case_sensitive: false,
            header: None,
        }));
    }
    if i.is_multiple_of(7) {
        conditions.push(Condition::BodyContains(vec![
            format!("reference {i}"),
            "unsubscribe".into(),
        ]));
    }
    if i % 10 == 3 {
        conditions = vec![Condition::Regex(RegexCondition {
            field: RegexField::Body,
            pattern: format!(r"(?m)^order (?:no|number)[.:]?\s*{i}-\d+$"),
            case_sensitive: false,
            header: None,
        })];
    }
    Rule {
        id: format!("r{i}"),
        name: format!("Rule {i}"),
        order: i as u32,
        enabled: true,
        conditions,
        exceptions: if i.is_multiple_of(3) {
            vec![Condition::HasAttachments(true)]
        } else {
            vec![]
        },
        actions: vec![
            Action::AssignCategories {
                categories: vec![format!("Cat {}", i % 20)],
                color: None,
            },
            Action::MoveToFolder {
                path: format!("Clients/Client {i}"),
            },
        ],
        stop_processing: false,
    }
}

/// `count` rules as one compiled set: sets of at most 500 rules, chained.
fn rule_set(count: usize) -> CompiledRuleSet {
    let sets: Vec<CompiledRuleSet> = (0..count)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| {
            let rules = chunk.iter().map(|&i| rule(i)).collect();
            validate(RuleSet { version: 1, rules })
                .expect("bench rules are valid")
                .compiled()
                .clone()
        })
        .collect();
    sets[1..].iter().fold(sets[0].clone(), |chain, next| {
        chain.chain(next).expect("unique rule ids")
    })
}

fn message() -> MailMessage {
    let paragraph = "<p>Dear customer, please find the attached document regarding your recent order. \
        Let us know if anything is unclear; our team is happy to help.</p>";
    let html = format!(
        "<html><body>{}<table><tr><td>Order number: 99-123</td><td>Total: 10 EUR</td></tr></table>{}</body></html>",
        paragraph.repeat(40),
        paragraph.repeat(40)
    );
    MailMessage {
        id: "AAMkAD".into(),
        folder_id: "inbox".into(),
        internet_message_id: Some("<abc@example.net>".into()),
        subject: "RE: Your order and invoice INV-2024-0042 (reference 77)".into(),
        from: Some(Address {
            name: Some("Shop Support".into()),
            address: "support@shop.example.net".into(),
        }),
        sender: None,
        to: vec![Address::new("me@contoso.com")],
        cc: vec![Address {
            name: Some("Accounting".into()),
            address: "accounting@contoso.com".into(),
        }],
        bcc: vec![],
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        has_attachments: false,
        importance: Default::default(),
        sensitivity: Default::default(),
        categories: vec![],
        flag: Default::default(),
        is_read: false,
        size_bytes: Some(24_000),
        kinds: vec![],
        headers: vec![
            Header {
                name: "Received".into(),
                value: "from mail.example.net by mx.contoso.com".into(),
            },
            Header {
                name: "List-Unsubscribe".into(),
                value: "<mailto:unsub@example.net>".into(),
            },
        ],
        body: Some(Body {
            content_type: BodyType::Html,
            content: html,
        }),
    }
}

fn bench(c: &mut Criterion) {
    let m = message();
    let ctx = EvalContext::new("me@contoso.com");
    let mut group = c.benchmark_group("evaluate");
    for count in [10, 100, 1_000] {
        let set = rule_set(count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::new("rules", count), &set, |b, set| {
            b.iter(|| black_box(evaluate(set, black_box(&m), &ctx)))
        });
    }
    group.finish();

    // The same rules on a message synced without body (body conditions read it as empty).
    let mut no_body = message();
    no_body.body = None;
    let mut group = c.benchmark_group("evaluate_without_body");
    for count in [100, 1_000] {
        let set = rule_set(count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::new("rules", count), &set, |b, set| {
            b.iter(|| black_box(evaluate(set, black_box(&no_body), &ctx)))
        });
    }
    group.finish();

    c.bench_function("validate/500", |b| {
        b.iter(|| {
            let rules = (0..500).map(rule).collect();
            black_box(validate(RuleSet { version: 1, rules }).is_ok())
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
