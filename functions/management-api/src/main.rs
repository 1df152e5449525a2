//! The management API (JSON under `/api`) and the connect pages (`/connect`), one HTTPS
//! function. Everything is built once per cold start; requests go to the library's
//! `api::server::ManagementApi`. The routes are documented in `openapi.yaml` beside this crate.

mod handler;

use lambda_http::{Error, Request, service_fn};
use outlook_core::api::auth::Authenticator;
use outlook_core::api::server::ManagementApi;
use outlook_core::config::Need;
use outlook_core::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    outlook_core::telemetry::init();
    let services = Services::from_env().await?;
    services
        .config
        .require(&[Need::PublicBaseUrl, Need::SyncQueueUrl, Need::ApiJwt])?;
    let jwt = services
        .config
        .api_jwt
        .clone()
        .ok_or("API_JWT_ISSUER is required")?;
    let auth = Authenticator::new(&jwt)
        .map_err(|e| format!("API_JWT_PUBLIC_KEY is not a usable RSA public key: {e}"))?;
    let api = ManagementApi::new(services, auth);
    lambda_http::run(service_fn(|request: Request| {
        handler::handle(&api, request)
    }))
    .await
}
