//! The JSON rule format: examples, round trips, and errors that name the rule and field.

#[path = "rules_support.rs"]
mod support;

use outlook_core::message::Importance;
use outlook_core::rules::{
    ACTION_NAMES, Action, CONDITION_NAMES, Condition, PlannedActionKind, Rule, RuleScope, RuleSet,
    RuleValidationError, SenderDomain, evaluate, parse_and_validate, parse_rule_set,
};
use serde_json::json;
use support::*;

const BRIEF_EXAMPLE: &str = r#"{"version":1,"rules":[{"id":"r1","name":"Invoices","order":1,"enabled":true,"conditions":{"all":[{"subjectContains":["invoice"]},{"senderDomain":{"domain":"acme.com"}}]},"exceptions":null,"actions":[{"assignCategories":{"categories":["Invoices"]}},{"moveToFolder":{"path":"Finance/Invoices"}}],"stopProcessing":false}]}"#;

fn summary(errors: &[RuleValidationError]) -> Vec<(Option<usize>, Option<&str>, &str, &str)> {
    errors
        .iter()
        .map(|e| {
            (
                e.rule_index,
                e.rule_id.as_deref(),
                e.field.as_str(),
                e.code(),
            )
        })
        .collect()
}

fn one_rule(rule: serde_json::Value) -> String {
    json!({"version": 1, "rules": [rule]}).to_string()
}

fn base_rule() -> serde_json::Value {
    json!({"id": "r1", "name": "Rule", "order": 1, "actions": [{"markAsRead": {}}]})
}

fn with(mut rule: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    rule[key] = value;
    rule
}

#[test]
fn the_documented_example_parses_and_evaluates() {
    let set = parse_and_validate(BRIEF_EXAMPLE).unwrap();
    let rule = &set.rule_set().rules[0];
    assert_eq!(
        rule.conditions,
        vec![Condition::all([
            Condition::SubjectContains(strings(&["invoice"])),
            Condition::SenderDomain(SenderDomain {
                domain: "acme.com".into(),
                include_subdomains: false
            }),
        ])]
    );
    assert!(rule.exceptions.is_empty());
    let mut m = msg();
    m.subject = "Your INVOICE".into();
    m.from = Some(addr("billing@acme.com"));
    let e = evaluate(set.compiled(), &m, &ctx());
    assert_eq!(e.matched[0].rule_name, "Invoices");
    assert_eq!(
        e.actions
            .iter()
            .map(|a| a.action.name())
            .collect::<Vec<_>>(),
        ["assignCategories", "moveToFolder"]
    );
}

#[test]
fn the_module_doc_example_is_valid() {
    let doc = r#"{
      "version": 4,
      "rules": [
        {
          "id": "invoices",
          "name": "Invoices from Acme",
          "order": 10,
          "enabled": true,
          "conditions": [
            {"subjectContains": ["invoice", "rechnung"]},
            {"senderDomain": {"domain": "acme.com", "includeSubdomains": true}}
          ],
          "exceptions": [{"categories": ["Paid"]}],
          "actions": [
            {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
            {"forwardTo": {"recipients": ["ap@example.com"], "comment": "For booking"}},
            {"moveToFolder": {"path": "Finance/Invoices"}}
          ],
          "stopProcessing": true
        }
      ]
    }"#;
    let set = parse_and_validate(doc).unwrap();
    assert_eq!(set.version(), 4);
    assert_eq!(
        serde_json::from_str::<RuleSet>(doc).unwrap(),
        *set.rule_set()
    );
}

