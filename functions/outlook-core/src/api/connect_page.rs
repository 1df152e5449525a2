//! The connect page: small server-rendered pages (maud, so every value is escaped) where a
//! person chooses how to connect Outlook, goes through Microsoft's sign-in or admin consent, and
//! sees the status of every integration and mailbox, with the reason, the fix and a reconnect
//! button.
//!
//! # Browser sign-in
//!
//! The platform links to `/connect?token=<jwt>` (the same bearer tokens as the JSON API). The
//! token is checked, put into the [`SESSION_COOKIE`] (`HttpOnly; SameSite=Strict; Path=/`,
//! `Secure` when `PUBLIC_BASE_URL` is https) and the browser is sent to `/connect`, so the token
//! leaves the address bar and history. A link followed from another site gets a page that moves
//! on by itself (`meta refresh`) instead of a 303: browsers treat the request after a
//! cross-site redirect as cross-site and would not send the new `SameSite=Strict` cookie. Every
//! request re-checks the token (expiry, issuer, audience, signature).
//!
//! # CSRF
//!
//! Forms only `POST`, and each `POST` must pass all of:
//! - the session cookie, which is `SameSite=Strict` (never sent with a cross-site request);
//! - a CSRF token in the form that is bound to the session: the SHA-256 of the session token
//!   (which scripts cannot read: the cookie is `HttpOnly`, and the page allows no scripts);
//! - `Origin` (or, without it, `Referer`) equal to `PUBLIC_BASE_URL`'s origin when present, and
//!   `Sec-Fetch-Site` not `cross-site`/`same-site`. The pages are served with
//!   `Referrer-Policy: same-origin` so browsers send a real `Origin` with the form posts.
//!
//! # Connecting from the page
//!
//! The form posts to the function, which starts the flow bound to this browser
//! (`bind_browser = true`), sets the flow's [`BINDING_COOKIE`] (`HttpOnly; SameSite=Lax`, so it
//! comes back with Microsoft's top-level redirect to the callback) and answers `303` to
//! Microsoft. The page's `form-action` allows our origin and Microsoft's sign-in origin only.

use base64::Engine;
use maud::{Markup, PreEscaped, html};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use url::Url;

use super::ApiError;
use super::auth::{Authenticator, Caller};
use super::dto::{IntegrationState, IntegrationView, MailboxState, ReasonView};
use super::http::{HttpRequest, HttpResponse};
use super::routes::{Params, RouteId};
use crate::config::join_path;
use crate::connect::flows::{BINDING_COOKIE, STATE_LIFETIME, StartOptions, StartedFlow, start};
use crate::ids::IntegrationId;
use crate::model::AccountType;
use crate::pages::{PAGE_HEADERS, ResultPage, layout};
use crate::services::Services;

/// The browser session: the caller's bearer token.
pub const SESSION_COOKIE: &str = "outlook_connect_session";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The README's "Two ways to connect" comparison, as the page shows it: (row, organization-wide,
/// personal). A test checks the README has the same rows.
pub const COMPARISON: &[(&str, &str, &str)] = &[
    (
        "Who sets it up",
        "A Microsoft 365 administrator, once, by granting admin consent",
        "Each user, by signing in",
    ),
    (
        "Survives password / MFA changes and leavers",
        "Yes",
        "No: Microsoft revokes the sign-in; the user reconnects and sync resumes where it stopped",
    ),
    (
        "Which mailboxes",
        "The ones the admin chooses (and allows with an application access policy or RBAC scope)",
        "Own mailbox, plus named shared mailboxes",
    ),
    (
        "Best for",
        "Teams, shared inboxes, anything that must keep running",
        "Trying it out, a single person's mailbox",
    ),
];

const EXTRA_STYLE: &str = "label{display:block;margin:.75rem 0 .25rem;font-weight:600}\
textarea,input[type=text],input[type=email]{width:100%;box-sizing:border-box;padding:.4rem;font:inherit}\
.choices{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:1.5rem;margin:1rem 0}\
.choice{border:1px solid #ddd;border-radius:6px;padding:1rem}.choice button{margin-top:1rem}\
.integration{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0}.muted{color:#605e5c}\
.inline{display:inline}";

