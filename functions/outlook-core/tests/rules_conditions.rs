//! Every condition kind, its case and Unicode handling, groups and exceptions.

#[path = "rules_support.rs"]
mod support;

use outlook_core::message::{FlagStatus, Header, Importance, MessageKind, Sensitivity};
use outlook_core::rules::{Condition as C, RegexCondition, RegexField, SenderDomain, SizeRange};
use support::*;

fn s(values: &[&str]) -> Vec<String> {
    strings(values)
}

fn regex(field: RegexField, pattern: &str) -> C {
    C::Regex(RegexCondition {
        field,
        pattern: pattern.into(),
        case_sensitive: false,
        header: None,
    })
}

#[test]
fn from_addresses_match_from_or_sender_case_insensitively() {
    let m = msg();
    assert!(matches(C::FromAddresses(s(&["ALICE@Fabrikam.com"])), &m));
    assert!(matches(
        C::FromAddresses(s(&["x@y.com", " alice@fabrikam.com "])),
        &m
    ));
    assert!(!matches(C::FromAddresses(s(&["bob@fabrikam.com"])), &m));
    let mut only_sender = msg();
    only_sender.from = None;
    only_sender.sender = Some(addr("bot@fabrikam.com"));
    assert!(matches(
        C::FromAddresses(s(&["bot@fabrikam.com"])),
        &only_sender
    ));
    let mut nobody = msg();
    nobody.from = None;
    assert!(!matches(
        C::FromAddresses(s(&["alice@fabrikam.com"])),
        &nobody
    ));
}

#[test]
fn sender_contains_looks_at_address_and_display_name() {
    let m = msg();
    assert!(matches(C::SenderContains(s(&["FABRIKAM"])), &m));
    assert!(matches(C::SenderContains(s(&["alice ex"])), &m));
    assert!(!matches(C::SenderContains(s(&["contoso"])), &m));
    let mut umlaut = msg();
    umlaut.from = Some(named("JÜRGEN Ärger", "j@x.de"));
    assert!(matches(C::SenderContains(s(&["jürgen ärger"])), &umlaut));
}

#[test]
fn sent_to_addresses_cover_to_cc_and_bcc() {
    let mut m = msg();
    m.to = vec![addr("a@x.com")];
    m.cc = vec![addr("b@x.com")];
    m.bcc = vec![addr("c@x.com")];
    for who in ["A@X.COM", "b@x.com", "c@x.com"] {
        assert!(matches(C::SentToAddresses(s(&[who])), &m), "{who}");
    }
    assert!(!matches(C::SentToAddresses(s(&["d@x.com"])), &m));
}

#[test]
fn recipient_contains_looks_at_all_recipients() {
    let mut m = msg();
    m.cc = vec![named("Accounts Payable", "ap@fabrikam.com")];
    assert!(matches(C::RecipientContains(s(&["payable"])), &m));
    assert!(matches(C::RecipientContains(s(&["AP@"])), &m));
    assert!(!matches(C::RecipientContains(s(&["receivable"])), &m));
}

#[test]
fn subject_contains_is_case_insensitive_with_unicode() {
    let mut m = msg();
    m.subject = "Re: ÄRGER mit der Rechnung — İstanbul, Straße".into();
    for needle in [
        "ärger",
        "ÄRGER",
        "rechnung",
        "İstanbul",
        "istanbul",
        "ISTANBUL",
        "strasse",
        "STRASSE",
        "straße",
    ] {
        assert!(matches(C::SubjectContains(s(&[needle])), &m), "{needle}");
    }
    assert!(
        !matches(C::SubjectContains(s(&["arger"])), &m),
        "no accent folding"
    );
    assert!(
        matches(C::SubjectContains(s(&["nope", "rechnung"])), &m),
        "values are ORed"
    );
    m.subject = "Invoice   no.\t42".into();
    assert!(
        matches(C::SubjectContains(s(&["invoice no. 42"])), &m),
        "whitespace runs are one space"
    );
}

