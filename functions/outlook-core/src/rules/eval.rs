//! Evaluation of a compiled rule set against one message, and the merged action plan.

use std::cell::OnceCell;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compile::{
    CategoryColor, CompiledAction, CompiledRule, CompiledRuleSet, MeTest, Node, TextField,
};
use super::folder::FolderPath;
use super::model::RegexField;
use super::text::{body_text, normalize};
use crate::message::{FlagStatus, Importance, MailMessage};

/// What evaluation needs to know about the mailbox: its own address and aliases, for
/// `sentToMe`, `sentOnlyToMe`, `sentCcMe`, `sentToOrCcMe` and `notSentToMe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalContext {
    mailbox_address: String,
    me: Vec<String>,
}

impl EvalContext {
    pub fn new(mailbox_address: impl Into<String>) -> Self {
        let mailbox_address = mailbox_address.into();
        let me = vec![normalize(mailbox_address.trim())];
        Self {
            mailbox_address,
            me,
        }
    }

    /// Adds other addresses of the same mailbox (proxy addresses, aliases).
    pub fn with_aliases<S: AsRef<str>>(mut self, aliases: impl IntoIterator<Item = S>) -> Self {
        for alias in aliases {
            let alias = normalize(alias.as_ref().trim());
            if !alias.is_empty() && !self.me.contains(&alias) {
                self.me.push(alias);
            }
        }
        self
    }

    pub fn mailbox_address(&self) -> &str {
        &self.mailbox_address
    }

    fn is_me(&self, normalized_address: &str) -> bool {
        self.me.iter().any(|m| m == normalized_address)
    }
}

/// The outcome of evaluating a rule set on one message: which rules applied, and the merged,
/// ordered actions to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// Version of each evaluated rule set (one entry, or one per set of a chain).
    pub rule_set_versions: Vec<u64>,
    /// Rules that applied, in evaluation order.
    pub matched: Vec<RuleMatch>,
    /// The applied rule whose `stopProcessing` ended evaluation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// Actions in execution order (see [`evaluate`]).
    pub actions: Vec<PlannedAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    pub rule_id: String,
    pub rule_name: String,
}

/// One action to execute, merged over all applied rules.
///
/// JSON: `{"actionKey": "move", "ruleIds": ["r1"], "description": "move to \"Finance/Invoices\"",
/// "type": "moveToFolder", "path": "Finance/Invoices"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedAction {
    /// Stable per message: the executor's idempotency key. `categorize`, `importance`, `flag`,
    /// `markRead`, `copy:<sha256 of the folder path, lower-cased>`,
    /// `forward:<sha256 of the sorted, lower-cased recipients joined by "\n">`, `move`, `delete`.
    pub action_key: String,
    /// The rules that asked for this action (for the audit record), in evaluation order.
    pub rule_ids: Vec<String>,
    /// Human-readable, e.g. `move to "Finance/Invoices"` (same as [`PlannedAction::describe`]).
    pub description: String,
    #[serde(flatten)]
    pub action: PlannedActionKind,
}

/// What to do, with the parameters the executor needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PlannedActionKind {
    /// Add these categories to the message's existing ones; create missing master categories
    /// with the given colour (or the mailbox default when none).
    AssignCategories {
        categories: Vec<CategoryAssignment>,
    },
    MarkImportance {
        importance: Importance,
    },
    Flag {
        status: FlagStatus,
    },
    MarkAsRead,
    CopyToFolder {
        path: FolderPath,
    },
    /// Graph `forward` with `comment` (omitted when none).
    ForwardTo {
        recipients: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    MoveToFolder {
        path: FolderPath,
    },
    /// Move to Deleted Items (`deleteditems`); never a permanent delete.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoryAssignment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<CategoryColor>,
}

impl PlannedAction {
    fn new(action_key: String, rule_ids: Vec<String>, action: PlannedActionKind) -> Self {
        let description = action.describe();
        Self {
            action_key,
            rule_ids,
            description,
            action,
        }
    }

    /// A one-line description for dry runs and the audit, e.g. `move to "Finance/Invoices"`.
    pub fn describe(&self) -> String {
        self.action.describe()
    }
}

