//! Rule execution: decides what happens to each new message of the rules queue and does it in
//! the mailbox through Microsoft Graph, exactly once.
//!
//! # Per queue message
//!
//! 1. `claim_evaluation`: `Claimed` goes on; `AlreadyEvaluated` (a duplicated or retried queue
//!    message) is acknowledged and skipped; `HeldByOther` is left on the queue. The same message
//!    twice in one SQS batch is processed once.
//! 2. The mailbox's rules ([`MailboxRules`]): its own rule set (scope = mailbox id) first, then the
//!    integration-wide set (scope `*`), chained into one evaluation. Compiled sets are cached per
//!    warm sandbox for [`RULES_CACHE_TTL`] and recompiled only when the stored version changes.
//!    A stored set that no longer validates is ignored (logged), never blocks the other one. No
//!    rules: an audit record without actions, and the evaluation is completed.
//! 3. If a rule reads the body and the job carries none, the body is fetched (`$select=body`).
//! 4. `evaluate` → planned actions, executed in phases over all messages of the mailbox in the
//!    batch: one PATCH per message for categories (missing master categories created first),
//!    importance, flag and read state — sent together as one `$batch` when several messages have
//!    one; then copies; then forwards; then the move or delete (moves of several messages again
//!    in one `$batch`). Folder paths are resolved (and missing folders created) once and cached
//!    per mailbox.
//! 5. One [`AuditRecord`] per message (matched rules, every action with its status) and
//!    `complete_evaluation`.
//!
//! # Exactly once
//!
//! Every planned action is claimed (`claim_action`, keyed by its `action_key`) before it runs
//! and finished after (`finish_action`): a claim finished by an earlier attempt is reported as
//! `already_applied` and not repeated. A failure Microsoft may recover from (throttled past the
//! client's retry budget, 5xx, timeouts, 401) leaves the claim to expire ([`CLAIM_LEASE`]) and
//! the queue message is reported as a batch item failure, so SQS redelivers it later; a
//! permanent failure is finished as `failed` and never retried. A 404 means the user deleted the
//! message before its rule ran: that action is `failed: message no longer exists` and the
//! message's remaining actions are `skipped`.
//!
//! - PATCH (absolute values) and move (immutable ids: a repeated move to the same folder finds
//!   the message there) are safe to repeat after a crash between doing and recording them.
//! - Copy is not: an attempt that takes over a claim (`attempts > 1`) first looks in the target
//!   folder for a copy (same `receivedDateTime` and `internetMessageId`, another id) and counts
//!   an existing one as done.
//! - Forward (see [`ForwardStep`]): claim `forward:<hash>`; if the claim's record already has a
//!   `draft_id`, an earlier attempt crashed after creating the draft: send that draft. Otherwise
//!   `createForward` → `set_action_draft(draft_id)` → `send` → finish. A 404 when sending a
//!   recorded draft means an earlier attempt already sent it (a sent draft leaves Drafts):
//!   finished as done. So a forward is sent at most once, and never silently dropped: until the
//!   send is confirmed the claim stays open and the queue message comes back.
//!   The remaining window: a crash (or a lost `set_action_draft`, or a lost `createForward`
//!   response) after Graph created the draft and before its id was recorded leaves an orphan
//!   draft in Drafts. It is never sent (the next attempt creates and sends its own), so no
//!   duplicate mail; the orphan stays visible in Drafts. It is not cleaned up automatically:
//!   drafts carry no marker we could set through `createForward`, and deleting "a draft that
//!   looks like ours" could delete a draft the user wrote. A permanent send failure (e.g. no
//!   `Mail.Send`) deletes its own draft. A 404 on the send of a recorded draft is ambiguous in
//!   one case: the user deleted the unsent draft; it is still counted as sent (never twice wins
//!   over at least once).
//!
//! # Parks and skips
//!
//! Integration not connected, mailbox paused or blocked, or an identity failure that will not
//! heal by itself (the sync worker marks the integration): the job is parked (`store::parked`)
//! and its claim released; the first sync that works after the repair queues it again, so a
//! reconnect loses nothing. Integration or mailbox deleted: the message is acknowledged with an
//! audit note (action key [`EVALUATION_NOTE_KEY`], status `skipped`). A retryable identity
//! failure or a store error leaves the message on the queue.

mod cache;
mod plan;

pub use plan::{
    ActionStatus, DryRunResult, Failure, ForwardStep, MESSAGE_GONE, MailboxRules, Phase,
    SendOutcome, build_patch, dry_run, forward_step, group_by_key, merge_evaluations,
    merged_categories, send_outcome,
};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use serde::Serialize;
use time::OffsetDateTime;

use crate::graph::batch::relative_url;
use crate::graph::client::encode_query_value;
use crate::graph::{
    BatchRequestItem, Collection, GraphClient, GraphError, GraphMessage, MailboxRef, MessagePatch,
};
use crate::health::Reason;
use crate::ids::{IntegrationId, MailboxId, WorkspaceId};
use crate::message::{Address, Body, MailMessage};
use crate::model::{Integration, IntegrationStatus, MailboxKey, MailboxKind, MailboxStatus};
use crate::rules::{
    CategoryAssignment, CompiledRuleSet, EvalContext, Evaluation, FolderPath, PlannedActionKind,
    parse_and_validate,
};
use crate::store::{
    ALL_MAILBOXES, ActionClaim, ActionRecord, AuditAction, AuditRecord, AuditRule, EvaluationClaim,
    Store, StoreError,
};
use crate::sync::worker::RulesJob;
use crate::tokens::{TokenError, TokenProvider};

use cache::TtlMap;

/// How long an evaluation or action claim holds; longer than one invocation (60 s), shorter than
/// the rules queue's visibility timeout (360 s), so a crashed attempt's claims have expired when
/// SQS redelivers its message.
/// Why a job is retried when Graph refused the cached access token.
const TOKEN_REJECTED: &str = "Graph rejected the access token";

pub const CLAIM_LEASE: Duration = Duration::from_secs(90);
/// How long a compiled rule set is used without looking at the store again.
pub const RULES_CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a resolved folder id is trusted (a stale one is re-resolved on 404).
pub const FOLDER_CACHE_TTL: Duration = Duration::from_secs(600);
/// How long the mailbox's master category list is trusted.
pub const CATEGORY_CACHE_TTL: Duration = Duration::from_secs(300);
/// The audit action key of notes about the whole evaluation (skipped, unreadable message).
pub const EVALUATION_NOTE_KEY: &str = "evaluation";
/// Colour of a master category created for a rule that names none.
pub const DEFAULT_CATEGORY_COLOR: &str = "none";

