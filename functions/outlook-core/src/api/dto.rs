//! What the management API reads and writes (JSON, camelCase), and the status a person sees for
//! every integration and mailbox. Status texts always come from `health::Reason`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::health::{Reason, StatusReason};
use crate::model::{
    AccountType, Integration, IntegrationStatus, Mailbox, MailboxKind, MailboxStatus,
};
use crate::store::{AuditRecord, StoredRuleSet};

// ----- requests ------------------------------------------------------------------------------

/// `POST /api/integrations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    tag = "accountType",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum StartConnectionRequest {
    Organization {
        mailboxes: Vec<String>,
        #[serde(default)]
        tenant: Option<String>,
    },
    Personal {
        #[serde(default)]
        shared_mailboxes: Vec<String>,
        #[serde(default)]
        login_hint: Option<String>,
    },
}

/// `POST /api/integrations/{id}/reconnect` (every field optional: the integration's own
/// mailboxes and account are reused).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconnectRequest {
    /// Organization-wide: the mailboxes to sync from now on.
    #[serde(default)]
    pub mailboxes: Vec<String>,
    /// Personal: the shared mailboxes to sync from now on.
    #[serde(default)]
    pub shared_mailboxes: Vec<String>,
    #[serde(default)]
    pub login_hint: Option<String>,
}

/// `PATCH /api/integrations/{id}/mailboxes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMailboxesRequest {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `PUT /api/integrations/{id}/mailboxes/{mailboxId}/folders`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetFoldersRequest {
    pub folders: Vec<String>,
}

/// `PUT /api/integrations/{id}/rules/{scope}`: the version the client read (0 when the scope
/// had no rule set) and the complete new list of rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplaceRulesRequest {
    pub expected_version: u64,
    pub rules: serde_json::Value,
}

/// `POST /api/rules/validate`: a list of rules (a stored document's `version` is accepted too).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateRulesRequest {
    #[serde(default)]
    pub version: Option<u64>,
    pub rules: serde_json::Value,
}

/// `POST .../dry-run`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DryRunRequest {
    /// Rules to try; absent: the mailbox's stored rules (its own, then the integration-wide).
    #[serde(default)]
    pub rules: Option<serde_json::Value>,
    /// The folder whose newest messages are evaluated (default `inbox`).
    #[serde(default)]
    pub folder: Option<String>,
    /// How many of the newest messages (1 to 50, default 25).
    #[serde(default)]
    pub limit: Option<u32>,
}

// ----- responses -----------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StartedFlowView {
    /// Open this in the browser of the person who signs in (or the administrator).
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Why something is not (fully) syncing, and what to do: always `health::Reason`'s texts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReasonView {
    pub code: Reason,
    pub message: &'static str,
    pub fix: &'static str,
}

impl From<Reason> for ReasonView {
    fn from(reason: Reason) -> Self {
        Self {
            code: reason,
            message: reason.message(),
            fix: reason.fix(),
        }
    }
}

impl From<&StatusReason> for ReasonView {
    fn from(reason: &StatusReason) -> Self {
        reason.code.into()
    }
}

/// The integration's state as a person reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationState {
    Connected,
    NeedsReconnect,
    AdminActionRequired,
    Disconnected,
}

impl IntegrationState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::NeedsReconnect => "Needs reconnect",
            Self::AdminActionRequired => "Administrator action required",
            Self::Disconnected => "Disconnected",
        }
    }
}

/// A mailbox's state as a person reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxState {
    /// Synced on schedule.
    Syncing,
    /// Microsoft asked us to wait; sync resumes at `retryAt`.
    Throttled,
    /// The last sync failed for a passing reason; it is retried automatically.
    Retrying,
    /// Not reachable (outside the admin's scope, no grant, no mailbox): see the reason.
    Blocked,
    /// Not synced while the integration is not connected.
    Paused,
}

