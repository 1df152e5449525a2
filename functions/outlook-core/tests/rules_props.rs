//! Property tests of the evaluator: logic laws, determinism, merge invariants, no panics.

#[path = "rules_support.rs"]
mod support;

use std::collections::HashSet;

use outlook_core::message::{
    Address, Body, BodyType, FlagStatus, Header, Importance, MailMessage, MessageKind, Sensitivity,
};
use outlook_core::rules::{
    Action, Condition, Evaluation, PlannedActionKind, RegexCondition, RegexField, Rule, RuleSet,
    SenderDomain, SizeRange, evaluate, validate,
};
use proptest::prelude::*;
use proptest::sample::subsequence;
use support::*;

const WORDS: &[&str] = &[
    "invoice",
    "Ärger",
    "STRASSE",
    "straße",
    "hello",
    "İstanbul",
    "Report",
    "urgent",
    "ß",
];
const ADDRESSES: &[&str] = &[
    "alice@fabrikam.com",
    "Bob@Contoso.com",
    ME,
    ALIAS,
    "ops@mail.fabrikam.com",
    "zoë@bücher.de",
];
const CATEGORIES: &[&str] = &["Red", "red", "Ärger", "ÄRGER", "Invoices", "Blue"];
const FOLDERS: &[&str] = &[
    "Finance",
    "finance",
    "inbox/Reports",
    "Archive/2025",
    "Clients/Ärger",
];

fn word() -> impl Strategy<Value = String> {
    proptest::sample::select(WORDS).prop_map(String::from)
}

fn words(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(word(), 1..=max)
}

fn address() -> impl Strategy<Value = Address> {
    (
        proptest::sample::select(ADDRESSES),
        proptest::option::of(word()),
    )
        .prop_map(|(a, name)| Address {
            name,
            address: a.to_string(),
        })
}

fn kinds() -> impl Strategy<Value = Vec<MessageKind>> {
    subsequence(
        vec![
            MessageKind::AutomaticReply,
            MessageKind::NonDeliveryReport,
            MessageKind::MeetingRequest,
            MessageKind::Signed,
            MessageKind::Encrypted,
        ],
        0..=2,
    )
}

fn importance() -> impl Strategy<Value = Importance> {
    prop_oneof![
        Just(Importance::Low),
        Just(Importance::Normal),
        Just(Importance::High)
    ]
}

fn sensitivity() -> impl Strategy<Value = Sensitivity> {
    prop_oneof![
        Just(Sensitivity::Normal),
        Just(Sensitivity::Personal),
        Just(Sensitivity::Private),
        Just(Sensitivity::Confidential)
    ]
}

fn flag() -> impl Strategy<Value = FlagStatus> {
    prop_oneof![
        Just(FlagStatus::NotFlagged),
        Just(FlagStatus::Flagged),
        Just(FlagStatus::Complete)
    ]
}

fn body() -> impl Strategy<Value = Option<Body>> {
    proptest::option::of((any::<bool>(), words(6)).prop_map(|(is_html, ws)| {
        if is_html {
            Body {
                content_type: BodyType::Html,
                content: format!("<p>{}</p><div>{}</div>", ws.join(" <b>"), ws[0]),
            }
        } else {
            Body {
                content_type: BodyType::Text,
                content: ws.join("\n"),
            }
        }
    }))
}

prop_compose! {
    /// Messages over a small vocabulary, so conditions both match and fail often.
    fn message()(
        subject in words(4),
        from in proptest::option::of(address()),
        to in proptest::collection::vec(address(), 0..3),
        cc in proptest::collection::vec(address(), 0..2),
        has_attachments in any::<bool>(),
        importance in importance(),
        sensitivity in sensitivity(),
        categories in subsequence(CATEGORIES.to_vec(), 0..=2),
        flag in flag(),
        size_kb in proptest::option::of(0u64..50),
        kinds in kinds(),
        spam in any::<bool>(),
        body in body(),
    ) -> MailMessage {
        let mut m = msg();
        m.subject = subject.join(" ");
        m.from = from;
        m.to = to;
        m.cc = cc;
        m.has_attachments = has_attachments;
        m.importance = importance;
        m.sensitivity = sensitivity;
        m.categories = categories.into_iter().map(String::from).collect();
        m.flag = flag;
        m.size_bytes = size_kb.map(|kb| kb * 1024 + 7);
        m.kinds = kinds;
        if spam {
            m.headers = vec![Header { name: "X-Spam".into(), value: "yes urgent".into() }];
        }
        m.body = body;
        m
    }
}

