//! Actions, rule order, stop-processing, disabled rules, and how actions of several rules merge.

#[path = "rules_support.rs"]
mod support;

use outlook_core::message::{FlagStatus, Importance};
use outlook_core::rules::{
    Action as A, CategoryAssignment, CategoryColor, Condition as C, FolderPath, PlannedAction,
    PlannedActionKind as P,
};
use support::*;

fn categories(names: &[&str]) -> A {
    A::AssignCategories {
        categories: strings(names),
        color: None,
    }
}

fn move_to(path: &str) -> A {
    A::MoveToFolder { path: path.into() }
}

fn copy_to(path: &str) -> A {
    A::CopyToFolder { path: path.into() }
}

fn forward(to: &[&str], comment: Option<&str>) -> A {
    A::ForwardTo {
        recipients: strings(to),
        comment: comment.map(Into::into),
    }
}

fn always(id: &str, actions: Vec<A>) -> outlook_core::rules::Rule {
    rule(id, vec![], actions)
}

fn keys(actions: &[PlannedAction]) -> Vec<&str> {
    actions
        .iter()
        .map(|a| a.action_key.split(':').next().unwrap())
        .collect()
}

fn path(s: &str) -> FolderPath {
    FolderPath::parse(s).unwrap()
}

#[test]
fn each_action_kind_is_planned() {
    let e = eval(
        vec![always(
            "all",
            vec![
                A::AssignCategories {
                    categories: strings(&["Invoices"]),
                    color: Some("preset4".into()),
                },
                move_to("Finance/Invoices"),
                copy_to("inbox/Copies"),
                A::MarkAsRead {},
                A::MarkImportance {
                    importance: Importance::High,
                },
                A::Flag {
                    status: FlagStatus::Flagged,
                },
                forward(&["ap@fabrikam.com"], Some("FYI")),
            ],
        )],
        &msg(),
    );
    let kinds: Vec<P> = e.actions.iter().map(|a| a.action.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            P::AssignCategories {
                categories: vec![CategoryAssignment {
                    name: "Invoices".into(),
                    color: Some(CategoryColor::Preset(4))
                }]
            },
            P::MarkImportance {
                importance: Importance::High
            },
            P::Flag {
                status: FlagStatus::Flagged
            },
            P::MarkAsRead,
            P::CopyToFolder {
                path: path("inbox/Copies")
            },
            P::ForwardTo {
                recipients: strings(&["ap@fabrikam.com"]),
                comment: Some("FYI".into())
            },
            P::MoveToFolder {
                path: path("Finance/Invoices")
            },
        ]
    );
    assert!(e.actions.iter().all(|a| a.rule_ids == ["all"]));
    let delete = eval(vec![always("d", vec![A::Delete {}])], &msg());
    assert_eq!(delete.actions[0].action, P::Delete);
    assert_eq!(delete.actions[0].action_key, "delete");
}

#[test]
fn execution_order_is_fixed_whatever_the_rule_order() {
    let e = eval(
        vec![
            always(
                "a",
                vec![move_to("X"), forward(&["f@x.com"], None), copy_to("C")],
            ),
            always(
                "b",
                vec![
                    A::MarkAsRead {},
                    A::Flag {
                        status: FlagStatus::Complete,
                    },
                ],
            ),
            always(
                "c",
                vec![
                    A::MarkImportance {
                        importance: Importance::Low,
                    },
                    categories(&["K"]),
                ],
            ),
        ],
        &msg(),
    );
    assert_eq!(
        keys(&e.actions),
        [
            "categorize",
            "importance",
            "flag",
            "markRead",
            "copy",
            "forward",
            "move"
        ]
    );
}

#[test]
fn rules_run_in_order_and_the_first_move_wins() {
    let mut late = always("late", vec![move_to("Late")]);
    late.order = 20;
    let mut early = always("early", vec![move_to("Early")]);
    early.order = 10;
    let e = eval(vec![late, early], &msg());
    assert_eq!(
        e.matched
            .iter()
            .map(|m| m.rule_id.as_str())
            .collect::<Vec<_>>(),
        ["early", "late"]
    );
    assert_eq!(e.actions.len(), 1);
    assert_eq!(
        e.actions[0].action,
        P::MoveToFolder {
            path: path("Early")
        }
    );
    assert_eq!(e.actions[0].rule_ids, ["early"]);
    assert_eq!(e.actions[0].action_key, "move");
}

