//! The DynamoDB store: one table (defined in `infra/template.yaml`), keyed by `pk`/`sk`.
//!
//! | record            | pk                         | sk                          | notes                          |
//! |-------------------|----------------------------|-----------------------------|--------------------------------|
//! | integration       | `WS#{ws}`                  | `INT#{int}`                 | versioned                      |
//! | mailbox           | `WS#{ws}`                  | `MBX#{int}#{mbx}`           | versioned, lease, due-index    |
//! | rule set          | `WS#{ws}`                  | `RULES#{int}#{scope}`       | versioned document             |
//! | OAuth state       | `STATE#{sha256(state)}`    | `STATE`                     | single use, TTL                |
//! | processed message | `MSG#{mbx}#{message id}`   | `MSG`                       | hand-off / evaluation, TTL     |
//! | action claim      | `ACT#{mbx}#{message id}`   | `{action key}`              | exactly-once actions, TTL      |
//! | audit             | `AUDIT#{ws}#{mbx}`         | `{received at}#{message id}`| TTL                            |
//!
//! Every workspace-owned key starts with the workspace or with a mailbox id that the API only
//! reaches through its workspace, so one workspace can never address another's records.
//! Mailboxes that are due for sync carry `gsi1pk = DUE#{shard}` / `gsi1sk = {next sync}#{mbx}`
//! (a sparse index: paused or blocked mailboxes leave it), so the dispatcher queries, never scans.

mod actions;
mod messages;
mod parked;
mod rulesets;
mod states;

pub use actions::{ActionClaim, ActionRecord, ActionState};
pub use messages::{AuditAction, AuditRecord, AuditRule, EvaluationClaim, HandoffState};
pub use parked::ParkedJob;
pub use rulesets::{ALL_MAILBOXES, StoredRuleSet};
pub use states::{ConsumeError, OAuthState, StateError, new_state_value, state_key};

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use time::OffsetDateTime;

use crate::ids::{IntegrationId, MailboxId, WorkspaceId};
use crate::model::{Integration, Mailbox, MailboxCounters, MailboxKey, MailboxStatus};

pub type Item = HashMap<String, AttributeValue>;