impl PlannedActionKind {
    pub fn describe(&self) -> String {
        let quoted = |s: &str| format!("\"{s}\"");
        match self {
            Self::AssignCategories { categories } => {
                let names: Vec<String> = categories.iter().map(|c| quoted(&c.name)).collect();
                let noun = if categories.len() == 1 {
                    "category"
                } else {
                    "categories"
                };
                format!("assign {noun} {}", names.join(", "))
            }
            Self::MarkImportance { importance } => {
                let level = match importance {
                    Importance::Low => "low",
                    Importance::Normal => "normal",
                    Importance::High => "high",
                };
                format!("set importance to {level}")
            }
            Self::Flag {
                status: FlagStatus::Flagged,
            } => "flag for follow-up".into(),
            Self::Flag {
                status: FlagStatus::Complete,
            } => "mark flag as complete".into(),
            Self::Flag {
                status: FlagStatus::NotFlagged,
            } => "clear flag".into(),
            Self::MarkAsRead => "mark as read".into(),
            Self::CopyToFolder { path } => format!("copy to {}", quoted(&path.to_string())),
            Self::ForwardTo {
                recipients,
                comment,
            } => {
                let mut text = format!("forward to {}", recipients.join(", "));
                if let Some(comment) = comment {
                    let short: String = comment.chars().take(60).collect();
                    let ellipsis = if short.len() < comment.len() {
                        "…"
                    } else {
                        ""
                    };
                    text.push_str(&format!(
                        " with comment {}",
                        quoted(&format!("{short}{ellipsis}"))
                    ));
                }
                text
            }
            Self::MoveToFolder { path } => format!("move to {}", quoted(&path.to_string())),
            Self::Delete => "delete (move to Deleted Items)".into(),
        }
    }

    /// The `type` name in JSON, e.g. `moveToFolder`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AssignCategories { .. } => "assignCategories",
            Self::MarkImportance { .. } => "markImportance",
            Self::Flag { .. } => "flag",
            Self::MarkAsRead => "markAsRead",
            Self::CopyToFolder { .. } => "copyToFolder",
            Self::ForwardTo { .. } => "forwardTo",
            Self::MoveToFolder { .. } => "moveToFolder",
            Self::Delete => "delete",
        }
    }
}

/// Evaluates the rules on one message.
///
/// - Rules run in `order` (ties: list position). Disabled rules are skipped.
/// - A rule applies when all its conditions match and none of its exceptions does.
/// - When an applied rule has `stopProcessing`, no later rule is evaluated.
///
/// The applied rules' actions are merged into one plan, in this execution order:
/// 1. `assignCategories` (union over rules, de-duplicated case-insensitively, first spelling and
///    first colour win), `markImportance`, `flag`, `markAsRead` — changes to the message itself;
///    for importance and flag the first applied rule's value wins (later differing values are
///    dropped, like Outlook where the first rule's move wins);
/// 2. `copyToFolder`, one per distinct folder (case-insensitive), in rule order;
/// 3. `forwardTo`: recipients de-duplicated case-insensitively across all rules (a later rule
///    never forwards twice to the same address); rules with the same comment share one forward;
///    the mailbox's own address and aliases are dropped (a forward to itself would loop through
///    the rules again), and a forward left without recipients is dropped;
/// 4. last, at most one of `moveToFolder` or `delete`: the first applied rule that moves or
///    deletes decides where the message ends up; a later rule's move or delete is dropped (a
///    delete therefore beats a move only when it comes from an earlier rule). Later rules asking
///    for exactly the same move (or delete) are listed in `ruleIds`.
///
/// The message is read as received (actions of earlier rules are not visible to later rules'
/// conditions). The body is rendered to text at most once per call, and only if a rule reads it.
pub fn evaluate(rules: &CompiledRuleSet, message: &MailMessage, ctx: &EvalContext) -> Evaluation {
    let view = View::new(message, ctx);
    let mut matched = Vec::new();
    let mut planner = Planner::default();
    let mut stopped_by = None;
    for rule in rules.rules.iter().filter(|r| r.enabled) {
        if !applies(rule, &view) {
            continue;
        }
        matched.push(RuleMatch {
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
        });
        planner.add(rule, ctx);
        if rule.stop_processing {
            stopped_by = Some(rule.id.clone());
            break;
        }
    }
    Evaluation {
        rule_set_versions: rules.versions.clone(),
        matched,
        stopped_by,
        actions: planner.finish(),
    }
}

fn applies(rule: &CompiledRule, view: &View) -> bool {
    rule.conditions.iter().all(|c| view.eval(c)) && !rule.exceptions.iter().any(|c| view.eval(c))
}