impl MailboxState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Syncing => "Syncing",
            Self::Throttled => "Throttled",
            Self::Retrying => "Retrying",
            Self::Blocked => "Blocked",
            Self::Paused => "Paused",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FolderView {
    /// The folder as configured: a well-known name (`inbox`) or a Graph folder id.
    pub folder: String,
    /// Mail received before this is history; only newer mail is handed to rules.
    #[serde(with = "time::serde::rfc3339::option")]
    pub watching_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_round_completed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CountersView {
    pub syncs: u64,
    pub messages_handed_on: u64,
    pub resyncs: u64,
    pub throttled: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MailboxView {
    pub id: String,
    pub integration_id: String,
    pub address: String,
    pub kind: MailboxKind,
    pub state: MailboxState,
    pub state_label: &'static str,
    pub reason: Option<ReasonView>,
    /// When a throttled mailbox is synced again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
    pub folders: Vec<FolderView>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_successful_sync_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_sync_at: Option<OffsetDateTime>,
    pub counters: CountersView,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationView {
    pub id: String,
    pub account_type: AccountType,
    pub tenant_id: String,
    pub display_name: Option<String>,
    pub user_principal_name: Option<String>,
    pub state: IntegrationState,
    pub state_label: &'static str,
    pub reason: Option<ReasonView>,
    /// The newest successful sync of any of its mailboxes.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_successful_sync_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub mailboxes: Vec<MailboxView>,
}

fn integration_state(status: IntegrationStatus) -> IntegrationState {
    match status {
        IntegrationStatus::Connected => IntegrationState::Connected,
        IntegrationStatus::NeedsReconnect => IntegrationState::NeedsReconnect,
        IntegrationStatus::AdminActionRequired => IntegrationState::AdminActionRequired,
        IntegrationStatus::Disconnected => IntegrationState::Disconnected,
    }
}

fn at(unix: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).ok()
}

impl MailboxView {
    pub fn new(mailbox: &Mailbox, integration: &Integration, now: OffsetDateTime) -> Self {
        let own_reason = mailbox.status_reason.as_ref().map(ReasonView::from);
        let throttled_until = mailbox
            .throttled_until
            .filter(|until| *until > now.unix_timestamp());
        let integration_stopped = integration.status != IntegrationStatus::Connected;
        let (state, reason, retry_at) = match mailbox.status {
            MailboxStatus::Blocked => (MailboxState::Blocked, own_reason, None),
            MailboxStatus::Paused => (
                MailboxState::Paused,
                own_reason.or_else(|| integration.status_reason.as_ref().map(ReasonView::from)),
                None,
            ),
            MailboxStatus::Active if integration_stopped => (
                MailboxState::Paused,
                integration
                    .status_reason
                    .as_ref()
                    .map(ReasonView::from)
                    .or(own_reason),
                None,
            ),
            MailboxStatus::Active => match throttled_until {
                Some(until) => (
                    MailboxState::Throttled,
                    Some(Reason::Throttled.into()),
                    at(until),
                ),
                None => match own_reason {
                    Some(reason) => (MailboxState::Retrying, Some(reason), None),
                    None => (MailboxState::Syncing, None, None),
                },
            },
        };
        let next_sync_at = (mailbox.status == MailboxStatus::Active && !integration_stopped)
            .then(|| {
                at(throttled_until
                    .unwrap_or(mailbox.next_sync_at)
                    .max(mailbox.next_sync_at))
            })
            .flatten();
        Self {
            id: mailbox.mailbox_id.to_string(),
            integration_id: mailbox.integration_id.to_string(),
            address: mailbox.address.clone(),
            kind: mailbox.kind,
            state,
            state_label: state.label(),
            reason,
            retry_at,
            folders: mailbox
                .folders
                .values()
                .map(|f| FolderView {
                    folder: f.folder.clone(),
                    watching_since: f.since,
                    last_round_completed_at: f.round_completed_at,
                })
                .collect(),
            last_sync_at: mailbox.last_sync_at,
            last_successful_sync_at: mailbox.last_successful_sync_at,
            next_sync_at,
            counters: CountersView {
                syncs: mailbox.counters.syncs,
                messages_handed_on: mailbox.counters.messages_handed_on,
                resyncs: mailbox.counters.resyncs,
                throttled: mailbox.counters.throttled,
                failures: mailbox.counters.failures,
            },
        }
    }
}

impl IntegrationView {
    /// `mailboxes` may hold other integrations' mailboxes too; only this one's are shown.
    pub fn new(integration: &Integration, mailboxes: &[Mailbox], now: OffsetDateTime) -> Self {
        let mut own: Vec<&Mailbox> = mailboxes
            .iter()
            .filter(|m| m.integration_id == integration.integration_id)
            .collect();
        own.sort_by(|a, b| a.address.cmp(&b.address));
        let last_successful_sync_at = own
            .iter()
            .filter_map(|m| m.last_successful_sync_at)
            .chain(integration.last_successful_sync_at)
            .max();
        let state = integration_state(integration.status);
        Self {
            id: integration.integration_id.to_string(),
            account_type: integration.account_type,
            tenant_id: integration.tenant_id.clone(),
            display_name: integration.display_name.clone(),
            user_principal_name: integration.user_principal_name.clone(),
            state,
            state_label: state.label(),
            reason: integration.status_reason.as_ref().map(ReasonView::from),
            last_successful_sync_at,
            created_at: integration.created_at,
            updated_at: integration.updated_at,
            mailboxes: own
                .into_iter()
                .map(|m| MailboxView::new(m, integration, now))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuleSetView {
    /// `*` (every mailbox of the integration) or a mailbox id.
    pub scope: String,
    /// 0 when the scope has no rule set yet.
    pub version: u64,
    pub rules: serde_json::Value,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    pub updated_by: Option<String>,
}

impl RuleSetView {
    pub fn empty(scope: &str) -> Self {
        Self {
            scope: scope.to_owned(),
            version: 0,
            rules: serde_json::json!([]),
            updated_at: None,
            updated_by: None,
        }
    }

    pub fn from_stored(stored: &StoredRuleSet) -> Self {
        let rules = serde_json::from_str::<serde_json::Value>(&stored.document)
            .ok()
            .and_then(|doc| doc.get("rules").cloned())
            .unwrap_or_else(|| serde_json::json!([]));
        Self {
            scope: stored.scope.clone(),
            version: stored.version,
            rules,
            updated_at: Some(stored.updated_at),
            updated_by: stored.updated_by.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRuleView {
    pub rule_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditActionView {
    pub action_key: String,
    pub description: String,
    /// `applied`, `already_applied`, `skipped` or `failed`.
    pub status: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecordView {
    pub message_id: String,
    pub subject: String,
    pub from: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    pub rules_version: u64,
    pub matched_rules: Vec<AuditRuleView>,
    pub actions: Vec<AuditActionView>,
}

impl From<AuditRecord> for AuditRecordView {
    fn from(record: AuditRecord) -> Self {
        Self {
            message_id: record.message_id,
            subject: record.subject,
            from: record.from,
            received_at: record.received_at,
            evaluated_at: record.evaluated_at,
            rules_version: record.rules_version,
            matched_rules: record
                .matched_rules
                .into_iter()
                .map(|r| AuditRuleView {
                    rule_id: r.rule_id,
                    name: r.name,
                })
                .collect(),
            actions: record
                .actions
                .into_iter()
                .map(|a| AuditActionView {
                    action_key: a.action_key,
                    description: a.description,
                    status: a.status,
                    error: a.error,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{IntegrationId, WorkspaceId};

    fn integration(status: IntegrationStatus, reason: Option<Reason>) -> Integration {
        let now = OffsetDateTime::now_utc();
        Integration {
            workspace_id: WorkspaceId::parse("acme").unwrap(),
            integration_id: IntegrationId::generate(),
            account_type: AccountType::Personal,
            tenant_id: "t".into(),
            status,
            status_reason: reason.map(StatusReason::from),
            user_principal_name: None,
            user_object_id: None,
            display_name: None,
            scopes: Vec::new(),
            credential_generation: 1,
            created_at: now,
            updated_at: now,
            last_successful_sync_at: None,
            version: 1,
        }
    }

    fn mailbox(integration: &Integration) -> Mailbox {
        Mailbox::new(
            integration.workspace_id.clone(),
            integration.integration_id.clone(),
            "a@contoso.com",
            MailboxKind::Own,
            &["inbox"],
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn start_requests_are_tagged_by_account_type() {
        let org: StartConnectionRequest = serde_json::from_str(
            r#"{"accountType":"organization","mailboxes":["a@b.com"],"tenant":"contoso.com"}"#,
        )
        .unwrap();
        assert!(
            matches!(org, StartConnectionRequest::Organization { ref mailboxes, .. } if mailboxes.len() == 1)
        );
        let personal: StartConnectionRequest = serde_json::from_str(
            r#"{"accountType":"personal","sharedMailboxes":["s@b.com"],"loginHint":"a@b.com"}"#,
        )
        .unwrap();
        assert!(
            matches!(personal, StartConnectionRequest::Personal { ref login_hint, .. } if login_hint.is_some())
        );
        assert!(
            serde_json::from_str::<StartConnectionRequest>(
                r#"{"accountType":"personal","bogus":1}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<StartConnectionRequest>(r#"{"accountType":"other"}"#).is_err()
        );
    }

    #[test]
    fn mailbox_states_explain_themselves_with_health_texts() {
        let now = OffsetDateTime::now_utc();
        let connected = integration(IntegrationStatus::Connected, None);
        let mut m = mailbox(&connected);
        assert_eq!(
            MailboxView::new(&m, &connected, now).state,
            MailboxState::Syncing
        );

        m.throttled_until = Some(now.unix_timestamp() + 120);
        let view = MailboxView::new(&m, &connected, now);
        assert_eq!(view.state, MailboxState::Throttled);
        assert_eq!(
            view.reason.as_ref().unwrap().message,
            Reason::Throttled.message()
        );
        assert_eq!(
            view.retry_at.unwrap().unix_timestamp(),
            now.unix_timestamp() + 120
        );
        // A throttle that already ended is not shown.
        m.throttled_until = Some(now.unix_timestamp() - 1);
        assert_eq!(
            MailboxView::new(&m, &connected, now).state,
            MailboxState::Syncing
        );

        m.status = MailboxStatus::Blocked;
        m.status_reason = Some(Reason::MailboxOutsideAdminScope.into());
        let view = MailboxView::new(&m, &connected, now);
        assert_eq!(
            (view.state, view.reason.unwrap().fix),
            (
                MailboxState::Blocked,
                Reason::MailboxOutsideAdminScope.fix()
            )
        );

        let broken = integration(
            IntegrationStatus::NeedsReconnect,
            Some(Reason::PasswordChanged),
        );
        let mut m = mailbox(&broken);
        m.status = MailboxStatus::Paused;
        let view = MailboxView::new(&m, &broken, now);
        assert_eq!(
            (view.state, view.reason.unwrap().code),
            (MailboxState::Paused, Reason::PasswordChanged)
        );
        let iview = IntegrationView::new(&broken, &[m], now);
        assert_eq!(iview.state, IntegrationState::NeedsReconnect);
        assert_eq!(
            iview.reason.unwrap().message,
            Reason::PasswordChanged.message()
        );
        assert_eq!(iview.mailboxes.len(), 1);
    }

    #[test]
    fn last_successful_sync_is_the_newest_of_the_mailboxes() {
        let now = OffsetDateTime::now_utc();
        let connected = integration(IntegrationStatus::Connected, None);
        let mut a = mailbox(&connected);
        let mut b = mailbox(&connected);
        a.last_successful_sync_at = Some(now - time::Duration::minutes(5));
        b.last_successful_sync_at = Some(now - time::Duration::minutes(1));
        let other = integration(IntegrationStatus::Connected, None);
        let mut c = mailbox(&other);
        c.last_successful_sync_at = Some(now);
        let view = IntegrationView::new(&connected, &[a, b, c], now);
        assert_eq!(view.mailboxes.len(), 2);
        assert_eq!(
            view.last_successful_sync_at,
            Some(now - time::Duration::minutes(1))
        );
    }
}
