//! Helpers shared by the `rules_*` tests (included with `#[path]`; also built as its own empty test).
#![allow(dead_code)]

use outlook_core::message::{Address, Body, BodyType, MailMessage};
use outlook_core::rules::{
    Action, CompiledRuleSet, Condition, EvalContext, Evaluation, Rule, RuleSet, ValidRuleSet,
    evaluate, validate,
};
use time::macros::datetime;

pub const ME: &str = "me@contoso.com";
pub const ALIAS: &str = "Sales@Contoso.com";

pub fn ctx() -> EvalContext {
    EvalContext::new(ME).with_aliases([ALIAS])
}

pub fn addr(address: &str) -> Address {
    Address::new(address)
}

pub fn named(name: &str, address: &str) -> Address {
    Address {
        name: Some(name.into()),
        address: address.into(),
    }
}

/// A plain message from alice@fabrikam.com to me.
pub fn msg() -> MailMessage {
    MailMessage {
        id: "AAMk-1".into(),
        folder_id: "inbox-id".into(),
        internet_message_id: Some("<1@fabrikam.com>".into()),
        subject: "Hello".into(),
        from: Some(named("Alice Example", "alice@fabrikam.com")),
        sender: None,
        to: vec![addr(ME)],
        cc: vec![],
        bcc: vec![],
        received_at: datetime!(2025-01-02 03:04:05 UTC),
        has_attachments: false,
        importance: Default::default(),
        sensitivity: Default::default(),
        categories: vec![],
        flag: Default::default(),
        is_read: false,
        size_bytes: None,
        kinds: vec![],
        headers: vec![],
        body: None,
    }
}

pub fn html(content: &str) -> Option<Body> {
    Some(Body {
        content_type: BodyType::Html,
        content: content.into(),
    })
}

pub fn text(content: &str) -> Option<Body> {
    Some(Body {
        content_type: BodyType::Text,
        content: content.into(),
    })
}

pub fn mark_read() -> Action {
    Action::MarkAsRead {}
}

pub fn rule(id: &str, conditions: Vec<Condition>, actions: Vec<Action>) -> Rule {
    Rule {
        id: id.into(),
        name: format!("Rule {id}"),
        order: 0,
        enabled: true,
        conditions,
        exceptions: vec![],
        actions,
        stop_processing: false,
    }
}

pub fn valid(rules: Vec<Rule>) -> ValidRuleSet {
    validate(RuleSet { version: 1, rules }).unwrap_or_else(|errors| {
        panic!(
            "invalid rules: {}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

pub fn compiled(rules: Vec<Rule>) -> CompiledRuleSet {
    valid(rules).compiled().clone()
}

pub fn eval(rules: Vec<Rule>, m: &MailMessage) -> Evaluation {
    evaluate(&compiled(rules), m, &ctx())
}

/// Whether a rule with just this condition applies to the message.
pub fn matches(condition: Condition, m: &MailMessage) -> bool {
    !eval(vec![rule("r", vec![condition], vec![mark_read()])], m)
        .matched
        .is_empty()
}

pub fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}