/// The message with lazily computed, cached forms of its fields (one evaluation only).
struct View<'a> {
    msg: &'a MailMessage,
    ctx: &'a EvalContext,
    subject: OnceCell<String>,
    body_text: OnceCell<String>,
    body_norm: OnceCell<String>,
    header_lines: OnceCell<Vec<String>>,
    header_norm: OnceCell<Vec<String>>,
    sender: OnceCell<Option<Party>>,
    recipients: OnceCell<Vec<(Role, Party)>>,
    categories: OnceCell<Vec<String>>,
    me: OnceCell<MeFlags>,
}

/// A normalized address and display name.
struct Party {
    address: String,
    name: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    To,
    Cc,
    Bcc,
}

#[derive(Clone, Copy)]
struct MeFlags {
    to: bool,
    cc: bool,
    any: bool,
    only: bool,
}

impl<'a> View<'a> {
    fn new(msg: &'a MailMessage, ctx: &'a EvalContext) -> Self {
        Self {
            msg,
            ctx,
            subject: OnceCell::new(),
            body_text: OnceCell::new(),
            body_norm: OnceCell::new(),
            header_lines: OnceCell::new(),
            header_norm: OnceCell::new(),
            sender: OnceCell::new(),
            recipients: OnceCell::new(),
            categories: OnceCell::new(),
            me: OnceCell::new(),
        }
    }

    fn subject(&self) -> &str {
        self.subject.get_or_init(|| normalize(&self.msg.subject))
    }

    fn body_text(&self) -> &str {
        self.body_text
            .get_or_init(|| self.msg.body.as_ref().map(body_text).unwrap_or_default())
    }

    fn body(&self) -> &str {
        self.body_norm.get_or_init(|| normalize(self.body_text()))
    }

    fn header_lines(&self) -> &[String] {
        self.header_lines.get_or_init(|| {
            self.msg
                .headers
                .iter()
                .map(|h| format!("{}: {}", h.name, h.value))
                .collect()
        })
    }

    fn headers(&self) -> &[String] {
        self.header_norm
            .get_or_init(|| self.header_lines().iter().map(|h| normalize(h)).collect())
    }

    fn sender(&self) -> Option<&Party> {
        self.sender
            .get_or_init(|| {
                self.msg.from_address().map(|a| Party {
                    address: normalize(a.address.trim()),
                    name: a.name.as_deref().map(normalize).unwrap_or_default(),
                })
            })
            .as_ref()
    }

    fn recipients(&self) -> &[(Role, Party)] {
        self.recipients.get_or_init(|| {
            let roles = [
                (Role::To, &self.msg.to),
                (Role::Cc, &self.msg.cc),
                (Role::Bcc, &self.msg.bcc),
            ];
            roles
                .into_iter()
                .flat_map(|(role, list)| {
                    list.iter().map(move |a| {
                        let party = Party {
                            address: normalize(a.address.trim()),
                            name: a.name.as_deref().map(normalize).unwrap_or_default(),
                        };
                        (role, party)
                    })
                })
                .collect()
        })
    }

    fn categories(&self) -> &[String] {
        self.categories.get_or_init(|| {
            self.msg
                .categories
                .iter()
                .map(|c| normalize(c.trim()))
                .collect()
        })
    }

    fn me(&self) -> MeFlags {
        *self.me.get_or_init(|| {
            let recipients = self.recipients();
            let mine = |role: Option<Role>| {
                recipients
                    .iter()
                    .any(|(r, p)| role.is_none_or(|role| *r == role) && self.ctx.is_me(&p.address))
            };
            MeFlags {
                to: mine(Some(Role::To)),
                cc: mine(Some(Role::Cc)),
                any: mine(None),
                only: !recipients.is_empty()
                    && recipients.iter().all(|(_, p)| self.ctx.is_me(&p.address)),
            }
        })
    }

