//! Lambda's SQS event source mapping, locally: receive a batch from a queue, invoke the function
//! with it as an SQS event, and delete what succeeded. With `ReportBatchItemFailures` the
//! function's `batchItemFailures` stay on the queue; a function error (or an invalid failure
//! report) leaves the whole batch. What stays becomes visible again after the queue's visibility
//! timeout, or at once with [`SqsEventSource::retry_now`]; the queue's redrive policy moves it to
//! the dead-letter queue after `maxReceiveCount` receives, as in AWS.
//!
//! Polling is explicit (`poll_once`, `drain`) so tests decide when work happens.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, anyhow};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Map, Value, json};

use crate::lambda::{FunctionHarness, InvokeError};
use crate::provision::Resources;
use crate::stack::DEFAULT_REGION;

/// One queue feeding one function.
#[derive(Debug, Clone)]
pub struct SqsEventSource {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    batch_size: u32,
    report_batch_item_failures: bool,
}

/// What one poll did.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Message ids in the event, in order.
    pub message_ids: Vec<String>,
    /// Ids left on the queue: reported failures, or the whole batch on a function error.
    pub failed: Vec<String>,
    /// The function's error, if the invocation failed.
    pub error: Option<InvokeError>,
    /// What the function returned.
    pub response: Option<Value>,
    receipts: HashMap<String, String>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.message_ids.is_empty()
    }
}

impl SqsEventSource {
    /// The event source the template declares for function `binary` (its queue, batch size
    /// and response type), on `resources`.
    pub fn for_function(
        sdk_config: &SdkConfig,
        resources: &Resources,
        binary: &str,
    ) -> anyhow::Result<SqsEventSource> {
        let function = resources
            .template()
            .function_by_binary(binary)
            .ok_or_else(|| anyhow!("no function with binary `{binary}` in the template"))?;
        let source = function
            .sqs_sources
            .first()
            .ok_or_else(|| anyhow!("{binary} has no SQS event in the template"))?;
        let url = resources
            .queue_urls
            .get(&source.queue)
            .ok_or_else(|| anyhow!("queue {} not provisioned", source.queue))?;
        Ok(SqsEventSource::new(
            sdk_config,
            url,
            &resources.queue_arns[&source.queue],
            source.batch_size,
            source.report_batch_item_failures,
        ))
    }

    pub fn new(
        sdk_config: &SdkConfig,
        queue_url: &str,
        queue_arn: &str,
        batch_size: u32,
        report_batch_item_failures: bool,
    ) -> SqsEventSource {
        SqsEventSource {
            sqs: aws_sdk_sqs::Client::new(sdk_config),
            queue_url: queue_url.to_owned(),
            queue_arn: queue_arn.to_owned(),
            batch_size: batch_size.clamp(1, 10),
            report_batch_item_failures,
        }
    }

