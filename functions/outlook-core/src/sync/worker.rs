//! The mailbox sync worker: syncs one mailbox (a sync-queue job carries one to ten).
//!
//! Order of writes, so that a crash at any point may repeat work but never loses a message:
//! 1. take the mailbox lease (a second worker backs off);
//! 2. per watched folder, page through the delta query from the stored link;
//! 3. per page: record each new message id (`begin_handoff`), send the new ones to the rules
//!    queue, mark them handed on, and only then checkpoint the page's next/delta link (the
//!    round's last page, with the new delta link, is checkpointed by step 4's write);
//! 4. release the lease, save the completed folders' delta links and schedule the next sync.
//!
//! A crash before step 3's checkpoint replays the page: ids already handed on are skipped; ids
//! recorded but not yet marked (at most the one SQS batch of ten in flight) are sent again.
//! SQS offers no transactional send, so this is the one place a message can reach the rules
//! queue twice; rule evaluation claims each message id, so the second copy never acts.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::graph::{GraphClient, GraphError, MailboxRef};
use crate::health::{Reason, StatusReason};
use crate::message::MailMessage;
use crate::model::{
    AccountType, FolderState, Integration, IntegrationStatus, Mailbox, MailboxCounters, MailboxKey,
    MailboxKind, MailboxStatus,
};
use crate::store::{HandoffState, Store, StoreError, SyncOutcome};
use crate::tokens::{TokenError, TokenProvider};

/// While the app's own credentials are broken, retry this rarely (no retry storm).
pub const APP_CREDENTIALS_RETRY_SECS: i64 = 900;
/// Delta page size (`Prefer: odata.maxpagesize`): large pages, few requests.
pub const DELTA_PAGE_SIZE: u32 = 100;
/// Pages per folder per invocation; the rest continues from the checkpoint next time.
pub const MAX_PAGES_PER_FOLDER: usize = 50;
/// The fields rules and the audit need (`$select`); the body only when rules need it.
pub const SELECT: &[&str] = &[
    "id",
    "subject",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "receivedDateTime",
    "hasAttachments",
    "importance",
    "categories",
    "flag",
    "isRead",
    "internetMessageId",
    "internetMessageHeaders",
    "parentFolderId",
];

/// The body of a rules-queue message: one new message of one mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RulesJob {
    pub mailbox: MailboxKey,
    pub address: String,
    pub kind: MailboxKind,
    pub account_type: AccountType,
    pub tenant_id: String,
    pub message: MailMessage,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub skipped: bool,
    pub pages: u64,
    pub messages_seen: u64,
    pub handed_on: u64,
    pub resyncs: u64,
    pub graph_requests: u64,
    /// Set when the integration or mailbox needs someone to act; nothing is retried.
    pub status_reason: Option<Reason>,
}

#[derive(Debug, Error)]
pub enum SyncError {
    /// Microsoft asked us to wait; the job goes back to the queue and the mailbox is retried
    /// after `retry_after`.
    #[error("throttled by Microsoft; retry after {0:?}")]
    Throttled(Duration),
    #[error("transient failure: {0}")]
    Transient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the worker needs, built once per cold start.
pub struct SyncWorker<'a> {
    pub store: &'a Store,
    pub graph: &'a GraphClient,
    pub tokens: &'a TokenProvider,
    pub sqs: &'a aws_sdk_sqs::Client,
    pub rules_queue_url: &'a str,
    /// Unique per process; each sync attempt's lease owner starts with it (for the logs).
    pub worker_id: &'a str,
    /// How long the worker holds a mailbox; longer than one invocation's timeout
    /// (`Config::sync_lease`).
    pub lease: Duration,
    /// Steady-state time between syncs of a mailbox (`Config::sync_interval`).
    pub interval: Duration,
}