    fn eval(&self, node: &Node) -> bool {
        let msg = self.msg;
        match node {
            Node::All(nodes) => nodes.iter().all(|n| self.eval(n)),
            Node::Any(nodes) => nodes.iter().any(|n| self.eval(n)),
            Node::Not(node) => !self.eval(node),
            Node::Contains(field, needles) => {
                let found = |haystack: &str| needles.iter().any(|n| haystack.contains(n.as_str()));
                match field {
                    TextField::Subject => found(self.subject()),
                    TextField::Body => found(self.body()),
                    TextField::BodyOrSubject => found(self.subject()) || found(self.body()),
                    TextField::Headers => self.headers().iter().any(|h| found(h)),
                    TextField::Sender => self
                        .sender()
                        .is_some_and(|p| found(&p.address) || found(&p.name)),
                    TextField::Recipients => self
                        .recipients()
                        .iter()
                        .any(|(_, p)| found(&p.address) || found(&p.name)),
                }
            }
            Node::FromAddress(addresses) => self
                .sender()
                .is_some_and(|p| addresses.contains(&p.address)),
            Node::SentToAddress(addresses) => self
                .recipients()
                .iter()
                .any(|(_, p)| addresses.contains(&p.address)),
            Node::Me(test, expected) => {
                let me = self.me();
                let actual = match test {
                    MeTest::To => me.to,
                    MeTest::OnlyMe => me.only,
                    MeTest::Cc => me.cc,
                    MeTest::ToOrCc => me.to || me.cc,
                    MeTest::NotRecipient => !me.any,
                };
                actual == *expected
            }
            Node::HasAttachments(expected) => msg.has_attachments == *expected,
            Node::Importance(importance) => msg.importance == *importance,
            Node::Sensitivity(sensitivity) => msg.sensitivity == *sensitivity,
            Node::Size(min, max) => msg.size_bytes.is_some_and(|size| {
                min.is_none_or(|min| size >= min) && max.is_none_or(|max| size <= max)
            }),
            Node::Categories(wanted) => {
                let have = self.categories();
                wanted.iter().any(|w| have.contains(w))
            }
            Node::Flag(status) => msg.flag == *status,
            Node::Kind(kind, expected) => msg.is_kind(*kind) == *expected,
            Node::Domain { domain, subdomains } => self.sender().is_some_and(|p| {
                let actual = p
                    .address
                    .rsplit_once('@')
                    .map(|(_, d)| d)
                    .unwrap_or_default();
                actual == domain
                    || (*subdomains
                        && actual.len() > domain.len()
                        && actual.ends_with(domain.as_str())
                        && actual[..actual.len() - domain.len()].ends_with('.'))
            }),
            Node::Regex {
                field,
                header,
                regex,
            } => match field {
                RegexField::Subject => regex.is_match(&msg.subject),
                RegexField::Body => regex.is_match(self.body_text()),
                RegexField::BodyOrSubject => {
                    regex.is_match(&msg.subject) || regex.is_match(self.body_text())
                }
                RegexField::Sender => msg.from_address().is_some_and(|a| {
                    regex.is_match(&a.address)
                        || a.name.as_deref().is_some_and(|n| regex.is_match(n))
                }),
                RegexField::Recipients => msg.to.iter().chain(&msg.cc).chain(&msg.bcc).any(|a| {
                    regex.is_match(&a.address)
                        || a.name.as_deref().is_some_and(|n| regex.is_match(n))
                }),
                RegexField::Header => match header {
                    Some(name) => msg
                        .headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case(name) && regex.is_match(&h.value)),
                    None => self.header_lines().iter().any(|line| regex.is_match(line)),
                },
            },
        }
    }
}

/// Merges the actions of applied rules (see [`evaluate`] for the policy).
#[derive(Default)]
struct Planner {
    categories: Vec<(CategoryAssignment, String)>,
    category_rules: Vec<String>,
    importance: Option<(Importance, Vec<String>)>,
    flag: Option<(FlagStatus, Vec<String>)>,
    mark_read: Option<Vec<String>>,
    copies: Vec<(FolderPath, String, Vec<String>)>,
    forwards: Vec<Forward>,
    forwarded_to: Vec<String>,
    terminal: Option<(Terminal, Vec<String>)>,
}

struct Forward {
    comment: Option<String>,
    recipients: Vec<(String, String)>,
    rules: Vec<String>,
}

enum Terminal {
    /// The path and its case-insensitive match key.
    Move(FolderPath, String),
    Delete,
}

impl PartialEq for Terminal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Move(_, a), Self::Move(_, b)) => a == b,
            (Self::Delete, Self::Delete) => true,
            _ => false,
        }
    }
}

fn push_unique(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
    }
}