#[test]
fn every_condition_and_action_serializes_in_camel_case_and_round_trips() {
    let doc = json!({
        "version": 7,
        "rules": [{
            "id": "everything",
            "name": "Everything",
            "order": 3,
            "enabled": false,
            "conditions": [
                {"fromAddresses": ["a@x.com"]},
                {"senderContains": ["a"]},
                {"sentToAddresses": ["b@x.com"]},
                {"recipientContains": ["b"]},
                {"subjectContains": ["s"]},
                {"bodyContains": ["b"]},
                {"bodyOrSubjectContains": ["bs"]},
                {"headerContains": ["h"]},
                {"sentToMe": true},
                {"sentOnlyToMe": false},
                {"sentCcMe": true},
                {"sentToOrCcMe": true},
                {"notSentToMe": false},
                {"hasAttachments": true},
                {"importance": "high"},
                {"sensitivity": "confidential"},
                {"withinSizeRange": {"minimumSize": 1, "maximumSize": 100}},
                {"categories": ["Red"]},
                {"flagStatus": "flagged"},
                {"isAutomaticReply": true},
                {"isNonDeliveryReport": true},
                {"isReadReceipt": true},
                {"isMeetingRequest": true},
                {"isMeetingResponse": true},
                {"isAutomaticForward": true},
                {"isEncrypted": true},
                {"isSigned": true},
                {"isVoicemail": true},
                {"isApprovalRequest": true},
                {"isPermissionControlled": true},
                {"senderDomain": {"domain": "x.com", "includeSubdomains": true}},
                {"regex": {"field": "header", "pattern": "^a", "caseSensitive": true, "header": "X-A"}},
                {"all": [{"any": [{"not": {"hasAttachments": false}}]}]}
            ],
            "exceptions": [{"withinSizeRange": {"maximumSize": 5}}],
            "actions": [
                {"assignCategories": {"categories": ["A"], "color": "preset0"}},
                {"moveToFolder": {"path": "inbox/A"}},
                {"copyToFolder": {"path": "B"}},
                {"markAsRead": {}},
                {"markImportance": {"importance": "low"}},
                {"flag": {"status": "complete"}},
                {"forwardTo": {"recipients": ["c@x.com"], "comment": "hi"}}
            ],
            "stopProcessing": true
        }]
    });
    let set = parse_and_validate(&doc.to_string()).unwrap_or_else(|e| panic!("{e:#?}"));
    fn walk(c: &Condition, out: &mut Vec<&'static str>) {
        out.push(c.name());
        match c {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().for_each(|i| walk(i, out))
            }
            Condition::Not(inner) => walk(inner, out),
            _ => {}
        }
    }
    let mut names = Vec::new();
    set.rule_set().rules[0]
        .conditions
        .iter()
        .for_each(|c| walk(c, &mut names));
    names.sort();
    names.dedup();
    let mut expected = CONDITION_NAMES.to_vec();
    expected.sort();
    assert_eq!(names, expected, "every condition is in the example");
    let written: serde_json::Value = serde_json::from_str(&set.to_json()).unwrap();
    assert_eq!(written, doc, "serialization is the same camelCase document");
    assert_eq!(serde_json::to_value(&set).unwrap(), doc);
    let mut action_names: Vec<&str> = set.rule_set().rules[0]
        .actions
        .iter()
        .map(Action::name)
        .collect();
    action_names.push("delete");
    let mut expected = ACTION_NAMES.to_vec();
    expected.sort();
    action_names.sort();
    assert_eq!(action_names, expected);
}

#[test]
fn defaults_and_accepted_shapes() {
    let set = parse_and_validate(&one_rule(base_rule())).unwrap();
    let rule = &set.rule_set().rules[0];
    assert!(
        rule.enabled
            && !rule.stop_processing
            && rule.conditions.is_empty()
            && rule.exceptions.is_empty()
    );
    let written: serde_json::Value = serde_json::from_str(&set.to_json()).unwrap();
    assert_eq!(written["rules"][0]["conditions"], json!([]));
    assert_eq!(written["rules"][0]["enabled"], json!(true));

    let single = with(base_rule(), "exceptions", json!({"hasAttachments": true}));
    let set = parse_and_validate(&one_rule(single)).unwrap();
    assert_eq!(
        set.rule_set().rules[0].exceptions,
        vec![Condition::HasAttachments(true)]
    );

    let delete = with(base_rule(), "actions", json!([{"delete": {}}]));
    assert_eq!(
        parse_and_validate(&one_rule(delete))
            .unwrap()
            .rule_set()
            .rules[0]
            .actions,
        vec![Action::Delete {}]
    );
    let importance = with(
        base_rule(),
        "actions",
        json!([{"markImportance": {"importance": "high"}}]),
    );
    assert_eq!(
        parse_rule_set(&one_rule(importance)).unwrap().rules[0].actions,
        vec![Action::MarkImportance {
            importance: Importance::High
        }]
    );
}

#[test]
fn plain_serde_rejects_unknown_fields_too() {
    let bad_rule = one_rule(with(base_rule(), "stopProcesing", json!(true)));
    assert!(
        serde_json::from_str::<RuleSet>(&bad_rule)
            .unwrap_err()
            .to_string()
            .contains("unknown field `stopProcesing`")
    );
    let bad_action = one_rule(with(
        base_rule(),
        "actions",
        json!([{"moveToFolder": {"path": "x", "create": true}}]),
    ));
    assert!(
        serde_json::from_str::<RuleSet>(&bad_action)
            .unwrap_err()
            .to_string()
            .contains("unknown field `create`")
    );
    let bad_domain = one_rule(with(
        base_rule(),
        "conditions",
        json!([{"senderDomain": {"domain": "x.com", "sub": true}}]),
    ));
    assert!(
        serde_json::from_str::<RuleSet>(&bad_domain)
            .unwrap_err()
            .to_string()
            .contains("unknown field `sub`")
    );
    let bad_top = json!({"version": 1, "rules": [], "scope": "*"}).to_string();
    assert!(serde_json::from_str::<RuleSet>(&bad_top).is_err());
    let nested = one_rule(with(
        base_rule(),
        "conditions",
        json!({"all": [{"not": {"subjectContain": ["x"]}}]}),
    ));
    assert!(serde_json::from_str::<Rule>(&nested).is_err());
}