#[test]
fn equal_orders_keep_list_position() {
    let e = eval(
        vec![
            always("first", vec![move_to("A")]),
            always("second", vec![move_to("B")]),
        ],
        &msg(),
    );
    assert_eq!(e.matched[0].rule_id, "first");
    assert_eq!(e.actions[0].action, P::MoveToFolder { path: path("A") });
}

#[test]
fn same_move_from_several_rules_credits_all_of_them() {
    let e = eval(
        vec![
            always("a", vec![move_to("Finance")]),
            always("b", vec![move_to("FINANCE")]),
        ],
        &msg(),
    );
    assert_eq!(e.actions.len(), 1);
    assert_eq!(e.actions[0].rule_ids, ["a", "b"]);
}

#[test]
fn delete_beats_move_only_from_an_earlier_rule() {
    let e = eval(
        vec![
            always("del", vec![A::Delete {}]),
            always("mv", vec![move_to("X")]),
        ],
        &msg(),
    );
    assert_eq!(keys(&e.actions), ["delete"]);
    let e = eval(
        vec![
            always("mv", vec![move_to("X")]),
            always("del", vec![A::Delete {}]),
        ],
        &msg(),
    );
    assert_eq!(keys(&e.actions), ["move"]);
    assert_eq!(e.actions[0].rule_ids, ["mv"]);
}

#[test]
fn copies_and_forwards_still_run_before_a_delete() {
    let e = eval(
        vec![always(
            "r",
            vec![
                A::Delete {},
                copy_to("Archive"),
                forward(&["x@y.com"], None),
            ],
        )],
        &msg(),
    );
    assert_eq!(keys(&e.actions), ["copy", "forward", "delete"]);
}

#[test]
fn categories_are_merged_and_deduplicated_case_insensitively() {
    let e = eval(
        vec![
            always("a", vec![categories(&["Invoices", "Acme"])]),
            always(
                "b",
                vec![A::AssignCategories {
                    categories: strings(&["invoices", "Ärger"]),
                    color: Some("preset2".into()),
                }],
            ),
            always(
                "c",
                vec![A::AssignCategories {
                    categories: strings(&["ÄRGER", "New"]),
                    color: Some("preset9".into()),
                }],
            ),
        ],
        &msg(),
    );
    assert_eq!(e.actions.len(), 1);
    let P::AssignCategories { categories } = &e.actions[0].action else {
        panic!()
    };
    let got: Vec<(&str, Option<CategoryColor>)> = categories
        .iter()
        .map(|c| (c.name.as_str(), c.color))
        .collect();
    assert_eq!(
        got,
        [
            ("Invoices", Some(CategoryColor::Preset(2))),
            ("Acme", None),
            ("Ärger", Some(CategoryColor::Preset(2))),
            ("New", Some(CategoryColor::Preset(9))),
        ]
    );
    assert_eq!(e.actions[0].rule_ids, ["a", "b", "c"]);
    assert_eq!(e.actions[0].action_key, "categorize");
}

#[test]
fn importance_and_flag_take_the_first_rules_value() {
    let e = eval(
        vec![
            always(
                "a",
                vec![A::MarkImportance {
                    importance: Importance::High,
                }],
            ),
            always(
                "b",
                vec![
                    A::MarkImportance {
                        importance: Importance::Low,
                    },
                    A::Flag {
                        status: FlagStatus::Flagged,
                    },
                ],
            ),
            always(
                "c",
                vec![
                    A::MarkImportance {
                        importance: Importance::High,
                    },
                    A::Flag {
                        status: FlagStatus::Complete,
                    },
                ],
            ),
        ],
        &msg(),
    );
    assert_eq!(
        e.actions[0].action,
        P::MarkImportance {
            importance: Importance::High
        }
    );
    assert_eq!(e.actions[0].rule_ids, ["a", "c"]);
    assert_eq!(
        e.actions[1].action,
        P::Flag {
            status: FlagStatus::Flagged
        }
    );
    assert_eq!(e.actions[1].rule_ids, ["b"]);
}

