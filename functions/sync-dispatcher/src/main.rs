//! Scheduled every minute by EventBridge Scheduler: enqueue every mailbox that is due.

use lambda_runtime::{LambdaEvent, service_fn};
use outlook_core::config::{Config, Need};
use outlook_core::store::Store;
use outlook_core::sync::dispatch::{DispatchReport, dispatch_due};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    outlook_core::telemetry::init();
    let config = Config::from_env()?;
    config.require(&[Need::SyncQueueUrl])?;
    let aws = outlook_core::clients::aws_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = config.sync_queue_url.clone().unwrap_or_default();

    lambda_runtime::run(service_fn(|_event: LambdaEvent<serde_json::Value>| {
        let (store, sqs, queue_url) = (&store, &sqs, &queue_url);
        async move {
            let report: DispatchReport =
                dispatch_due(store, sqs, queue_url, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
