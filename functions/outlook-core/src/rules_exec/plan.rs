//! The pure parts of rule execution: which rules apply, how planned actions become Graph
//! requests, how failures are classified, and the forward state machine. No I/O here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::graph::{GraphError, MessagePatch};
use crate::message::MailMessage;
use crate::rules::{
    CategoryAssignment, CompiledRuleSet, EvalContext, Evaluation, PlannedAction, PlannedActionKind,
    RuleMatch, evaluate,
};
use crate::store::{ActionRecord, ActionState};

/// What the audit says about a message whose Graph object is gone.
pub const MESSAGE_GONE: &str = "message no longer exists";

/// How one planned action ended, as the audit shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Done by this attempt.
    Applied,
    /// Done by an earlier attempt (its claim record says so).
    AlreadyApplied,
    /// Not attempted (e.g. an earlier action found the message gone).
    Skipped,
    /// Failed for good; the error says why. Never retried.
    Failed,
}

impl ActionStatus {
    /// The audit's spelling: `applied`, `already_applied`, `skipped`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::AlreadyApplied => "already_applied",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    /// The status of an action whose claim record was already finished by an earlier attempt.
    pub fn of_finished(record: &ActionRecord) -> (Self, Option<String>) {
        match record.state {
            ActionState::Failed => (Self::Failed, record.error.clone()),
            _ => (Self::AlreadyApplied, None),
        }
    }
}

/// The execution phases, in order. Within a message: one PATCH for everything that changes the
/// message itself, then copies, then forwards, then the move or delete (last, so nothing acts on
/// a message after it left its folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Patch,
    Copy,
    Forward,
    Terminal,
}

impl Phase {
    pub fn of(kind: &PlannedActionKind) -> Self {
        match kind {
            PlannedActionKind::AssignCategories { .. }
            | PlannedActionKind::MarkImportance { .. }
            | PlannedActionKind::Flag { .. }
            | PlannedActionKind::MarkAsRead => Self::Patch,
            PlannedActionKind::CopyToFolder { .. } => Self::Copy,
            PlannedActionKind::ForwardTo { .. } => Self::Forward,
            PlannedActionKind::MoveToFolder { .. } | PlannedActionKind::Delete => Self::Terminal,
        }
    }
}

/// Execution rank of an action kind (the order `evaluate` documents).
fn rank(kind: &PlannedActionKind) -> u8 {
    match kind {
        PlannedActionKind::AssignCategories { .. } => 0,
        PlannedActionKind::MarkImportance { .. } => 1,
        PlannedActionKind::Flag { .. } => 2,
        PlannedActionKind::MarkAsRead => 3,
        PlannedActionKind::CopyToFolder { .. } => 4,
        PlannedActionKind::ForwardTo { .. } => 5,
        PlannedActionKind::MoveToFolder { .. } | PlannedActionKind::Delete => 6,
    }
}

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The category list to PATCH: the message's `existing` categories (kept, in their order) and
/// then every `added` one not already there (case-insensitive). `spelling` maps a lower-cased
/// name to the master category's display name, so the message carries the master's spelling.
pub fn merged_categories(
    existing: &[String],
    added: &[CategoryAssignment],
    spelling: &HashMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(existing.len() + added.len());
    let mut seen: Vec<String> = Vec::with_capacity(existing.len() + added.len());
    for name in existing {
        let key = name_key(name);
        if !key.is_empty() && !seen.contains(&key) {
            seen.push(key);
            out.push(name.clone());
        }
    }
    for category in added {
        let key = name_key(&category.name);
        if !key.is_empty() && !seen.contains(&key) {
            out.push(
                spelling
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| category.name.clone()),
            );
            seen.push(key);
        }
    }
    out
}

/// One PATCH for all message-changing `actions` (categorize, importance, flag, mark read);
/// `None` when none of them is among `actions`. Categories become `existing` ∪ new.
pub fn build_patch<'a>(
    actions: impl IntoIterator<Item = &'a PlannedAction>,
    existing_categories: &[String],
    spelling: &HashMap<String, String>,
) -> Option<MessagePatch> {
    let mut patch = MessagePatch::default();
    let mut any = false;
    for action in actions {
        match &action.action {
            PlannedActionKind::AssignCategories { categories } => {
                patch.categories =
                    Some(merged_categories(existing_categories, categories, spelling));
            }
            PlannedActionKind::MarkImportance { importance } => {
                patch.importance = Some(*importance);
            }
            PlannedActionKind::Flag { status } => patch.flag = Some(*status),
            PlannedActionKind::MarkAsRead => patch.is_read = Some(true),
            _ => continue,
        }
        any = true;
    }
    any.then_some(patch)
}