fn address_list() -> impl Strategy<Value = Vec<String>> {
    subsequence(ADDRESSES.to_vec(), 1..=2).prop_map(|v| v.into_iter().map(String::from).collect())
}

fn regex_field() -> impl Strategy<Value = RegexField> {
    prop_oneof![
        Just(RegexField::Subject),
        Just(RegexField::Body),
        Just(RegexField::BodyOrSubject),
        Just(RegexField::Sender),
        Just(RegexField::Recipients),
        Just(RegexField::Header),
    ]
}

/// Valid leaf conditions of every kind.
fn leaf() -> impl Strategy<Value = Condition> {
    prop_oneof![
        address_list().prop_map(Condition::FromAddresses),
        address_list().prop_map(Condition::SentToAddresses),
        words(2).prop_map(Condition::SenderContains),
        words(2).prop_map(Condition::RecipientContains),
        words(2).prop_map(Condition::SubjectContains),
        words(2).prop_map(Condition::BodyContains),
        words(2).prop_map(Condition::BodyOrSubjectContains),
        words(2).prop_map(Condition::HeaderContains),
        any::<bool>().prop_map(Condition::SentToMe),
        any::<bool>().prop_map(Condition::SentOnlyToMe),
        any::<bool>().prop_map(Condition::SentCcMe),
        any::<bool>().prop_map(Condition::SentToOrCcMe),
        any::<bool>().prop_map(Condition::NotSentToMe),
        any::<bool>().prop_map(Condition::HasAttachments),
        importance().prop_map(Condition::Importance),
        sensitivity().prop_map(Condition::Sensitivity),
        (proptest::option::of(0u64..30), 0u64..30).prop_map(|(min, extra)| {
            Condition::WithinSizeRange(SizeRange {
                minimum_size: min,
                maximum_size: Some(min.unwrap_or(0) + extra),
            })
        }),
        subsequence(CATEGORIES.to_vec(), 1..=2)
            .prop_map(|v| Condition::Categories(v.into_iter().map(String::from).collect())),
        flag().prop_map(Condition::FlagStatus),
        any::<bool>().prop_map(Condition::IsAutomaticReply),
        any::<bool>().prop_map(Condition::IsMeetingRequest),
        any::<bool>().prop_map(Condition::IsSigned),
        any::<bool>().prop_map(Condition::IsVoicemail),
        (
            prop_oneof![Just("fabrikam.com"), Just("contoso.com"), Just("bücher.de")],
            any::<bool>()
        )
            .prop_map(|(d, sub)| {
                Condition::SenderDomain(SenderDomain {
                    domain: d.into(),
                    include_subdomains: sub,
                })
            }),
        (regex_field(), word(), any::<bool>()).prop_map(|(field, w, cs)| Condition::Regex(
            RegexCondition {
                field,
                pattern: format!("{}|^x", regex::escape(&w)),
                case_sensitive: cs,
                header: None,
            }
        )),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Condition::All),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Condition::Any),
            inner.prop_map(Condition::not),
        ]
    })
}

