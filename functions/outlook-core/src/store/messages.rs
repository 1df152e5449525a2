//! Processed-message records: each message id is handed to rule evaluation until it is marked
//! handed on, and evaluated by exactly one worker at a time until it is marked evaluated.
//! Plus the per-message audit record.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Item, Store, StoreError, dynamo_err, from_item, n, now_ms, rfc3339, s, to_item};
use crate::ids::{MailboxId, WorkspaceId};

/// How long processed-message, action and audit records are kept (the table's TTL).
pub const RECORD_TTL_DAYS: i64 = 90;

fn message_pk(mbx: &MailboxId, message_id: &str) -> String {
    format!("MSG#{mbx}#{message_id}")
}

fn ttl(now: OffsetDateTime) -> i64 {
    now.unix_timestamp() + RECORD_TTL_DAYS * 86_400
}

/// Where a message stands in the hand-off from sync to rule evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffState {
    /// First time this id is seen: hand it on.
    New,
    /// Seen before but a crash may have happened before it was handed on: hand it on again
    /// (rule evaluation's claim keeps the second copy from acting twice).
    Pending,
    /// Already handed on: skip.
    HandedOn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationClaim {
    Claimed,
    AlreadyEvaluated,
    /// Another worker holds a live claim; the queue message should come back later.
    HeldByOther,
}

/// What rule evaluation did with one message; shown by the API's audit view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub workspace_id: WorkspaceId,
    pub mailbox_id: MailboxId,
    pub message_id: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    /// Rule set version the message was evaluated against.
    pub rules_version: u64,
    pub matched_rules: Vec<AuditRule>,
    pub actions: Vec<AuditAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRule {
    pub rule_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAction {
    pub action_key: String,
    pub description: String,
    /// `applied`, `already_applied`, `skipped` or `failed`.
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

impl Store {
    /// Records that sync saw `message_id` and says whether it still has to be handed on.
    pub async fn begin_handoff(
        &self,
        ws: &WorkspaceId,
        mbx: &MailboxId,
        message_id: &str,
        now: OffsetDateTime,
    ) -> Result<HandoffState, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(mbx, message_id)))
            .key("sk", s("MSG"))
            .update_expression(
                "SET #state = if_not_exists(#state, :pending), first_seen_at = if_not_exists(first_seen_at, :now), \
                 expires_at = if_not_exists(expires_at, :ttl), workspace_id = :ws",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .expression_attribute_values(":ttl", n(ttl(now)))
            .expression_attribute_values(":ws", s(ws.as_str()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(dynamo_err)?;
        let old_state = out
            .attributes
            .as_ref()
            .and_then(|a| a.get("state"))
            .and_then(|v| v.as_s().ok());
        Ok(match old_state.map(String::as_str) {
            None => HandoffState::New,
            Some("pending") => HandoffState::Pending,
            Some(_) => HandoffState::HandedOn,
        })
    }

    /// Marks messages as handed on (after the rules queue accepted them).
    pub async fn mark_handed_on(
        &self,
        mbx: &MailboxId,
        message_ids: &[String],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        use futures::StreamExt;
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(message_ids)
            .map(|id| async move {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(message_pk(mbx, id)))
                    .key("sk", s("MSG"))
                    .update_expression("SET #state = :handed, handed_on_at = :now")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":handed", s("handed_on"))
                    .expression_attribute_values(":now", s(rfc3339(now)))
                    .send()
                    .await
                    .map_err(dynamo_err)
                    .map(|_| ())
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Claims a message for rule evaluation; a claim older than its lease can be taken over.
    pub async fn claim_evaluation(
        &self,
        mbx: &MailboxId,
        message_id: &str,
        owner: &str,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<EvaluationClaim, StoreError> {
        let now_ms = now_ms(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(mbx, message_id)))
            .key("sk", s("MSG"))
            .update_expression(
                "SET eval_owner = :owner, eval_lease_until_ms = :until, expires_at = if_not_exists(expires_at, :ttl)",
            )
            .condition_expression(
                "attribute_not_exists(evaluated_at) AND (attribute_not_exists(eval_lease_until_ms) \
                 OR eval_lease_until_ms < :now OR eval_owner = :owner)",
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(now_ms + lease.as_millis() as i64))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":ttl", n(ttl(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(EvaluationClaim::Claimed),
            Err(err) => match dynamo_err(err) {
                StoreError::Conflict => {
                    let item = self
                        .get_raw(message_pk(mbx, message_id), "MSG".into())
                        .await?;
                    Ok(match item {
                        Some(item) if item.contains_key("evaluated_at") => {
                            EvaluationClaim::AlreadyEvaluated
                        }
                        _ => EvaluationClaim::HeldByOther,
                    })
                }
                other => Err(other),
            },
        }
    }

    /// Marks a claimed message evaluated; only the claim holder can.
    pub async fn complete_evaluation(
        &self,
        mbx: &MailboxId,
        message_id: &str,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(mbx, message_id)))
            .key("sk", s("MSG"))
            .update_expression("SET evaluated_at = :now REMOVE eval_lease_until_ms")
            .condition_expression("eval_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    /// Gives up an evaluation claim without completing it (the job was parked): the next
    /// delivery of the message may claim it at once.
    pub async fn release_evaluation(
        &self,
        mbx: &MailboxId,
        message_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(mbx, message_id)))
            .key("sk", s("MSG"))
            .update_expression("REMOVE eval_owner, eval_lease_until_ms")
            .condition_expression("eval_owner = :owner AND attribute_not_exists(evaluated_at)")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await
            .map_err(dynamo_err);
        match result {
            // Lost the claim meanwhile (lease ran out): the other holder decides.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(other) => Err(other),
        }
    }

    pub async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let mut item = to_item(record)?;
        item.insert(
            "pk".into(),
            s(format!(
                "AUDIT#{}#{}",
                record.workspace_id, record.mailbox_id
            )),
        );
        item.insert(
            "sk".into(),
            s(format!(
                "{}#{}",
                rfc3339(record.received_at),
                record.message_id
            )),
        );
        item.insert("entity".into(), s("audit"));
        item.insert("expires_at".into(), n(ttl(record.evaluated_at)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    /// The newest audit records of a mailbox, newest first.
    pub async fn list_audit(
        &self,
        ws: &WorkspaceId,
        mbx: &MailboxId,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("AUDIT#{ws}#{mbx}")))
                .scan_index_forward(false)
                .limit((limit - out.len()).min(100) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(dynamo_err)?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Whether sync has recorded this message (for tests and the dry run).
    pub async fn message_state(
        &self,
        mbx: &MailboxId,
        message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let item = self
            .get_raw(message_pk(mbx, message_id), "MSG".into())
            .await?;
        Ok(item.and_then(|i| {
            i.get("state")
                .and_then(|v: &AttributeValue| v.as_s().ok().cloned())
        }))
    }
}