/// What a Graph failure means for the action that hit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 404: the message (or the draft, or the folder) is gone.
    NotFound,
    /// 401: drop the cached token and try again later.
    Unauthorized,
    /// Throttled past the client's retry budget, or a transient failure: leave the claim (its
    /// lease expires) and let the queue redeliver.
    Retry(String),
    /// Anything else (403, 400, 409, …): retrying would not help; record it as failed.
    Permanent(String),
}

impl Failure {
    pub fn of(err: &GraphError) -> Self {
        match err {
            GraphError::NotFound { .. } => Self::NotFound,
            GraphError::Unauthorized { .. } => Self::Unauthorized,
            GraphError::Throttled { .. } | GraphError::Transient { .. } => {
                Self::Retry(err.to_string())
            }
            // A delta-only condition; outside delta it means nothing useful: try again later.
            GraphError::SyncStateExpired => Self::Retry(err.to_string()),
            other => Self::Permanent(other.to_string()),
        }
    }
}

/// The next step of an exactly-once forward, from its claim record (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardStep {
    /// An earlier attempt created this draft (and may or may not have sent it): send it.
    SendRecordedDraft(String),
    /// No draft recorded: create one, record its id, then send it.
    CreateDraft,
}

pub fn forward_step(record: &ActionRecord) -> ForwardStep {
    match record.draft_id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => ForwardStep::SendRecordedDraft(id.to_owned()),
        _ => ForwardStep::CreateDraft,
    }
}

/// What sending a recorded draft resulted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// 404 on the send of a recorded draft: the draft left Drafts, i.e. an earlier attempt sent
    /// it (Graph keeps no sent draft under its old id). Counted as done: never send twice.
    AlreadySent,
    Failed(Failure),
}

pub fn send_outcome(result: &Result<(), GraphError>) -> SendOutcome {
    match result {
        Ok(()) => SendOutcome::Sent,
        Err(err) => match Failure::of(err) {
            Failure::NotFound => SendOutcome::AlreadySent,
            other => SendOutcome::Failed(other),
        },
    }
}

/// Groups `items` by `key`, keeping the first-seen order of keys and the order within a group.
pub fn group_by_key<T, K: Hash + Eq + Clone>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<usize>)> {
    let mut groups: Vec<(K, Vec<usize>)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        match index.get(&k) {
            Some(&g) => groups[g].1.push(i),
            None => {
                index.insert(k.clone(), groups.len());
                groups.push((k, vec![i]));
            }
        }
    }
    groups
}

/// The rules that apply to one mailbox: its own rule set and the integration-wide one.
///
/// The mailbox's own rules run first, then the integration-wide rules, as one chain
/// ([`CompiledRuleSet::chain`]): a `stopProcessing` rule of the mailbox shields it from the
/// integration-wide rules, and all actions merge by one policy (first move wins, …). Only when
/// the two sets share a rule id (which a chain refuses, the audit names rules by id) are they
/// evaluated one after the other and merged by [`merge_evaluations`].
#[derive(Debug, Clone)]
pub enum MailboxRules {
    Single(Arc<CompiledRuleSet>),
    Separate(Arc<CompiledRuleSet>, Arc<CompiledRuleSet>),
}