#[test]
fn body_contains_matches_rendered_html_text() {
    let mut m = msg();
    m.body = html(
        "<p>Please pay <b>Invoice</b>&nbsp;42</p><p>IBAN: DE12&#32;3456</p><!-- secret --><script>var hidden = 'zzz';</script>",
    );
    assert!(matches(C::BodyContains(s(&["invoice 42"])), &m));
    assert!(matches(C::BodyContains(s(&["iban: de12 3456"])), &m));
    assert!(
        !matches(C::BodyContains(s(&["<b>"])), &m),
        "markup is not text"
    );
    assert!(
        !matches(C::BodyContains(s(&["secret"])), &m),
        "comments are not text"
    );
    m.body = text("Plain <b>body</b> text");
    assert!(matches(C::BodyContains(s(&["<b>body</b>"])), &m));
    m.body = None;
    assert!(
        !matches(C::BodyContains(s(&["anything"])), &m),
        "a missing body is empty"
    );
    assert!(matches(C::not(C::BodyContains(s(&["anything"]))), &m));
}

#[test]
fn body_or_subject_contains_checks_both() {
    let mut m = msg();
    m.subject = "Quarterly report".into();
    m.body = text("Nothing urgent here");
    assert!(matches(C::BodyOrSubjectContains(s(&["QUARTERLY"])), &m));
    assert!(matches(C::BodyOrSubjectContains(s(&["urgent"])), &m));
    assert!(!matches(C::BodyOrSubjectContains(s(&["invoice"])), &m));
}

#[test]
fn header_contains_matches_name_and_value_lines() {
    let mut m = msg();
    m.headers = vec![
        Header {
            name: "X-Spam-Flag".into(),
            value: "YES".into(),
        },
        Header {
            name: "List-Id".into(),
            value: "<news.fabrikam.com>".into(),
        },
    ];
    assert!(matches(C::HeaderContains(s(&["x-spam-flag: yes"])), &m));
    assert!(matches(C::HeaderContains(s(&["news.fabrikam"])), &m));
    assert!(!matches(C::HeaderContains(s(&["x-mailer"])), &m));
}

#[test]
fn sent_to_me_variants_use_address_and_aliases() {
    let cond = |c: C, to: &[&str], cc: &[&str]| {
        let mut m = msg();
        m.to = to.iter().map(|a| addr(a)).collect();
        m.cc = cc.iter().map(|a| addr(a)).collect();
        matches(c, &m)
    };
    assert!(cond(C::SentToMe(true), &["ME@contoso.com"], &[]));
    assert!(
        cond(C::SentToMe(true), &["sales@contoso.com"], &[]),
        "alias"
    );
    assert!(!cond(C::SentToMe(true), &["x@contoso.com"], &[ME]));
    assert!(cond(C::SentToMe(false), &["x@contoso.com"], &[ME]));

    assert!(cond(C::SentCcMe(true), &["x@contoso.com"], &[ME]));
    assert!(!cond(C::SentCcMe(true), &[ME], &[]));

    assert!(cond(C::SentToOrCcMe(true), &[ME], &[]));
    assert!(cond(C::SentToOrCcMe(true), &[], &[ALIAS]));
    assert!(!cond(C::SentToOrCcMe(true), &["x@y.com"], &[]));

    assert!(cond(C::SentOnlyToMe(true), &[ME], &[]));
    assert!(cond(C::SentOnlyToMe(true), &[ME], &[ALIAS]), "alias is me");
    assert!(!cond(C::SentOnlyToMe(true), &[ME, "x@y.com"], &[]));
    assert!(!cond(C::SentOnlyToMe(true), &[ME], &["x@y.com"]));
    assert!(
        !cond(C::SentOnlyToMe(true), &[], &[]),
        "no recipients at all"
    );

    assert!(cond(C::NotSentToMe(true), &["list@fabrikam.com"], &[]));
    assert!(!cond(C::NotSentToMe(true), &["list@fabrikam.com"], &[ME]));
    assert!(cond(C::NotSentToMe(false), &[ME], &[]));
}