#[test]
fn mark_read_is_merged() {
    let e = eval(
        vec![
            always("a", vec![A::MarkAsRead {}]),
            always("b", vec![A::MarkAsRead {}]),
        ],
        &msg(),
    );
    assert_eq!(e.actions.len(), 1);
    assert_eq!(
        (
            e.actions[0].action_key.as_str(),
            e.actions[0].rule_ids.clone()
        ),
        ("markRead", strings(&["a", "b"]))
    );
}

#[test]
fn copies_are_one_per_folder() {
    let e = eval(
        vec![
            always("a", vec![copy_to("Archive/2025"), copy_to("Backup")]),
            always("b", vec![copy_to("archive/2025")]),
        ],
        &msg(),
    );
    assert_eq!(e.actions.len(), 2);
    assert_eq!(
        e.actions[0].action,
        P::CopyToFolder {
            path: path("archive/2025")
        }
    );
    assert_eq!(e.actions[0].rule_ids, ["a", "b"]);
    assert_ne!(e.actions[0].action_key, e.actions[1].action_key);
    assert!(e.actions[0].action_key.starts_with("copy:"));
}

#[test]
fn forward_recipients_are_deduplicated_across_rules() {
    let e = eval(
        vec![
            always(
                "a",
                vec![forward(&["Boss@Contoso.com", "ap@fabrikam.com"], None)],
            ),
            always(
                "b",
                vec![forward(&["boss@contoso.com", "new@fabrikam.com"], None)],
            ),
            always("c", vec![forward(&["AP@fabrikam.com"], Some("note"))]),
            always("d", vec![forward(&["other@fabrikam.com"], Some("note"))]),
        ],
        &msg(),
    );
    let forwards: Vec<(Vec<String>, Option<String>, Vec<String>)> = e
        .actions
        .iter()
        .map(|a| match &a.action {
            P::ForwardTo {
                recipients,
                comment,
            } => (recipients.clone(), comment.clone(), a.rule_ids.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        forwards,
        vec![
            (
                strings(&["Boss@Contoso.com", "ap@fabrikam.com", "new@fabrikam.com"]),
                None,
                strings(&["a", "b", "c"])
            ),
            (
                strings(&["other@fabrikam.com"]),
                Some("note".into()),
                strings(&["d"])
            ),
        ]
    );
    let all: Vec<String> = forwards
        .iter()
        .flat_map(|f| f.0.iter().map(|r| r.to_lowercase()))
        .collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), unique.len(), "no address gets two forwards");
}

#[test]
fn forward_keys_depend_only_on_the_recipient_set() {
    let key = |to: &[&str]| {
        eval(vec![always("a", vec![forward(to, None)])], &msg()).actions[0]
            .action_key
            .clone()
    };
    assert_eq!(key(&["a@x.com", "b@x.com"]), key(&["B@X.com", "a@x.com"]));
    assert_ne!(key(&["a@x.com"]), key(&["b@x.com"]));
    let k = key(&["a@x.com"]);
    assert!(
        k.starts_with("forward:") && k.len() == "forward:".len() + 64,
        "{k}"
    );
}

#[test]
fn stop_processing_ends_evaluation() {
    let mut stopper = rule(
        "stop",
        vec![C::SubjectContains(strings(&["hello"]))],
        vec![categories(&["A"])],
    );
    stopper.stop_processing = true;
    let e = eval(
        vec![
            always("before", vec![A::MarkAsRead {}]),
            stopper.clone(),
            always("after", vec![move_to("X")]),
        ],
        &msg(),
    );
    assert_eq!(
        e.matched
            .iter()
            .map(|m| m.rule_id.as_str())
            .collect::<Vec<_>>(),
        ["before", "stop"]
    );
    assert_eq!(e.stopped_by.as_deref(), Some("stop"));
    assert_eq!(keys(&e.actions), ["categorize", "markRead"]);

    // A stopping rule that does not apply stops nothing.
    let mut m = msg();
    m.subject = "other".into();
    let e = eval(vec![stopper, always("after", vec![move_to("X")])], &m);
    assert_eq!(e.stopped_by, None);
    assert_eq!(keys(&e.actions), ["move"]);
}

