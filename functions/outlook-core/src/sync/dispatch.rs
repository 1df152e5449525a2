//! The scheduled dispatcher: finds the mailboxes that are due (a query on the sparse due index,
//! never a scan) and sends them to the sync queue, ten per `SendMessageBatch`.

use futures::StreamExt;
use serde::Serialize;
use thiserror::Error;
use time::OffsetDateTime;

use crate::model::MailboxKey;
use crate::store::{Store, StoreError};

/// SQS allows at most ten entries per `SendMessageBatch`.
const SQS_BATCH: usize = 10;
/// Batches in flight at once: enough to enqueue 10,000 mailboxes in a few seconds.
const SQS_CONCURRENCY: usize = 16;

/// Mailboxes per scheduled sync job: 10,000 due mailboxes become 1,000 jobs and 100
/// `SendMessageBatch` requests instead of 1,000.
pub const MAILBOXES_PER_JOB: usize = 10;

/// The body of a sync-queue message: one or a few mailboxes.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SyncJob {
    pub mailbox: MailboxKey,
    /// Further mailboxes of the same job (the dispatcher packs up to `MAILBOXES_PER_JOB`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<MailboxKey>,
    /// Sync even if the mailbox is not due yet ("sync now").
    #[serde(default)]
    pub force: bool,
}

impl SyncJob {
    pub fn single(mailbox: MailboxKey, force: bool) -> Self {
        Self {
            mailbox,
            more: Vec::new(),
            force,
        }
    }

    /// Every mailbox of the job.
    pub fn mailboxes(&self) -> impl Iterator<Item = &MailboxKey> {
        std::iter::once(&self.mailbox).chain(&self.more)
    }
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct DispatchReport {
    pub due: usize,
    pub enqueued: usize,
    pub failed: usize,
    pub sqs_requests: usize,
}

#[derive(Debug, Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{failed} of {due} mailboxes could not be enqueued")]
    Partial { due: usize, failed: usize },
}

/// Sends every due mailbox to the sync queue. Fails (so the scheduler's retry policy applies)
/// only if some could not be enqueued; those are due again on the next tick anyway.
pub async fn dispatch_due(
    store: &Store,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    now: OffsetDateTime,
) -> Result<DispatchReport, DispatchError> {
    let due = store.due_mailboxes(now).await?;
    let jobs: Vec<SyncJob> = due
        .chunks(MAILBOXES_PER_JOB)
        .map(|chunk| SyncJob {
            mailbox: chunk[0].clone(),
            more: chunk[1..].to_vec(),
            force: false,
        })
        .collect();
    let report = enqueue(sqs, queue_url, &jobs).await;
    tracing::info!(
        due = report.due,
        enqueued = report.enqueued,
        failed = report.failed,
        "dispatched due mailboxes"
    );
    if report.failed > 0 {
        return Err(DispatchError::Partial {
            due: report.due,
            failed: report.failed,
        });
    }
    Ok(report)
}

/// Sends sync jobs in batches of ten; the report counts mailboxes (a job can carry several).
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    jobs: &[SyncJob],
) -> DispatchReport {
    let size = |job: &SyncJob| job.mailboxes().count();
    let outcomes: Vec<(usize, usize)> = futures::stream::iter(jobs.chunks(SQS_BATCH))
        .map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(serde_json::to_string(job).expect("sync jobs serialize"))
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            match sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let failed: usize = out
                        .failed
                        .iter()
                        .filter_map(|f| f.id.parse::<usize>().ok())
                        .filter_map(|i| chunk.get(i))
                        .map(size)
                        .sum();
                    (chunk.iter().map(size).sum::<usize>() - failed, failed)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "SendMessageBatch failed");
                    (0, chunk.iter().map(size).sum())
                }
            }
        })
        .buffer_unordered(SQS_CONCURRENCY)
        .collect()
        .await;
    DispatchReport {
        due: jobs.iter().map(size).sum(),
        enqueued: outcomes.iter().map(|(ok, _)| ok).sum(),
        failed: outcomes.iter().map(|(_, failed)| failed).sum(),
        sqs_requests: outcomes.len(),
    }
}
