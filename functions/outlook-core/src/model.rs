//! Integrations and mailboxes: what a workspace connected and how far each mailbox has synced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::health::StatusReason;
use crate::ids::{IntegrationId, MailboxId, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    /// Tenant-wide admin consent; app-only (client-credentials) tokens; survives any user's
    /// password or MFA change.
    Organization,
    /// One user's sign-in (authorization code + PKCE); a refresh token per integration.
    Personal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    Connected,
    /// A personal sign-in no longer works; nothing syncs until the user signs in again.
    NeedsReconnect,
    /// An administrator (of the customer or of the platform) must act; nothing syncs meanwhile.
    AdminActionRequired,
    Disconnected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub workspace_id: WorkspaceId,
    pub integration_id: IntegrationId,
    pub account_type: AccountType,
    /// Microsoft Entra tenant id (GUID) the integration is bound to.
    pub tenant_id: String,
    pub status: IntegrationStatus,
    #[serde(default)]
    pub status_reason: Option<StatusReason>,
    /// Personal: the signed-in user's UPN and object id.
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub user_object_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Bumped on every (re)connect; a worker only marks the integration broken if the credential
    /// it failed with is still the current one.
    #[serde(default)]
    pub credential_generation: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_successful_sync_at: Option<OffsetDateTime>,
    /// Optimistic-concurrency version; every write increments it.
    #[serde(default)]
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    /// The signed-in user's own mailbox (personal).
    Own,
    /// A shared mailbox reached through the signed-in user's delegated access (personal).
    Shared,
    /// A mailbox reached with app-only access (organization-wide).
    Organization,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxStatus {
    Active,
    /// Not reachable (outside the admin's scope, no grant, no mailbox): see the reason.
    Blocked,
    /// The integration is not connected; resumes with it.
    Paused,
}

/// Sync position of one watched folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FolderState {
    /// The folder as configured: a well-known name (`inbox`) or a Graph folder id.
    pub folder: String,
    /// The `@odata.deltaLink` of the last completed round, used as-is.
    #[serde(default)]
    pub delta_link: Option<String>,
    /// The `@odata.nextLink` to resume an unfinished round from (pages before it were handed on).
    #[serde(default)]
    pub page_link: Option<String>,
    /// Messages received before this instant are history, never handed to rules: set when the
    /// folder starts being watched (minus an optional look-back).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// When the last delta round completed; a resync after an expired delta token starts a day
    /// before it (not at `since`), so it replays little and stays under Graph's 5,000-item cap.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub round_completed_at: Option<OffsetDateTime>,
}

impl FolderState {
    /// A folder that starts being watched at `now`; messages from `look_back` before count as new.
    pub fn starting(folder: &str, now: OffsetDateTime, look_back: time::Duration) -> Self {
        Self {
            folder: folder.to_owned(),
            since: Some(now - look_back),
            ..Self::default()
        }
    }

    /// Where a new delta round (first sync or resync) starts.
    pub fn round_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        let since = self.since.unwrap_or(now);
        match self.round_completed_at {
            Some(done) => (done - time::Duration::days(1)).max(since),
            None => since,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MailboxCounters {
    #[serde(default)]
    pub syncs: u64,
    #[serde(default)]
    pub messages_handed_on: u64,
    #[serde(default)]
    pub resyncs: u64,
    #[serde(default)]
    pub throttled: u64,
    #[serde(default)]
    pub failures: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mailbox {
    pub workspace_id: WorkspaceId,
    pub integration_id: IntegrationId,
    pub mailbox_id: MailboxId,
    /// The mailbox's SMTP address / UPN, used in Graph paths (`/users/{address}`).
    pub address: String,
    pub kind: MailboxKind,
    pub status: MailboxStatus,
    #[serde(default)]
    pub status_reason: Option<StatusReason>,
    /// Watched folders keyed by `FolderState::folder`.
    #[serde(default)]
    pub folders: BTreeMap<String, FolderState>,
    /// Unix seconds of the next scheduled sync.
    pub next_sync_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    /// Unix milliseconds until which `lease_owner` holds the mailbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<i64>,
    #[serde(default)]
    pub counters: MailboxCounters,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_successful_sync_at: Option<OffsetDateTime>,
    /// Unix seconds until which Microsoft asked us to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_until: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Set while rules jobs of this mailbox wait in the parked records (`store::parked`); goes
    /// up with each park.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_seq: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default)]
    pub version: u64,
}

impl Mailbox {
    pub fn new(
        workspace_id: WorkspaceId,
        integration_id: IntegrationId,
        address: impl Into<String>,
        kind: MailboxKind,
        folders: &[&str],
        now: OffsetDateTime,
    ) -> Self {
        Self {
            workspace_id,
            integration_id,
            mailbox_id: MailboxId::generate(),
            address: address.into(),
            kind,
            status: MailboxStatus::Active,
            status_reason: None,
            folders: folders
                .iter()
                .map(|f| {
                    (
                        f.to_string(),
                        FolderState::starting(f, now, time::Duration::ZERO),
                    )
                })
                .collect(),
            next_sync_at: now.unix_timestamp(),
            lease_owner: None,
            lease_until_ms: None,
            counters: MailboxCounters::default(),
            last_sync_at: None,
            last_successful_sync_at: None,
            throttled_until: None,
            last_error: None,
            parked_seq: None,
            created_at: now,
            version: 0,
        }
    }

    pub fn key(&self) -> MailboxKey {
        MailboxKey {
            workspace_id: self.workspace_id.clone(),
            integration_id: self.integration_id.clone(),
            mailbox_id: self.mailbox_id.clone(),
        }
    }
}

/// Everything needed to address one mailbox record; also the sync queue's message body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailboxKey {
    pub workspace_id: WorkspaceId,
    pub integration_id: IntegrationId,
    pub mailbox_id: MailboxId,
}
