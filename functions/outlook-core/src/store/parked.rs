//! Parked rules jobs: messages handed on while their integration or mailbox could not be used
//! (a revoked sign-in, expired app credentials, a paused or blocked mailbox). Rule evaluation
//! parks them instead of dropping them; the sync worker sends them to the rules queue again on
//! the first sync that works after the repair, so a reconnect resumes with nothing lost.
//!
//! Records: `PARK#{mailbox}` / message id, holding the job as queued, with a TTL. The mailbox
//! record's `parked_seq` goes up after each park, so an idle mailbox costs nothing extra: only a
//! mailbox with `parked_seq` set is looked at, and the sync worker removes it only if no park
//! happened meanwhile (the same value it read).

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use time::OffsetDateTime;

use super::messages::RECORD_TTL_DAYS;
use super::{Store, StoreError, dynamo_err, mailbox_sk, n, rfc3339, s, ws_pk};
use crate::ids::MailboxId;
use crate::model::MailboxKey;

fn park_pk(mbx: &MailboxId) -> String {
    format!("PARK#{mbx}")
}

/// A parked job: the message id and the rules-queue body as it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedJob {
    pub message_id: String,
    pub body: String,
}

impl Store {
    /// Parks a rules job (idempotent per message) and flags the mailbox.
    pub async fn park_job(
        &self,
        key: &MailboxKey,
        message_id: &str,
        body: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(park_pk(&key.mailbox_id)))
            .item("sk", s(message_id))
            .item("body", s(body))
            .item("reason", s(reason))
            .item("workspace_id", s(key.workspace_id.as_str()))
            .item("parked_at", s(rfc3339(now)))
            .item(
                "expires_at",
                n(now.unix_timestamp() + RECORD_TTL_DAYS * 86_400),
            )
            .send()
            .await
            .map_err(dynamo_err)?;
        // After the record, so a sync that clears the flag has seen every record written
        // before this point. `version` goes up too: a concurrent whole-record save must re-read.
        let flagged = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(&key.workspace_id)))
            .key("sk", s(mailbox_sk(&key.integration_id, &key.mailbox_id)))
            .update_expression("ADD parked_seq :one, version :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(dynamo_err);
        match flagged {
            // The mailbox was removed meanwhile: nothing will resume it; the record expires.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Every parked job of a mailbox (strongly consistent, all pages).
    pub async fn parked_jobs(&self, mbx: &MailboxId) -> Result<Vec<ParkedJob>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(park_pk(mbx)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut jobs = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(dynamo_err)?;
            let text = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            jobs.push(ParkedJob {
                message_id: text("sk"),
                body: text("body"),
            });
        }
        Ok(jobs)
    }

    /// Deletes parked records once their jobs are back on the rules queue.
    pub async fn delete_parked(
        &self,
        mbx: &MailboxId,
        message_ids: &[String],
    ) -> Result<(), StoreError> {
        for chunk in message_ids.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|id| {
                    WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .key("pk", s(park_pk(mbx)))
                                .key("sk", s(id))
                                .build()
                                .expect("key is set"),
                        )
                        .build()
                })
                .collect();
            // BatchWriteItem may leave some undone under load: send those again.
            for _ in 0..10 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(dynamo_err)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
            if !requests.is_empty() {
                return Err(StoreError::Dynamo(
                    "DynamoDB left parked records undeleted after ten tries".into(),
                ));
            }
        }
        Ok(())
    }

    /// Clears the mailbox's park flag if it is still `seen` (no park since it was read) and
    /// `owner` holds the sync lease. Returns whether it was cleared.
    pub async fn clear_parked_flag(
        &self,
        key: &MailboxKey,
        owner: &str,
        seen: u64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ws_pk(&key.workspace_id)))
            .key("sk", s(mailbox_sk(&key.integration_id, &key.mailbox_id)))
            .update_expression("REMOVE parked_seq ADD version :one")
            .condition_expression("parked_seq = :seen AND lease_owner = :owner")
            .expression_attribute_values(":seen", n(seen))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(dynamo_err);
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(other) => Err(other),
        }
    }
}