/// What the page routes need.
pub struct PageCtx<'a> {
    pub svc: &'a Services,
    pub auth: &'a Authenticator,
    pub now: OffsetDateTime,
}

impl PageCtx<'_> {
    fn base(&self) -> Result<&Url, ApiError> {
        self.svc
            .config
            .public_base_url
            .as_ref()
            .ok_or(ApiError::Unavailable)
    }

    fn secure(&self) -> bool {
        self.svc
            .config
            .public_base_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// Headers of our pages: the shared page headers, with a `form-action` that also allows
    /// Microsoft's sign-in (the form's 303 goes there) and a referrer policy that lets the
    /// browser send our own origin with form posts.
    fn headers(&self) -> Vec<(String, String)> {
        let login = self
            .svc
            .config
            .login_base_url
            .origin()
            .ascii_serialization();
        PAGE_HEADERS
            .iter()
            .map(|(name, value)| {
                let value = match *name {
                    "content-security-policy" => format!(
                        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {login}; \
                         frame-ancestors 'none'; base-uri 'none'"
                    ),
                    "referrer-policy" => "same-origin".to_owned(),
                    _ => (*value).to_owned(),
                };
                (name.to_string(), value)
            })
            .collect()
    }

    fn page(&self, status: u16, html: String) -> HttpResponse {
        HttpResponse {
            status,
            headers: self.headers(),
            body: html.into_bytes(),
        }
    }

    fn problem(&self, page: ResultPage) -> HttpResponse {
        self.page(page.status, page.render())
    }

    fn cookie(&self, name: &str, value: &str, same_site: &str, max_age: Option<u64>) -> String {
        set_cookie(name, value, same_site, max_age, self.secure())
    }
}

