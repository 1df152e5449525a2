//! JSON logs for CloudWatch. Fields carry request and mailbox ids; never tokens, secrets or bodies.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the JSON subscriber once per process. `RUST_LOG` (or Lambda's `AWS_LAMBDA_LOG_LEVEL`)
/// sets the level; the default is `info`.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // CloudWatch stamps every line itself; span lists give request/mailbox ids on each event.
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .try_init();
}