impl SyncWorker<'_> {
    #[tracing::instrument(skip_all, fields(mailbox = %key.mailbox_id, workspace = %key.workspace_id))]
    pub async fn sync_mailbox(
        &self,
        key: &MailboxKey,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<SyncReport, SyncError> {
        // One owner per attempt, not per process: two jobs for the same mailbox in one batch
        // must exclude each other too.
        let owner = format!("{}:{}", self.worker_id, uuid::Uuid::new_v4().simple());
        let owner = owner.as_str();
        let Some(mailbox) = self
            .store
            .take_lease(key, owner, now, self.lease, force)
            .await?
        else {
            tracing::info!("mailbox not due, not active, or leased by another worker; skipping");
            return Ok(SyncReport {
                skipped: true,
                ..SyncReport::default()
            });
        };
        let mut counters = MailboxCounters::default();
        let mut completed = Vec::new();
        let result = self
            .sync_leased(&mailbox, owner, &mut counters, &mut completed, now)
            .await;
        let finished_at = OffsetDateTime::now_utc();
        let (mut outcome, result) = match result {
            Ok(report) => {
                let next = match report.status_reason {
                    Some(Reason::AppCredentialsExpired | Reason::AppCredentialsInvalid) => {
                        APP_CREDENTIALS_RETRY_SECS
                    }
                    _ => self.interval.as_secs() as i64,
                };
                let success = report.status_reason.is_none();
                (
                    outcome(
                        finished_at,
                        next,
                        success,
                        counters,
                        report.status_reason.map(|r| r.code().to_owned()),
                        None,
                    ),
                    Ok(report),
                )
            }
            Err(SyncError::Throttled(wait)) => {
                counters.throttled += 1;
                let until = finished_at.unix_timestamp() + wait.as_secs().max(1) as i64;
                (
                    outcome(
                        finished_at,
                        wait.as_secs().max(1) as i64,
                        false,
                        counters,
                        Some("throttled".into()),
                        Some(until),
                    ),
                    Err(SyncError::Throttled(wait)),
                )
            }
            Err(err) => {
                counters.failures += 1;
                (
                    outcome(
                        finished_at,
                        self.interval.as_secs() as i64,
                        false,
                        counters,
                        Some(err.to_string()),
                        None,
                    ),
                    Err(err),
                )
            }
        };
        outcome.completed_folders = completed;
        match self.store.release_lease(key, owner, &outcome).await {
            // The lease ran out and another worker took over: its own release wins.
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(other) => return Err(other.into()),
        }
        result
    }

    async fn sync_leased(
        &self,
        mailbox: &Mailbox,
        owner: &str,
        counters: &mut MailboxCounters,
        completed: &mut Vec<FolderState>,
        now: OffsetDateTime,
    ) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        let Some(integration) = self
            .store
            .get_integration(&mailbox.workspace_id, &mailbox.integration_id)
            .await?
        else {
            return Ok(SyncReport {
                skipped: true,
                ..report
            });
        };
        if integration.status == IntegrationStatus::NeedsReconnect
            || integration.status == IntegrationStatus::Disconnected
        {
            return Ok(SyncReport {
                skipped: true,
                ..report
            });
        }
        let Some(mut token) = self.token(&integration, now, &mut report).await? else {
            return Ok(report);
        };
        if integration.status == IntegrationStatus::AdminActionRequired {
            // The credentials work again (e.g. the operator rotated the app secret).
            self.mark_integration_connected(&integration).await?;
        }
        if let Some(seen) = mailbox.parked_seq {
            self.resume_parked(mailbox, owner, seen).await?;
        }
        let mailbox_ref = match mailbox.kind {
            MailboxKind::Own => MailboxRef::Me,
            _ => MailboxRef::User(mailbox.address.clone()),
        };
        let mut renewed_token = false;
        for folder in mailbox.folders.values() {
            loop {
                match self
                    .sync_folder(
                        mailbox,
                        owner,
                        &integration,
                        &mailbox_ref,
                        &token,
                        folder.clone(),
                        now,
                        &mut report,
                    )
                    .await
                {
                    Ok(Some((state, handed))) => {
                        counters.messages_handed_on += handed;
                        completed.push(state);
                        break;
                    }
                    Ok(None) => break,
                    // Graph refused a token that was valid when cached: revoked (password change,
                    // app removed) or expired early. Get a new one once; a refused refresh tells why.
                    Err(FolderError::Unauthorized) if !renewed_token => {
                        renewed_token = true;
                        self.tokens.invalidate(&integration).await;
                        match self.token(&integration, now, &mut report).await? {
                            Some(fresh) => token = fresh,
                            None => return Ok(report),
                        }
                    }
                    Err(FolderError::Unauthorized) => {
                        return Err(SyncError::Transient(
                            "Graph refused a freshly issued token".into(),
                        ));
                    }
                    Err(FolderError::Blocked(reason)) => {
                        self.block_mailbox(mailbox, reason).await?;
                        report.status_reason = Some(reason);
                        return Ok(report);
                    }
                    Err(FolderError::Sync(err)) => return Err(err),
                }
            }
        }
        counters.resyncs = report.resyncs;
        Ok(report)
    }

    /// An access token, or `None` when the integration is broken (recorded, with the reason, on
    /// the integration and in `report`).
    async fn token(
        &self,
        integration: &Integration,
        now: OffsetDateTime,
        report: &mut SyncReport,
    ) -> Result<Option<secrecy::SecretString>, SyncError> {
        match self.tokens.access_token(integration).await {
            Ok(token) => Ok(Some(token)),
            Err(TokenError::Identity(failure)) if failure.is_retryable() => {
                Err(SyncError::Transient(failure.to_string()))
            }
            Err(TokenError::Identity(failure)) => {
                let reason = crate::tokens::reason_for(&failure);
                crate::integration_status::record_broken(self.store, integration, reason, now)
                    .await?;
                report.status_reason = Some(reason);
                Ok(None)
            }
            Err(TokenError::NoRefreshToken) => {
                crate::integration_status::record_broken(
                    self.store,
                    integration,
                    Reason::RefreshTokenExpired,
                    now,
                )
                .await?;
                report.status_reason = Some(Reason::RefreshTokenExpired);
                Ok(None)
            }
            Err(other) => Err(SyncError::Transient(other.to_string())),
        }
    }

    /// Pages through one folder's delta query. Returns the folder's state when the round
    /// completed, with the messages its last page handed on: that checkpoint is written with
    /// the lease release (an idle tick then costs one write fewer). `None` when the page budget
    /// ran out mid-round (every page so far is checkpointed).
    #[allow(clippy::too_many_arguments)]
    async fn sync_folder(
        &self,
        mailbox: &Mailbox,
        owner: &str,
        integration: &Integration,
        mailbox_ref: &MailboxRef,
        token: &secrecy::SecretString,
        mut state: FolderState,
        now: OffsetDateTime,
        report: &mut SyncReport,
    ) -> Result<Option<(FolderState, u64)>, FolderError> {
        let key = mailbox.key();
        let mut resynced = false;
        for _ in 0..MAX_PAGES_PER_FOLDER {
            let link = state.page_link.clone().or_else(|| state.delta_link.clone());
            let page = match &link {
                Some(link) => {
                    self.graph
                        .delta_follow(token, mailbox_ref, link, DELTA_PAGE_SIZE)
                        .await
                }
                None => {
                    // A new round starts at the folder's watermark: history before the folder
                    // was watched is never handed to rules.
                    let since = state.round_start(now);
                    self.graph
                        .delta_start(
                            token,
                            mailbox_ref,
                            &state.folder,
                            SELECT,
                            DELTA_PAGE_SIZE,
                            Some(since),
                        )
                        .await
                }
            };
            report.graph_requests += 1;
            let page = match page {
                Ok(page) => page,
                Err(GraphError::SyncStateExpired) if !resynced => {
                    // Start a new round from the folder's watermark; ids already handed on are
                    // skipped by their processed-message records, so nothing acts twice.
                    tracing::warn!(folder = %state.folder, "delta token expired; resyncing folder");
                    state.delta_link = None;
                    state.page_link = None;
                    resynced = true;
                    report.resyncs += 1;
                    continue;
                }
                Err(err) => return Err(classify_graph_error(err, mailbox)),
            };
            report.pages += 1;
            let mut fresh = Vec::new();
            for item in page.value {
                if item.is_removed() {
                    continue;
                }
                report.messages_seen += 1;
                let message = match item.into_mail_message(&state.folder) {
                    Ok(message) => message,
                    Err(err) => {
                        tracing::warn!(error = %err, "skipping a message Graph returned in an unexpected shape");
                        continue;
                    }
                };
                match self
                    .store
                    .begin_handoff(&mailbox.workspace_id, &mailbox.mailbox_id, &message.id, now)
                    .await?
                {
                    HandoffState::New | HandoffState::Pending => fresh.push(message),
                    HandoffState::HandedOn => {}
                }
            }
            let handed = self.hand_on(mailbox, integration, &fresh).await?;
            report.handed_on += handed;
            match (page.next_link, page.delta_link) {
                (Some(next), _) => state.page_link = Some(next),
                (None, Some(delta)) => {
                    state.page_link = None;
                    state.delta_link = Some(delta);
                    state.round_completed_at = Some(now);
                }
                (None, None) => {
                    return Err(FolderError::Sync(SyncError::Transient(
                        "delta page without a next or delta link".into(),
                    )));
                }
            }
            if state.page_link.is_none() {
                return Ok(Some((state, handed)));
            }
            self.store
                .checkpoint_folder(&key, owner, &state, handed)
                .await?;
        }
        Ok(None)
    }

    /// Sends new messages to the rules queue and marks them handed on. Returns how many.
    async fn hand_on(
        &self,
        mailbox: &Mailbox,
        integration: &Integration,
        messages: &[MailMessage],
    ) -> Result<u64, SyncError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let jobs: Vec<String> = messages
            .iter()
            .map(|message| {
                serde_json::to_string(&RulesJob {
                    mailbox: mailbox.key(),
                    address: mailbox.address.clone(),
                    kind: mailbox.kind,
                    account_type: integration.account_type,
                    tenant_id: integration.tenant_id.clone(),
                    message: message.clone(),
                })
                .expect("rules jobs serialize")
            })
            .collect();
        // Marked after every batch of ten, so a crash re-sends at most the batch in flight (SQS
        // has no transactional send; rule evaluation's claim discards that second copy).
        for (chunk, batch) in jobs.chunks(10).zip(messages.chunks(10)) {
            self.send_to_rules_queue(chunk).await?;
            let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
            self.store
                .mark_handed_on(&mailbox.mailbox_id, &ids, OffsetDateTime::now_utc())
                .await?;
        }
        Ok(messages.len() as u64)
    }

    /// One `SendMessageBatch` of up to ten rules jobs; any refused entry fails the whole call
    /// (the caller has not marked anything yet, so a retry re-sends, and claims dedupe).
    async fn send_to_rules_queue(&self, bodies: &[String]) -> Result<(), SyncError> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .expect("id and body are set")
            })
            .collect::<Vec<_>>();
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(self.rules_queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| SyncError::Transient(format!("rules queue: {e}")))?;
        if !out.failed.is_empty() {
            return Err(SyncError::Transient(format!(
                "rules queue refused {} messages",
                out.failed.len()
            )));
        }
        Ok(())
    }

    /// Queues again the rules jobs parked while this mailbox could not be used (the integration
    /// works again, or the mailbox is active again), then clears the mailbox's flag unless a
    /// job was parked meanwhile. Sent before deleted: a crash re-sends, claims dedupe.
    async fn resume_parked(
        &self,
        mailbox: &Mailbox,
        owner: &str,
        seen: u64,
    ) -> Result<(), SyncError> {
        let parked = self.store.parked_jobs(&mailbox.mailbox_id).await?;
        for chunk in parked.chunks(10) {
            let bodies: Vec<String> = chunk.iter().map(|p| p.body.clone()).collect();
            self.send_to_rules_queue(&bodies).await?;
            let ids: Vec<String> = chunk.iter().map(|p| p.message_id.clone()).collect();
            self.store.delete_parked(&mailbox.mailbox_id, &ids).await?;
        }
        let cleared = self
            .store
            .clear_parked_flag(&mailbox.key(), owner, seen)
            .await?;
        tracing::info!(
            jobs = parked.len(),
            cleared,
            "parked rules jobs queued again"
        );
        Ok(())
    }

    async fn mark_integration_connected(&self, integration: &Integration) -> Result<(), SyncError> {
        let mut current = integration.clone();
        current.status = IntegrationStatus::Connected;
        current.status_reason = None;
        current.updated_at = OffsetDateTime::now_utc();
        match self.store.save_integration(&current).await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    async fn block_mailbox(&self, mailbox: &Mailbox, reason: Reason) -> Result<(), SyncError> {
        let mut current = mailbox.clone();
        loop {
            current.status = MailboxStatus::Blocked;
            current.status_reason = Some(StatusReason::from(reason));
            match self.store.save_mailbox(&current).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) => match self.store.get_mailbox(&mailbox.key()).await? {
                    Some(fresh) => current = fresh,
                    None => return Ok(()),
                },
                Err(other) => return Err(other.into()),
            }
        }
    }
}