#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Lease of evaluation and action claims.
    pub lease: Duration,
    pub rules_ttl: Duration,
    pub folder_ttl: Duration,
    pub category_ttl: Duration,
    /// Send the PATCHes (and the moves) of several messages of one mailbox as one `$batch`.
    pub use_batch: bool,
    /// Messages of one mailbox worked on at once in the per-message phases (the Graph client
    /// still holds every mailbox to 4 requests in flight).
    pub message_concurrency: usize,
    /// Mailboxes of one SQS batch processed at once.
    pub mailbox_concurrency: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            lease: CLAIM_LEASE,
            rules_ttl: RULES_CACHE_TTL,
            folder_ttl: FOLDER_CACHE_TTL,
            category_ttl: CATEGORY_CACHE_TTL,
            use_batch: true,
            message_concurrency: 4,
            mailbox_concurrency: 4,
        }
    }
}

/// What became of one rules job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Nothing is left to do: acknowledge the queue message.
    Done(JobSummary),
    /// Leave the queue message for redelivery (transient failure, or another worker holds it).
    Retry(String),
}

impl JobOutcome {
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    pub message_id: String,
    pub disposition: Disposition,
    /// Ids of the rules that applied.
    pub matched_rules: Vec<String>,
    /// As written to the audit record (empty when nothing was written).
    pub actions: Vec<AuditAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Evaluated now (the audit record says what happened).
    Evaluated,
    /// An earlier delivery of the job completed it.
    AlreadyEvaluated,
    /// The same message appeared earlier in the same batch.
    DuplicateInBatch,
    /// Acknowledged without evaluation (see the module docs); the audit record says why.
    Skipped,
    /// Kept for after the integration or mailbox is repaired (see the module docs).
    Parked,
}

/// The rule executor of one sandbox: built once per cold start, it keeps the caches.
pub struct RuleExecutor<'a> {
    store: &'a Store,
    graph: &'a GraphClient,
    tokens: &'a TokenProvider,
    owner: String,
    options: ExecOptions,
    /// (workspace, integration, scope) → the compiled set of that scope and its version.
    rulesets: TtlMap<(WorkspaceId, IntegrationId, String), Option<ScopeRules>>,
    /// (workspace, integration, mailbox) → the combined rules for these two versions.
    combined: TtlMap<(WorkspaceId, IntegrationId, MailboxId), (Versions, Option<MailboxRules>)>,
    /// (mailbox, path key) → folder id.
    folders: TtlMap<(MailboxId, String), String>,
    /// mailbox → master categories, lower-cased name → display name.
    categories: TtlMap<MailboxId, HashMap<String, String>>,
}

type Versions = (Option<u64>, Option<u64>);
/// A scope's compiled rule set and its stored version.
type ScopeRules = (u64, Arc<CompiledRuleSet>);

/// Everything the phases need about one mailbox.
struct MailboxCtx {
    key: MailboxKey,
    graph_ref: MailboxRef,
    integration: Integration,
    token: SecretString,
    rules: MailboxRules,
}

enum Prepared {
    Ready(Box<MailboxCtx>),
    NoRules,
    /// The integration or mailbox is gone for good.
    Skip(String),
    /// Not usable until someone acts (reconnect, new app secret, mailbox unblocked).
    Park(String),
    Retry(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RunState {
    Active,
    /// The message is gone (404): the remaining actions are skipped.
    Gone,
    Retry(String),
}

/// One claimed message on its way through the phases.
struct Run<'j> {
    job: &'j RulesJob,
    slot: usize,
    evaluation: Evaluation,
    results: Vec<Option<(ActionStatus, Option<String>)>>,
    claims: Vec<Option<ActionRecord>>,
    notes: Vec<AuditAction>,
    state: RunState,
}

impl<'j> Run<'j> {
    fn new(job: &'j RulesJob, slot: usize, evaluation: Evaluation) -> Self {
        let n = evaluation.actions.len();
        Self {
            job,
            slot,
            evaluation,
            results: vec![None; n],
            claims: vec![None; n],
            notes: Vec::new(),
            state: RunState::Active,
        }
    }

    /// A message that cannot be evaluated: no actions, only a note.
    fn noted(
        job: &'j RulesJob,
        slot: usize,
        versions: Vec<u64>,
        status: ActionStatus,
        note: String,
    ) -> Self {
        let mut run = Self::new(job, slot, empty_evaluation(versions));
        run.notes.push(note_action(status, note));
        run
    }

    fn active(&self) -> bool {
        self.state == RunState::Active
    }

    fn retry(&mut self, reason: impl Into<String>) {
        if !matches!(self.state, RunState::Retry(_)) {
            self.state = RunState::Retry(reason.into());
        }
    }

    fn gone(&mut self) {
        if self.state == RunState::Active {
            self.state = RunState::Gone;
        }
    }

    fn set(&mut self, i: usize, status: ActionStatus, error: Option<String>) {
        self.results[i] = Some((status, error));
    }

    fn key(&self, i: usize) -> &str {
        &self.evaluation.actions[i].action_key
    }

    /// Actions of `phase` without a result yet.
    fn pending(&self, phase: Phase) -> Vec<usize> {
        self.evaluation
            .actions
            .iter()
            .enumerate()
            .filter(|(i, a)| Phase::of(&a.action) == phase && self.results[*i].is_none())
            .map(|(i, _)| i)
            .collect()
    }

    /// Actions of `phase` this attempt claimed and has not finished.
    fn claimed(&self, phase: Phase) -> Vec<usize> {
        self.pending(phase)
            .into_iter()
            .filter(|&i| self.claims[i].is_some())
            .collect()
    }

