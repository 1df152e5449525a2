use std::collections::BTreeSet;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use outlook_core::services::Services;
use outlook_core::sync::dispatch::SyncJob;
use outlook_core::sync::worker::{SyncError, SyncWorker};

/// Mailboxes synced at once per invocation (across the batch's jobs, up to 5 x 10). Each
/// mailbox is itself sequential, so Graph sees at most one request per mailbox from here, well
/// within Outlook's four; syncing a job's ten mailboxes side by side makes an invocation as long
/// as its slowest mailbox, not the sum of all ten (Lambda bills the duration).
const CONCURRENCY: usize = 16;

pub(crate) async fn handle(
    services: &Services,
    worker_id: &str,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let worker = SyncWorker {
        store: &services.store,
        graph: &services.graph,
        tokens: &services.tokens,
        sqs: &services.sqs,
        rules_queue_url: services
            .config
            .rules_queue_url
            .as_deref()
            .unwrap_or_default(),
        worker_id,
        lease: services.config.sync_lease,
        interval: services.config.sync_interval,
    };
    let worker = &worker;
    let mut jobs: Vec<(String, SyncJob)> = Vec::new();
    for record in event.payload.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        match record.body.as_deref().map(serde_json::from_str::<SyncJob>) {
            Some(Ok(job)) => jobs.push((message_id, job)),
            // A malformed job can never succeed; retrying it would only fill the DLQ later.
            _ => tracing::error!(sqs_message = %message_id, "dropping a malformed sync job"),
        }
    }
    let attempts = jobs.iter().flat_map(|(message_id, job)| {
        job.mailboxes()
            .map(move |mailbox| (message_id.as_str(), mailbox, job.force))
    });
    let failed: BTreeSet<&str> = futures::stream::iter(attempts)
        .map(|(message_id, mailbox, force)| async move {
            let now = time::OffsetDateTime::now_utc();
            match worker.sync_mailbox(mailbox, force, now).await {
                Ok(report) => {
                    tracing::info!(
                        mailbox = %mailbox.mailbox_id,
                        skipped = report.skipped,
                        pages = report.pages,
                        seen = report.messages_seen,
                        handed_on = report.handed_on,
                        resyncs = report.resyncs,
                        graph_requests = report.graph_requests,
                        status_reason = report.status_reason.map(|r| r.code()),
                        "mailbox synced"
                    );
                    None
                }
                Err(err) => {
                    if matches!(err, SyncError::Throttled(_)) {
                        tracing::warn!(mailbox = %mailbox.mailbox_id, error = %err, "sync deferred");
                    } else {
                        tracing::error!(mailbox = %mailbox.mailbox_id, error = %err, "sync failed; will retry");
                    }
                    // The whole job comes back; its mailboxes that did sync are not due again
                    // yet, so the retry skips them (one conditional write each).
                    Some(message_id)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_owned();
            failure
        })
        .collect();
    Ok(response)
}