#[test]
fn sent_to_me_respects_bcc() {
    let mut m = msg();
    m.to = vec![addr("list@fabrikam.com")];
    m.bcc = vec![addr(ME)];
    assert!(!matches(C::SentToMe(true), &m));
    assert!(
        !matches(C::NotSentToMe(true), &m),
        "bcc'd: still a recipient"
    );
    assert!(!matches(C::SentOnlyToMe(true), &m));
}

#[test]
fn has_attachments_importance_sensitivity_flag() {
    let mut m = msg();
    assert!(matches(C::HasAttachments(false), &m));
    assert!(!matches(C::HasAttachments(true), &m));
    m.has_attachments = true;
    assert!(matches(C::HasAttachments(true), &m));

    assert!(matches(C::Importance(Importance::Normal), &m));
    m.importance = Importance::High;
    assert!(matches(C::Importance(Importance::High), &m));
    assert!(!matches(C::Importance(Importance::Low), &m));

    assert!(matches(C::Sensitivity(Sensitivity::Normal), &m));
    m.sensitivity = Sensitivity::Confidential;
    assert!(matches(C::Sensitivity(Sensitivity::Confidential), &m));
    assert!(!matches(C::Sensitivity(Sensitivity::Private), &m));

    assert!(matches(C::FlagStatus(FlagStatus::NotFlagged), &m));
    m.flag = FlagStatus::Flagged;
    assert!(matches(C::FlagStatus(FlagStatus::Flagged), &m));
    assert!(!matches(C::FlagStatus(FlagStatus::Complete), &m));
}

#[test]
fn size_range_is_in_kilobytes_inclusive() {
    let range = |min, max| {
        C::WithinSizeRange(SizeRange {
            minimum_size: min,
            maximum_size: max,
        })
    };
    let mut m = msg();
    assert!(
        !matches(range(Some(0), None), &m),
        "unknown size never matches"
    );
    m.size_bytes = Some(10 * 1024);
    assert!(matches(range(Some(10), Some(10)), &m));
    assert!(matches(range(None, Some(10)), &m));
    assert!(matches(range(Some(5), None), &m));
    assert!(!matches(range(Some(11), None), &m));
    m.size_bytes = Some(10 * 1024 + 1);
    assert!(!matches(range(None, Some(10)), &m));
    m.size_bytes = Some(u64::MAX);
    assert!(
        matches(range(Some(u64::MAX), None), &m),
        "no overflow on huge bounds"
    );
}

#[test]
fn categories_match_any_existing_category() {
    let mut m = msg();
    assert!(!matches(C::Categories(s(&["Red"])), &m));
    m.categories = s(&["Blue category", "ÄRGER"]);
    assert!(matches(C::Categories(s(&["red", "blue CATEGORY"])), &m));
    assert!(matches(C::Categories(s(&["ärger"])), &m));
    assert!(
        !matches(C::Categories(s(&["Blue"])), &m),
        "whole names, not substrings"
    );
}

#[test]
fn message_kinds_match_true_and_false() {
    type MakeKind = fn(bool) -> C;
    let kinds: Vec<(MakeKind, MessageKind)> = vec![
        (C::IsAutomaticReply, MessageKind::AutomaticReply),
        (C::IsNonDeliveryReport, MessageKind::NonDeliveryReport),
        (C::IsReadReceipt, MessageKind::ReadReceipt),
        (C::IsMeetingRequest, MessageKind::MeetingRequest),
        (C::IsMeetingResponse, MessageKind::MeetingResponse),
        (C::IsAutomaticForward, MessageKind::AutomaticForward),
        (C::IsEncrypted, MessageKind::Encrypted),
        (C::IsSigned, MessageKind::Signed),
        (C::IsVoicemail, MessageKind::Voicemail),
        (C::IsApprovalRequest, MessageKind::ApprovalRequest),
        (C::IsPermissionControlled, MessageKind::PermissionControlled),
    ];
    for (make, kind) in kinds {
        let normal = msg();
        let mut special = msg();
        special.kinds = vec![MessageKind::Signed, kind];
        assert!(matches(make(true), &special), "{kind:?}");
        assert!(!matches(make(true), &normal), "{kind:?}");
        assert!(matches(make(false), &normal), "{kind:?}");
        if kind != MessageKind::Signed {
            assert!(!matches(make(false), &special), "{kind:?}");
        }
    }
}

