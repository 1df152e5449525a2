use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use outlook_core::services::Services;
use outlook_core::sync::dispatch::SyncJob;
use outlook_core::sync::worker::{SyncError, SyncWorker};

/// Mailboxes synced at once per invocation; each mailbox is itself sequential, so Graph sees at
/// most one request per mailbox from here, well within Outlook's four.
const CONCURRENCY: usize = 4;

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
    let failures: Vec<Option<BatchItemFailure>> = futures::stream::iter(event.payload.records)
        .map(|record| async move {
            let message_id = record.message_id.clone().unwrap_or_default();
            let job: SyncJob = match record.body.as_deref().map(serde_json::from_str) {
                Some(Ok(job)) => job,
                _ => {
                    // A malformed job can never succeed; retrying it would only fill the DLQ later.
                    tracing::error!(sqs_message = %message_id, "dropping a malformed sync job");
                    return None;
                }
            };
            // A job carries one or a few mailboxes. If one fails, the whole job comes back;
            // its mailboxes that were synced are then not due yet and are skipped cheaply.
            let mut failed = false;
            for mailbox in job.mailboxes() {
                match worker.sync_mailbox(mailbox, job.force, time::OffsetDateTime::now_utc()).await {
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
                    }
                    Err(err) => {
                        if matches!(err, SyncError::Throttled(_)) {
                            tracing::warn!(mailbox = %mailbox.mailbox_id, error = %err, "sync deferred");
                        } else {
                            tracing::error!(mailbox = %mailbox.mailbox_id, error = %err, "sync failed; will retry");
                        }
                        failed = true;
                    }
                }
            }
            failed.then(|| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                failure
            })
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures.into_iter().flatten().collect();
    Ok(response)
}