    /// Receives up to one batch (without waiting), invokes `function` with it and deletes the
    /// messages that succeeded. An empty [`Batch`] means the queue had nothing visible.
    ///
    /// A function without a running process (killed, not restarted yet) fails the batch at once
    /// ([`InvokeError::Crashed`], see [`FunctionHarness::invoke_if_running`]): a poll that races
    /// a kill ends before the caller restarts the function.
    pub async fn poll_once(&self, function: &FunctionHarness) -> anyhow::Result<Batch> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .wait_time_seconds(0)
            .send()
            .await
            .context("receiving from the queue")?;
        let messages = received.messages.unwrap_or_default();
        let mut batch = Batch::default();
        if messages.is_empty() {
            return Ok(batch);
        }
        let mut records = Vec::with_capacity(messages.len());
        for message in &messages {
            let id = message.message_id().unwrap_or_default().to_owned();
            batch.receipts.insert(
                id.clone(),
                message.receipt_handle().unwrap_or_default().to_owned(),
            );
            batch.message_ids.push(id.clone());
            let attributes: Map<String, Value> = message
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                .collect();
            let message_attributes: Map<String, Value> = message
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let value = json!({
                        "stringValue": v.string_value(),
                        "binaryValue": v.binary_value().map(|b| base64_encode(b.as_ref())),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": v.data_type(),
                    });
                    (k.clone(), value)
                })
                .collect();
            records.push(json!({
                "messageId": id,
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": message.md5_of_body(),
                "md5OfMessageAttributes": message.md5_of_message_attributes(),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn,
                "awsRegion": DEFAULT_REGION,
            }));
        }

        let event = json!({ "Records": records });
        let succeeded: Vec<String> = match function.invoke_if_running(&event).await {
            Err(error) => {
                batch.failed = batch.message_ids.clone();
                batch.error = Some(error);
                vec![]
            }
            Ok(response) => {
                let failed = if self.report_batch_item_failures {
                    reported_failures(&response, &batch.message_ids)
                } else {
                    Some(BTreeSet::new())
                };
                batch.response = Some(response);
                match failed {
                    // An invalid report fails the whole batch, as Lambda does.
                    None => {
                        batch.failed = batch.message_ids.clone();
                        vec![]
                    }
                    Some(failed) => {
                        batch.failed = batch
                            .message_ids
                            .iter()
                            .filter(|id| failed.contains(*id))
                            .cloned()
                            .collect();
                        batch
                            .message_ids
                            .iter()
                            .filter(|id| !failed.contains(*id))
                            .cloned()
                            .collect()
                    }
                }
            }
        };
        if !succeeded.is_empty() {
            let entries = succeeded
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(&batch.receipts[id])
                        .build()
                        .map_err(anyhow::Error::from)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("deleting processed messages")?;
        }
        Ok(batch)
    }

    /// Polls until the queue has nothing visible (or `max_batches` were polled); returns the
    /// non-empty batches.
    pub async fn drain(
        &self,
        function: &FunctionHarness,
        max_batches: usize,
    ) -> anyhow::Result<Vec<Batch>> {
        let mut batches = Vec::new();
        for _ in 0..max_batches {
            let batch = self.poll_once(function).await?;
            if batch.is_empty() {
                break;
            }
            batches.push(batch);
        }
        Ok(batches)
    }

    /// Makes a batch's failed messages visible again now instead of after the visibility
    /// timeout (each redelivery still counts towards the redrive policy's `maxReceiveCount`).
    pub async fn retry_now(&self, batch: &Batch) -> anyhow::Result<()> {
        for id in &batch.failed {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(&batch.receipts[id])
                .visibility_timeout(0)
                .send()
                .await
                .with_context(|| format!("making message {id} visible"))?;
        }
        Ok(())
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

/// The ids in `{"batchItemFailures": [{"itemIdentifier": id}]}`, or `None` if the report is
/// invalid (an identifier that is not in the batch, or not a string).
fn reported_failures(response: &Value, batch: &[String]) -> Option<BTreeSet<String>> {
    let Some(items) = response.get("batchItemFailures") else {
        return Some(BTreeSet::new());
    };
    let items = match items {
        Value::Null => return Some(BTreeSet::new()),
        Value::Array(items) => items,
        _ => return None,
    };
    let mut failed = BTreeSet::new();
    for item in items {
        let id = item.get("itemIdentifier")?.as_str()?;
        if !batch.iter().any(|b| b == id) {
            return None;
        }
        failed.insert(id.to_owned());
    }
    Some(failed)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::reported_failures;
    use serde_json::json;

    #[test]
    fn failure_reports_are_read_like_lambda_does() {
        let batch = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(reported_failures(&json!({}), &batch).unwrap().len(), 0);
        assert_eq!(
            reported_failures(&json!({"batchItemFailures": []}), &batch)
                .unwrap()
                .len(),
            0
        );
        let one = reported_failures(
            &json!({"batchItemFailures": [{"itemIdentifier": "b"}]}),
            &batch,
        )
        .unwrap();
        assert!(one.contains("b") && one.len() == 1);
        assert!(
            reported_failures(
                &json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]}),
                &batch
            )
            .is_none()
        );
        assert!(
            reported_failures(
                &json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
                &batch
            )
            .is_none()
        );
        assert!(reported_failures(&json!({"batchItemFailures": [{}]}), &batch).is_none());
    }
}