#[test]
fn sender_domain_with_and_without_subdomains() {
    let domain = |d: &str, sub: bool| {
        C::SenderDomain(SenderDomain {
            domain: d.into(),
            include_subdomains: sub,
        })
    };
    let from = |a: &str| {
        let mut m = msg();
        m.from = Some(addr(a));
        m
    };
    assert!(matches(
        domain("Fabrikam.COM", false),
        &from("x@fabrikam.com")
    ));
    assert!(matches(
        domain("fabrikam.com", false),
        &from("x@FABRIKAM.com")
    ));
    assert!(!matches(
        domain("fabrikam.com", false),
        &from("x@mail.fabrikam.com")
    ));
    assert!(matches(
        domain("fabrikam.com", true),
        &from("x@mail.fabrikam.com")
    ));
    assert!(matches(
        domain("fabrikam.com", true),
        &from("x@a.b.fabrikam.com")
    ));
    assert!(!matches(
        domain("fabrikam.com", true),
        &from("x@notfabrikam.com")
    ));
    assert!(!matches(
        domain("fabrikam.com", true),
        &from("x@fabrikam.com.evil.net")
    ));
    assert!(!matches(domain("fabrikam.com", true), &from("no-at-sign")));
    assert!(matches(domain("bücher.de", false), &from("info@BÜCHER.de")));
}

#[test]
fn regexes_on_each_field() {
    let mut m = msg();
    m.subject = "INV-2024-0042 from Fabrikam".into();
    m.body = html("<p>Order number: 12345</p><p>Total: 10 EUR</p>");
    m.cc = vec![named("Team Lead", "lead@contoso.com")];
    m.headers = vec![Header {
        name: "X-Mailer".into(),
        value: "Acme Mailer 5.1".into(),
    }];

    assert!(
        matches(regex(RegexField::Subject, r"^inv-\d{4}-\d+"), &m),
        "case-insensitive by default"
    );
    assert!(!matches(
        C::Regex(RegexCondition {
            field: RegexField::Subject,
            pattern: "^inv-".into(),
            case_sensitive: true,
            header: None
        }),
        &m
    ));
    assert!(matches(
        regex(RegexField::Body, r"(?m)^Order number: \d{5}$"),
        &m
    ));
    assert!(
        !matches(regex(RegexField::Body, r"<p>"), &m),
        "body regex sees text, not HTML"
    );
    assert!(matches(
        regex(RegexField::BodyOrSubject, r"total: \d+ eur"),
        &m
    ));
    assert!(matches(regex(RegexField::BodyOrSubject, r"^INV"), &m));
    assert!(matches(regex(RegexField::Sender, r"^alice@"), &m));
    assert!(
        matches(regex(RegexField::Sender, r"^Alice Example$"), &m),
        "display name"
    );
    assert!(matches(regex(RegexField::Recipients, r"^team"), &m));
    assert!(
        matches(regex(RegexField::Header, r"^x-mailer: acme"), &m),
        "header lines"
    );
    let named_header = |name: &str, pattern: &str| {
        C::Regex(RegexCondition {
            field: RegexField::Header,
            pattern: pattern.into(),
            case_sensitive: false,
            header: Some(name.into()),
        })
    };
    assert!(matches(named_header("x-mailer", r"^acme mailer \d"), &m));
    assert!(
        !matches(named_header("x-mailer", r"^x-mailer"), &m),
        "value only"
    );
    assert!(!matches(named_header("user-agent", r"acme"), &m));
}

#[test]
fn regex_unicode_case_insensitivity() {
    let mut m = msg();
    m.subject = "ÄRGER im Büro".into();
    assert!(matches(regex(RegexField::Subject, "ärger"), &m));
    assert!(
        matches(regex(RegexField::Subject, r"^\w+ im b\w+o$"), &m),
        "Unicode word characters"
    );
}