#[test]
fn unknown_fields_are_reported_with_rule_and_path() {
    let doc = json!({
        "version": 1,
        "extra": true,
        "rules": [
            with(base_rule(), "stopProcesing", json!(true)),
            with(with(base_rule(), "id", json!("r2")), "conditions", json!({"all": [{"subjectContains": ["x"]}, {"senderDomain": {"domian": "acme.com"}}]})),
            with(with(base_rule(), "id", json!("r3")), "conditions", json!([{"any": [{"subjectContain": ["x"]}]}])),
            with(with(base_rule(), "id", json!("r4")), "actions", json!([{"markAsRead": {}}, {"moveTo": {"path": "x"}}])),
            with(with(base_rule(), "id", json!("r5")), "actions", json!([{"moveToFolder": {"path": "x", "create": true}}])),
        ]
    });
    let errors = parse_and_validate(&doc.to_string()).unwrap_err();
    assert_eq!(
        summary(&errors),
        [
            (None, None, "extra", "unknownField"),
            (Some(0), Some("r1"), "stopProcesing", "unknownField"),
            (
                Some(1),
                Some("r2"),
                "conditions.all[1].senderDomain",
                "invalidJson"
            ),
            (
                Some(2),
                Some("r3"),
                "conditions[0].any[0]",
                "unknownCondition"
            ),
            (Some(3), Some("r4"), "actions[1]", "unknownAction"),
            (
                Some(4),
                Some("r5"),
                "actions[0].moveToFolder",
                "invalidJson"
            ),
        ]
    );
    assert!(
        errors[2]
            .to_string()
            .contains("unknown field `domian`, expected `domain` or `includeSubdomains`"),
        "{}",
        errors[2]
    );
    assert_eq!(
        errors[3].to_string(),
        r#"rule "r3" (rules[2]), conditions[0].any[0]: unknown condition `subjectContain`"#
    );
    assert!(
        errors[5].to_string().contains("unknown field `create`"),
        "{}",
        errors[5]
    );
}

#[test]
fn shape_errors() {
    let cases = [
        (
            with(
                base_rule(),
                "conditions",
                json!([{"subjectContains": ["x"], "hasAttachments": true}]),
            ),
            "conditions[0]",
            "notOneKey",
        ),
        (
            with(base_rule(), "conditions", json!([{}])),
            "conditions[0]",
            "notOneKey",
        ),
        (
            with(base_rule(), "conditions", json!("subject")),
            "conditions",
            "invalidJson",
        ),
        (
            with(
                base_rule(),
                "conditions",
                json!([{"subjectContains": "invoice"}]),
            ),
            "conditions[0].subjectContains",
            "invalidJson",
        ),
        (
            with(
                base_rule(),
                "conditions",
                json!([{"all": {"hasAttachments": true}}]),
            ),
            "conditions[0].all",
            "invalidJson",
        ),
        (
            with(base_rule(), "conditions", json!([{"importance": "urgent"}])),
            "conditions[0].importance",
            "invalidJson",
        ),
        (
            with(
                base_rule(),
                "conditions",
                json!([{"regex": {"field": "cc", "pattern": "x"}}]),
            ),
            "conditions[0].regex",
            "invalidJson",
        ),
        (
            with(base_rule(), "actions", json!([{"markAsRead": true}])),
            "actions[0].markAsRead",
            "invalidJson",
        ),
        (
            with(base_rule(), "actions", json!(["markAsRead"])),
            "actions[0]",
            "invalidJson",
        ),
        (
            with(base_rule(), "actions", json!({"markAsRead": {}})),
            "actions",
            "invalidJson",
        ),
        (
            with(base_rule(), "order", json!(-1)),
            "order",
            "invalidJson",
        ),
        (
            with(base_rule(), "enabled", json!("yes")),
            "enabled",
            "invalidJson",
        ),
        (with(base_rule(), "id", json!(7)), "id", "invalidJson"),
    ];
    for (rule, field, code) in cases {
        let errors = parse_and_validate(&one_rule(rule.clone())).unwrap_err();
        let first = summary(&errors)[0];
        assert_eq!((first.2, first.3), (field, code), "{rule}: {errors:#?}");
        assert_eq!(errors[0].rule_index, Some(0));
    }
}

