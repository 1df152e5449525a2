//! Exactly-once actions: each planned action of a message is claimed with a conditional write
//! before it runs and marked done after, so a retried or duplicated queue message, or a worker
//! killed mid-way, never applies it twice. A forward records its draft id between "decided" and
//! "sent" (see `rules_exec`).

use aws_sdk_dynamodb::types::ReturnValue;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Store, StoreError, dynamo_err, from_item, n, now_ms, rfc3339, s};
use crate::ids::MailboxId;

fn action_pk(mbx: &MailboxId, message_id: &str) -> String {
    format!("ACT#{mbx}#{message_id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Claimed,
    Done,
    /// Failed for good (e.g. the message was deleted); never retried.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub state: ActionState,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub attempts: u64,
    /// Id of the forward draft created for this action, once created.
    #[serde(default)]
    pub draft_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionClaim {
    Claimed(ActionRecord),
    Finished(ActionRecord),
    HeldByOther,
}

impl Store {
    pub async fn claim_action(
        &self,
        mbx: &MailboxId,
        message_id: &str,
        action_key: &str,
        owner: &str,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<ActionClaim, StoreError> {
        let now_ms = now_ms(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(action_pk(mbx, message_id)))
            .key("sk", s(action_key))
            .update_expression(
                "SET #state = if_not_exists(#state, :claimed), #owner = :owner, lease_until_ms = :until, \
                 expires_at = if_not_exists(expires_at, :ttl), updated_at = :now ADD attempts :one",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :claimed AND (lease_until_ms < :now_ms OR #owner = :owner))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(now_ms + lease.as_millis() as i64))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .expression_attribute_values(":ttl", n(now.unix_timestamp() + super::messages::RECORD_TTL_DAYS * 86_400))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(ActionClaim::Claimed(from_item(
                out.attributes.unwrap_or_default(),
            )?)),
            Err(err) => match dynamo_err(err) {
                StoreError::Conflict => match self
                    .get::<ActionRecord>(action_pk(mbx, message_id), action_key.into())
                    .await?
                {
                    Some(record) if record.state != ActionState::Claimed => {
                        Ok(ActionClaim::Finished(record))
                    }
                    _ => Ok(ActionClaim::HeldByOther),
                },
                other => Err(other),
            },
        }
    }

    /// Remembers the forward draft before it is sent, so a crash after this point sends the
    /// same draft instead of creating a second one.
    pub async fn set_action_draft(
        &self,
        mbx: &MailboxId,
        message_id: &str,
        action_key: &str,
        owner: &str,
        draft_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(action_pk(mbx, message_id)))
            .key("sk", s(action_key))
            .update_expression("SET draft_id = :draft")
            .condition_expression("#owner = :owner AND #state = :claimed")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":draft", s(draft_id))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":claimed", s("claimed"))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    pub async fn finish_action(
        &self,
        mbx: &MailboxId,
        message_id: &str,
        action_key: &str,
        owner: &str,
        outcome: Result<(), String>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (state, error) = match outcome {
            Ok(()) => ("done", None),
            Err(e) => ("failed", Some(e)),
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(action_pk(mbx, message_id)))
            .key("sk", s(action_key))
            .update_expression(
                "SET #state = :state, #error = :error, updated_at = :now REMOVE lease_until_ms",
            )
            .condition_expression("#owner = :owner AND #state = :claimed")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(
                ":error",
                error
                    .map(s)
                    .unwrap_or(aws_sdk_dynamodb::types::AttributeValue::Null(true)),
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }
}