/// A `Set-Cookie` value: always `HttpOnly` and `Path=/`; `Secure` when the site is https.
pub fn set_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<u64>,
    secure: bool,
) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The CSRF token of a session: bound to it, unguessable without it.
pub fn csrf_token(session_token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"outlook-connect-csrf\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The request came from one of our own pages (see the module docs).
pub fn same_origin(request: &HttpRequest, base: &Url) -> bool {
    let ours = base.origin().ascii_serialization();
    if matches!(
        request.header("sec-fetch-site"),
        Some("cross-site" | "same-site")
    ) {
        return false;
    }
    match (request.header("origin"), request.header("referer")) {
        (Some(origin), _) => origin == ours,
        (None, Some(referer)) => {
            Url::parse(referer).is_ok_and(|u| u.origin().ascii_serialization() == ours)
        }
        (None, None) => true,
    }
}

fn unauthenticated_page() -> ResultPage {
    ResultPage::problem(
        401,
        "Please open this page from the platform",
        "Your sign-in to the integrations page is missing, not valid, or has expired.",
        "Go back to the platform and open the Outlook integration again.",
    )
}

fn session(ctx: &PageCtx<'_>, request: &HttpRequest) -> Option<(Caller, String)> {
    let token = request.cookie(SESSION_COOKIE).filter(|t| !t.is_empty())?;
    let caller = ctx
        .auth
        .authenticate(Some(&format!("Bearer {token}")))
        .ok()?;
    Some((caller, token.to_owned()))
}

/// Handles a page route.
pub async fn handle(
    ctx: &PageCtx<'_>,
    route: RouteId,
    params: &Params,
    request: &HttpRequest,
) -> HttpResponse {
    let Ok(base) = ctx.base() else {
        return ctx.problem(ResultPage::problem(
            503,
            "Not available",
            "The page is not configured.",
            "Try again later.",
        ));
    };
    match route {
        RouteId::Root => HttpResponse::see_other(join_path(base, "connect").as_str()),
        RouteId::ConnectPage => connect_page(ctx, base, request).await,
        RouteId::ConnectStart | RouteId::ConnectReconnect => {
            let Some((caller, token)) = session(ctx, request) else {
                return ctx.problem(unauthenticated_page());
            };
            let form: Form = serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
            if !same_origin(request, base) || !same(&form.csrf, &csrf_token(&token)) {
                tracing::warn!(workspace = %caller.workspace_id, "connect form refused: cross-site or without a valid CSRF token");
                return ctx.problem(ResultPage::problem(
                    403,
                    "This form was not sent from the integrations page",
                    "For your security, changes are only accepted from the integrations page itself. Nothing was changed.",
                    "Open the integrations page again and use its buttons.",
                ));
            }
            if route == RouteId::ConnectStart {
                start_connection(ctx, base, &caller, &token, form).await
            } else {
                reconnect(ctx, base, &caller, &token, params).await
            }
        }
        _ => ctx.problem(ResultPage::problem(
            404,
            "Page not found",
            "There is no such page.",
            "Open the integrations page.",
        )),
    }
}

async fn connect_page(ctx: &PageCtx<'_>, base: &Url, request: &HttpRequest) -> HttpResponse {
    let connect = join_path(base, "connect");
    if let Some(token) = request.query_param("token") {
        let clear = ctx.cookie(SESSION_COOKIE, "", "Strict", Some(0));
        return match ctx
            .auth
            .authenticate(Some(&format!("Bearer {}", token.trim())))
        {
            Ok(caller) => {
                tracing::info!(workspace = %caller.workspace_id, "connect page session started");
                let cookie = ctx.cookie(SESSION_COOKIE, token.trim(), "Strict", None);
                if request.header("sec-fetch-site") == Some("cross-site") {
                    let html = layout(
                        "Opening the integrations page",
                        html! {
                            meta http-equiv="refresh" content=(format!("0; url={connect}"));
                            p { "Opening the integrations page… " a href=(connect.as_str()) { "Continue" } }
                        },
                    );
                    let mut response = ctx.page(200, html);
                    // The token is in this page's URL: never send it anywhere as a referrer.
                    for (name, value) in &mut response.headers {
                        if name == "referrer-policy" {
                            *value = "no-referrer".into();
                        }
                    }
                    response.with_header("set-cookie", cookie)
                } else {
                    HttpResponse::see_other(connect.as_str()).with_header("set-cookie", cookie)
                }
            }
            Err(_) => ctx
                .problem(unauthenticated_page())
                .with_header("set-cookie", clear),
        };
    }
    match session(ctx, request) {
        Some((caller, token)) => {
            match dashboard(ctx, base, &caller, &token, 200, None, &Form::default()).await {
                Ok(response) => response,
                Err(err) => unavailable(ctx, &err),
            }
        }
        None => {
            let mut response = ctx.problem(unauthenticated_page());
            if request.cookie(SESSION_COOKIE).is_some() {
                response = response.with_header(
                    "set-cookie",
                    ctx.cookie(SESSION_COOKIE, "", "Strict", Some(0)),
                );
            }
            response
        }
    }
}

fn unavailable(ctx: &PageCtx<'_>, err: &ApiError) -> HttpResponse {
    tracing::error!(error = %err, "connect page failed");
    ctx.problem(ResultPage::problem(
        503,
        "The integrations page is not available",
        "A temporary problem on our side stopped the page. Nothing was changed.",
        "Try again in a few minutes.",
    ))
}

/// The fields of the connect forms (all optional; unknown fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Form {
    csrf: String,
    account_type: String,
    mailboxes: String,
    tenant: String,
    shared_mailboxes: String,
    login_hint: String,
}