#[test]
fn missing_fields() {
    let mut rule = base_rule();
    rule.as_object_mut().unwrap().remove("name");
    rule.as_object_mut().unwrap().remove("actions");
    let errors = parse_and_validate(&one_rule(rule)).unwrap_err();
    assert_eq!(
        summary(&errors),
        [
            (Some(0), Some("r1"), "name", "missingField"),
            (Some(0), Some("r1"), "actions", "missingField")
        ]
    );
    let errors = parse_and_validate(r#"{"rules": []}"#).unwrap_err();
    assert_eq!(summary(&errors), [(None, None, "version", "missingField")]);
    let errors = parse_and_validate(r#"{"version": 1}"#).unwrap_err();
    assert_eq!(summary(&errors), [(None, None, "rules", "missingField")]);
}

#[test]
fn broken_json_is_one_error() {
    let errors = parse_and_validate(r#"{"version": 1, "rules": [}"#).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code(), "invalidJson");
    assert!(errors[0].to_string().contains("line 1"), "{}", errors[0]);
    assert_eq!(
        parse_and_validate("[]").unwrap_err()[0].code(),
        "invalidJson"
    );
}

#[test]
fn syntax_and_validation_errors_are_reported_together() {
    let doc = json!({
        "version": 2,
        "rules": [
            with(base_rule(), "conditions", json!([{"fromAddresses": ["not-an-address"]}])),
            with(with(base_rule(), "id", json!("r2")), "bogus", json!(1)),
            with(with(base_rule(), "id", json!("r1")), "actions", json!([])),
        ]
    });
    let errors = parse_and_validate(&doc.to_string()).unwrap_err();
    assert_eq!(
        summary(&errors),
        [
            (
                Some(0),
                Some("r1"),
                "conditions[0].fromAddresses[0]",
                "invalidEmail"
            ),
            (Some(1), Some("r2"), "bogus", "unknownField"),
            (Some(2), Some("r1"), "id", "duplicateRuleId"),
            (Some(2), Some("r1"), "actions", "noActions"),
        ]
    );
    // Syntax only: the invalid address is not a syntax error.
    let syntax = parse_rule_set(&doc.to_string()).unwrap_err();
    assert_eq!(
        summary(&syntax),
        [(Some(1), Some("r2"), "bogus", "unknownField")]
    );
}

#[test]
fn condition_and_action_name_lists_are_complete() {
    for name in CONDITION_NAMES {
        let doc = one_rule(with(base_rule(), "conditions", json!([{ *name: null }])));
        let errors = parse_rule_set(&doc).unwrap_err();
        assert_ne!(errors[0].code(), "unknownCondition", "{name}");
        assert!(
            !errors[0].to_string().contains("unknown variant"),
            "{name}: {}",
            errors[0]
        );
    }
    for name in ACTION_NAMES {
        let doc = one_rule(with(base_rule(), "actions", json!([{ *name: null }])));
        let errors = parse_rule_set(&doc).unwrap_err();
        assert_ne!(errors[0].code(), "unknownAction", "{name}");
        assert!(
            !errors[0].to_string().contains("unknown variant"),
            "{name}: {}",
            errors[0]
        );
    }
}

#[test]
fn planned_actions_round_trip() {
    let kinds = vec![
        PlannedActionKind::MarkAsRead,
        PlannedActionKind::Delete,
        PlannedActionKind::MoveToFolder {
            path: outlook_core::rules::FolderPath::parse("inbox/X").unwrap(),
        },
        PlannedActionKind::ForwardTo {
            recipients: strings(&["a@x.com"]),
            comment: None,
        },
    ];
    for kind in kinds {
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(
            serde_json::from_str::<PlannedActionKind>(&json).unwrap(),
            kind,
            "{json}"
        );
    }
}

#[test]
fn scopes_use_the_store_keys() {
    assert_eq!(
        serde_json::to_string(&RuleScope::AllMailboxes).unwrap(),
        "\"*\""
    );
    let mailbox: RuleScope = serde_json::from_str("\"mbx_123\"").unwrap();
    assert_eq!(mailbox.store_key(), "mbx_123");
    assert_eq!(RuleScope::parse("*").unwrap(), RuleScope::AllMailboxes);
    assert!(serde_json::from_str::<RuleScope>("\"int_1\"").is_err());
    assert_eq!(
        outlook_core::store::ALL_MAILBOXES,
        RuleScope::AllMailboxes.to_string()
    );
}

#[test]
fn plain_serde_reads_the_same_rule_sets() {
    let via_serde: RuleSet = serde_json::from_str(BRIEF_EXAMPLE).unwrap();
    assert_eq!(via_serde, parse_rule_set(BRIEF_EXAMPLE).unwrap());
    let rule: Rule = serde_json::from_value(with(base_rule(), "conditions", json!(null))).unwrap();
    assert!(rule.conditions.is_empty());
}

#[test]
fn compiled_rule_sets_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<outlook_core::rules::CompiledRuleSet>();
    assert_send_sync::<outlook_core::rules::ValidRuleSet>();
    assert_send_sync::<outlook_core::rules::EvalContext>();
}
