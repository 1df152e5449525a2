//! Sync worker: each sync-queue message is a job of one to ten mailboxes. Failed jobs are
//! reported as partial batch failures, so SQS retries only them and one bad job never blocks the
//! others.

mod handler;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use outlook_core::config::Need;
use outlook_core::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    outlook_core::telemetry::init();
    let services = Services::from_env().await?;
    services.config.require(&[Need::RulesQueueUrl])?;
    // The lease owner: unique per sandbox, so a second sandbox on the same mailbox backs off.
    let worker_id = format!("sync-{}", uuid::Uuid::new_v4().simple());
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        handler::handle(&services, &worker_id, event)
    }))
    .await
}