enum FolderError {
    Unauthorized,
    Blocked(Reason),
    Sync(SyncError),
}

impl From<StoreError> for FolderError {
    fn from(err: StoreError) -> Self {
        FolderError::Sync(err.into())
    }
}

impl From<SyncError> for FolderError {
    fn from(err: SyncError) -> Self {
        FolderError::Sync(err)
    }
}

fn classify_graph_error(err: GraphError, mailbox: &Mailbox) -> FolderError {
    match err {
        GraphError::Throttled { retry_after } => {
            FolderError::Sync(SyncError::Throttled(retry_after))
        }
        GraphError::Unauthorized { .. } => FolderError::Unauthorized,
        GraphError::Forbidden { .. } if err_is_outside_scope(&err) => {
            FolderError::Blocked(Reason::MailboxOutsideAdminScope)
        }
        GraphError::Forbidden { ref code, .. }
            if code.eq_ignore_ascii_case("MailboxNotEnabledForRESTAPI") =>
        {
            FolderError::Blocked(Reason::MailboxNotEnabled)
        }
        GraphError::Forbidden { .. } if mailbox.kind == MailboxKind::Shared => {
            FolderError::Blocked(Reason::SharedMailboxNotGranted)
        }
        GraphError::Forbidden { .. } if mailbox.kind == MailboxKind::Organization => {
            FolderError::Blocked(Reason::MailboxOutsideAdminScope)
        }
        other => FolderError::Sync(SyncError::Transient(other.to_string())),
    }
}

fn err_is_outside_scope(err: &GraphError) -> bool {
    err.is_mailbox_outside_app_scope()
}

fn outcome(
    finished_at: OffsetDateTime,
    next_in_secs: i64,
    success: bool,
    counters: MailboxCounters,
    last_error: Option<String>,
    throttled_until: Option<i64>,
) -> SyncOutcome {
    SyncOutcome {
        finished_at,
        next_sync_at: finished_at.unix_timestamp() + next_in_secs,
        success,
        counters,
        last_error,
        throttled_until,
        completed_folders: Vec::new(),
    }
}