#[test]
fn a_rule_with_only_stop_processing_shields_later_rules() {
    let mut newsletters = rule(
        "news",
        vec![C::HeaderContains(strings(&["list-id"]))],
        vec![],
    );
    newsletters.stop_processing = true;
    let mut m = msg();
    m.headers = vec![outlook_core::message::Header {
        name: "List-Id".into(),
        value: "<x>".into(),
    }];
    let e = eval(
        vec![newsletters, always("catch-all", vec![move_to("Other")])],
        &m,
    );
    assert_eq!(e.matched.len(), 1);
    assert!(e.actions.is_empty());
}

#[test]
fn disabled_rules_are_skipped_including_their_stop() {
    let mut off = always("off", vec![move_to("Off")]);
    off.enabled = false;
    off.stop_processing = true;
    let e = eval(vec![off, always("on", vec![move_to("On")])], &msg());
    assert_eq!(e.matched.len(), 1);
    assert_eq!(e.matched[0].rule_id, "on");
    assert_eq!(e.actions[0].action, P::MoveToFolder { path: path("On") });
}

#[test]
fn no_matching_rule_means_no_actions() {
    let e = eval(
        vec![rule("r", vec![C::HasAttachments(true)], vec![move_to("X")])],
        &msg(),
    );
    assert!(e.matched.is_empty() && e.actions.is_empty() && e.stopped_by.is_none());
    assert_eq!(e.rule_set_versions, [1]);
}

#[test]
fn descriptions_are_readable() {
    let describe = |actions: Vec<A>| -> Vec<String> {
        eval(vec![always("r", actions)], &msg())
            .actions
            .iter()
            .map(|a| a.describe())
            .collect()
    };
    assert_eq!(
        describe(vec![
            categories(&["Invoices", "Ärger"]),
            A::MarkImportance {
                importance: Importance::High
            },
            A::Flag {
                status: FlagStatus::Flagged
            },
            A::MarkAsRead {},
            copy_to(r"Clients/A\/B"),
            forward(&["a@x.com", "b@x.com"], Some("Please handle")),
            move_to("Finance/Invoices"),
        ]),
        [
            r#"assign categories "Invoices", "Ärger""#,
            "set importance to high",
            "flag for follow-up",
            "mark as read",
            r#"copy to "Clients/A\/B""#,
            r#"forward to a@x.com, b@x.com with comment "Please handle""#,
            r#"move to "Finance/Invoices""#,
        ]
    );
    assert_eq!(
        describe(vec![A::Delete {}]),
        ["delete (move to Deleted Items)"]
    );
    assert_eq!(
        describe(vec![A::Flag {
            status: FlagStatus::Complete
        }]),
        ["mark flag as complete"]
    );
    assert_eq!(
        describe(vec![A::Flag {
            status: FlagStatus::NotFlagged
        }]),
        ["clear flag"]
    );
    assert_eq!(
        describe(vec![categories(&["One"])]),
        [r#"assign category "One""#]
    );
    let long = "x".repeat(100);
    let d = describe(vec![forward(&["a@x.com"], Some(&long))]);
    assert!(d[0].ends_with("…\"") && d[0].len() < 120, "{}", d[0]);
    let e = eval(vec![always("r", vec![move_to("X")])], &msg());
    assert_eq!(e.actions[0].description, e.actions[0].describe());
}

#[test]
fn evaluations_serialize_for_dry_runs() {
    let e = eval(
        vec![always(
            "r1",
            vec![move_to("Finance/Invoices"), A::MarkAsRead {}],
        )],
        &msg(),
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "ruleSetVersions": [1],
            "matched": [{"ruleId": "r1", "ruleName": "Rule r1"}],
            "actions": [
                {"actionKey": "markRead", "ruleIds": ["r1"], "description": "mark as read", "type": "markAsRead"},
                {"actionKey": "move", "ruleIds": ["r1"], "description": "move to \"Finance/Invoices\"", "type": "moveToFolder", "path": "Finance/Invoices"}
            ]
        })
    );
    let back: outlook_core::rules::Evaluation = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn rule_sets_can_be_evaluated_through_valid_rule_set() {
    let set = valid(vec![always("r", vec![A::MarkAsRead {}])]);
    let e = outlook_core::rules::evaluate(set.compiled(), &msg(), &ctx());
    assert_eq!(e.matched.len(), 1);
    assert_eq!(set.compiled().rule_ids().collect::<Vec<_>>(), ["r"]);
    assert_eq!(set.version(), 1);
}

