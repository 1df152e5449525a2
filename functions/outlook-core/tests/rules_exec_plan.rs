//! The pure parts of rule execution: one PATCH per message, category union, rule-set merging,
//! grouping, failure classification and the exactly-once forward decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use outlook_core::graph::{GraphError, MessagePatch};
use outlook_core::message::{Address, FlagStatus, Importance, MailMessage};
use outlook_core::rules::{
    CategoryAssignment, CategoryColor, CompiledRuleSet, EvalContext, PlannedActionKind,
    parse_and_validate,
};
use outlook_core::rules_exec::{
    ActionStatus, Failure, ForwardStep, MailboxRules, Phase, SendOutcome, build_patch, dry_run,
    forward_step, group_by_key, merge_evaluations, merged_categories, send_outcome,
};
use outlook_core::store::{ActionRecord, ActionState};
use serde_json::json;
use time::macros::datetime;

const ME: &str = "me@contoso.com";

fn compiled(doc: serde_json::Value) -> Arc<CompiledRuleSet> {
    let valid = parse_and_validate(&doc.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    Arc::new(valid.into_parts().1)
}

fn message(subject: &str) -> MailMessage {
    MailMessage {
        id: format!("id-{subject}"),
        folder_id: "inbox".into(),
        internet_message_id: Some("<1@fabrikam.com>".into()),
        subject: subject.into(),
        from: Some(Address::new("alice@fabrikam.com")),
        sender: None,
        to: vec![Address::new(ME)],
        cc: vec![],
        bcc: vec![],
        received_at: datetime!(2025-01-02 03:04:05 UTC),
        has_attachments: false,
        importance: Importance::Normal,
        sensitivity: Default::default(),
        categories: vec!["Red".into(), "Travel".into()],
        flag: FlagStatus::NotFlagged,
        is_read: false,
        size_bytes: None,
        kinds: vec![],
        headers: vec![],
        body: None,
    }
}

fn everything() -> Arc<CompiledRuleSet> {
    compiled(json!({"version": 3, "rules": [{
        "id": "all", "name": "All of it", "order": 1,
        "conditions": [{"subjectContains": ["invoice"]}],
        "actions": [
            {"moveToFolder": {"path": "Clients/Acme/Invoices"}},
            {"forwardTo": {"recipients": ["ap@example.com"], "comment": "FYI"}},
            {"copyToFolder": {"path": "archive/Invoices"}},
            {"markAsRead": {}},
            {"flag": {"status": "flagged"}},
            {"markImportance": {"importance": "high"}},
            {"assignCategories": {"categories": ["invoices", "travel"], "color": "preset4"}}
        ]
    }]}))
}

#[test]
fn message_changes_merge_into_one_patch_with_categories_united() {
    let rules = MailboxRules::combine(None, Some(everything())).unwrap();
    let evaluation = rules.evaluate(&message("Invoice 42"), &EvalContext::new(ME));
    let phases: Vec<Phase> = evaluation
        .actions
        .iter()
        .map(|a| Phase::of(&a.action))
        .collect();
    assert_eq!(
        phases,
        [
            Phase::Patch,
            Phase::Patch,
            Phase::Patch,
            Phase::Patch,
            Phase::Copy,
            Phase::Forward,
            Phase::Terminal
        ],
        "PATCH first, then copy, forward, and the move last"
    );
    let spelling = HashMap::from([("invoices".to_owned(), "Invoices".to_owned())]);
    let patch = build_patch(
        evaluation
            .actions
            .iter()
            .filter(|a| Phase::of(&a.action) == Phase::Patch),
        &message("x").categories,
        &spelling,
    )
    .unwrap();
    assert_eq!(
        patch,
        MessagePatch {
            categories: Some(vec!["Red".into(), "Travel".into(), "Invoices".into()]),
            is_read: Some(true),
            flag: Some(FlagStatus::Flagged),
            importance: Some(Importance::High),
        }
    );
    let not_patch = evaluation
        .actions
        .iter()
        .filter(|a| Phase::of(&a.action) != Phase::Patch);
    assert_eq!(build_patch(not_patch, &[], &spelling), None);
}

#[test]
fn category_union_keeps_existing_order_and_skips_case_duplicates() {
    let added = [
        CategoryAssignment {
            name: "blue".into(),
            color: None,
        },
        CategoryAssignment {
            name: "RED".into(),
            color: Some(CategoryColor::Preset(0)),
        },
        CategoryAssignment {
            name: "Blue".into(),
            color: None,
        },
    ];
    let existing = ["Red".to_owned(), "red ".to_owned(), "Green".to_owned()];
    assert_eq!(
        merged_categories(&existing, &added, &HashMap::new()),
        ["Red", "Green", "blue"]
    );
    let spelling = HashMap::from([("blue".to_owned(), "Blue (team)".to_owned())]);
    assert_eq!(
        merged_categories(&[], &added, &spelling),
        ["Blue (team)", "RED"]
    );
}

#[test]
fn mailbox_rules_run_before_integration_rules_and_can_stop_them() {
    let own = compiled(json!({"version": 7, "rules": [
        {"id": "own-move", "name": "Own", "order": 5, "conditions": [{"subjectContains": ["invoice"]}],
         "actions": [{"moveToFolder": {"path": "Mine"}}, {"assignCategories": {"categories": ["Own"]}}]},
        {"id": "stop", "name": "Stop", "order": 6, "conditions": [{"subjectContains": ["secret"]}],
         "actions": [], "stopProcessing": true}
    ]}));
    let all = compiled(json!({"version": 2, "rules": [
        {"id": "wide", "name": "Wide", "order": 1, "conditions": [{"subjectContains": ["invoice"]}],
         "actions": [{"moveToFolder": {"path": "Theirs"}}, {"assignCategories": {"categories": ["Wide"]}}]}
    ]}));
    let rules = MailboxRules::combine(Some(own.clone()), Some(all.clone())).unwrap();
    assert!(matches!(rules, MailboxRules::Single(_)), "chained");
    assert_eq!(rules.versions(), [7, 2]);
    let ctx = EvalContext::new(ME);

    let evaluation = rules.evaluate(&message("invoice"), &ctx);
    let matched: Vec<&str> = evaluation
        .matched
        .iter()
        .map(|m| m.rule_id.as_str())
        .collect();
    assert_eq!(
        matched,
        ["own-move", "wide"],
        "the mailbox's rules first, whatever the orders"
    );
    let kinds: Vec<&PlannedActionKind> = evaluation.actions.iter().map(|a| &a.action).collect();
    assert!(
        matches!(kinds.last(), Some(PlannedActionKind::MoveToFolder { path }) if path.to_string() == "Mine"),
        "the first move wins: {kinds:?}"
    );

    let stopped = rules.evaluate(&message("secret invoice"), &ctx);
    assert_eq!(stopped.stopped_by.as_deref(), Some("stop"));
    assert!(stopped.matched.iter().all(|m| m.rule_id != "wide"));

    assert!(MailboxRules::combine(None, None).is_none());
    assert_eq!(
        MailboxRules::combine(Some(own), None).unwrap().versions(),
        [7]
    );
}

#[test]
fn clashing_rule_ids_are_evaluated_separately_and_merged() {
    let own = compiled(json!({"version": 1, "rules": [
        {"id": "same", "name": "Own", "order": 1, "conditions": [{"subjectContains": ["invoice"]}],
         "actions": [{"assignCategories": {"categories": ["A"]}}, {"markImportance": {"importance": "low"}},
                     {"moveToFolder": {"path": "Mine"}}]}
    ]}));
    let all = compiled(json!({"version": 9, "rules": [
        {"id": "same", "name": "Wide", "order": 1, "conditions": [{"subjectContains": ["invoice"]}],
         "actions": [{"assignCategories": {"categories": ["a", "B"]}}, {"markImportance": {"importance": "high"}},
                     {"delete": {}}, {"markAsRead": {}}]}
    ]}));
    let rules = MailboxRules::combine(Some(own), Some(all)).unwrap();
    assert!(matches!(rules, MailboxRules::Separate(..)));
    let evaluation = rules.evaluate(&message("invoice"), &EvalContext::new(ME));
    assert_eq!(evaluation.rule_set_versions, [1, 9]);
    let actions: Vec<(&str, &PlannedActionKind)> = evaluation
        .actions
        .iter()
        .map(|a| (a.action_key.as_str(), &a.action))
        .collect();
    let keys: Vec<&str> = actions.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["categorize", "importance", "markRead", "move"]);
    match actions[0].1 {
        PlannedActionKind::AssignCategories { categories } => {
            let names: Vec<&str> = categories.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["A", "B"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        actions[1].1,
        &PlannedActionKind::MarkImportance {
            importance: Importance::Low
        }
    );
    assert_eq!(
        evaluation.actions[0].description,
        r#"assign categories "A", "B""#
    );
}

#[test]
fn merging_an_empty_second_evaluation_changes_nothing_but_versions() {
    let rules = MailboxRules::combine(None, Some(everything())).unwrap();
    let ctx = EvalContext::new(ME);
    let a = rules.evaluate(&message("invoice"), &ctx);
    let b = rules.evaluate(&message("nothing"), &ctx);
    let merged = merge_evaluations(a.clone(), b);
    assert_eq!(merged.actions, a.actions);
    assert_eq!(merged.rule_set_versions, [3, 3]);
}

#[test]
fn jobs_group_by_mailbox_in_first_seen_order() {
    let items = ["b1", "a1", "b2", "c1", "a2"];
    let groups = group_by_key(&items, |s| s.chars().next().unwrap());
    assert_eq!(
        groups,
        vec![('b', vec![0, 2]), ('a', vec![1, 4]), ('c', vec![3])]
    );
    assert!(group_by_key(&[] as &[&str], |s| s.len()).is_empty());
}

fn record(draft_id: Option<&str>, attempts: u64) -> ActionRecord {
    ActionRecord {
        state: ActionState::Claimed,
        owner: Some("w".into()),
        attempts,
        draft_id: draft_id.map(str::to_owned),
        error: None,
    }
}

#[test]
fn a_forward_sends_the_recorded_draft_or_creates_one() {
    assert_eq!(forward_step(&record(None, 1)), ForwardStep::CreateDraft);
    assert_eq!(
        forward_step(&record(Some("  "), 2)),
        ForwardStep::CreateDraft
    );
    assert_eq!(
        forward_step(&record(Some("AAMkDraft"), 2)),
        ForwardStep::SendRecordedDraft("AAMkDraft".into())
    );
}

#[test]
fn a_missing_draft_on_send_counts_as_sent_never_as_a_reason_to_send_again() {
    assert_eq!(send_outcome(&Ok(())), SendOutcome::Sent);
    let gone = Err(GraphError::NotFound {
        code: "ErrorItemNotFound".into(),
    });
    assert_eq!(send_outcome(&gone), SendOutcome::AlreadySent);
    let throttled = Err(GraphError::Throttled {
        retry_after: Duration::from_secs(3),
    });
    assert!(matches!(
        send_outcome(&throttled),
        SendOutcome::Failed(Failure::Retry(_))
    ));
    let denied = Err(GraphError::Forbidden {
        code: "ErrorAccessDenied".into(),
        message: "no Mail.Send".into(),
    });
    assert!(matches!(
        send_outcome(&denied),
        SendOutcome::Failed(Failure::Permanent(_))
    ));
}

#[test]
fn failures_are_retried_only_when_microsoft_may_recover() {
    let cases = [
        (GraphError::NotFound { code: "x".into() }, "not_found"),
        (
            GraphError::Unauthorized { code: "x".into() },
            "unauthorized",
        ),
        (
            GraphError::Throttled {
                retry_after: Duration::from_secs(1),
            },
            "retry",
        ),
        (
            GraphError::Transient {
                reason: "timeout".into(),
            },
            "retry",
        ),
        (
            GraphError::BadRequest {
                code: "x".into(),
                message: "y".into(),
            },
            "permanent",
        ),
        (
            GraphError::Conflict {
                code: "x".into(),
                message: "y".into(),
            },
            "permanent",
        ),
    ];
    for (err, expected) in cases {
        let got = match Failure::of(&err) {
            Failure::NotFound => "not_found",
            Failure::Unauthorized => "unauthorized",
            Failure::Retry(_) => "retry",
            Failure::Permanent(_) => "permanent",
        };
        assert_eq!(got, expected, "{err}");
    }
}

#[test]
fn finished_claims_report_their_earlier_outcome() {
    let mut done = record(None, 1);
    done.state = ActionState::Done;
    assert_eq!(
        ActionStatus::of_finished(&done),
        (ActionStatus::AlreadyApplied, None)
    );
    let mut failed = record(None, 1);
    failed.state = ActionState::Failed;
    failed.error = Some("message no longer exists".into());
    assert_eq!(
        ActionStatus::of_finished(&failed),
        (
            ActionStatus::Failed,
            Some("message no longer exists".into())
        )
    );
    let names: Vec<&str> = [
        ActionStatus::Applied,
        ActionStatus::AlreadyApplied,
        ActionStatus::Skipped,
        ActionStatus::Failed,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(names, ["applied", "already_applied", "skipped", "failed"]);
}

#[test]
fn dry_runs_describe_without_acting() {
    let results = dry_run(
        &everything(),
        &[message("Invoice 7"), message("Lunch")],
        &EvalContext::new(ME),
    );
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].message_id, "id-Invoice 7");
    assert_eq!(results[0].matched[0].rule_id, "all");
    assert_eq!(
        results[0].actions.last().map(String::as_str),
        Some(r#"move to "Clients/Acme/Invoices""#)
    );
    assert!(results[1].matched.is_empty() && results[1].actions.is_empty());
    let json = serde_json::to_value(&results[0]).unwrap();
    assert!(json.get("messageId").is_some() && json.get("subject").is_some());
}