/// Name of the sparse global secondary index of due mailboxes.
pub const DUE_INDEX: &str = "due-index";
/// Due mailboxes are spread over this many index partitions.
pub const DUE_SHARDS: u32 = 4;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("record not found")]
    NotFound,
    /// A conditional write lost a race (version changed, lease taken, already exists).
    #[error("the record changed concurrently")]
    Conflict,
    #[error("DynamoDB request failed: {0}")]
    Dynamo(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored record is malformed: {0}")]
    Malformed(#[from] serde_dynamo::Error),
}

fn dynamo_err<E>(err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code() == Some("ConditionalCheckFailedException") {
        StoreError::Conflict
    } else {
        StoreError::Dynamo(Box::new(err))
    }
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn now_ms(now: OffsetDateTime) -> i64 {
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

fn ws_pk(ws: &WorkspaceId) -> String {
    format!("WS#{ws}")
}

fn integration_sk(int: &IntegrationId) -> String {
    format!("INT#{int}")
}

fn mailbox_sk(int: &IntegrationId, mbx: &MailboxId) -> String {
    format!("MBX#{int}#{mbx}")
}

fn due_shard(mbx: &MailboxId) -> u32 {
    // FNV-1a: stable across processes and releases, unlike std's randomized hasher.
    let hash = mbx.as_str().bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    });
    hash % DUE_SHARDS
}

fn due_pk(shard: u32) -> String {
    format!("DUE#{shard}")
}

fn due_sk(next_sync_at: i64, mbx: &MailboxId) -> String {
    format!("{next_sync_at:012}#{mbx}")
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    Ok(serde_dynamo::to_item(value)?)
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    Ok(serde_dynamo::from_item(item)?)
}

/// The store over one DynamoDB table. Cheap to clone (the SDK client is an `Arc`).
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    // ----- integrations -----

    /// Creates a new integration record; fails with `Conflict` if the id is taken.
    pub async fn create_integration(&self, integration: &Integration) -> Result<(), StoreError> {
        let mut item = to_item(integration)?;
        item.insert("pk".into(), s(ws_pk(&integration.workspace_id)));
        item.insert("sk".into(), s(integration_sk(&integration.integration_id)));
        item.insert("entity".into(), s("integration"));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    pub async fn get_integration(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
    ) -> Result<Option<Integration>, StoreError> {
        self.get(ws_pk(ws), integration_sk(int)).await
    }

    /// Replaces the integration if nobody wrote it since it was read (`version` unchanged);
    /// returns it with the new version.
    pub async fn save_integration(
        &self,
        integration: &Integration,
    ) -> Result<Integration, StoreError> {
        let mut next = integration.clone();
        next.version = integration.version + 1;
        let mut item = to_item(&next)?;
        item.insert("pk".into(), s(ws_pk(&next.workspace_id)));
        item.insert("sk".into(), s(integration_sk(&next.integration_id)));
        item.insert("entity".into(), s("integration"));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk) AND version = :v")
            .expression_attribute_values(":v", n(integration.version))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(next)
    }

    pub async fn list_integrations(
        &self,
        ws: &WorkspaceId,
    ) -> Result<Vec<Integration>, StoreError> {
        self.query_prefix(ws_pk(ws), "INT#".into()).await
    }

    pub async fn delete_integration(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
    ) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(ws)))
            .key("sk", s(integration_sk(int)))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    // ----- mailboxes -----

    fn mailbox_item(mailbox: &Mailbox) -> Result<Item, StoreError> {
        let mut item = to_item(mailbox)?;
        item.insert("pk".into(), s(ws_pk(&mailbox.workspace_id)));
        item.insert(
            "sk".into(),
            s(mailbox_sk(&mailbox.integration_id, &mailbox.mailbox_id)),
        );
        item.insert("entity".into(), s("mailbox"));
        if mailbox.status == MailboxStatus::Active {
            item.insert("gsi1pk".into(), s(due_pk(due_shard(&mailbox.mailbox_id))));
            item.insert(
                "gsi1sk".into(),
                s(due_sk(mailbox.next_sync_at, &mailbox.mailbox_id)),
            );
        }
        Ok(item)
    }

    /// Creates a new mailbox record; fails with `Conflict` if it exists.
    pub async fn create_mailbox(&self, mailbox: &Mailbox) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::mailbox_item(mailbox)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    pub async fn get_mailbox(&self, key: &MailboxKey) -> Result<Option<Mailbox>, StoreError> {
        self.get(
            ws_pk(&key.workspace_id),
            mailbox_sk(&key.integration_id, &key.mailbox_id),
        )
        .await
    }

    /// Replaces the mailbox if its `version` is unchanged since it was read. Keeps the due-index
    /// entry in step with the status. Returns the mailbox with its new version.
    pub async fn save_mailbox(&self, mailbox: &Mailbox) -> Result<Mailbox, StoreError> {
        let mut next = mailbox.clone();
        next.version = mailbox.version + 1;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::mailbox_item(&next)?))
            .condition_expression("attribute_exists(pk) AND version = :v")
            .expression_attribute_values(":v", n(mailbox.version))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(next)
    }

    /// All mailboxes of a workspace, or of one integration of it.
    pub async fn list_mailboxes(
        &self,
        ws: &WorkspaceId,
        int: Option<&IntegrationId>,
    ) -> Result<Vec<Mailbox>, StoreError> {
        let prefix = match int {
            Some(int) => format!("MBX#{int}#"),
            None => "MBX#".into(),
        };
        self.query_prefix(ws_pk(ws), prefix).await
    }

    pub async fn delete_mailbox(&self, key: &MailboxKey) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(&key.workspace_id)))
            .key("sk", s(mailbox_sk(&key.integration_id, &key.mailbox_id)))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    /// Takes the sync lease of an active mailbox. Returns `None` (and writes nothing) when the
    /// mailbox is gone, not active, not due yet (unless `force`), throttled, or leased by
    /// another live worker: a second worker on the same mailbox backs off.
    pub async fn take_lease(
        &self,
        key: &MailboxKey,
        owner: &str,
        now: OffsetDateTime,
        lease: std::time::Duration,
        force: bool,
    ) -> Result<Option<Mailbox>, StoreError> {
        let now_ms = now_ms(now);
        let mut condition = String::from(
            "attribute_exists(pk) AND #status = :active \
             AND (attribute_not_exists(lease_until_ms) OR lease_until_ms < :now_ms OR lease_owner = :owner) \
             AND (attribute_not_exists(throttled_until) OR throttled_until <= :now_s)",
        );
        if !force {
            condition.push_str(" AND next_sync_at <= :now_s");
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(&key.workspace_id)))
            .key("sk", s(mailbox_sk(&key.integration_id, &key.mailbox_id)))
            .update_expression("SET lease_owner = :owner, lease_until_ms = :until ADD version :one")
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":now_s", n(now.unix_timestamp()))
            .expression_attribute_values(":until", n(now_ms + lease.as_millis() as i64))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(from_item(out.attributes.unwrap_or_default())?)),
            Err(err) => match dynamo_err(err) {
                StoreError::Conflict => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Records the sync position of one folder, only while `owner` still holds the lease.
    pub async fn checkpoint_folder(
        &self,
        key: &MailboxKey,
        owner: &str,
        state: &crate::model::FolderState,
        handed_on: u64,
    ) -> Result<(), StoreError> {
        let value = serde_dynamo::to_attribute_value(state)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(&key.workspace_id)))
            .key("sk", s(mailbox_sk(&key.integration_id, &key.mailbox_id)))
            .update_expression(
                "SET folders.#f = :state ADD version :one, counters.messages_handed_on :handed",
            )
            .condition_expression("lease_owner = :owner")
            .expression_attribute_names("#f", &state.folder)
            .expression_attribute_values(":state", value)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":handed", n(handed_on))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    /// Ends a sync: records the folders whose delta round completed (their last checkpoint,
    /// folded into this write), releases the lease, schedules the next sync and adds the
    /// counters. Sets `gsi1sk` only: a mailbox paused or blocked meanwhile has no `gsi1pk`, so it stays
    /// out of the due index.
    pub async fn release_lease(
        &self,
        key: &MailboxKey,
        owner: &str,
        outcome: &SyncOutcome,
    ) -> Result<(), StoreError> {
        let mut set = vec![
            "next_sync_at = :next",
            "last_sync_at = :now",
            "gsi1sk = :gsi1sk",
            "last_error = :err",
        ];
        let mut remove = vec!["lease_owner", "lease_until_ms"];
        let mut values: Vec<(&str, AttributeValue)> = vec![
            (":next", n(outcome.next_sync_at)),
            (":now", s(rfc3339(outcome.finished_at))),
            (":gsi1sk", s(due_sk(outcome.next_sync_at, &key.mailbox_id))),
            (
                ":err",
                outcome
                    .last_error
                    .clone()
                    .map(s)
                    .unwrap_or(AttributeValue::Null(true)),
            ),
            (":owner", s(owner)),
            (":one", n(1)),
            (":resyncs", n(outcome.counters.resyncs)),
            (":throttled", n(outcome.counters.throttled)),
            (":failures", n(outcome.counters.failures)),
            (":handed", n(outcome.counters.messages_handed_on)),
        ];
        let mut names: Vec<(String, String)> = Vec::new();
        let mut folder_values: Vec<(String, AttributeValue)> = Vec::new();
        for (i, state) in outcome.completed_folders.iter().enumerate() {
            names.push((format!("#f{i}"), state.folder.clone()));
            folder_values.push((format!(":f{i}"), serde_dynamo::to_attribute_value(state)?));
        }
        let folder_sets: Vec<String> = (0..outcome.completed_folders.len())
            .map(|i| format!("folders.#f{i} = :f{i}"))
            .collect();
        set.extend(folder_sets.iter().map(String::as_str));
        if outcome.success {
            set.push("last_successful_sync_at = :now");
        }
        match outcome.throttled_until {
            Some(until) => {
                set.push("throttled_until = :tu");
                values.push((":tu", n(until)));
            }
            None => remove.push("throttled_until"),
        }
        let update = format!(
            "SET {} REMOVE {} ADD version :one, counters.syncs :one, counters.resyncs :resyncs, \
             counters.throttled :throttled, counters.failures :failures, \
             counters.messages_handed_on :handed",
            set.join(", "),
            remove.join(", ")
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(&key.workspace_id)))
            .key("sk", s(mailbox_sk(&key.integration_id, &key.mailbox_id)))
            .update_expression(update)
            .condition_expression("lease_owner = :owner");
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        for (name, value) in folder_values {
            request = request.expression_attribute_values(name, value);
        }
        for (placeholder, folder) in names {
            request = request.expression_attribute_names(placeholder, folder);
        }
        request.send().await.map_err(dynamo_err)?;
        Ok(())
    }

    /// Mailboxes due at `now`, across all shards of the due index, in pages.
    pub async fn due_mailboxes(&self, now: OffsetDateTime) -> Result<Vec<MailboxKey>, StoreError> {
        let mut keys = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("gsi1pk = :pk AND gsi1sk <= :upper")
                .expression_attribute_values(":pk", s(due_pk(shard)))
                // `~` sorts after every mailbox id character, so all entries of this second match.
                .expression_attribute_values(":upper", s(format!("{:012}#~", now.unix_timestamp())))
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(dynamo_err)?;
                if let Some(key) = parse_mailbox_key(&item) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// Moves every mailbox of an integration out of (paused) or back into (active) the sync
    /// schedule, leaving blocked mailboxes blocked.
    pub async fn set_integration_mailboxes_paused(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
        paused: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for mut mailbox in self.list_mailboxes(ws, Some(int)).await? {
            loop {
                let target = match (paused, mailbox.status) {
                    (true, MailboxStatus::Active) => MailboxStatus::Paused,
                    (false, MailboxStatus::Paused) => MailboxStatus::Active,
                    _ => break,
                };
                mailbox.status = target;
                if target == MailboxStatus::Active {
                    mailbox.next_sync_at = now.unix_timestamp();
                }
                match self.save_mailbox(&mailbox).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict) => match self.get_mailbox(&mailbox.key()).await? {
                        Some(fresh) => mailbox = fresh,
                        None => break,
                    },
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(())
    }

    // ----- helpers -----

    async fn get<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: String,
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(pk, sk).await?.map(from_item).transpose()
    }

    async fn get_raw(&self, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(out.item)
    }

    async fn query_prefix<T: DeserializeOwned>(
        &self,
        pk: String,
        prefix: String,
    ) -> Result<Vec<T>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(from_item(item.map_err(dynamo_err)?)?);
        }
        Ok(out)
    }
}