fn split_addresses(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn non_empty(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn redirect_to_microsoft(ctx: &PageCtx<'_>, flow: StartedFlow) -> HttpResponse {
    let mut response = HttpResponse::see_other(flow.url.as_str());
    if let Some(binding) = &flow.browser_binding {
        let cookie = ctx.cookie(
            BINDING_COOKIE,
            binding.expose_secret(),
            "Lax",
            Some(STATE_LIFETIME.as_secs()),
        );
        response = response.with_header("set-cookie", cookie);
    }
    response
}

async fn start_connection(
    ctx: &PageCtx<'_>,
    base: &Url,
    caller: &Caller,
    token: &str,
    form: Form,
) -> HttpResponse {
    let options = match form.account_type.as_str() {
        "organization" => StartOptions::Organization {
            mailboxes: split_addresses(&form.mailboxes),
            tenant: non_empty(&form.tenant),
        },
        "personal" => StartOptions::Personal {
            shared_mailboxes: split_addresses(&form.shared_mailboxes),
            login_hint: non_empty(&form.login_hint),
        },
        _ => {
            return match dashboard(
                ctx,
                base,
                caller,
                token,
                400,
                Some("Choose organization-wide or personal."),
                &form,
            )
            .await
            {
                Ok(response) => response,
                Err(err) => unavailable(ctx, &err),
            };
        }
    };
    match start(ctx.svc, caller, options, None, true, ctx.now).await {
        Ok(flow) => redirect_to_microsoft(ctx, flow),
        Err(err @ (ApiError::Invalid { .. } | ApiError::NotFound(_))) => {
            let message = err.to_string();
            match dashboard(ctx, base, caller, token, 400, Some(&message), &form).await {
                Ok(response) => response,
                Err(err) => unavailable(ctx, &err),
            }
        }
        Err(err) => unavailable(ctx, &err),
    }
}

async fn reconnect(
    ctx: &PageCtx<'_>,
    base: &Url,
    caller: &Caller,
    token: &str,
    params: &Params,
) -> HttpResponse {
    let not_found = || {
        ctx.problem(ResultPage::problem(
            404,
            "This connection does not exist",
            "It may have been removed, or it belongs to another workspace.",
            "Open the integrations page again.",
        ))
    };
    let Some(id) = params
        .get("integrationId")
        .and_then(|v| IntegrationId::parse(v).ok())
    else {
        return not_found();
    };
    let integration = match ctx
        .svc
        .store
        .get_integration(&caller.workspace_id, &id)
        .await
    {
        Ok(Some(integration)) => integration,
        Ok(None) => return not_found(),
        Err(err) => return unavailable(ctx, &err.into()),
    };
    let options = match integration.account_type {
        AccountType::Organization => StartOptions::Organization {
            mailboxes: Vec::new(),
            tenant: None,
        },
        AccountType::Personal => StartOptions::Personal {
            shared_mailboxes: Vec::new(),
            login_hint: None,
        },
    };
    match start(ctx.svc, caller, options, Some(&id), true, ctx.now).await {
        Ok(flow) => redirect_to_microsoft(ctx, flow),
        Err(ApiError::NotFound(_)) => not_found(),
        Err(err @ ApiError::Invalid { .. }) => {
            let message = err.to_string();
            match dashboard(
                ctx,
                base,
                caller,
                token,
                400,
                Some(&message),
                &Form::default(),
            )
            .await
            {
                Ok(response) => response,
                Err(err) => unavailable(ctx, &err),
            }
        }
        Err(err) => unavailable(ctx, &err),
    }
}

fn when(at: Option<OffsetDateTime>) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| "not yet".into())
}

async fn dashboard(
    ctx: &PageCtx<'_>,
    base: &Url,
    caller: &Caller,
    token: &str,
    status: u16,
    error: Option<&str>,
    form: &Form,
) -> Result<HttpResponse, ApiError> {
    let ws = &caller.workspace_id;
    let (integrations, mailboxes) = futures::try_join!(
        ctx.svc.store.list_integrations(ws),
        ctx.svc.store.list_mailboxes(ws, None)
    )?;
    let mut views: Vec<IntegrationView> = integrations
        .iter()
        .map(|i| IntegrationView::new(i, &mailboxes, ctx.now))
        .collect();
    views.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let html = render_dashboard(base, &csrf_token(token), &views, error, form);
    Ok(ctx.page(status, html))
}

fn integration_title(view: &IntegrationView) -> String {
    match view.account_type {
        AccountType::Organization => format!("Organization-wide · tenant {}", view.tenant_id),
        AccountType::Personal => format!(
            "Personal · {}",
            view.user_principal_name
                .as_deref()
                .or(view.display_name.as_deref())
                .unwrap_or("signed-in user")
        ),
    }
}

fn same_reason(a: &Option<ReasonView>, b: &Option<ReasonView>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.code == b.code,
        (None, None) => true,
        _ => false,
    }
}