    fn attempts(&self, i: usize) -> u64 {
        self.claims[i].as_ref().map_or(1, |c| c.attempts)
    }
}

impl<'a> RuleExecutor<'a> {
    /// `owner` identifies this sandbox in claims (unique per process).
    pub fn new(
        store: &'a Store,
        graph: &'a GraphClient,
        tokens: &'a TokenProvider,
        owner: impl Into<String>,
        options: ExecOptions,
    ) -> Self {
        Self {
            store,
            graph,
            tokens,
            owner: owner.into(),
            rulesets: TtlMap::new(options.rules_ttl),
            combined: TtlMap::new(Duration::MAX),
            folders: TtlMap::new(options.folder_ttl),
            categories: TtlMap::new(options.category_ttl),
            options,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Processes the jobs of one SQS batch; one outcome per job, in order. Jobs are grouped by
    /// mailbox (so `$batch` can combine their requests); mailboxes run concurrently.
    pub async fn process_batch(&self, jobs: &[RulesJob]) -> Vec<JobOutcome> {
        let groups = group_by_key(jobs, |j| j.mailbox.clone());
        let done: Vec<(Vec<usize>, Vec<JobOutcome>)> = futures::stream::iter(groups)
            .map(|(_, indices)| async move {
                let group: Vec<&RulesJob> = indices.iter().map(|&i| &jobs[i]).collect();
                let outcomes = self.process_mailbox(&group).await;
                (indices, outcomes)
            })
            .buffer_unordered(self.options.mailbox_concurrency.max(1))
            .collect()
            .await;
        let mut outcomes: Vec<Option<JobOutcome>> = vec![None; jobs.len()];
        for (indices, group) in done {
            for (i, outcome) in indices.into_iter().zip(group) {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| JobOutcome::Retry("not processed".into())))
            .collect()
    }

    /// Processes jobs of one mailbox (all with the same `mailbox` key).
    #[tracing::instrument(skip_all, fields(mailbox = %jobs.first().map(|j| j.mailbox.mailbox_id.as_str()).unwrap_or_default(), jobs = jobs.len()))]
    async fn process_mailbox(&self, jobs: &[&RulesJob]) -> Vec<JobOutcome> {
        let mut out: Vec<Option<JobOutcome>> = vec![None; jobs.len()];
        let mut seen = HashSet::new();
        let mut claimed = Vec::new();
        for (slot, job) in jobs.iter().enumerate() {
            if !seen.insert(job.message.id.as_str()) {
                out[slot] = Some(JobOutcome::Done(summary(
                    job,
                    Disposition::DuplicateInBatch,
                )));
                continue;
            }
            let claim = self
                .store
                .claim_evaluation(
                    &job.mailbox.mailbox_id,
                    &job.message.id,
                    &self.owner,
                    OffsetDateTime::now_utc(),
                    self.options.lease,
                )
                .await;
            out[slot] = match claim {
                Ok(EvaluationClaim::Claimed) => {
                    claimed.push(slot);
                    None
                }
                Ok(EvaluationClaim::AlreadyEvaluated) => Some(JobOutcome::Done(summary(
                    job,
                    Disposition::AlreadyEvaluated,
                ))),
                Ok(EvaluationClaim::HeldByOther) => Some(JobOutcome::Retry(
                    "another worker is evaluating this message".into(),
                )),
                Err(err) => Some(JobOutcome::Retry(format!("claiming the evaluation: {err}"))),
            };
        }
        if !claimed.is_empty() {
            match self.prepare(jobs[claimed[0]]).await {
                Prepared::Retry(reason) => {
                    tracing::warn!(%reason, "mailbox not ready; leaving its messages for retry");
                    for &slot in &claimed {
                        out[slot] = Some(JobOutcome::Retry(reason.clone()));
                    }
                }
                Prepared::Skip(note) => {
                    tracing::info!(%note, "skipping the mailbox's messages");
                    for &slot in &claimed {
                        let actions = vec![note_action(ActionStatus::Skipped, note.clone())];
                        out[slot] = Some(
                            self.conclude_job(
                                jobs[slot],
                                0,
                                Vec::new(),
                                actions,
                                Disposition::Skipped,
                            )
                            .await,
                        );
                    }
                }
                Prepared::Park(reason) => {
                    tracing::info!(%reason, "parking the mailbox's messages until it works again");
                    for &slot in &claimed {
                        out[slot] = Some(self.park(jobs[slot], &reason).await);
                    }
                }
                Prepared::NoRules => {
                    for &slot in &claimed {
                        out[slot] = Some(
                            self.conclude_job(
                                jobs[slot],
                                0,
                                Vec::new(),
                                Vec::new(),
                                Disposition::Evaluated,
                            )
                            .await,
                        );
                    }
                }
                Prepared::Ready(ctx) => {
                    for (slot, outcome) in self.execute(&ctx, jobs, &claimed).await {
                        out[slot] = Some(outcome);
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| JobOutcome::Retry("not processed".into())))
            .collect()
    }

    /// The rules of a mailbox (its own set first, then the integration-wide one), cached.
    pub async fn mailbox_rules(
        &self,
        key: &MailboxKey,
    ) -> Result<Option<MailboxRules>, StoreError> {
        let own = self
            .scope_rules(
                &key.workspace_id,
                &key.integration_id,
                key.mailbox_id.as_str(),
            )
            .await?;
        let all = self
            .scope_rules(&key.workspace_id, &key.integration_id, ALL_MAILBOXES)
            .await?;
        let versions = (own.as_ref().map(|s| s.0), all.as_ref().map(|s| s.0));
        let cache_key = (
            key.workspace_id.clone(),
            key.integration_id.clone(),
            key.mailbox_id.clone(),
        );
        if let Some((cached, rules)) = self.combined.get_stale(&cache_key)
            && cached == versions
        {
            return Ok(rules);
        }
        let rules = MailboxRules::combine(own.map(|s| s.1), all.map(|s| s.1));
        self.combined.insert(cache_key, (versions, rules.clone()));
        Ok(rules)
    }

    async fn scope_rules(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
        scope: &str,
    ) -> Result<Option<ScopeRules>, StoreError> {
        let key = (ws.clone(), int.clone(), scope.to_owned());
        if let Some(cached) = self.rulesets.get(&key) {
            return Ok(cached);
        }
        let value = match self.store.get_ruleset(ws, int, scope).await? {
            None => None,
            Some(stored) => match self.rulesets.get_stale(&key) {
                Some(Some((version, set))) if version == stored.version => Some((version, set)),
                _ => match parse_and_validate(&stored.document) {
                    Ok(valid) => Some((stored.version, Arc::new(valid.into_parts().1))),
                    Err(errors) => {
                        tracing::error!(
                            scope,
                            version = stored.version,
                            errors = errors.len(),
                            first = %errors.first().map(ToString::to_string).unwrap_or_default(),
                            "a stored rule set does not validate; ignoring it"
                        );
                        None
                    }
                },
            },
        };
        self.rulesets.insert(key, value.clone());
        Ok(value)
    }

    async fn prepare(&self, job: &RulesJob) -> Prepared {
        let key = &job.mailbox;
        let integration = match self
            .store
            .get_integration(&key.workspace_id, &key.integration_id)
            .await
        {
            Ok(Some(integration)) => integration,
            Ok(None) => return Prepared::Skip("the integration no longer exists".into()),
            Err(err) => return Prepared::Retry(format!("reading the integration: {err}")),
        };
        if integration.status != IntegrationStatus::Connected {
            return Prepared::Park(format!(
                "the integration is not connected (status {})",
                wire_name(&integration.status)
            ));
        }
        match self.store.get_mailbox(key).await {
            Ok(Some(mailbox)) if mailbox.status == MailboxStatus::Active => {}
            Ok(Some(mailbox)) => {
                return Prepared::Park(format!("the mailbox is {}", wire_name(&mailbox.status)));
            }
            Ok(None) => return Prepared::Skip("the mailbox is no longer connected".into()),
            Err(err) => return Prepared::Retry(format!("reading the mailbox: {err}")),
        }
        let rules = match self.mailbox_rules(key).await {
            Ok(Some(rules)) if !rules.is_empty() => rules,
            Ok(_) => return Prepared::NoRules,
            Err(err) => return Prepared::Retry(format!("reading the rules: {err}")),
        };
        let token = match self.tokens.access_token(&integration).await {
            Ok(token) => token,
            Err(TokenError::Identity(failure)) if failure.is_retryable() => {
                return Prepared::Retry(format!("getting a token: {failure}"));
            }
            Err(TokenError::Identity(failure)) => {
                // Broken until someone acts: recorded now, so the next batches of this
                // integration park without asking Microsoft again.
                let reason = crate::tokens::reason_for(&failure);
                return self
                    .park_broken(
                        &integration,
                        reason,
                        format!(
                            "Microsoft refused the integration's sign-in ({})",
                            reason.code()
                        ),
                    )
                    .await;
            }
            Err(TokenError::NoRefreshToken) => {
                return self
                    .park_broken(
                        &integration,
                        Reason::RefreshTokenExpired,
                        "the integration has no stored sign-in".into(),
                    )
                    .await;
            }
            Err(err @ TokenError::Vault(_)) => {
                return Prepared::Retry(format!("getting a token: {err}"));
            }
        };
        let graph_ref = match job.kind {
            MailboxKind::Own => MailboxRef::Me,
            _ => MailboxRef::User(job.address.clone()),
        };
        Prepared::Ready(Box::new(MailboxCtx {
            key: key.clone(),
            graph_ref,
            integration,
            token,
            rules,
        }))
    }

    async fn execute(
        &self,
        ctx: &MailboxCtx,
        jobs: &[&RulesJob],
        claimed: &[usize],
    ) -> Vec<(usize, JobOutcome)> {
        let concurrency = self.options.message_concurrency.max(1);
        let mut runs: Vec<Run> = futures::stream::iter(claimed.iter().copied())
            .map(|slot| self.evaluate_job(ctx, jobs[slot], slot))
            .buffered(concurrency)
            .collect()
            .await;
        self.phase_patch(ctx, &mut runs).await;
        let mut runs: Vec<Run> = futures::stream::iter(runs)
            .map(|mut run| async move {
                self.side_effects(ctx, &mut run).await;
                run
            })
            .buffered(concurrency)
            .collect()
            .await;
        self.phase_terminal(ctx, &mut runs).await;
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let slot = run.slot;
            out.push((slot, self.conclude_run(ctx, run).await));
        }
        out
    }

    async fn evaluate_job<'j>(&self, ctx: &MailboxCtx, job: &'j RulesJob, slot: usize) -> Run<'j> {
        let mut message = job.message.clone();
        if ctx.rules.needs_body() && message.body.is_none() {
            let fetched = self
                .graph
                .get_message(&ctx.token, &ctx.graph_ref, &message.id, &["body"])
                .await;
            match fetched {
                Ok(found) => {
                    message.body = found.body.map(|b| Body {
                        content_type: b.content_type,
                        content: b.content,
                    });
                }
                Err(err) => {
                    let versions = ctx.rules.versions();
                    return match Failure::of(&err) {
                        Failure::NotFound => {
                            let mut run = Run::noted(
                                job,
                                slot,
                                versions,
                                ActionStatus::Failed,
                                MESSAGE_GONE.into(),
                            );
                            run.gone();
                            run
                        }
                        Failure::Permanent(reason) => Run::noted(
                            job,
                            slot,
                            versions,
                            ActionStatus::Failed,
                            format!("cannot read the message body: {reason}"),
                        ),
                        Failure::Unauthorized => {
                            self.tokens.invalidate(&ctx.integration).await;
                            let mut run = Run::new(job, slot, empty_evaluation(versions));
                            run.retry(TOKEN_REJECTED);
                            run
                        }
                        Failure::Retry(reason) => {
                            let mut run = Run::new(job, slot, empty_evaluation(versions));
                            run.retry(reason);
                            run
                        }
                    };
                }
            }
        }
        let evaluation = ctx
            .rules
            .evaluate(&message, &EvalContext::new(job.address.clone()));
        Run::new(job, slot, evaluation)
    }

    // ----- phase 1: one PATCH per message -------------------------------------------------------

    async fn phase_patch(&self, ctx: &MailboxCtx, runs: &mut [Run<'_>]) {
        for run in runs.iter_mut() {
            for i in run.pending(Phase::Patch) {
                if !run.active() {
                    break;
                }
                self.claim(ctx, run, i).await;
            }
        }

        // Missing master categories first, once for all messages.
        let needed: Vec<CategoryAssignment> = runs
            .iter()
            .filter(|r| r.active())
            .flat_map(|r| {
                r.claimed(Phase::Patch)
                    .into_iter()
                    .map(move |i| &r.evaluation.actions[i].action)
            })
            .filter_map(|a| match a {
                PlannedActionKind::AssignCategories { categories } => Some(categories.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let mut spelling = HashMap::new();
        let mut category_note = None;
        if !needed.is_empty() {
            match self.master_categories(ctx, &needed).await {
                Ok(known) => spelling = known,
                Err(err) => match Failure::of(&err) {
                    Failure::NotFound | Failure::Permanent(_) => {
                        // The message can still carry the category (Outlook shows it without a
                        // colour); say so in the audit.
                        tracing::warn!(error = %err, "cannot create master categories");
                        category_note = Some(format!("master category not created: {err}"));
                    }
                    failure => {
                        if failure == Failure::Unauthorized {
                            self.tokens.invalidate(&ctx.integration).await;
                        }
                        for run in runs.iter_mut().filter(|r| r.active()) {
                            if run
                                .claimed(Phase::Patch)
                                .iter()
                                .any(|&i| is_categorize(run, i))
                            {
                                run.retry(format!("master categories: {err}"));
                            }
                        }
                    }
                },
            }
        }

        let mut patches: Vec<(usize, Vec<usize>, MessagePatch)> = Vec::new();
        for (r, run) in runs.iter_mut().enumerate() {
            if !run.active() {
                continue;
            }
            let claimed = run.claimed(Phase::Patch);
            if claimed.is_empty() {
                continue;
            }
            let mut existing = run.job.message.categories.clone();
            if let Some(&c) = claimed.iter().find(|&&i| is_categorize(run, i))
                && run.attempts(c) > 1
            {
                // Taking over: the categories synced with the job may be stale by now.
                let fresh = self
                    .graph
                    .get_message(
                        &ctx.token,
                        &ctx.graph_ref,
                        &run.job.message.id,
                        &["categories"],
                    )
                    .await;
                match fresh {
                    Ok(message) => existing = message.categories,
                    Err(err) => {
                        self.settle(ctx, run, &claimed, Err(err)).await;
                        continue;
                    }
                }
            }
            let actions = claimed.iter().map(|&i| &run.evaluation.actions[i]);
            if let Some(patch) = build_patch(actions, &existing, &spelling) {
                patches.push((r, claimed, patch));
            }
        }
        let requests: Vec<(String, MessagePatch)> = patches
            .iter()
            .map(|(r, _, patch)| (runs[*r].job.message.id.clone(), patch.clone()))
            .collect();
        let results = self.patch_many(ctx, requests).await;
        for ((r, claimed, _), result) in patches.into_iter().zip(results) {
            let run = &mut runs[r];
            self.settle(ctx, run, &claimed, result).await;
            if let Some(note) = &category_note {
                for &i in &claimed {
                    if is_categorize(run, i)
                        && let Some((ActionStatus::Applied, error)) = &mut run.results[i]
                    {
                        *error = Some(note.clone());
                    }
                }
            }
        }
    }

    /// The mailbox's master categories (lower-cased name → display name), with every `needed`
    /// one created if missing. Cached; listed only when a needed name is not known.
    async fn master_categories(
        &self,
        ctx: &MailboxCtx,
        needed: &[CategoryAssignment],
    ) -> Result<HashMap<String, String>, GraphError> {
        let mailbox = ctx.key.mailbox_id.clone();
        let known = self.categories.get(&mailbox).unwrap_or_default();
        if needed
            .iter()
            .all(|c| known.contains_key(&name_key(&c.name)))
        {
            return Ok(known);
        }
        let mut known: HashMap<String, String> = self
            .graph
            .list_categories(&ctx.token, &ctx.graph_ref)
            .await?
            .into_iter()
            .map(|c| (name_key(&c.display_name), c.display_name))
            .collect();
        for category in needed {
            let key = name_key(&category.name);
            if known.contains_key(&key) {
                continue;
            }
            let color = category
                .color
                .map(String::from)
                .unwrap_or_else(|| DEFAULT_CATEGORY_COLOR.into());
            let created = self
                .graph
                .create_category(&ctx.token, &ctx.graph_ref, &category.name, &color)
                .await?;
            known.insert(name_key(&created.display_name), created.display_name);
        }
        self.categories.insert(mailbox, known.clone());
        Ok(known)
    }

    // ----- phase 2: copies and forwards ----------------------------------------------------------

    async fn side_effects(&self, ctx: &MailboxCtx, run: &mut Run<'_>) {
        let mut actions = run.pending(Phase::Copy);
        actions.extend(run.pending(Phase::Forward));
        for i in actions {
            if !run.active() {
                return;
            }
            if !self.claim(ctx, run, i).await {
                continue;
            }
            match run.evaluation.actions[i].action.clone() {
                PlannedActionKind::CopyToFolder { path } => self.copy(ctx, run, i, &path).await,
                PlannedActionKind::ForwardTo {
                    recipients,
                    comment,
                } => {
                    self.forward(ctx, run, i, &recipients, comment.as_deref())
                        .await
                }
                _ => {}
            }
        }
    }

    async fn copy(&self, ctx: &MailboxCtx, run: &mut Run<'_>, i: usize, path: &FolderPath) {
        let (destination, cached) = match self.resolve_folder(ctx, path).await {
            Ok(found) => found,
            Err(err) => {
                self.settle_failure(ctx, run, &[i], folder_failure(path, &err))
                    .await;
                return;
            }
        };
        if run.attempts(i) > 1 {
            // An earlier attempt may have copied before it could record it.
            match self.find_copy(ctx, &destination, &run.job.message).await {
                Ok(true) => {
                    tracing::info!(action = run.key(i), "an earlier attempt made the copy");
                    self.finish(ctx, run, i, Ok(())).await;
                    return;
                }
                Ok(false) => {}
                Err(GraphError::NotFound { .. }) => {}
                Err(err) => {
                    self.settle_failure(ctx, run, &[i], Failure::of(&err)).await;
                    return;
                }
            }
        }
        let message_id = run.job.message.id.clone();
        let mut result = self
            .graph
            .copy_message(&ctx.token, &ctx.graph_ref, &message_id, &destination)
            .await
            .map(|_| ());
        if cached && matches!(result, Err(GraphError::NotFound { .. })) {
            // Perhaps the cached folder was deleted: resolve it again and retry once if it moved.
            if let Some(fresh) = self.re_resolve(ctx, path, &destination).await {
                result = self
                    .graph
                    .copy_message(&ctx.token, &ctx.graph_ref, &message_id, &fresh)
                    .await
                    .map(|_| ());
            }
        }
        self.settle(ctx, run, &[i], result).await;
    }

    /// Whether `folder_id` already holds a copy of `message` (same `receivedDateTime` and
    /// `internetMessageId`, another id). One request: a `$batch` of one GET, as the client has no
    /// message listing with `$filter`.
    async fn find_copy(
        &self,
        ctx: &MailboxCtx,
        folder_id: &str,
        message: &MailMessage,
    ) -> Result<bool, GraphError> {
        let Some(internet_id) = message.internet_message_id.as_deref() else {
            return Ok(false);
        };
        let received = message
            .received_at
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(message.received_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut segments = ctx.graph_ref.segments();
        segments.extend(["mailFolders", folder_id, "messages"]);
        let query = format!(
            "$filter={}&$select=internetMessageId&$top=50",
            encode_query_value(&format!("receivedDateTime eq {received}"))
        );
        let item = BatchRequestItem::new("find-copy", "GET", relative_url(&segments, &query));
        let response = self
            .graph
            .batch(&ctx.token, &ctx.graph_ref, vec![item])
            .await?
            .pop()
            .ok_or_else(|| GraphError::Transient {
                reason: "no response for the copy lookup".into(),
            })?;
        if let Some(err) = response.error() {
            return Err(err);
        }
        let page: Collection<GraphMessage> =
            response.json().map_err(|e| GraphError::Transient {
                reason: format!("malformed copy lookup response: {e}"),
            })?;
        Ok(page
            .value
            .iter()
            .any(|m| m.id != message.id && m.internet_message_id.as_deref() == Some(internet_id)))
    }

    /// See the module docs ("Exactly once").
    async fn forward(
        &self,
        ctx: &MailboxCtx,
        run: &mut Run<'_>,
        i: usize,
        recipients: &[String],
        comment: Option<&str>,
    ) {
        let record = run.claims[i].clone().unwrap_or_else(unclaimed_record);
        let message_id = run.job.message.id.clone();
        let (draft_id, recorded_earlier) = match forward_step(&record) {
            ForwardStep::SendRecordedDraft(id) => {
                tracing::info!(
                    action = run.key(i),
                    attempts = record.attempts,
                    "sending the forward draft an earlier attempt created"
                );
                (id, true)
            }
            ForwardStep::CreateDraft => {
                let to: Vec<Address> = recipients.iter().map(Address::new).collect();
                let draft = match self
                    .graph
                    .create_forward(&ctx.token, &ctx.graph_ref, &message_id, &to, comment)
                    .await
                {
                    Ok(draft) => draft,
                    Err(err) => {
                        self.settle_failure(ctx, run, &[i], Failure::of(&err)).await;
                        return;
                    }
                };
                let key = run.key(i).to_owned();
                if let Err(err) = self
                    .store
                    .set_action_draft(
                        &ctx.key.mailbox_id,
                        &message_id,
                        &key,
                        &self.owner,
                        &draft.id,
                    )
                    .await
                {
                    // Unrecorded, the draft must not be sent: a later attempt would not know
                    // about it and send its own. It stays in Drafts, unsent.
                    run.retry(format!("recording the forward draft: {err}"));
                    return;
                }
                (draft.id, false)
            }
        };
        let sent = self
            .graph
            .send_draft(&ctx.token, &ctx.graph_ref, &draft_id)
            .await;
        match send_outcome(&sent) {
            SendOutcome::Sent => self.finish(ctx, run, i, Ok(())).await,
            SendOutcome::AlreadySent => {
                tracing::info!(
                    action = run.key(i),
                    recorded_earlier,
                    "the forward draft is gone: an earlier attempt sent it"
                );
                self.finish(ctx, run, i, Ok(())).await;
            }
            SendOutcome::Failed(failure) => {
                if let Failure::Permanent(_) = failure {
                    // Never sendable: don't leave the draft behind.
                    let _ = self
                        .graph
                        .delete_message(&ctx.token, &ctx.graph_ref, &draft_id)
                        .await;
                }
                self.settle_failure(ctx, run, &[i], failure).await;
            }
        }
    }

    // ----- phase 3: move or delete ---------------------------------------------------------------

    async fn phase_terminal(&self, ctx: &MailboxCtx, runs: &mut [Run<'_>]) {
        struct Move {
            run: usize,
            action: usize,
            destination: String,
            cached: bool,
            path: Option<FolderPath>,
        }
        let mut moves: Vec<Move> = Vec::new();
        for (r, run) in runs.iter_mut().enumerate() {
            for i in run.pending(Phase::Terminal) {
                if !run.active() || !self.claim(ctx, run, i).await {
                    continue;
                }
                match run.evaluation.actions[i].action.clone() {
                    PlannedActionKind::MoveToFolder { path } => {
                        match self.resolve_folder(ctx, &path).await {
                            Ok((destination, cached)) => moves.push(Move {
                                run: r,
                                action: i,
                                destination,
                                cached,
                                path: Some(path),
                            }),
                            Err(err) => {
                                self.settle_failure(ctx, run, &[i], folder_failure(&path, &err))
                                    .await
                            }
                        }
                    }
                    PlannedActionKind::Delete => moves.push(Move {
                        run: r,
                        action: i,
                        destination: "deleteditems".into(),
                        cached: false,
                        path: None,
                    }),
                    _ => {}
                }
            }
        }
        let requests: Vec<(String, String)> = moves
            .iter()
            .map(|m| (runs[m.run].job.message.id.clone(), m.destination.clone()))
            .collect();
        let results = self.move_many(ctx, requests).await;
        // Folders re-resolved after a 404, once per path.
        let mut fresh_ids: HashMap<String, Option<String>> = HashMap::new();
        for (m, mut result) in moves.into_iter().zip(results) {
            let retry_in = match (&m.path, &result) {
                (Some(path), Err(GraphError::NotFound { .. })) if m.cached => {
                    let key = path.match_key();
                    if !fresh_ids.contains_key(&key) {
                        let fresh = self.re_resolve(ctx, path, &m.destination).await;
                        fresh_ids.insert(key.clone(), fresh);
                    }
                    fresh_ids[&key].clone()
                }
                _ => None,
            };
            if let Some(fresh) = retry_in {
                result = self
                    .graph
                    .move_message(
                        &ctx.token,
                        &ctx.graph_ref,
                        &runs[m.run].job.message.id,
                        &fresh,
                    )
                    .await
                    .map(|_| ());
            }
            self.settle(ctx, &mut runs[m.run], &[m.action], result)
                .await;
        }
    }

    // ----- folders -------------------------------------------------------------------------------

    /// The folder id for `path` (creating missing folders), and whether a cached id was used.
    /// A path that is just a well-known folder needs no request (Graph takes the name).
    async fn resolve_folder(
        &self,
        ctx: &MailboxCtx,
        path: &FolderPath,
    ) -> Result<(String, bool), GraphError> {
        match self.walk_folders(ctx, path, true).await {
            Err(GraphError::NotFound { .. }) => {
                // A cached parent may have been deleted: start over from Graph.
                self.forget_folders(ctx);
                self.walk_folders(ctx, path, false).await
            }
            other => other,
        }
    }

    async fn walk_folders(
        &self,
        ctx: &MailboxCtx,
        path: &FolderPath,
        use_cache: bool,
    ) -> Result<(String, bool), GraphError> {
        if path.segments().is_empty() {
            return Ok((path.root().to_owned(), false));
        }
        let mailbox = ctx.key.mailbox_id.clone();
        let keys = folder_keys(path);
        let full = keys.last().cloned().unwrap_or_default();
        if use_cache && let Some(id) = self.folders.get(&(mailbox.clone(), full)) {
            return Ok((id, true));
        }
        let mut parent: Option<String> =
            (path.root() != "msgfolderroot").then(|| path.root().to_owned());
        let mut cached = false;
        let mut parent_is_new = false;
        for (segment, key) in path.segments().iter().zip(keys) {
            let cache_key = (mailbox.clone(), key);
            if use_cache && let Some(id) = self.folders.get(&cache_key) {
                parent = Some(id);
                cached = true;
                continue;
            }
            let existing = if parent_is_new {
                // A folder we just created has no children yet.
                None
            } else {
                self.graph
                    .list_folders(&ctx.token, &ctx.graph_ref, parent.as_deref(), false)
                    .await?
                    .into_iter()
                    .find(|f| name_key(&f.display_name) == name_key(segment))
            };
            let folder = match existing {
                Some(folder) => folder,
                None => {
                    parent_is_new = true;
                    self.graph
                        .create_folder(&ctx.token, &ctx.graph_ref, parent.as_deref(), segment)
                        .await?
                }
            };
            self.folders.insert(cache_key, folder.id.clone());
            parent = Some(folder.id);
        }
        Ok((parent.unwrap_or_else(|| path.root().to_owned()), cached))
    }

    fn forget_folders(&self, ctx: &MailboxCtx) {
        let mailbox = &ctx.key.mailbox_id;
        self.folders.remove_where(|(m, _)| m == mailbox);
    }

    /// After a 404 on a cached destination: a fresh id if the folder resolves differently now.
    async fn re_resolve(&self, ctx: &MailboxCtx, path: &FolderPath, used: &str) -> Option<String> {
        self.forget_folders(ctx);
        match self.walk_folders(ctx, path, false).await {
            Ok((fresh, _)) if fresh != used => Some(fresh),
            _ => None,
        }
    }

    // ----- requests for several messages ---------------------------------------------------------

    /// PATCHes, as one `$batch` (≤ 20 per request, the client splits) when there are several.
    async fn patch_many(
        &self,
        ctx: &MailboxCtx,
        patches: Vec<(String, MessagePatch)>,
    ) -> Vec<Result<(), GraphError>> {
        if self.options.use_batch && patches.len() > 1 {
            let items = patches
                .iter()
                .enumerate()
                .map(|(n, (id, patch))| {
                    BatchRequestItem::patch_message(n.to_string(), &ctx.graph_ref, id, patch)
                })
                .collect();
            return self.run_batch(ctx, items).await;
        }
        futures::stream::iter(patches)
            .map(|(id, patch)| async move {
                self.graph
                    .patch_message(&ctx.token, &ctx.graph_ref, &id, &patch)
                    .await
            })
            .buffered(self.options.message_concurrency.max(1))
            .collect()
            .await
    }

    /// Moves (message id, destination), as one `$batch` when there are several.
    async fn move_many(
        &self,
        ctx: &MailboxCtx,
        moves: Vec<(String, String)>,
    ) -> Vec<Result<(), GraphError>> {
        if self.options.use_batch && moves.len() > 1 {
            let items = moves
                .iter()
                .enumerate()
                .map(|(n, (id, destination))| {
                    BatchRequestItem::move_message(n.to_string(), &ctx.graph_ref, id, destination)
                })
                .collect();
            return self.run_batch(ctx, items).await;
        }
        futures::stream::iter(moves)
            .map(|(id, destination)| async move {
                self.graph
                    .move_message(&ctx.token, &ctx.graph_ref, &id, &destination)
                    .await
                    .map(|_| ())
            })
            .buffered(self.options.message_concurrency.max(1))
            .collect()
            .await
    }

    /// One result per item; the client already retried throttled items within its budget.
    async fn run_batch(
        &self,
        ctx: &MailboxCtx,
        items: Vec<BatchRequestItem>,
    ) -> Vec<Result<(), GraphError>> {
        let n = items.len();
        match self.graph.batch(&ctx.token, &ctx.graph_ref, items).await {
            Ok(responses) => responses
                .iter()
                .map(|r| r.error().map_or(Ok(()), Err))
                .collect(),
            Err(err) => vec![Err(err); n],
        }
    }

    // ----- claims and outcomes -------------------------------------------------------------------

    /// Claims action `i`; true when this attempt now holds it. Otherwise the run records why.
    async fn claim(&self, ctx: &MailboxCtx, run: &mut Run<'_>, i: usize) -> bool {
        let claim = self
            .store
            .claim_action(
                &ctx.key.mailbox_id,
                &run.job.message.id,
                run.key(i),
                &self.owner,
                OffsetDateTime::now_utc(),
                self.options.lease,
            )
            .await;
        match claim {
            Ok(ActionClaim::Claimed(record)) => {
                run.claims[i] = Some(record);
                true
            }
            Ok(ActionClaim::Finished(record)) => {
                let (status, error) = ActionStatus::of_finished(&record);
                run.set(i, status, error);
                false
            }
            Ok(ActionClaim::HeldByOther) => {
                let reason = format!("another worker holds action {}", run.key(i));
                run.retry(reason);
                false
            }
            Err(err) => {
                run.retry(format!("claiming action {}: {err}", run.key(i)));
                false
            }
        }
    }

    async fn settle(
        &self,
        ctx: &MailboxCtx,
        run: &mut Run<'_>,
        actions: &[usize],
        result: Result<(), GraphError>,
    ) {
        match result {
            Ok(()) => {
                for &i in actions {
                    self.finish(ctx, run, i, Ok(())).await;
                }
            }
            Err(err) => {
                self.settle_failure(ctx, run, actions, Failure::of(&err))
                    .await
            }
        }
    }

    async fn settle_failure(
        &self,
        ctx: &MailboxCtx,
        run: &mut Run<'_>,
        actions: &[usize],
        failure: Failure,
    ) {
        match failure {
            Failure::NotFound => {
                for &i in actions {
                    self.finish(ctx, run, i, Err(MESSAGE_GONE.into())).await;
                }
                run.gone();
            }
            Failure::Unauthorized => {
                self.tokens.invalidate(&ctx.integration).await;
                run.retry(TOKEN_REJECTED);
            }
            Failure::Retry(reason) => run.retry(reason),
            Failure::Permanent(reason) => {
                for &i in actions {
                    self.finish(ctx, run, i, Err(reason.clone())).await;
                }
            }
        }
    }

    /// Records the end of claimed action `i` (done, or failed for good).
    async fn finish(
        &self,
        ctx: &MailboxCtx,
        run: &mut Run<'_>,
        i: usize,
        outcome: Result<(), String>,
    ) {
        let recorded = self
            .store
            .finish_action(
                &ctx.key.mailbox_id,
                &run.job.message.id,
                run.key(i),
                &self.owner,
                outcome.clone(),
                OffsetDateTime::now_utc(),
            )
            .await;
        match recorded {
            Ok(()) => match outcome {
                Ok(()) => run.set(i, ActionStatus::Applied, None),
                Err(error) => run.set(i, ActionStatus::Failed, Some(error)),
            },
            // Conflict: the claim expired and another worker took it over; it finishes the action.
            Err(err) => run.retry(format!("recording action {}: {err}", run.key(i))),
        }
    }

    async fn conclude_run(&self, ctx: &MailboxCtx, run: Run<'_>) -> JobOutcome {
        if let RunState::Retry(reason) = &run.state {
            tracing::warn!(message_id = %run.job.message.id, %reason, "message left for retry");
            return JobOutcome::Retry(reason.clone());
        }
        let gone = run.state == RunState::Gone;
        let mut actions = run.notes.clone();
        for (action, result) in run.evaluation.actions.iter().zip(&run.results) {
            let (status, error) = match result {
                Some((status, error)) => (*status, error.clone()),
                None if gone => (ActionStatus::Skipped, Some(MESSAGE_GONE.to_owned())),
                None => (ActionStatus::Skipped, None),
            };
            actions.push(AuditAction {
                action_key: action.action_key.clone(),
                description: action.description.clone(),
                status: status.as_str().to_owned(),
                error,
            });
        }
        let matched = run
            .evaluation
            .matched
            .iter()
            .map(|m| AuditRule {
                rule_id: m.rule_id.clone(),
                name: m.rule_name.clone(),
            })
            .collect();
        let version = ctx.rules.versions().first().copied().unwrap_or_default();
        tracing::info!(
            message_id = %run.job.message.id,
            rule_set_versions = ?run.evaluation.rule_set_versions,
            matched = run.evaluation.matched.len(),
            actions = ?actions.iter().map(|a| (a.action_key.as_str(), a.status.as_str())).collect::<Vec<_>>(),
            "message evaluated"
        );
        self.conclude_job(run.job, version, matched, actions, Disposition::Evaluated)
            .await
    }

    /// Writes the audit record and completes the evaluation claim.
    async fn conclude_job(
        &self,
        job: &RulesJob,
        rules_version: u64,
        matched_rules: Vec<AuditRule>,
        actions: Vec<AuditAction>,
        disposition: Disposition,
    ) -> JobOutcome {
        let now = OffsetDateTime::now_utc();
        let record = AuditRecord {
            workspace_id: job.mailbox.workspace_id.clone(),
            mailbox_id: job.mailbox.mailbox_id.clone(),
            message_id: job.message.id.clone(),
            subject: job.message.subject.clone(),
            from: job.message.from_address().map(|a| a.address.clone()),
            received_at: job.message.received_at,
            evaluated_at: now,
            rules_version,
            matched_rules,
            actions,
        };
        if let Err(err) = self.store.put_audit(&record).await {
            return JobOutcome::Retry(format!("writing the audit record: {err}"));
        }
        match self
            .store
            .complete_evaluation(&job.mailbox.mailbox_id, &job.message.id, &self.owner, now)
            .await
        {
            // Conflict: our claim was taken over; the other worker completes it.
            Ok(()) | Err(StoreError::Conflict) => JobOutcome::Done(JobSummary {
                message_id: job.message.id.clone(),
                disposition,
                matched_rules: record
                    .matched_rules
                    .iter()
                    .map(|r| r.rule_id.clone())
                    .collect(),
                actions: record.actions,
            }),
            Err(err) => JobOutcome::Retry(format!("completing the evaluation: {err}")),
        }
    }
}

impl RuleExecutor<'_> {
    /// Records why the integration is broken, then parks (a failed record: retry later).
    async fn park_broken(
        &self,
        integration: &Integration,
        reason: Reason,
        note: String,
    ) -> Prepared {
        match crate::integration_status::record_broken(
            self.store,
            integration,
            reason,
            OffsetDateTime::now_utc(),
        )
        .await
        {
            Ok(()) => Prepared::Park(note),
            Err(err) => Prepared::Retry(format!("recording the broken integration: {err}")),
        }
    }

    /// Parks a claimed job and gives up its claim; the queue message is then acknowledged.
    async fn park(&self, job: &RulesJob, reason: &str) -> JobOutcome {
        let body = match serde_json::to_string(job) {
            Ok(body) => body,
            Err(err) => return JobOutcome::Retry(format!("serializing the job: {err}")),
        };
        let now = OffsetDateTime::now_utc();
        if let Err(err) = self
            .store
            .park_job(&job.mailbox, &job.message.id, &body, reason, now)
            .await
        {
            return JobOutcome::Retry(format!("parking the job: {err}"));
        }
        if let Err(err) = self
            .store
            .release_evaluation(&job.mailbox.mailbox_id, &job.message.id, &self.owner)
            .await
        {
            return JobOutcome::Retry(format!("releasing the claim: {err}"));
        }
        JobOutcome::Done(summary(job, Disposition::Parked))
    }
}

fn summary(job: &RulesJob, disposition: Disposition) -> JobSummary {
    JobSummary {
        message_id: job.message.id.clone(),
        disposition,
        matched_rules: Vec::new(),
        actions: Vec::new(),
    }
}

fn note_action(status: ActionStatus, note: String) -> AuditAction {
    AuditAction {
        action_key: EVALUATION_NOTE_KEY.into(),
        description: "evaluate rules".into(),
        status: status.as_str().into(),
        error: Some(note),
    }
}

fn empty_evaluation(versions: Vec<u64>) -> Evaluation {
    Evaluation {
        rule_set_versions: versions,
        matched: Vec::new(),
        stopped_by: None,
        actions: Vec::new(),
    }
}

fn unclaimed_record() -> ActionRecord {
    ActionRecord {
        state: crate::store::ActionState::Claimed,
        owner: None,
        attempts: 1,
        draft_id: None,
        error: None,
    }
}

fn is_categorize(run: &Run<'_>, i: usize) -> bool {
    matches!(
        run.evaluation.actions[i].action,
        PlannedActionKind::AssignCategories { .. }
    )
}

/// A failure while resolving a folder: a 404 there is the folder's, not the message's.
fn folder_failure(path: &FolderPath, err: &GraphError) -> Failure {
    match Failure::of(err) {
        Failure::NotFound => Failure::Permanent(format!("folder \"{path}\": {err}")),
        Failure::Permanent(reason) => Failure::Permanent(format!("folder \"{path}\": {reason}")),
        other => other,
    }
}

/// Cache keys of every prefix of `path` (root, then each display name, lower-cased; names
/// cannot contain control characters, so `\u{1}` separates them unambiguously).
fn folder_keys(path: &FolderPath) -> Vec<String> {
    let mut key = path.root().to_owned();
    path.segments()
        .iter()
        .map(|segment| {
            key.push('\u{1}');
            key.push_str(&name_key(segment));
            key.clone()
        })
        .collect()
}

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The serde name of an enum value (`connected`, `needs_reconnect`, …).
fn wire_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