#[test]
fn groups_all_any_not() {
    let m = msg();
    let yes = || C::SubjectContains(s(&["hello"]));
    let no = || C::SubjectContains(s(&["goodbye"]));
    assert!(matches(C::all([yes(), yes()]), &m));
    assert!(!matches(C::all([yes(), no()]), &m));
    assert!(matches(C::any([no(), yes()]), &m));
    assert!(!matches(C::any([no(), no()]), &m));
    assert!(matches(C::not(no()), &m));
    assert!(!matches(C::not(yes()), &m));
    assert!(matches(C::all([]), &m), "all of nothing is true");
    assert!(!matches(C::any([]), &m), "any of nothing is false");
    assert!(matches(
        C::any([no(), C::all([yes(), C::not(C::any([no()]))])]),
        &m
    ));
}

#[test]
fn top_level_conditions_are_anded_and_empty_conditions_match_everything() {
    let m = msg();
    let both = rule(
        "r",
        vec![
            C::SubjectContains(s(&["hello"])),
            C::SenderContains(s(&["alice"])),
        ],
        vec![mark_read()],
    );
    assert_eq!(eval(vec![both], &m).matched.len(), 1);
    let one_fails = rule(
        "r",
        vec![
            C::SubjectContains(s(&["hello"])),
            C::SenderContains(s(&["bob"])),
        ],
        vec![mark_read()],
    );
    assert!(eval(vec![one_fails], &m).matched.is_empty());
    let no_conditions = rule("r", vec![], vec![mark_read()]);
    assert_eq!(eval(vec![no_conditions], &m).matched.len(), 1);
}

#[test]
fn any_matching_exception_cancels_the_rule() {
    let m = msg();
    let with_exceptions = |exceptions: Vec<C>| {
        let mut r = rule(
            "r",
            vec![C::SubjectContains(s(&["hello"]))],
            vec![mark_read()],
        );
        r.exceptions = exceptions;
        eval(vec![r], &m)
    };
    assert_eq!(with_exceptions(vec![]).matched.len(), 1);
    assert_eq!(
        with_exceptions(vec![C::HasAttachments(true)]).matched.len(),
        1
    );
    assert!(
        with_exceptions(vec![
            C::HasAttachments(true),
            C::SenderContains(s(&["alice"]))
        ])
        .matched
        .is_empty()
    );
    assert!(
        with_exceptions(vec![C::FromAddresses(s(&["alice@fabrikam.com"]))])
            .actions
            .is_empty()
    );
}

#[test]
fn large_bodies_with_many_body_rules_stay_fast() {
    // (That the body is rendered once per evaluation is checked in the `eval` unit tests.)
    let mut m = msg();
    let big = "<p>lorem ipsum dolor sit amet, consectetur adipiscing elit</p>".repeat(2_000);
    m.body = html(&format!("{big}<p>needle phrase</p>"));
    let rules: Vec<_> = (0..200)
        .map(|i| {
            rule(
                &format!("r{i}"),
                vec![C::BodyContains(s(&[&format!("needle phrase{i}")]))],
                vec![mark_read()],
            )
        })
        .chain([rule(
            "hit",
            vec![C::BodyContains(s(&["NEEDLE phrase"]))],
            vec![mark_read()],
        )])
        .collect();
    let start = std::time::Instant::now();
    let e = eval(rules, &m);
    assert_eq!(e.matched.len(), 1);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn html_after_the_tag_limit_is_not_read() {
    use outlook_core::rules::limits::MAX_HTML_TAGS;
    let mut m = msg();
    let filler = "<b>x</b>".repeat(MAX_HTML_TAGS / 2);
    m.body = html(&format!("<p>early</p>{filler}<p>late</p>"));
    assert!(matches(C::BodyContains(s(&["early"])), &m));
    assert!(!matches(C::BodyContains(s(&["late"])), &m));
    m.body = text(&format!("early {} late", "<b>x</b>".repeat(MAX_HTML_TAGS)));
    assert!(
        matches(C::BodyContains(s(&["late"])), &m),
        "plain text bodies have no tag limit"
    );
}