fn render_integration(base: &Url, csrf: &str, view: &IntegrationView) -> Markup {
    let good = view.state == IntegrationState::Connected;
    let state = serde_json::to_value(view.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let reconnect = join_path(base, &format!("connect/integrations/{}/reconnect", view.id));
    html! {
        section class="integration" data-integration-id=(view.id) data-state=(state) {
            h3 { (integration_title(view)) }
            p {
                span class={ "badge " (if good { "good" } else { "bad" }) } data-role="state" { (view.state_label) }
                " "
                span class="muted" { "Last successful sync: " (when(view.last_successful_sync_at)) }
            }
            @if let Some(reason) = &view.reason {
                p data-role="reason" { (reason.message) }
                p class="fix" data-role="fix" { strong { "What to do: " } (reason.fix) }
            }
            @if !good {
                form method="post" action=(reconnect.as_str()) class="inline" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    button class="button" type="submit" data-role="reconnect" { "Reconnect" }
                }
            }
            @if !view.mailboxes.is_empty() {
                table {
                    tr { th { "Mailbox" } th { "State" } th { "Details" } }
                    @for mailbox in &view.mailboxes {
                        @let ok = mailbox.state == MailboxState::Syncing;
                        tr data-mailbox-id=(mailbox.id) {
                            td { (mailbox.address) }
                            td { span class={ "badge " (if ok { "good" } else { "bad" }) } { (mailbox.state_label) } }
                            td {
                                @if mailbox.state == MailboxState::Paused && same_reason(&mailbox.reason, &view.reason) {
                                    "Paused until this connection works again (see above)."
                                } @else if let Some(reason) = &mailbox.reason {
                                    (reason.message) " " strong { "What to do: " } (reason.fix)
                                }
                                @if let Some(retry) = mailbox.retry_at {
                                    " Next attempt: " (when(Some(retry))) "."
                                }
                                @if mailbox.reason.is_none() && mailbox.retry_at.is_none() {
                                    "Last successful sync: " (when(mailbox.last_successful_sync_at))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn render_dashboard(
    base: &Url,
    csrf: &str,
    views: &[IntegrationView],
    error: Option<&str>,
    form: &Form,
) -> String {
    let start = join_path(base, "connect/start");
    layout(
        "Connect Outlook",
        html! {
            style { (PreEscaped(EXTRA_STYLE)) }
            h1 { "Connect Outlook" }
            p { "Connect Microsoft 365 mailboxes to this workspace. New mail is read with Microsoft Graph and your rules act on it." }
            @if let Some(error) = error {
                div class="problem" role="alert" id="error" { p { (error) } }
            }
            h2 { "Choose how to connect" }
            table id="comparison" {
                tr { th {} th { "Organization-wide " span class="recommended" { "Recommended" } } th { "Personal" } }
                @for (row, organization, personal) in COMPARISON {
                    tr { th { (row) } td { (organization) } td { (personal) } }
                }
            }
            div class="choices" {
                form class="choice" id="connect-organization" method="post" action=(start.as_str()) {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    input type="hidden" name="account_type" value="organization";
                    h3 { "Organization-wide " span class="recommended" { "Recommended" } }
                    p { "A Microsoft 365 administrator grants admin consent once. Keeps syncing through password and MFA changes." }
                    label for="mailboxes" { "Mailboxes to sync (one per line)" }
                    textarea id="mailboxes" name="mailboxes" rows="4" placeholder="support@contoso.com" { (form.mailboxes) }
                    label for="tenant" { "Organization domain or tenant id (optional)" }
                    input id="tenant" name="tenant" type="text" placeholder="contoso.onmicrosoft.com" value=(form.tenant);
                    button class="button" type="submit" id="connect-organization-submit" { "Continue as administrator" }
                }
                form class="choice" id="connect-personal" method="post" action=(start.as_str()) {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    input type="hidden" name="account_type" value="personal";
                    h3 { "Personal" }
                    p { "Sign in with your own account. Syncs your mailbox and shared mailboxes you can open." }
                    label for="shared_mailboxes" { "Shared mailboxes (optional, one per line)" }
                    textarea id="shared_mailboxes" name="shared_mailboxes" rows="3" placeholder="team@contoso.com" { (form.shared_mailboxes) }
                    label for="login_hint" { "Your email address (optional)" }
                    input id="login_hint" name="login_hint" type="email" value=(form.login_hint);
                    button class="button" type="submit" id="connect-personal-submit" { "Sign in with Microsoft" }
                }
            }
            h2 { "Your connections" }
            @if views.is_empty() {
                p class="muted" id="no-integrations" { "Nothing is connected yet." }
            }
            @for view in views {
                (render_integration(base, csrf, view))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Reason;
    use crate::ids::{IntegrationId, WorkspaceId};
    use crate::model::{Integration, IntegrationStatus};

    fn base() -> Url {
        Url::parse("https://api.example.com").unwrap()
    }

    #[test]
    fn cookies_are_http_only_and_secure_on_https() {
        assert_eq!(
            set_cookie(SESSION_COOKIE, "t", "Strict", None, true),
            "outlook_connect_session=t; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            set_cookie(BINDING_COOKIE, "b", "Lax", Some(600), false),
            format!("{BINDING_COOKIE}=b; Path=/; HttpOnly; SameSite=Lax; Max-Age=600")
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        assert_eq!(csrf_token("a.b.c"), csrf_token("a.b.c"));
        assert_ne!(csrf_token("a.b.c"), csrf_token("a.b.d"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let post = |headers: &[(&str, &str)]| {
            headers
                .iter()
                .fold(HttpRequest::new("POST", "/connect/start"), |r, (k, v)| {
                    r.with_header(k, v)
                })
        };
        assert!(same_origin(
            &post(&[("origin", "https://api.example.com")]),
            &base()
        ));
        assert!(!same_origin(
            &post(&[("origin", "https://evil.example")]),
            &base()
        ));
        assert!(!same_origin(&post(&[("origin", "null")]), &base()));
        assert!(same_origin(
            &post(&[("referer", "https://api.example.com/connect")]),
            &base()
        ));
        assert!(!same_origin(
            &post(&[("referer", "https://evil.example/x")]),
            &base()
        ));
        assert!(!same_origin(
            &post(&[
                ("origin", "https://api.example.com"),
                ("sec-fetch-site", "cross-site")
            ]),
            &base()
        ));
        assert!(same_origin(&post(&[]), &base()));
    }

    #[test]
    fn addresses_split_on_lines_commas_and_spaces() {
        assert_eq!(
            split_addresses("a@x.com\r\n b@x.com, c@x.com;;\n"),
            vec!["a@x.com", "b@x.com", "c@x.com"]
        );
        assert!(split_addresses("  \n").is_empty());
    }

    #[test]
    fn the_comparison_matches_the_readme() {
        let readme = include_str!("../../../../README.md");
        for (row, organization, personal) in COMPARISON {
            let line = format!("| {row} | {organization} | {personal} |");
            assert!(
                readme.contains(&line),
                "README's \"Two ways to connect\" lacks: {line}"
            );
        }
    }

    #[test]
    fn the_dashboard_escapes_and_explains() {
        let now = OffsetDateTime::now_utc();
        let integration = Integration {
            workspace_id: WorkspaceId::parse("acme").unwrap(),
            integration_id: IntegrationId::generate(),
            account_type: AccountType::Personal,
            tenant_id: "t".into(),
            status: IntegrationStatus::NeedsReconnect,
            status_reason: Some(Reason::PasswordChanged.into()),
            user_principal_name: Some("<script>alert(1)</script>@x.com".into()),
            user_object_id: None,
            display_name: None,
            scopes: Vec::new(),
            credential_generation: 1,
            created_at: now,
            updated_at: now,
            last_successful_sync_at: None,
            version: 1,
        };
        let view = IntegrationView::new(&integration, &[], now);
        let form = Form {
            mailboxes: "</textarea><b>x</b>".into(),
            ..Form::default()
        };
        let html = render_dashboard(&base(), "tok\"en", &[view], Some("<img src=x>"), &form);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x>"));
        assert!(!html.contains("</textarea><b>"));
        assert!(html.contains("tok&quot;en"));
        assert!(html.contains(Reason::PasswordChanged.message()));
        assert!(html.contains(Reason::PasswordChanged.fix()));
        assert!(html.contains("Needs reconnect"));
        assert!(html.contains("data-role=\"reconnect\""));
        assert!(html.contains(&format!(
            "https://api.example.com/connect/integrations/{}/reconnect",
            integration.integration_id
        )));
        assert!(html.contains("Recommended"));
    }
}