/// Sets a first-wins value, or records `id` when the value is the same.
fn first_wins<T: PartialEq>(slot: &mut Option<(T, Vec<String>)>, value: T, id: &str) {
    match slot {
        None => *slot = Some((value, vec![id.to_owned()])),
        Some((existing, ids)) if *existing == value => push_unique(ids, id),
        Some(_) => {}
    }
}

impl Planner {
    fn add(&mut self, rule: &CompiledRule, ctx: &EvalContext) {
        let id = rule.id.as_str();
        for action in &rule.actions {
            match action {
                CompiledAction::Categorize { categories, color } => {
                    for name in categories {
                        let key = normalize(name);
                        match self.categories.iter_mut().find(|(_, k)| *k == key) {
                            Some((existing, _)) => {
                                if existing.color.is_none() {
                                    existing.color = *color;
                                }
                            }
                            None => self.categories.push((
                                CategoryAssignment {
                                    name: name.clone(),
                                    color: *color,
                                },
                                key,
                            )),
                        }
                    }
                    push_unique(&mut self.category_rules, id);
                }
                CompiledAction::Importance(importance) => {
                    first_wins(&mut self.importance, *importance, id)
                }
                CompiledAction::Flag(status) => first_wins(&mut self.flag, *status, id),
                CompiledAction::MarkRead => {
                    push_unique(self.mark_read.get_or_insert_with(Vec::new), id)
                }
                CompiledAction::Copy(path) => {
                    let key = path.match_key();
                    match self.copies.iter_mut().find(|(_, k, _)| *k == key) {
                        Some((_, _, ids)) => push_unique(ids, id),
                        None => self.copies.push((path.clone(), key, vec![id.to_owned()])),
                    }
                }
                CompiledAction::Forward {
                    recipients,
                    comment,
                } => self.forward(recipients, comment, id, ctx),
                CompiledAction::Move(path) => first_wins(
                    &mut self.terminal,
                    Terminal::Move(path.clone(), path.match_key()),
                    id,
                ),
                CompiledAction::Delete => first_wins(&mut self.terminal, Terminal::Delete, id),
            }
        }
    }

    fn forward(
        &mut self,
        recipients: &[String],
        comment: &Option<String>,
        id: &str,
        ctx: &EvalContext,
    ) {
        let mut new = Vec::new();
        for r in recipients {
            let key = normalize(r);
            if ctx.is_me(&key) {
                // Forwarding to the mailbox itself would feed the message back into its rules.
                continue;
            }
            if self.forwarded_to.contains(&key) {
                // Already forwarded to: credit this rule on the forward that covers the address.
                if let Some(f) = self
                    .forwards
                    .iter_mut()
                    .find(|f| f.recipients.iter().any(|(_, k)| *k == key))
                {
                    push_unique(&mut f.rules, id);
                }
                continue;
            }
            self.forwarded_to.push(key.clone());
            new.push((r.clone(), key));
        }
        if new.is_empty() {
            return;
        }
        match self.forwards.iter_mut().find(|f| f.comment == *comment) {
            Some(f) => {
                f.recipients.extend(new);
                push_unique(&mut f.rules, id);
            }
            None => self.forwards.push(Forward {
                comment: comment.clone(),
                recipients: new,
                rules: vec![id.to_owned()],
            }),
        }
    }

    fn finish(self) -> Vec<PlannedAction> {
        let mut out = Vec::new();
        if !self.categories.is_empty() {
            let categories = self.categories.into_iter().map(|(c, _)| c).collect();
            out.push(PlannedAction::new(
                "categorize".into(),
                self.category_rules,
                PlannedActionKind::AssignCategories { categories },
            ));
        }
        if let Some((importance, ids)) = self.importance {
            out.push(PlannedAction::new(
                "importance".into(),
                ids,
                PlannedActionKind::MarkImportance { importance },
            ));
        }
        if let Some((status, ids)) = self.flag {
            out.push(PlannedAction::new(
                "flag".into(),
                ids,
                PlannedActionKind::Flag { status },
            ));
        }
        if let Some(ids) = self.mark_read {
            out.push(PlannedAction::new(
                "markRead".into(),
                ids,
                PlannedActionKind::MarkAsRead,
            ));
        }
        for (path, key, ids) in self.copies {
            out.push(PlannedAction::new(
                format!("copy:{}", sha256_hex(&key)),
                ids,
                PlannedActionKind::CopyToFolder { path },
            ));
        }
        for f in self.forwards {
            let mut keys: Vec<&str> = f.recipients.iter().map(|(_, k)| k.as_str()).collect();
            keys.sort_unstable();
            let key = format!("forward:{}", sha256_hex(&keys.join("\n")));
            let recipients = f.recipients.into_iter().map(|(r, _)| r).collect();
            out.push(PlannedAction::new(
                key,
                f.rules,
                PlannedActionKind::ForwardTo {
                    recipients,
                    comment: f.comment,
                },
            ));
        }
        match self.terminal {
            Some((Terminal::Move(path, _), ids)) => out.push(PlannedAction::new(
                "move".into(),
                ids,
                PlannedActionKind::MoveToFolder { path },
            )),
            Some((Terminal::Delete, ids)) => out.push(PlannedAction::new(
                "delete".into(),
                ids,
                PlannedActionKind::Delete,
            )),
            None => {}
        }
        out
    }
}