/// A valid action list: each kind at most once, distinct copy folders, never move and delete.
fn actions() -> impl Strategy<Value = Vec<Action>> {
    (
        proptest::option::of(subsequence(CATEGORIES.to_vec(), 1..=3)),
        proptest::option::of(importance()),
        proptest::option::of(flag()),
        any::<bool>(),
        subsequence(vec!["Copies", "Backup/2025", "inbox/Copies"], 0..=2),
        proptest::option::of((
            address_list(),
            proptest::option::of(prop_oneof![Just("FYI"), Just("Please check")]),
        )),
        0..3u8,
        proptest::sample::select(FOLDERS),
    )
        .prop_map(|(cats, imp, fl, read, copies, fwd, terminal, folder)| {
            let mut out = Vec::new();
            if let Some(c) = cats {
                // Categories within one action that differ only by case are fine (deduplicated).
                let mut seen = HashSet::new();
                let names: Vec<String> = c
                    .into_iter()
                    .filter(|n| seen.insert(n.to_lowercase()))
                    .map(String::from)
                    .collect();
                out.push(Action::AssignCategories {
                    categories: names,
                    color: Some("preset3".into()),
                });
            }
            if let Some(importance) = imp {
                out.push(Action::MarkImportance { importance });
            }
            if let Some(status) = fl {
                out.push(Action::Flag { status });
            }
            if read {
                out.push(Action::MarkAsRead {});
            }
            out.extend(
                copies
                    .into_iter()
                    .map(|p| Action::CopyToFolder { path: p.into() }),
            );
            if let Some((recipients, comment)) = fwd {
                out.push(Action::ForwardTo {
                    recipients,
                    comment: comment.map(String::from),
                });
            }
            match terminal {
                1 => out.push(Action::MoveToFolder {
                    path: folder.into(),
                }),
                2 => out.push(Action::Delete {}),
                _ => {}
            }
            if out.is_empty() {
                out.push(Action::MarkAsRead {});
            }
            out
        })
}

fn rule_strategy()
-> impl Strategy<Value = (Vec<Condition>, Vec<Condition>, Vec<Action>, u32, bool, bool)> {
    (
        proptest::collection::vec(condition(), 0..3),
        proptest::collection::vec(condition(), 0..2),
        actions(),
        0u32..5,
        proptest::bool::weighted(0.9),
        proptest::bool::weighted(0.2),
    )
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    proptest::collection::vec(rule_strategy(), 1..7).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(
                |(i, (conditions, exceptions, actions, order, enabled, stop_processing))| Rule {
                    id: format!("r{i}"),
                    name: format!("Rule {i}"),
                    order,
                    enabled,
                    conditions,
                    exceptions,
                    actions,
                    stop_processing,
                },
            )
            .collect()
    })
}

fn run(rules: &[Rule], m: &MailMessage) -> Evaluation {
    eval(rules.to_vec(), m)
}

const PHASES: &[&str] = &[
    "categorize",
    "importance",
    "flag",
    "markRead",
    "copy",
    "forward",
    "move",
    "delete",
];