/// What a finished sync writes back to the mailbox.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub finished_at: OffsetDateTime,
    pub next_sync_at: i64,
    pub success: bool,
    pub counters: MailboxCounters,
    pub last_error: Option<String>,
    pub throttled_until: Option<i64>,
    /// Folders whose delta round completed in this sync: the final checkpoint of each, saved
    /// with the release (one write fewer per folder per tick).
    pub completed_folders: Vec<crate::model::FolderState>,
}

fn parse_mailbox_key(item: &Item) -> Option<MailboxKey> {
    let pk = item.get("pk")?.as_s().ok()?;
    let sk = item.get("sk")?.as_s().ok()?;
    let ws = pk.strip_prefix("WS#")?;
    let (int, mbx) = sk.strip_prefix("MBX#")?.split_once('#')?;
    Some(MailboxKey {
        workspace_id: WorkspaceId::parse(ws).ok()?,
        integration_id: IntegrationId::parse(int).ok()?,
        mailbox_id: MailboxId::parse(mbx).ok()?,
    })
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_shards_are_stable_and_in_range() {
        let id = MailboxId::parse("mbx_0123456789abcdef").unwrap();
        assert_eq!(due_shard(&id), due_shard(&id.clone()));
        for _ in 0..100 {
            assert!(due_shard(&MailboxId::generate()) < DUE_SHARDS);
        }
    }

    #[test]
    fn due_sort_keys_order_by_time() {
        let a = MailboxId::parse("mbx_zzz").unwrap();
        let b = MailboxId::parse("mbx_aaa").unwrap();
        assert!(due_sk(999, &a) < due_sk(1000, &b));
        assert!(due_sk(1000, &a) < format!("{:012}#~", 1000));
    }

    #[test]
    fn mailbox_keys_parse_back_from_items() {
        let item: Item = HashMap::from([
            ("pk".to_string(), s("WS#acme")),
            ("sk".to_string(), s("MBX#int_1#mbx_2")),
        ]);
        let key = parse_mailbox_key(&item).unwrap();
        assert_eq!(key.workspace_id.as_str(), "acme");
        assert_eq!(key.integration_id.as_str(), "int_1");
        assert_eq!(key.mailbox_id.as_str(), "mbx_2");
    }
}
