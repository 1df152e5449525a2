//! The management-API function as one request handler: route (404/405), body limit (413),
//! authentication (401), then the endpoint. Built once per cold start.

use time::OffsetDateTime;

use super::ApiError;
use super::auth::Authenticator;
use super::connect_page::{self, PageCtx};
use super::handlers::{self, Ctx};
use super::http::{HttpRequest, HttpResponse};
use super::routes::{Matched, Params, Route, RouteId, RouteKind, match_route};
use crate::pages::{PAGE_HEADERS, ResultPage};
use crate::services::Services;

/// Largest request body accepted (larger: 413, nothing is read or stored).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct ManagementApi {
    pub services: Services,
    auth: Authenticator,
}

fn is_page_path(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/"))
}

fn page_problem(status: u16, title: &str, message: &str, fix: &str) -> HttpResponse {
    let page = ResultPage::problem(status, title, message, fix);
    HttpResponse::html(page.status, PAGE_HEADERS, page.render())
}

impl ManagementApi {
    pub fn new(services: Services, auth: Authenticator) -> Self {
        Self { services, auth }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Answers one request; never fails (every problem is an error response).
    pub async fn handle(&self, request: HttpRequest, now: OffsetDateTime) -> HttpResponse {
        let started = std::time::Instant::now();
        let (response, template) = match match_route(&request.method, &request.path) {
            Matched::NotFound if is_page_path(&request.path) => (
                page_problem(
                    404,
                    "Page not found",
                    "There is no such page.",
                    "Open the integrations page.",
                ),
                "-",
            ),
            Matched::NotFound => (HttpResponse::error(&ApiError::NotFound("route")), "-"),
            Matched::MethodNotAllowed(allowed) => {
                let response = if is_page_path(&request.path) {
                    page_problem(
                        405,
                        "Method not allowed",
                        "This page does not accept that request.",
                        "Open the integrations page.",
                    )
                } else {
                    HttpResponse::error(&ApiError::MethodNotAllowed)
                };
                (response.with_header("allow", allowed.join(", ")), "-")
            }
            Matched::Route(route, params) => (
                self.dispatch(route, &params, &request, now).await,
                route.path,
            ),
        };
        // Paths and templates only: never the query (the connect page's carries a token).
        tracing::info!(
            method = %request.method,
            route = template,
            status = response.status,
            ms = started.elapsed().as_millis() as u64,
            "request answered"
        );
        response
    }

    async fn dispatch(
        &self,
        route: &Route,
        params: &Params,
        request: &HttpRequest,
        now: OffsetDateTime,
    ) -> HttpResponse {
        match route.kind {
            RouteKind::Page => {
                if request.body.len() > MAX_BODY_BYTES {
                    return page_problem(
                        413,
                        "Too much data",
                        "The form sent more data than allowed.",
                        "Send less.",
                    );
                }
                let ctx = PageCtx {
                    svc: &self.services,
                    auth: &self.auth,
                    now,
                };
                connect_page::handle(&ctx, route.id, params, request).await
            }
            RouteKind::Json => self
                .json(route.id, params, request, now)
                .await
                .unwrap_or_else(|err| HttpResponse::error(&err)),
        }
    }

    async fn json(
        &self,
        id: RouteId,
        params: &Params,
        request: &HttpRequest,
        now: OffsetDateTime,
    ) -> Result<HttpResponse, ApiError> {
        let caller = self.auth.authenticate(request.header("authorization"))?;
        if request.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::TooLarge(MAX_BODY_BYTES));
        }
        let ctx = Ctx {
            svc: &self.services,
            caller: &caller,
            params,
            body: &request.body,
            query: &request.query,
            now,
        };
        match id {
            RouteId::ListIntegrations => handlers::list_integrations(&ctx).await,
            RouteId::StartConnection => handlers::start_connection(&ctx).await,
            RouteId::GetIntegration => handlers::get_integration(&ctx).await,
            RouteId::ReconnectIntegration => handlers::reconnect_integration(&ctx).await,
            RouteId::DisconnectIntegration => handlers::disconnect_integration(&ctx).await,
            RouteId::UpdateMailboxes => handlers::update_mailboxes(&ctx).await,
            RouteId::GetMailbox => handlers::get_mailbox(&ctx).await,
            RouteId::SetFolders => handlers::set_folders(&ctx).await,
            RouteId::SyncNow => handlers::sync_now(&ctx).await,
            RouteId::ListRuleSets => handlers::list_rule_sets(&ctx).await,
            RouteId::GetRuleSet => handlers::get_rule_set(&ctx).await,
            RouteId::ReplaceRuleSet => handlers::replace_rule_set(&ctx).await,
            RouteId::ValidateRules => handlers::validate(&ctx).await,
            RouteId::DryRun => handlers::dry_run(&ctx).await,
            RouteId::ListAudit => handlers::list_audit(&ctx).await,
            RouteId::Root
            | RouteId::ConnectPage
            | RouteId::ConnectStart
            | RouteId::ConnectReconnect => Err(ApiError::NotFound("route")),
        }
    }
}
