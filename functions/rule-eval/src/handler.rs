use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use outlook_core::rules_exec::{JobOutcome, RuleExecutor};
use outlook_core::sync::worker::RulesJob;

/// One SQS batch: jobs are grouped by mailbox (so their Graph requests can share `$batch`
/// requests), mailboxes run concurrently, and only the jobs left for retry are reported as
/// batch item failures.
pub(crate) async fn handle(
    executor: &RuleExecutor<'_>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut jobs = Vec::new();
    let mut ids = Vec::new();
    for record in event.payload.records {
        let message_id = record.message_id.unwrap_or_default();
        match record.body.as_deref().map(serde_json::from_str::<RulesJob>) {
            Some(Ok(job)) => {
                jobs.push(job);
                ids.push(message_id);
            }
            _ => {
                // A malformed job can never succeed; retrying it would only fill the DLQ later.
                tracing::error!(sqs_message = %message_id, "dropping a malformed rules job");
            }
        }
    }
    let outcomes = executor.process_batch(&jobs).await;
    let mut response = SqsBatchResponse::default();
    for ((job, id), outcome) in jobs.iter().zip(ids).zip(outcomes) {
        match outcome {
            JobOutcome::Done(summary) => tracing::info!(
                mailbox = %job.mailbox.mailbox_id,
                message_id = %job.message.id,
                disposition = ?summary.disposition,
                matched = summary.matched_rules.len(),
                actions = summary.actions.len(),
                "rules job done"
            ),
            JobOutcome::Retry(reason) => {
                tracing::warn!(mailbox = %job.mailbox.mailbox_id, message_id = %job.message.id, %reason, "rules job left for retry");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    Ok(response)
}