fn versioned(
    version: u64,
    rules: Vec<outlook_core::rules::Rule>,
) -> outlook_core::rules::CompiledRuleSet {
    outlook_core::rules::validate(outlook_core::rules::RuleSet { version, rules })
        .unwrap()
        .compiled()
        .clone()
}

#[test]
fn chained_sets_run_the_first_sets_rules_first() {
    let mut mailbox_rule = always("mbx", vec![move_to("Mine")]);
    mailbox_rule.order = 99;
    let mailbox = versioned(3, vec![mailbox_rule]);
    let everyone = versioned(
        8,
        vec![always("all", vec![move_to("Shared"), A::MarkAsRead {}])],
    );
    let chain = mailbox.chain(&everyone).unwrap();
    assert_eq!(chain.versions(), [3, 8]);
    assert_eq!(chain.version(), 3);
    assert_eq!(chain.len(), 2);
    let e = outlook_core::rules::evaluate(&chain, &msg(), &ctx());
    assert_eq!(e.rule_set_versions, [3, 8]);
    assert_eq!(
        e.matched
            .iter()
            .map(|m| m.rule_id.as_str())
            .collect::<Vec<_>>(),
        ["mbx", "all"]
    );
    assert_eq!(
        e.actions.last().unwrap().action,
        P::MoveToFolder { path: path("Mine") }
    );
    assert_eq!(keys(&e.actions), ["markRead", "move"]);
}

#[test]
fn a_stop_in_the_first_set_shields_the_second() {
    let mut stop = always("mbx", vec![A::MarkAsRead {}]);
    stop.stop_processing = true;
    let chain = versioned(1, vec![stop])
        .chain(&versioned(1, vec![always("all", vec![A::Delete {}])]))
        .unwrap();
    let e = outlook_core::rules::evaluate(&chain, &msg(), &ctx());
    assert_eq!(keys(&e.actions), ["markRead"]);
    assert_eq!(e.stopped_by.as_deref(), Some("mbx"));
}

#[test]
fn chained_sets_need_unique_ids_and_merge_needs() {
    let body = rule(
        "b",
        vec![C::BodyContains(strings(&["x"]))],
        vec![A::MarkAsRead {}],
    );
    let a = versioned(1, vec![always("same", vec![A::MarkAsRead {}])]);
    let b = versioned(1, vec![always("same", vec![A::Delete {}]), body]);
    let errors = a.chain(&b).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].rule_id.as_deref(), errors[0].code()),
        (Some("same"), "duplicateRuleId")
    );
    let c = versioned(
        2,
        vec![rule(
            "b",
            vec![C::BodyContains(strings(&["x"]))],
            vec![A::MarkAsRead {}],
        )],
    );
    assert!(!a.needs_body());
    assert!(a.chain(&c).unwrap().needs_body());
}

#[test]
fn forwards_to_the_mailbox_itself_are_dropped() {
    let e = eval(
        vec![always(
            "a",
            vec![forward(&["ME@contoso.com", "x@fabrikam.com"], None)],
        )],
        &msg(),
    );
    assert_eq!(
        e.actions[0].action,
        P::ForwardTo {
            recipients: strings(&["x@fabrikam.com"]),
            comment: None
        }
    );
    let e = eval(
        vec![always("a", vec![forward(&["sales@contoso.com"], None)])],
        &msg(),
    );
    assert!(e.actions.is_empty(), "alias only: no forward at all");
    assert_eq!(e.matched.len(), 1);
}
