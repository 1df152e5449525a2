//! AWS SDK and HTTP clients, built once per cold start.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};

use crate::config::Config;

/// Operation and attempt timeouts stay well below the functions' own timeouts (30 s and up),
/// so a stuck AWS call fails inside the invocation instead of the invocation timing out.
pub const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
pub const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// Loads the shared AWS config (region, credentials, and `AWS_ENDPOINT_URL` locally).
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(AWS_OPERATION_TIMEOUT)
                .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// The HTTP client for Microsoft's endpoints: rustls, bounded connect and request times.
pub fn http_client(config: &Config) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(config.http_timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("outlook-integration/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is static and valid")
}