impl MailboxRules {
    /// `own` (scope = the mailbox) before `all` (scope `*`); `None` when neither exists.
    pub fn combine(
        own: Option<Arc<CompiledRuleSet>>,
        all: Option<Arc<CompiledRuleSet>>,
    ) -> Option<Self> {
        match (own, all) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => Some(Self::Single(one)),
            (Some(own), Some(all)) => Some(match own.chain(&all) {
                Ok(chain) => Self::Single(Arc::new(chain)),
                Err(errors) => {
                    tracing::warn!(
                        clashes = errors.len(),
                        "the mailbox's rules and the integration-wide rules share rule ids; evaluating them one after the other"
                    );
                    Self::Separate(own, all)
                }
            }),
        }
    }

    pub fn needs_body(&self) -> bool {
        match self {
            Self::Single(set) => set.needs_body(),
            Self::Separate(a, b) => a.needs_body() || b.needs_body(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::Single(set) => set.is_empty(),
            Self::Separate(a, b) => a.is_empty() && b.is_empty(),
        }
    }

    /// Versions of the sets, in evaluation order.
    pub fn versions(&self) -> Vec<u64> {
        match self {
            Self::Single(set) => set.versions().to_vec(),
            Self::Separate(a, b) => a.versions().iter().chain(b.versions()).copied().collect(),
        }
    }

    pub fn evaluate(&self, message: &MailMessage, ctx: &EvalContext) -> Evaluation {
        match self {
            Self::Single(set) => evaluate(set, message, ctx),
            Self::Separate(first, second) => {
                let a = evaluate(first, message, ctx);
                if a.stopped_by.is_some() {
                    return Evaluation {
                        rule_set_versions: self.versions(),
                        ..a
                    };
                }
                merge_evaluations(a, evaluate(second, message, ctx))
            }
        }
    }
}

/// Merges the evaluation of a second rule set into the first one's, with `evaluate`'s policy
/// as far as it can be rebuilt from plans: categories are united, the first set's importance,
/// flag, move or delete win, equal copies and forwards (same key) are one action, and the
/// result is in execution order. (Forwards whose recipient sets merely overlap stay separate.)
pub fn merge_evaluations(first: Evaluation, second: Evaluation) -> Evaluation {
    let mut actions = first.actions;
    for action in second.actions {
        let terminal = Phase::of(&action.action) == Phase::Terminal;
        let existing = actions.iter_mut().find(|a| {
            a.action_key == action.action_key
                || (terminal && Phase::of(&a.action) == Phase::Terminal)
        });
        match existing {
            None => actions.push(action),
            Some(existing) => {
                if let (
                    PlannedActionKind::AssignCategories { categories },
                    PlannedActionKind::AssignCategories { categories: more },
                ) = (&mut existing.action, &action.action)
                {
                    for c in more {
                        let key = name_key(&c.name);
                        if !categories.iter().any(|x| name_key(&x.name) == key) {
                            categories.push(c.clone());
                        }
                    }
                    existing.description = existing.action.describe();
                    extend_unique(&mut existing.rule_ids, &action.rule_ids);
                } else if existing.action == action.action {
                    extend_unique(&mut existing.rule_ids, &action.rule_ids);
                }
            }
        }
    }
    actions.sort_by_key(|a| rank(&a.action));
    let mut versions = first.rule_set_versions;
    versions.extend(second.rule_set_versions);
    let mut matched = first.matched;
    matched.extend(second.matched);
    Evaluation {
        rule_set_versions: versions,
        matched,
        stopped_by: second.stopped_by,
        actions,
    }
}

fn extend_unique(ids: &mut Vec<String>, more: &[String]) {
    for id in more {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
}

/// What rules would do to one message (the management API's dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunResult {
    pub message_id: String,
    pub subject: String,
    /// The rules that applied, in evaluation order.
    pub matched: Vec<RuleMatch>,
    /// One line per planned action, in execution order (e.g. `move to "Finance/Invoices"`).
    pub actions: Vec<String>,
}

/// Evaluates `compiled` on `messages` and describes what would happen, acting on nothing.
pub fn dry_run(
    compiled: &CompiledRuleSet,
    messages: &[MailMessage],
    ctx: &EvalContext,
) -> Vec<DryRunResult> {
    messages
        .iter()
        .map(|message| describe(message, evaluate(compiled, message, ctx)))
        .collect()
}

impl MailboxRules {
    /// [`dry_run`] for both of a mailbox's rule sets.
    pub fn dry_run(&self, messages: &[MailMessage], ctx: &EvalContext) -> Vec<DryRunResult> {
        messages
            .iter()
            .map(|message| describe(message, self.evaluate(message, ctx)))
            .collect()
    }
}

fn describe(message: &MailMessage, evaluation: Evaluation) -> DryRunResult {
    DryRunResult {
        message_id: message.id.clone(),
        subject: message.subject.clone(),
        matched: evaluation.matched,
        actions: evaluation
            .actions
            .into_iter()
            .map(|a| a.description)
            .collect(),
    }
}
