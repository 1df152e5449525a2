//! Validation: every error kind, each naming the rule and the field; all errors at once.

#[path = "rules_support.rs"]
mod support;

use outlook_core::message::Importance;
use outlook_core::rules::limits::*;
use outlook_core::rules::{
    Action as A, Condition as C, FolderPathError, RegexCondition, RegexField, Rule, RuleSet,
    RuleValidationError, SenderDomain, SizeRange, ValidationErrorKind as K, validate,
};
use support::*;

fn errors_of(rules: Vec<Rule>) -> Vec<RuleValidationError> {
    validate(RuleSet { version: 1, rules }).expect_err("should be invalid")
}

/// The single error of a one-rule set whose rule has this condition.
fn condition_error(c: C) -> RuleValidationError {
    let errors = errors_of(vec![rule("r1", vec![c], vec![mark_read()])]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

fn action_error(actions: Vec<A>) -> RuleValidationError {
    let errors = errors_of(vec![rule("r1", vec![], actions)]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

fn regex(field: RegexField, pattern: &str, header: Option<&str>) -> C {
    C::Regex(RegexCondition {
        field,
        pattern: pattern.into(),
        case_sensitive: false,
        header: header.map(Into::into),
    })
}

#[track_caller]
fn assert_error(e: &RuleValidationError, field: &str, code: &str) {
    assert_eq!((e.field.as_str(), e.code()), (field, code), "{e}");
    assert_eq!(e.rule_id.as_deref(), Some("r1"), "{e}");
    assert_eq!(e.rule_index, Some(0), "{e}");
}

#[test]
fn a_valid_rule_set_validates() {
    let set = valid(vec![
        rule(
            "r1",
            vec![
                C::SubjectContains(strings(&["x"])),
                C::SenderDomain(SenderDomain {
                    domain: "acme.com".into(),
                    include_subdomains: true,
                }),
            ],
            vec![A::MoveToFolder {
                path: "inbox/Acme".into(),
            }],
        ),
        rule("r2", vec![], vec![A::Delete {}]),
    ]);
    assert_eq!(set.rule_set().rules.len(), 2);
}

#[test]
fn errors_name_the_rule_and_field_in_their_message() {
    let e = condition_error(C::FromAddresses(strings(&["ok@x.com", "not an address"])));
    assert_error(&e, "conditions[0].fromAddresses[1]", "invalidEmail");
    assert_eq!(
        e.to_string(),
        r#"rule "r1" (rules[0]), conditions[0].fromAddresses[1]: invalid email address "not an address""#
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["ruleId"], "r1");
    assert_eq!(json["ruleIndex"], 0);
    assert_eq!(json["field"], "conditions[0].fromAddresses[1]");
    assert_eq!(json["code"], "invalidEmail");
    assert_eq!(json["message"], e.to_string());
}

#[test]
fn empty_and_oversized_value_lists() {
    assert_error(
        &condition_error(C::FromAddresses(vec![])),
        "conditions[0].fromAddresses",
        "empty",
    );
    assert_error(
        &condition_error(C::SentToAddresses(vec![])),
        "conditions[0].sentToAddresses",
        "empty",
    );
    assert_error(
        &condition_error(C::SubjectContains(vec![])),
        "conditions[0].subjectContains",
        "empty",
    );
    assert_error(
        &condition_error(C::Categories(vec![])),
        "conditions[0].categories",
        "empty",
    );
    let many = vec!["x".to_string(); MAX_VALUES + 1];
    let e = condition_error(C::BodyContains(many));
    assert_error(&e, "conditions[0].bodyContains", "tooMany");
    assert_eq!(
        e.kind,
        K::TooMany {
            count: MAX_VALUES + 1,
            max: MAX_VALUES
        }
    );
}

#[test]
fn blank_and_too_long_strings() {
    assert_error(
        &condition_error(C::SubjectContains(strings(&["ok", "  "]))),
        "conditions[0].subjectContains[1]",
        "blankValue",
    );
    assert_error(
        &condition_error(C::HeaderContains(strings(&[""]))),
        "conditions[0].headerContains[0]",
        "blankValue",
    );
    let long = "x".repeat(MAX_VALUE_CHARS + 1);
    assert_error(
        &condition_error(C::SenderContains(vec![long])),
        "conditions[0].senderContains[0]",
        "tooLong",
    );
    let fine = "ä".repeat(MAX_VALUE_CHARS);
    valid(vec![rule(
        "r1",
        vec![C::SenderContains(vec![fine])],
        vec![mark_read()],
    )]);
}

#[test]
fn invalid_email_addresses() {
    for bad in [
        "",
        "plain",
        "a@b",
        "Name <a@b.com>",
        "a@@b.com",
        "a b@c.com",
    ] {
        let e = condition_error(C::SentToAddresses(strings(&[bad])));
        assert_error(&e, "conditions[0].sentToAddresses[0]", "invalidEmail");
    }
}

#[test]
fn invalid_domains() {
    for bad in [
        "",
        "acme",
        "@acme.com",
        "*.acme.com",
        "acme..com",
        "-acme.com",
        "a_b.com",
    ] {
        let e = condition_error(C::SenderDomain(SenderDomain {
            domain: bad.into(),
            include_subdomains: false,
        }));
        assert_error(&e, "conditions[0].senderDomain.domain", "invalidDomain");
    }
}

#[test]
fn invalid_regexes() {
    let e = condition_error(regex(RegexField::Subject, "(unclosed", None));
    assert_error(&e, "conditions[0].regex.pattern", "invalidRegex");
    assert!(e.to_string().contains("invalid regular expression"), "{e}");
    assert_error(
        &condition_error(regex(RegexField::Subject, "", None)),
        "conditions[0].regex.pattern",
        "empty",
    );
    assert_error(
        &condition_error(regex(RegexField::Subject, r"(?<=x)y", None)),
        "conditions[0].regex.pattern",
        "invalidRegex",
    );
    assert_error(
        &condition_error(regex(RegexField::Subject, r"(a)\1", None)),
        "conditions[0].regex.pattern",
        "invalidRegex",
    );
    let long = "a".repeat(MAX_REGEX_CHARS + 1);
    assert_error(
        &condition_error(regex(RegexField::Body, &long, None)),
        "conditions[0].regex.pattern",
        "tooLong",
    );
}

#[test]
fn regexes_over_the_size_limit_are_rejected() {
    let e = condition_error(regex(RegexField::Subject, r"\w{1000}", None));
    assert_error(&e, "conditions[0].regex.pattern", "invalidRegex");
    let e = condition_error(regex(RegexField::Subject, r"((a{100}){100}){100}", None));
    assert_error(&e, "conditions[0].regex.pattern", "invalidRegex");
}

#[test]
fn header_names_in_regexes() {
    valid(vec![rule(
        "r1",
        vec![regex(RegexField::Header, "x", Some("X-Mailer"))],
        vec![mark_read()],
    )]);
    assert_error(
        &condition_error(regex(RegexField::Header, "x", Some("Bad Name:"))),
        "conditions[0].regex.header",
        "invalidHeaderName",
    );
    assert_error(
        &condition_error(regex(RegexField::Header, "x", Some(""))),
        "conditions[0].regex.header",
        "invalidHeaderName",
    );
    assert_error(
        &condition_error(regex(RegexField::Subject, "x", Some("X-Mailer"))),
        "conditions[0].regex.header",
        "headerNameNotAllowed",
    );
}

#[test]
fn invalid_size_ranges() {
    let range = |min, max| {
        C::WithinSizeRange(SizeRange {
            minimum_size: min,
            maximum_size: max,
        })
    };
    assert_error(
        &condition_error(range(None, None)),
        "conditions[0].withinSizeRange",
        "invalidSizeRange",
    );
    assert_error(
        &condition_error(range(Some(10), Some(5))),
        "conditions[0].withinSizeRange",
        "invalidSizeRange",
    );
    valid(vec![rule(
        "r1",
        vec![range(Some(5), Some(5))],
        vec![mark_read()],
    )]);
}

#[test]
fn nested_paths_and_depth_limits() {
    let e = condition_error(C::all([
        C::SubjectContains(strings(&["x"])),
        C::any([C::not(C::FromAddresses(strings(&["bad"])))]),
    ]));
    assert_error(
        &e,
        "conditions[0].all[1].any[0].not.fromAddresses[0]",
        "invalidEmail",
    );

    let mut deep = C::HasAttachments(true);
    for _ in 0..MAX_CONDITION_DEPTH {
        deep = C::not(deep);
    }
    let e = condition_error(deep);
    assert_eq!(e.code(), "tooDeep", "{e}");
    assert!(e.field.starts_with("conditions[0].not.not"), "{e}");

    let mut ok = C::HasAttachments(true);
    for _ in 1..MAX_CONDITION_DEPTH {
        ok = C::not(ok);
    }
    valid(vec![rule("r1", vec![ok], vec![mark_read()])]);
}

#[test]
fn too_many_conditions_in_one_rule() {
    let many: Vec<C> = (0..=MAX_CONDITIONS_PER_RULE)
        .map(|_| C::HasAttachments(true))
        .collect();
    let e = condition_error(C::All(many));
    assert_eq!(
        e.kind,
        K::TooManyConditions {
            max: MAX_CONDITIONS_PER_RULE
        }
    );
}

#[test]
fn exceptions_are_validated_with_their_own_path() {
    let mut r = rule("r1", vec![], vec![mark_read()]);
    r.exceptions = vec![C::HasAttachments(true), C::Categories(strings(&["a,b"]))];
    let errors = errors_of(vec![r]);
    assert_eq!(errors.len(), 1);
    assert_error(&errors[0], "exceptions[1].categories[0]", "invalidCategory");
}

#[test]
fn rule_ids_and_names() {
    let mut r = rule("r1", vec![], vec![mark_read()]);
    r.id = String::new();
    let errors = errors_of(vec![r.clone()]);
    assert_eq!(
        (
            errors[0].field.as_str(),
            errors[0].code(),
            errors[0].rule_id.as_deref()
        ),
        ("id", "invalidRuleId", None)
    );
    r.id = "has space".into();
    assert_eq!(errors_of(vec![r.clone()])[0].code(), "invalidRuleId");
    r.id = "x".repeat(65);
    assert_eq!(errors_of(vec![r.clone()])[0].code(), "invalidRuleId");
    r.id = "r1".into();
    r.name = " ".into();
    assert_error(&errors_of(vec![r.clone()])[0], "name", "blankValue");
    r.name = "x".repeat(MAX_RULE_NAME_CHARS + 1);
    assert_error(&errors_of(vec![r.clone()])[0], "name", "tooLong");
    r.name = "a\u{0}b".into();
    assert_error(&errors_of(vec![r])[0], "name", "controlCharacter");
}

#[test]
fn duplicate_rule_ids() {
    let errors = errors_of(vec![
        rule("a", vec![], vec![mark_read()]),
        rule("b", vec![], vec![mark_read()]),
        rule("a", vec![], vec![mark_read()]),
    ]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, K::DuplicateRuleId("a".into()));
    assert_eq!(
        (errors[0].rule_index, errors[0].field.as_str()),
        (Some(2), "id")
    );
}

#[test]
fn too_many_rules() {
    let rules: Vec<Rule> = (0..=MAX_RULES)
        .map(|i| rule(&format!("r{i}"), vec![], vec![mark_read()]))
        .collect();
    let errors = errors_of(rules);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].kind,
        K::TooManyRules {
            count: MAX_RULES + 1,
            max: MAX_RULES
        }
    );
    assert_eq!(
        (errors[0].rule_index, errors[0].field.as_str()),
        (None, "rules")
    );
    assert_eq!(
        errors[0].to_string(),
        "rules: too many rules: 501 (at most 500 per rule set)"
    );
    let rules: Vec<Rule> = (0..MAX_RULES)
        .map(|i| rule(&format!("r{i}"), vec![], vec![mark_read()]))
        .collect();
    valid(rules);
}

#[test]
fn empty_action_list() {
    assert_error(&action_error(vec![]), "actions", "noActions");
    let mut stop_only = rule("r1", vec![], vec![]);
    stop_only.stop_processing = true;
    valid(vec![stop_only]);
}

#[test]
fn too_many_actions() {
    let actions: Vec<A> = (0..=MAX_ACTIONS_PER_RULE)
        .map(|i| A::CopyToFolder {
            path: format!("F{i}"),
        })
        .collect();
    assert_error(&action_error(actions), "actions", "tooMany");
}

#[test]
fn folder_path_errors() {
    let cases = [
        ("", FolderPathError::Empty),
        ("a//b", FolderPathError::EmptySegment { segment: 2 }),
        (r"a\x", FolderPathError::InvalidEscape { position: 1 }),
        (
            "outbox/x",
            FolderPathError::ForbiddenWellKnownFolder("outbox".into()),
        ),
    ];
    for (path, expected) in cases {
        let e = action_error(vec![A::MoveToFolder { path: path.into() }]);
        assert_error(&e, "actions[0].moveToFolder.path", "invalidFolderPath");
        assert_eq!(e.kind, K::InvalidFolderPath(expected));
        let e = action_error(vec![A::CopyToFolder { path: path.into() }]);
        assert_error(&e, "actions[0].copyToFolder.path", "invalidFolderPath");
    }
    let deep = ["d"; MAX_FOLDER_DEPTH + 1].join("/");
    let e = action_error(vec![A::MoveToFolder { path: deep }]);
    assert_eq!(
        e.kind,
        K::InvalidFolderPath(FolderPathError::TooDeep {
            max: MAX_FOLDER_DEPTH
        })
    );
    let long = "x".repeat(MAX_FOLDER_SEGMENT_CHARS + 1);
    let e = action_error(vec![A::MoveToFolder { path: long }]);
    assert_eq!(
        e.kind,
        K::InvalidFolderPath(FolderPathError::SegmentTooLong {
            segment: 1,
            max: MAX_FOLDER_SEGMENT_CHARS
        })
    );
}

#[test]
fn category_action_errors() {
    let assign = |names: &[&str], color: Option<&str>| A::AssignCategories {
        categories: strings(names),
        color: color.map(Into::into),
    };
    assert_error(
        &action_error(vec![assign(&[], None)]),
        "actions[0].assignCategories.categories",
        "empty",
    );
    assert_error(
        &action_error(vec![assign(&["ok", " "], None)]),
        "actions[0].assignCategories.categories[1]",
        "invalidCategory",
    );
    assert_error(
        &action_error(vec![assign(&["a;b"], None)]),
        "actions[0].assignCategories.categories[0]",
        "invalidCategory",
    );
    let long = "x".repeat(MAX_CATEGORY_CHARS + 1);
    assert_error(
        &action_error(vec![assign(&[&long], None)]),
        "actions[0].assignCategories.categories[0]",
        "invalidCategory",
    );
    let many: Vec<String> = (0..=MAX_CATEGORIES_PER_ACTION)
        .map(|i| format!("c{i}"))
        .collect();
    let e = action_error(vec![A::AssignCategories {
        categories: many,
        color: None,
    }]);
    assert_error(&e, "actions[0].assignCategories.categories", "tooMany");
    assert_error(
        &action_error(vec![assign(&["ok"], Some("red"))]),
        "actions[0].assignCategories.color",
        "invalidColor",
    );
    assert_error(
        &action_error(vec![assign(&["ok"], Some("preset25"))]),
        "actions[0].assignCategories.color",
        "invalidColor",
    );
    valid(vec![rule(
        "r1",
        vec![],
        vec![assign(&["Ärger"], Some("none"))],
    )]);
}

#[test]
fn forward_errors() {
    let fwd = |to: &[&str], comment: Option<String>| A::ForwardTo {
        recipients: strings(to),
        comment,
    };
    assert_error(
        &action_error(vec![fwd(&[], None)]),
        "actions[0].forwardTo.recipients",
        "empty",
    );
    assert_error(
        &action_error(vec![fwd(&["ok@x.com", "nope"], None)]),
        "actions[0].forwardTo.recipients[1]",
        "invalidEmail",
    );
    let many: Vec<String> = (0..=MAX_FORWARD_RECIPIENTS)
        .map(|i| format!("u{i}@x.com"))
        .collect();
    let e = action_error(vec![A::ForwardTo {
        recipients: many,
        comment: None,
    }]);
    assert_error(&e, "actions[0].forwardTo.recipients", "tooMany");
    let e = action_error(vec![fwd(
        &["ok@x.com"],
        Some("c".repeat(MAX_COMMENT_CHARS + 1)),
    )]);
    assert_error(&e, "actions[0].forwardTo.comment", "tooLong");
}

#[test]
fn duplicate_and_conflicting_actions() {
    let e = action_error(vec![A::MarkAsRead {}, A::MarkAsRead {}]);
    assert_error(&e, "actions[1]", "duplicateAction");
    let e = action_error(vec![
        A::MoveToFolder { path: "A".into() },
        A::MoveToFolder { path: "B".into() },
    ]);
    assert_error(&e, "actions[1]", "duplicateAction");
    let e = action_error(vec![
        A::MarkImportance {
            importance: Importance::High,
        },
        A::CopyToFolder { path: "A".into() },
        A::MarkImportance {
            importance: Importance::Low,
        },
    ]);
    assert_error(&e, "actions[2]", "duplicateAction");
    let e = action_error(vec![
        A::CopyToFolder {
            path: "Archive/X".into(),
        },
        A::CopyToFolder {
            path: "archive/x".into(),
        },
    ]);
    assert_error(&e, "actions[1]", "duplicateAction");
    valid(vec![rule(
        "r1",
        vec![],
        vec![
            A::CopyToFolder { path: "A".into() },
            A::CopyToFolder { path: "B".into() },
        ],
    )]);

    let e = action_error(vec![A::MoveToFolder { path: "A".into() }, A::Delete {}]);
    assert_error(&e, "actions", "conflictingActions");
    assert!(e.to_string().contains("cannot both move and delete"), "{e}");
}

#[test]
fn all_errors_of_all_rules_are_reported_together() {
    let bad1 = rule(
        "bad1",
        vec![
            C::FromAddresses(strings(&["x"])),
            C::SubjectContains(vec![]),
        ],
        vec![A::MoveToFolder {
            path: "a//b".into(),
        }],
    );
    let good = rule("good", vec![], vec![mark_read()]);
    let bad2 = rule("bad2", vec![], vec![]);
    let errors = errors_of(vec![bad1, good, bad2]);
    let summary: Vec<(Option<&str>, &str, &str)> = errors
        .iter()
        .map(|e| (e.rule_id.as_deref(), e.field.as_str(), e.code()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                Some("bad1"),
                "conditions[0].fromAddresses[0]",
                "invalidEmail"
            ),
            (Some("bad1"), "conditions[1].subjectContains", "empty"),
            (
                Some("bad1"),
                "actions[0].moveToFolder.path",
                "invalidFolderPath"
            ),
            (Some("bad2"), "actions", "noActions"),
        ]
    );
}

#[test]
fn field_needs_follow_enabled_rules() {
    let body = rule(
        "b",
        vec![C::BodyContains(strings(&["x"]))],
        vec![mark_read()],
    );
    let headers = rule("h", vec![C::IsAutomaticReply(true)], vec![mark_read()]);
    let size = rule(
        "s",
        vec![C::WithinSizeRange(SizeRange {
            minimum_size: Some(1),
            maximum_size: None,
        })],
        vec![mark_read()],
    );
    let plain = rule(
        "p",
        vec![C::SubjectContains(strings(&["x"]))],
        vec![mark_read()],
    );

    let set = compiled(vec![plain.clone()]);
    assert!(!set.needs_body() && !set.needs_headers() && !set.needs_size());
    let set = compiled(vec![
        plain.clone(),
        body.clone(),
        headers.clone(),
        size.clone(),
    ]);
    assert!(set.needs_body() && set.needs_headers() && set.needs_size());

    let mut off = body.clone();
    off.enabled = false;
    assert!(
        !compiled(vec![off, plain.clone()]).needs_body(),
        "disabled rules need nothing"
    );

    let mut in_exception = plain.clone();
    in_exception.exceptions = vec![C::not(C::HeaderContains(strings(&["x"])))];
    assert!(compiled(vec![in_exception]).needs_headers());
    assert!(
        compiled(vec![rule(
            "r",
            vec![regex(RegexField::BodyOrSubject, "x", None)],
            vec![mark_read()]
        )])
        .needs_body()
    );
    assert!(
        compiled(vec![rule(
            "r",
            vec![regex(RegexField::Header, "x", None)],
            vec![mark_read()]
        )])
        .needs_headers()
    );
    assert!(
        !compiled(vec![rule(
            "r",
            vec![regex(RegexField::Sender, "x", None)],
            vec![mark_read()]
        )])
        .needs()
        .body
    );
}
