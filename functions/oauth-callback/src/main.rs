//! The HTTPS endpoint Microsoft redirects to after admin consent or a personal sign-in.

mod handler;

use lambda_http::{Error, Request, service_fn};
use outlook_core::config::Need;
use outlook_core::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    outlook_core::telemetry::init();
    let services = Services::from_env().await?;
    services.config.require(&[Need::PublicBaseUrl])?;
    lambda_http::run(service_fn(|request: Request| {
        handler::handle(&services, request)
    }))
    .await
}