fn sha256_hex(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, BodyType};
    use crate::rules::text::RENDERS;
    use crate::rules::{Action, Condition, Rule, RuleSet, validate};

    fn message_with_html_body() -> MailMessage {
        serde_json::from_value(serde_json::json!({
            "id": "m1",
            "folder_id": "f",
            "subject": "Hello",
            "received_at": "2025-01-01T00:00:00Z",
        }))
        .map(|mut m: MailMessage| {
            m.body = Some(Body {
                content_type: BodyType::Html,
                content: "<p>Hello <b>world</b></p>".into(),
            });
            m
        })
        .unwrap()
    }

    fn rules(conditions: Vec<Condition>) -> CompiledRuleSet {
        let rules = conditions
            .into_iter()
            .enumerate()
            .map(|(i, c)| Rule {
                id: format!("r{i}"),
                name: format!("rule {i}"),
                order: i as u32,
                enabled: true,
                conditions: vec![c],
                exceptions: vec![],
                actions: vec![Action::MarkAsRead {}],
                stop_processing: false,
            })
            .collect();
        validate(RuleSet { version: 1, rules })
            .unwrap()
            .compiled()
            .clone()
    }

    fn renders_during(f: impl FnOnce()) -> usize {
        let before = RENDERS.with(|n| n.get());
        f();
        RENDERS.with(|n| n.get()) - before
    }

    #[test]
    fn the_body_is_rendered_once_per_evaluation() {
        let m = message_with_html_body();
        let set = rules(
            (0..50)
                .map(|i| Condition::BodyContains(vec![format!("missing {i}")]))
                .chain([Condition::BodyOrSubjectContains(vec!["world".into()])])
                .collect(),
        );
        let ctx = EvalContext::new("me@contoso.com");
        let mut evaluation = None;
        assert_eq!(
            renders_during(|| evaluation = Some(evaluate(&set, &m, &ctx))),
            1
        );
        assert_eq!(evaluation.unwrap().matched.len(), 1);
        assert_eq!(
            renders_during(|| drop(evaluate(&set, &m, &ctx))),
            1,
            "a new evaluation renders again"
        );
    }

    #[test]
    fn the_body_is_not_rendered_when_no_rule_reads_it() {
        let m = message_with_html_body();
        let set = rules(vec![
            Condition::SubjectContains(vec!["hello".into()]),
            Condition::HasAttachments(false),
        ]);
        assert!(!set.needs_body());
        assert_eq!(
            renders_during(|| drop(evaluate(&set, &m, &EvalContext::new("me@contoso.com")))),
            0
        );
    }

    #[test]
    fn body_or_subject_skips_the_body_when_the_subject_matches() {
        let m = message_with_html_body();
        let set = rules(vec![Condition::BodyOrSubjectContains(vec!["hello".into()])]);
        assert_eq!(
            renders_during(|| drop(evaluate(&set, &m, &EvalContext::new("me@contoso.com")))),
            0
        );
    }

    #[test]
    fn contexts_compare_addresses_case_insensitively() {
        let ctx = EvalContext::new(" Me@Contoso.com ").with_aliases([
            "ALIAS@contoso.com",
            "",
            "me@contoso.com",
        ]);
        assert!(ctx.is_me("me@contoso.com"));
        assert!(ctx.is_me("alias@contoso.com"));
        assert!(!ctx.is_me(""));
        assert_eq!(ctx.me.len(), 2);
        assert_eq!(ctx.mailbox_address(), " Me@Contoso.com ");
    }
}