fn phase(key: &str) -> usize {
    let kind = key.split(':').next().unwrap();
    PHASES
        .iter()
        .position(|p| *p == kind)
        .unwrap_or_else(|| panic!("unknown action key {key}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn double_negation_is_identity(c in condition(), m in message()) {
        prop_assert_eq!(matches(Condition::not(Condition::not(c.clone())), &m), matches(c, &m));
    }

    #[test]
    fn singleton_groups_are_identity(c in condition(), m in message()) {
        let plain = matches(c.clone(), &m);
        prop_assert_eq!(matches(Condition::all([c.clone()]), &m), plain);
        prop_assert_eq!(matches(Condition::any([c]), &m), plain);
    }

    #[test]
    fn groups_follow_boolean_logic(a in condition(), b in condition(), m in message()) {
        let (x, y) = (matches(a.clone(), &m), matches(b.clone(), &m));
        prop_assert!(matches(Condition::all([]), &m));
        prop_assert!(!matches(Condition::any([]), &m));
        prop_assert_eq!(matches(Condition::all([a.clone(), b.clone()]), &m), x && y);
        prop_assert_eq!(matches(Condition::any([a.clone(), b.clone()]), &m), x || y);
        // De Morgan
        prop_assert_eq!(
            matches(Condition::not(Condition::all([a.clone(), b.clone()])), &m),
            matches(Condition::any([Condition::not(a.clone()), Condition::not(b.clone())]), &m)
        );
        // Top-level conditions AND together; exceptions cancel.
        let mut r = rule("r", vec![a.clone(), b.clone()], vec![mark_read()]);
        prop_assert_eq!(!eval(vec![r.clone()], &m).matched.is_empty(), x && y);
        r.conditions = vec![a];
        r.exceptions = vec![b];
        prop_assert_eq!(!eval(vec![r], &m).matched.is_empty(), x && !y);
    }

    #[test]
    fn evaluation_is_deterministic(rs in rules(), m in message()) {
        let set = compiled(rs.clone());
        let first = evaluate(&set, &m, &ctx());
        prop_assert_eq!(&first, &evaluate(&set, &m.clone(), &ctx()));
        prop_assert_eq!(&first, &run(&rs, &m), "recompiling changes nothing");
    }

    #[test]
    fn plans_respect_the_merge_invariants(rs in rules(), m in message()) {
        let e = run(&rs, &m);
        let matched: Vec<&str> = e.matched.iter().map(|r| r.rule_id.as_str()).collect();

        // Disabled rules never apply; applied rules come in order.
        for id in &matched {
            let r = rs.iter().find(|r| r.id == *id).unwrap();
            prop_assert!(r.enabled);
        }
        let position = |id: &str| rs.iter().position(|r| r.id == id).unwrap();
        for pair in matched.windows(2) {
            let (a, b) = (&rs[position(pair[0])], &rs[position(pair[1])]);
            prop_assert!((a.order, position(pair[0])) < (b.order, position(pair[1])));
        }

        // Every action comes from an applied rule; keys are unique; phases are in order.
        let mut keys = HashSet::new();
        for a in &e.actions {
            prop_assert!(!a.rule_ids.is_empty());
            for id in &a.rule_ids {
                prop_assert!(matched.contains(&id.as_str()), "{} from unapplied rule {}", a.action_key, id);
            }
            prop_assert!(keys.insert(a.action_key.clone()), "duplicate key {}", a.action_key);
            prop_assert_eq!(&a.description, &a.describe());
        }
        let phases: Vec<usize> = e.actions.iter().map(|a| phase(&a.action_key)).collect();
        prop_assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{:?}", e.actions);

        // A message ends in one place: never both move and delete, at most one of each.
        let is_terminal = |k: &PlannedActionKind| matches!(k, PlannedActionKind::MoveToFolder { .. } | PlannedActionKind::Delete);
        let terminal = e.actions.iter().filter(|a| is_terminal(&a.action)).count();
        prop_assert!(terminal <= 1);
        if terminal == 1 {
            let last_is_terminal = is_terminal(&e.actions.last().unwrap().action);
            prop_assert!(last_is_terminal);
        }

        // Categories and forward recipients are deduplicated case-insensitively.
        let mut categories = HashSet::new();
        let mut recipients = HashSet::new();
        for a in &e.actions {
            match &a.action {
                PlannedActionKind::AssignCategories { categories: cs } => {
                    for c in cs {
                        prop_assert!(categories.insert(c.name.to_lowercase()), "duplicate category {}", c.name);
                    }
                }
                PlannedActionKind::ForwardTo { recipients: rs, .. } => {
                    for r in rs {
                        prop_assert!(recipients.insert(r.to_lowercase()), "duplicate recipient {}", r);
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn stop_processing_never_yields_later_rules(rs in rules(), m in message()) {
        let e = run(&rs, &m);
        if let Some(stopper) = &e.stopped_by {
            prop_assert_eq!(&e.matched.last().unwrap().rule_id, stopper);
            let stop_rule = rs.iter().find(|r| &r.id == stopper).unwrap();
            prop_assert!(stop_rule.stop_processing);
            // Removing every rule after the stopper changes nothing.
            let mut sorted: Vec<(usize, &Rule)> = rs.iter().enumerate().collect();
            sorted.sort_by_key(|(i, r)| (r.order, *i));
            let cut = sorted.iter().position(|(_, r)| &r.id == stopper).unwrap();
            let kept: Vec<Rule> = sorted[..=cut].iter().map(|(_, r)| (*r).clone()).collect();
            let mut kept_sorted = kept.clone();
            for (i, r) in kept_sorted.iter_mut().enumerate() {
                r.order = i as u32;
            }
            let truncated = run(&kept_sorted, &m);
            prop_assert_eq!(truncated.actions, e.actions);
            prop_assert_eq!(truncated.matched, e.matched);
        } else {
            prop_assert!(e.matched.iter().all(|mr| !rs.iter().find(|r| r.id == mr.rule_id).unwrap().stop_processing));
        }
    }

    #[test]
    fn literal_regex_agrees_with_contains(
        needle in "[a-zA-Z0-9äöüÄÖÜé.*+?()\\[\\]|^$-]{1,6}",
        subject in "[a-zA-Z0-9äöüÄÖÜé.*+?()\\[\\]|^$-]{0,20}",
        insert in any::<bool>(),
    ) {
        let mut m = msg();
        m.subject = if insert { format!("{subject}{needle}{subject}") } else { subject };
        let contains = matches(Condition::SubjectContains(vec![needle.clone()]), &m);
        let regex = matches(Condition::Regex(RegexCondition {
            field: RegexField::Subject,
            pattern: regex::escape(&needle),
            case_sensitive: false,
            header: None,
        }), &m);
        prop_assert_eq!(contains, regex);
        let case_sensitive = matches(Condition::Regex(RegexCondition {
            field: RegexField::Subject,
            pattern: regex::escape(&needle),
            case_sensitive: true,
            header: None,
        }), &m);
        prop_assert_eq!(case_sensitive, m.subject.contains(&needle));
    }
}

// Arbitrary (mostly invalid, any Unicode) input never panics: validation rejects or evaluation runs.

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "\\PC{0,30}", "[<>&;#a-z/ \"'=]{0,60}"]
}

fn wild_leaf() -> impl Strategy<Value = Condition> {
    let texts = || proptest::collection::vec(any_text(), 0..3);
    prop_oneof![
        texts().prop_map(Condition::FromAddresses),
        texts().prop_map(Condition::SubjectContains),
        texts().prop_map(Condition::BodyContains),
        texts().prop_map(Condition::HeaderContains),
        texts().prop_map(Condition::SenderContains),
        texts().prop_map(Condition::Categories),
        (any_text(), any::<bool>()).prop_map(|(d, s)| Condition::SenderDomain(SenderDomain {
            domain: d,
            include_subdomains: s
        })),
        (
            regex_field(),
            any_text(),
            any::<bool>(),
            proptest::option::of(any_text())
        )
            .prop_map(|(field, pattern, cs, header)| {
                Condition::Regex(RegexCondition {
                    field,
                    pattern,
                    case_sensitive: cs,
                    header,
                })
            }),
        (any::<Option<u64>>(), any::<Option<u64>>()).prop_map(|(a, b)| Condition::WithinSizeRange(
            SizeRange {
                minimum_size: a,
                maximum_size: b
            }
        )),
        any::<bool>().prop_map(Condition::SentOnlyToMe),
    ]
}

fn wild_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (
            proptest::collection::vec(any_text(), 0..3),
            proptest::option::of(any_text())
        )
            .prop_map(|(categories, color)| Action::AssignCategories { categories, color }),
        any_text().prop_map(|path| Action::MoveToFolder { path }),
        any_text().prop_map(|path| Action::CopyToFolder { path }),
        (
            proptest::collection::vec(any_text(), 0..3),
            proptest::option::of(any_text())
        )
            .prop_map(|(recipients, comment)| Action::ForwardTo {
                recipients,
                comment
            }),
        Just(Action::Delete {}),
        Just(Action::MarkAsRead {}),
    ]
}

prop_compose! {
    fn wild_message()(
        subject in any_text(),
        from in proptest::option::of((any_text(), proptest::option::of(any_text()))),
        to in proptest::collection::vec(any_text(), 0..3),
        html in any::<bool>(),
        body in proptest::option::of(any_text()),
        headers in proptest::collection::vec((any_text(), any_text()), 0..3),
        categories in proptest::collection::vec(any_text(), 0..2),
        size in any::<Option<u64>>(),
    ) -> MailMessage {
        let mut m = msg();
        m.subject = subject;
        m.from = from.map(|(address, name)| Address { name, address });
        m.to = to.into_iter().map(Address::new).collect();
        m.body = body.map(|content| Body { content_type: if html { BodyType::Html } else { BodyType::Text }, content });
        m.headers = headers.into_iter().map(|(name, value)| Header { name, value }).collect();
        m.categories = categories;
        m.size_bytes = size;
        m
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_rules_and_messages_never_panic(
        specs in proptest::collection::vec(
            (proptest::collection::vec(wild_leaf().prop_recursive(2, 8, 3, |inner| prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Condition::Any),
                inner.prop_map(Condition::not),
            ]), 0..3), proptest::collection::vec(wild_action(), 0..3), any_text(), any::<u32>()),
            0..4,
        ),
        m in wild_message(),
        mailbox in any_text(),
    ) {
        let rules: Vec<Rule> = specs.into_iter().enumerate().map(|(i, (conditions, actions, name, order))| Rule {
            id: format!("r{i}"),
            name,
            order,
            enabled: true,
            conditions,
            exceptions: vec![],
            actions,
            stop_processing: false,
        }).collect();
        match validate(RuleSet { version: 1, rules }) {
            Ok(set) => {
                let e = evaluate(set.compiled(), &m, &outlook_core::rules::EvalContext::new(mailbox));
                prop_assert!(e.actions.len() <= 8 + 3 * set.compiled().len());
                let json = serde_json::to_string(&e).unwrap();
                prop_assert_eq!(serde_json::from_str::<Evaluation>(&json).unwrap(), e);
                let reparsed = outlook_core::rules::parse_and_validate(&set.to_json());
                prop_assert!(reparsed.is_ok(), "a valid set round-trips through JSON: {:?}", reparsed.err());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(doc in any::<String>()) {
        let _ = outlook_core::rules::parse_and_validate(&doc);
    }

    #[test]
    fn folder_paths_round_trip(path in "[a-zA-Z/\\\\ äö]{0,40}") {
        if let Ok(p) = outlook_core::rules::FolderPath::parse(&path) {
            prop_assert_eq!(outlook_core::rules::FolderPath::parse(&p.to_string()).unwrap(), p);
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    const KEYS: &[&str] = &[
        "version",
        "rules",
        "id",
        "name",
        "order",
        "enabled",
        "conditions",
        "exceptions",
        "actions",
        "stopProcessing",
        "all",
        "any",
        "not",
        "subjectContains",
        "senderDomain",
        "domain",
        "regex",
        "field",
        "pattern",
        "moveToFolder",
        "path",
        "markAsRead",
        "forwardTo",
        "recipients",
        "withinSizeRange",
        "minimumSize",
        "assignCategories",
        "categories",
        "color",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..5).prop_map(Value::from),
        any_text().prop_map(Value::from),
        proptest::sample::select(KEYS).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..4).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_rules_on_arbitrary_messages_never_panic(rs in rules(), m in wild_message(), mailbox in any_text()) {
        let set = compiled(rs);
        let context = outlook_core::rules::EvalContext::new(mailbox);
        let e = evaluate(&set, &m, &context);
        prop_assert_eq!(&e, &evaluate(&set, &m, &context));
    }

    #[test]
    fn structured_json_never_panics(doc in json_value()) {
        let text = doc.to_string();
        match outlook_core::rules::parse_and_validate(&text) {
            Ok(set) => prop_assert_eq!(serde_json::from_str::<RuleSet>(&text).unwrap(), set.rule_set().clone()),
            Err(errors) => prop_assert!(!errors.is_empty()),
        }
    }
}
