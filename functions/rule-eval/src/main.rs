//! Rule evaluation: each rules-queue message is one new mail of one mailbox. Its rules are
//! evaluated and their actions applied exactly once (see `outlook_core::rules_exec`); failed
//! messages are reported as partial batch failures, so SQS retries only them.
//!
//! Optional settings besides the shared configuration:
//! - `RULE_EVAL_CLAIM_LEASE_SECS`: lease of evaluation and action claims (default 90; keep it
//!   above the function timeout and below the queue's visibility timeout);
//! - `RULE_EVAL_USE_BATCH`: `false` sends every Graph request on its own instead of combining the
//!   messages of a mailbox in `$batch` requests (default `true`).

mod handler;

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use outlook_core::rules_exec::{ExecOptions, RuleExecutor};
use outlook_core::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    outlook_core::telemetry::init();
    let services = Services::from_env().await?;
    let options = options_from_env()?;
    // The claim owner: unique per sandbox, so another sandbox never mistakes our claims for its own.
    let worker_id = format!("rules-{}", uuid::Uuid::new_v4().simple());
    let executor = RuleExecutor::new(
        &services.store,
        &services.graph,
        &services.tokens,
        worker_id,
        options,
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        handler::handle(&executor, event)
    }))
    .await
}

fn options_from_env() -> Result<ExecOptions, Error> {
    let mut options = ExecOptions::default();
    if let Some(secs) = var("RULE_EVAL_CLAIM_LEASE_SECS") {
        let secs: u64 = secs
            .parse()
            .map_err(|e| format!("RULE_EVAL_CLAIM_LEASE_SECS: {e}"))?;
        options.lease = Duration::from_secs(secs.max(1));
    }
    if let Some(flag) = var("RULE_EVAL_USE_BATCH") {
        options.use_batch = match flag.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => {
                return Err(
                    format!("RULE_EVAL_USE_BATCH: expected true or false, got {other:?}").into(),
                );
            }
        };
    }
    Ok(options)
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}
