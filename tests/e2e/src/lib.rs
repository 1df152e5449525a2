//! Local-stack support for end-to-end tests and the demo.
//!
//! - [`template`]: reads `infra/template.yaml`, the one definition of every table, queue and
//!   secret, and of the functions' settings.
//! - [`provision`]: creates that template's resources in the AWS emulator under a prefix, so every
//!   test has its own ([`Resources`]).
//! - [`LocalStack`]: the emulator `make stack-up` started (`.local/stack.env`), as an
//!   `aws_config::SdkConfig`.
//! - [`SimProcess`]: a Microsoft 365 simulator of the test's own.
//! - [`FunctionHarness`]: a real function binary running as a Lambda function behind
//!   cargo-lambda's Runtime API emulator; invoke it, call it over HTTP, kill and restart it.
//! - [`HttpApiGateway`]: the template's HTTP API routes in front of function harnesses.
//! - [`AwsCallCounter`]: a proxy in front of the emulator that counts a function's AWS calls.
//! - [`SqsEventSource`]: Lambda's SQS event source mapping (batches, `ReportBatchItemFailures`,
//!   redelivery), polled explicitly.

pub mod api_client;
pub mod awscalls;
pub mod chaos;
pub mod eventsource;
pub mod gateway;
pub mod lambda;
pub mod paths;
pub mod process;
pub mod provision;
pub mod sim;
pub mod stack;
pub mod template;
pub mod world;

pub use awscalls::AwsCallCounter;
pub use eventsource::{Batch, SqsEventSource};
pub use gateway::HttpApiGateway;
pub use lambda::{FunctionHarness, HarnessOptions, InvokeError};
pub use provision::{Resources, provision};
pub use sim::SimProcess;
pub use stack::LocalStack;
pub use template::Template;
pub use world::World;

/// A prefix for one test's resources: `name` plus 8 random hex digits.
pub fn unique_prefix(name: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{name}-{}", &id[..8])
}
