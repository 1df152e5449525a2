//! Entra ID v2.0 endpoints: `/{tenant}/oauth2/v2.0/authorize`, `/{tenant}/v2.0/adminconsent`,
//! `/{tenant}/oauth2/v2.0/token`; access tokens (HS256 JWTs signed by the simulator).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::model::{AuthCode, EventKind, LogEntry, RefreshToken, ServicePrincipal, World};
use crate::util::{fmt_entra_time, fmt_time, html_escape, parse_query, query_get};
use crate::{ConnCtl, Sim, faults};

pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub const DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
pub const CODE_LIFETIME_SECS: i64 = 600;
pub const RT_MAX_INACTIVE_SECS: i64 = 90 * 24 * 3600;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Claims of the simulator's Graph access tokens (v1.0-style, like Graph's).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub appid: String,
    #[serde(default)]
    pub app_displayname: String,
    /// `app` or `user`.
    pub idtyp: String,
    pub oid: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub uti: String,
    pub ver: String,
}

pub fn sign_access_token(sim: &Sim, claims: &AccessClaims) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("JWT".into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(&sim.jwt_key)).expect("sign")
}

pub enum TokenCheck {
    Valid(Box<AccessClaims>),
    Missing,
    Invalid(String),
    Expired,
}

/// Verifies a Graph access token's signature and expiry (against the simulator's clock).
pub fn verify_access_token(sim: &Sim, token: &str, now: OffsetDateTime) -> TokenCheck {
    if token.trim().is_empty() {
        return TokenCheck::Missing;
    }
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    let data = match jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_secret(&sim.jwt_key),
        &v,
    ) {
        Ok(d) => d,
        Err(e) => return TokenCheck::Invalid(e.to_string()),
    };
    let c = data.claims;
    if c.aud != GRAPH_RESOURCE && c.aud != GRAPH_APP_ID {
        return TokenCheck::Invalid("Invalid audience.".into());
    }
    if c.exp <= now.unix_timestamp() {
        return TokenCheck::Expired;
    }
    TokenCheck::Valid(Box::new(c))
}

use std::collections::HashSet;

// ---------------------------------------------------------------------------------------------
// Token endpoint errors

#[derive(Debug, Clone)]
pub struct TokenErr {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub desc: String,
    pub suberror: Option<&'static str>,
}

impl TokenErr {
    fn new(status: u16, error: &'static str, code: u32, desc: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            desc: desc.into(),
            suberror: None,
        }
    }
    fn bad(error: &'static str, code: u32, desc: impl Into<String>) -> Self {
        Self::new(400, error, code, desc)
    }
    fn sub(mut self, s: &'static str) -> Self {
        self.suberror = Some(s);
        self
    }

    pub fn body(&self, base: &str, now: OffsetDateTime, correlation: &str, trace: &str) -> Value {
        let ts = fmt_entra_time(now);
        let mut v = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
                self.code, self.desc, trace, correlation, ts
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{base}/error?code={}", self.code),
        });
        if let Some(s) = self.suberror {
            v["suberror"] = json!(s);
        }
        v
    }
}

fn tenant_not_found(t: &str) -> TokenErr {
    TokenErr::bad(
        "invalid_request",
        90002,
        format!(
            "Tenant '{t}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn app_not_in_tenant(cid: &str, tenant: &str) -> TokenErr {
    TokenErr::bad(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{cid}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    )
}

fn missing_param(p: &str) -> TokenErr {
    TokenErr::bad(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{p}'."),
    )
}

// ---------------------------------------------------------------------------------------------
// Scopes

/// Splits a scope string into (Graph resource scopes, OIDC scopes). `.default` stays `.default`.
pub fn parse_scopes(s: &str) -> (Vec<String>, Vec<String>) {
    let mut res = vec![];
    let mut oidc = vec![];
    for raw in s.split_whitespace() {
        let lower = raw.to_ascii_lowercase();
        if OIDC_SCOPES.contains(&lower.as_str()) {
            if !oidc.contains(&lower) {
                oidc.push(lower);
            }
            continue;
        }
        let name = raw
            .strip_prefix("https://graph.microsoft.com/")
            .or_else(|| raw.strip_prefix("https://graph.microsoft.com//"))
            .or_else(|| raw.strip_prefix("00000003-0000-0000-c000-000000000000/"))
            .unwrap_or(raw);
        if !res.iter().any(|x: &String| x.eq_ignore_ascii_case(name)) {
            res.push(name.to_string());
        }
    }
    (res, oidc)
}

fn contains_ci(set: &BTreeSet<String>, s: &str) -> bool {
    set.iter().any(|x| x.eq_ignore_ascii_case(s))
}

fn is_mail_scope(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("mail.") || l.starts_with("mailboxsettings.")
}

fn pkce_s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Authorize

fn error_page(status: StatusCode, code: u32, msg: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p><p id=\"error\">AADSTS{code}: {}</p></body></html>",
        html_escape(msg)
    );
    (status, Html(body)).into_response()
}

fn redirect_with(redirect_uri: &str, mode: &str, pairs: &[(&str, String)]) -> Response {
    match mode {
        "form_post" => {
            let inputs: String = pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\"/>",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            Html(format!(
                "<html><head><title>Working...</title></head><body><form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\"/></noscript></form><script language=\"javascript\">document.forms[0].submit();</script></body></html>",
                html_escape(redirect_uri)
            ))
            .into_response()
        }
        "fragment" => {
            let frag = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            let loc = format!("{redirect_uri}#{frag}");
            (StatusCode::FOUND, [(header::LOCATION, loc)]).into_response()
        }
        _ => {
            let loc = match url::Url::parse(redirect_uri) {
                Ok(mut u) => {
                    {
                        let mut q = u.query_pairs_mut();
                        for (k, v) in pairs {
                            q.append_pair(k, v);
                        }
                    }
                    u.to_string()
                }
                Err(_) => redirect_uri.to_string(),
            };
            (StatusCode::FOUND, [(header::LOCATION, loc)]).into_response()
        }
    }
}

fn trace_text(w: &mut World) -> String {
    let now = w.now();
    format!(
        "\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
        w.gen_.uuid(),
        w.gen_.uuid(),
        fmt_entra_time(now)
    )
}

struct AuthzOutcome {
    status: u16,
    response: Response,
    tenant: Option<String>,
    app: Option<String>,
    user: Option<String>,
    error: Option<String>,
}

pub async fn authorize(
    State(sim): State<Arc<Sim>>,
    Path(tenant_seg): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = parse_query(q.as_deref().unwrap_or(""));
    let mut w = sim.world();
    let out = authorize_inner(&mut w, &tenant_seg, &q);
    let now = w.now();
    w.log_entry(LogEntry {
        seq: 0,
        time: fmt_time(now),
        kind: "authorize".into(),
        method: "GET".into(),
        path: format!("/{tenant_seg}/oauth2/v2.0/authorize"),
        query: String::new(),
        status: out.status,
        mailbox: None,
        tenant: out.tenant,
        app_id: out.app,
        user: out.user,
        grant_type: None,
        batched: false,
        fault: None,
        error_code: out.error,
    });
    out.response
}

fn authorize_inner(w: &mut World, tenant_seg: &str, q: &[(String, String)]) -> AuthzOutcome {
    let get = |k: &str| query_get(q, k).map(str::to_string);
    let mut out = AuthzOutcome {
        status: 400,
        response: StatusCode::BAD_REQUEST.into_response(),
        tenant: None,
        app: None,
        user: None,
        error: None,
    };
    let seg = tenant_seg.to_ascii_lowercase();
    let multi = seg == "common" || seg == "organizations";
    let path_tenant = if multi {
        None
    } else {
        match w.find_tenant(tenant_seg) {
            Some(t) => Some(t.id.clone()),
            None => {
                out.error = Some("90002".into());
                out.response = error_page(
                    StatusCode::BAD_REQUEST,
                    90002,
                    &tenant_not_found(tenant_seg).desc,
                );
                return out;
            }
        }
    };
    let Some(client_id) = get("client_id") else {
        out.response = error_page(
            StatusCode::BAD_REQUEST,
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
        return out;
    };
    out.app = Some(client_id.clone());
    let Some(app) = w.apps.get(&client_id).cloned() else {
        out.error = Some("700016".into());
        out.response = error_page(
            StatusCode::BAD_REQUEST,
            700016,
            &app_not_in_tenant(&client_id, tenant_seg).desc,
        );
        return out;
    };
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    if !app.redirect_uris.iter().any(|r| r == &redirect_uri) {
        out.error = Some("50011".into());
        out.response = error_page(
            StatusCode::BAD_REQUEST,
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal."
            ),
        );
        return out;
    }
    let mode = get("response_mode").unwrap_or_else(|| "query".into());
    let state = get("state");
    let trace = trace_text(w);
    let fail = |out: &mut AuthzOutcome, error: &str, code: u32, desc: &str| {
        let mut pairs: Vec<(&str, String)> = vec![
            ("error", error.to_string()),
            ("error_description", format!("AADSTS{code}: {desc}{trace}")),
            (
                "error_uri",
                format!("https://login.microsoftonline.com/error?code={code}"),
            ),
        ];
        if let Some(s) = &state {
            pairs.push(("state", s.clone()));
        }
        out.status = 302;
        out.error = Some(code.to_string());
        out.response = redirect_with(&redirect_uri, &mode, &pairs);
    };
    if get("response_type").as_deref() != Some("code") {
        fail(
            &mut out,
            "unsupported_response_type",
            700054,
            "response_type 'code' is required for this application.",
        );
        return out;
    }
    let challenge = get("code_challenge").unwrap_or_default();
    let method = get("code_challenge_method").unwrap_or_else(|| "plain".into());
    if challenge.is_empty() {
        fail(
            &mut out,
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required for this application. Send code_challenge and code_challenge_method=S256.",
        );
        return out;
    }
    if method != "S256" {
        fail(
            &mut out,
            "invalid_request",
            9002325,
            &format!(
                "The code_challenge_method '{method}' is not allowed for this application. Use S256."
            ),
        );
        return out;
    }
    let (mut res_scopes, oidc) = parse_scopes(&get("scope").unwrap_or_default());
    if res_scopes.iter().any(|s| s == ".default") {
        res_scopes.retain(|s| s != ".default");
        for s in &app.delegated_scopes {
            if !res_scopes.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                res_scopes.push(s.clone());
            }
        }
    }
    if res_scopes.is_empty() && oidc.is_empty() {
        fail(
            &mut out,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
        return out;
    }
    let prompt = get("prompt").unwrap_or_default();
    // Who signs in.
    let candidate = w
        .interactive
        .signin_user
        .clone()
        .or_else(|| get("login_hint"))
        .or_else(|| {
            path_tenant.as_ref().and_then(|t| {
                w.users
                    .values()
                    .find(|u| &u.tenant_id == t && u.kind == crate::model::UserKind::User)
                    .map(|u| u.id.clone())
            })
        });
    let Some(user) = candidate.and_then(|c| w.find_user(&c).cloned()) else {
        fail(
            &mut out,
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        );
        return out;
    };
    out.user = Some(user.upn.clone());
    out.tenant = Some(user.tenant_id.clone());
    if let Some(t) = &path_tenant
        && t != &user.tenant_id
    {
        fail(
            &mut out,
            "invalid_request",
            50020,
            &format!(
                "User account '{}' from identity provider 'live.com' does not exist in tenant '{tenant_seg}' and cannot access the application '{client_id}'({}) in that tenant. The account needs to be added as an external user in the tenant first.",
                user.upn, app.display_name
            ),
        );
        return out;
    }
    if !user.enabled || user.kind == crate::model::UserKind::Shared {
        fail(
            &mut out,
            "access_denied",
            50057,
            "The user account is disabled.",
        );
        return out;
    }
    let tenant = w.tenants[&user.tenant_id].clone();
    // Consent.
    let key = (client_id.clone(), user.id.clone());
    let mut granted: BTreeSet<String> = w.user_consents.get(&key).cloned().unwrap_or_default();
    if let Some(sp) = tenant.service_principals.get(&client_id) {
        granted.extend(sp.admin_delegated.iter().cloned());
    }
    let missing: Vec<String> = res_scopes
        .iter()
        .filter(|s| !contains_ci(&granted, s))
        .cloned()
        .collect();
    let needs_screen = !missing.is_empty() || prompt == "consent";
    if needs_screen {
        if prompt == "none" {
            fail(
                &mut out,
                "consent_required",
                65001,
                &format!(
                    "The user or administrator has not consented to use the application with ID '{client_id}' named '{}'. Send an interactive authorization request for this user and resource.",
                    app.display_name
                ),
            );
            return out;
        }
        if tenant.settings.admin_consent_only_for_mail && missing.iter().any(|s| is_mail_scope(s)) {
            fail(
                &mut out,
                "consent_required",
                90094,
                "The grant requires admin permission. An administrator of the organization must approve this application before users can grant it access to their mail.",
            );
            return out;
        }
        if w.interactive.user_consent.eq_ignore_ascii_case("decline") {
            fail(
                &mut out,
                "access_denied",
                65004,
                "User declined to consent to access the app.",
            );
            return out;
        }
        let e = w.user_consents.entry(key).or_default();
        e.extend(res_scopes.iter().cloned());
        let sp_id = w.gen_.uuid();
        w.tenants
            .get_mut(&user.tenant_id)
            .expect("tenant")
            .service_principals
            .entry(client_id.clone())
            .or_insert_with(|| ServicePrincipal {
                id: sp_id,
                ..Default::default()
            });
    }
    let mut scopes = res_scopes.clone();
    scopes.extend(oidc);
    let code = format!("1.A{}", w.gen_.token(96));
    let now = w.now();
    w.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge,
            scopes,
            user_id: user.id.clone(),
            tenant_id: user.tenant_id.clone(),
            issued_at: now,
            redeemed: false,
            nonce: get("nonce"),
        },
    );
    let mut pairs: Vec<(&str, String)> = vec![("code", code)];
    if let Some(s) = &state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("session_state", w.gen_.uuid()));
    out.status = 302;
    out.response = redirect_with(&redirect_uri, &mode, &pairs);
    out
}

// ---------------------------------------------------------------------------------------------
// Admin consent

pub async fn admin_consent(
    State(sim): State<Arc<Sim>>,
    Path(tenant_seg): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = parse_query(q.as_deref().unwrap_or(""));
    let mut w = sim.world();
    let out = admin_consent_inner(&mut w, &tenant_seg, &q);
    let now = w.now();
    w.log_entry(LogEntry {
        seq: 0,
        time: fmt_time(now),
        kind: "adminconsent".into(),
        method: "GET".into(),
        path: format!("/{tenant_seg}/v2.0/adminconsent"),
        query: String::new(),
        status: out.status,
        mailbox: None,
        tenant: out.tenant,
        app_id: out.app,
        user: None,
        grant_type: None,
        batched: false,
        fault: None,
        error_code: out.error,
    });
    out.response
}

fn admin_consent_inner(w: &mut World, tenant_seg: &str, q: &[(String, String)]) -> AuthzOutcome {
    let get = |k: &str| query_get(q, k).map(str::to_string);
    let mut out = AuthzOutcome {
        status: 400,
        response: StatusCode::BAD_REQUEST.into_response(),
        tenant: None,
        app: None,
        user: None,
        error: None,
    };
    let seg = tenant_seg.to_ascii_lowercase();
    let tenant_id = if seg == "organizations" {
        let chosen = w.interactive.admin_tenant.clone().or_else(|| {
            (w.tenants.len() == 1).then(|| w.tenants.keys().next().cloned().unwrap_or_default())
        });
        match chosen.and_then(|t| w.find_tenant(&t).map(|t| t.id.clone())) {
            Some(t) => t,
            None => {
                out.response = error_page(
                    StatusCode::BAD_REQUEST,
                    50058,
                    "No administrator signed in: set the interactive admin tenant.",
                );
                return out;
            }
        }
    } else if seg == "common" || seg == "consumers" {
        out.response = error_page(
            StatusCode::BAD_REQUEST,
            50194,
            "The /common endpoint is not supported for admin consent. Use a tenant-specific endpoint or /organizations.",
        );
        return out;
    } else {
        match w.find_tenant(tenant_seg) {
            Some(t) => t.id.clone(),
            None => {
                out.error = Some("90002".into());
                out.response = error_page(
                    StatusCode::BAD_REQUEST,
                    90002,
                    &tenant_not_found(tenant_seg).desc,
                );
                return out;
            }
        }
    };
    out.tenant = Some(tenant_id.clone());
    let client_id = get("client_id").unwrap_or_default();
    out.app = Some(client_id.clone());
    let Some(app) = w.apps.get(&client_id).cloned() else {
        out.error = Some("700016".into());
        out.response = error_page(
            StatusCode::BAD_REQUEST,
            700016,
            &app_not_in_tenant(&client_id, tenant_seg).desc,
        );
        return out;
    };
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    if !app.redirect_uris.iter().any(|r| r == &redirect_uri) {
        out.error = Some("50011".into());
        out.response = error_page(
            StatusCode::BAD_REQUEST,
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
        return out;
    }
    let state = get("state");
    let trace = trace_text(w);
    let fail = |out: &mut AuthzOutcome, error: &str, code: u32, desc: &str| {
        let mut pairs: Vec<(&str, String)> = vec![
            ("error", error.to_string()),
            ("error_description", format!("AADSTS{code}: {desc}{trace}")),
            ("admin_consent", "True".to_string()),
        ];
        if let Some(s) = &state {
            pairs.push(("state", s.clone()));
        }
        out.status = 302;
        out.error = Some(code.to_string());
        out.response = redirect_with(&redirect_uri, "query", &pairs);
    };
    let scope = get("scope").unwrap_or_default();
    if scope.trim().is_empty() {
        fail(
            &mut out,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
        return out;
    }
    let (res, _) = parse_scopes(&scope);
    if res.len() != 1 || res[0] != ".default" {
        fail(
            &mut out,
            "invalid_scope",
            70011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' ('{scope}') is not valid for admin consent. Use {DEFAULT_SCOPE}."
            ),
        );
        return out;
    }
    if w.interactive.admin_consent.eq_ignore_ascii_case("decline") {
        fail(
            &mut out,
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
        return out;
    }
    grant_admin_consent(w, &tenant_id, &app.client_id);
    let mut pairs: Vec<(&str, String)> = vec![
        ("admin_consent", "True".into()),
        ("tenant", tenant_id.clone()),
        ("scope", scope.clone()),
    ];
    if let Some(s) = &state {
        pairs.push(("state", s.clone()));
    }
    out.status = 302;
    out.response = redirect_with(&redirect_uri, "query", &pairs);
    out
}

/// Grants the app's application permissions and delegated scopes in a tenant.
pub fn grant_admin_consent(w: &mut World, tenant_id: &str, client_id: &str) {
    let Some(app) = w.apps.get(client_id).cloned() else {
        return;
    };
    let sp_id = w.gen_.uuid();
    let Some(t) = w.tenants.get_mut(tenant_id) else {
        return;
    };
    let sp = t
        .service_principals
        .entry(client_id.to_string())
        .or_insert_with(|| ServicePrincipal {
            id: sp_id,
            ..Default::default()
        });
    sp.roles.extend(app.application_permissions.iter().cloned());
    sp.admin_delegated
        .extend(app.delegated_scopes.iter().cloned());
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

#[derive(Default)]
struct TokenLog {
    tenant: Option<String>,
    app: Option<String>,
    user: Option<String>,
    grant: Option<String>,
}

pub async fn token(
    State(sim): State<Arc<Sim>>,
    Path(tenant_seg): Path<String>,
    headers: HeaderMap,
    conn: Option<axum::Extension<ConnCtl>>,
    body: axum::body::Bytes,
) -> Response {
    let base = sim.base_url(&headers);
    let path = format!("/{tenant_seg}/oauth2/v2.0/token");
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // Faults aimed at the identity endpoints.
    let fault = {
        let mut w = sim.world();
        w.faults.pick(&faults::FaultCtx {
            target: "identity",
            method: "POST",
            path: &path,
            mailbox_ids: &[],
            batched: false,
        })
    };
    if let Some(f) = &fault
        && f.kind == faults::FaultKind::Drop
    {
        let mut w = sim.world();
        let now = w.now();
        w.log_entry(LogEntry {
            seq: 0,
            time: fmt_time(now),
            kind: "token".into(),
            method: "POST".into(),
            path: path.clone(),
            query: String::new(),
            status: 0,
            mailbox: None,
            tenant: None,
            app_id: form.get("client_id").cloned(),
            user: None,
            grant_type: form.get("grant_type").cloned(),
            batched: false,
            fault: Some("drop".into()),
            error_code: None,
        });
    }
    if let Some(f) = &fault
        && let Some(r) = fault_response(&sim, f, &conn).await
    {
        let mut w = sim.world();
        let now = w.now();
        w.log_entry(LogEntry {
            seq: 0,
            time: fmt_time(now),
            kind: "token".into(),
            method: "POST".into(),
            path: path.clone(),
            query: String::new(),
            status: r.status().as_u16(),
            mailbox: None,
            tenant: None,
            app_id: form.get("client_id").cloned(),
            user: None,
            grant_type: form.get("grant_type").cloned(),
            batched: false,
            fault: Some(f.kind.name().to_string()),
            error_code: None,
        });
        return r;
    }
    let mut w = sim.world();
    let mut tl = TokenLog {
        grant: form.get("grant_type").cloned(),
        app: form.get("client_id").cloned(),
        ..Default::default()
    };
    let result = token_inner(&sim, &mut w, &tenant_seg, &form, &headers, &base, &mut tl);
    let now = w.now();
    let (status, body, code) = match result {
        Ok(v) => (200u16, v, None),
        Err(e) => {
            let corr = headers
                .get("client-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| w.gen_.uuid());
            let trace = w.gen_.uuid();
            (
                e.status,
                e.body(&base, now, &corr, &trace),
                Some(e.code.to_string()),
            )
        }
    };
    w.log_entry(LogEntry {
        seq: 0,
        time: fmt_time(now),
        kind: "token".into(),
        method: "POST".into(),
        path,
        query: String::new(),
        status,
        mailbox: None,
        tenant: tl.tenant,
        app_id: tl.app,
        user: tl.user,
        grant_type: tl.grant,
        batched: false,
        fault: None,
        error_code: code,
    });
    drop(w);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store, no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Responses for faults on the identity endpoints (429/503/504/drop/malformed/delay).
async fn fault_response(
    sim: &Arc<Sim>,
    f: &faults::FaultRule,
    conn: &Option<axum::Extension<ConnCtl>>,
) -> Option<Response> {
    use faults::FaultKind::*;
    match f.kind {
        Delay => {
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms.unwrap_or(1000))).await;
            None
        }
        Throttle => {
            let ra = f.retry_after.clone().unwrap_or_else(|| "1".into());
            let now = sim.world().now();
            let e = TokenErr::new(
                429,
                "temporarily_unavailable",
                90055,
                "The request has been throttled. Try again later.",
            );
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        (header::RETRY_AFTER, ra),
                        (header::CONTENT_TYPE, "application/json".into()),
                    ],
                    e.body("", now, "", "").to_string(),
                )
                    .into_response(),
            )
        }
        Unavailable | GatewayTimeout => {
            let status = if f.kind == Unavailable { 503 } else { 504 };
            let now = sim.world().now();
            let e = TokenErr::new(
                status,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            );
            let mut r = (
                StatusCode::from_u16(status).expect("status"),
                [(header::CONTENT_TYPE, "application/json")],
                e.body("", now, "", "").to_string(),
            )
                .into_response();
            if let Some(ra) = &f.retry_after
                && let Ok(v) = ra.parse()
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Some(r)
        }
        Malformed => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"token_type\":\"Bearer\",\"expires_in\":35",
            )
                .into_response(),
        ),
        Drop => {
            if let Some(c) = conn {
                c.0.0.notify_one();
                std::future::pending::<()>().await;
            }
            Some(crate::graph::dropped_response())
        }
    }
}

fn token_inner(
    sim: &Sim,
    w: &mut World,
    tenant_seg: &str,
    form: &HashMap<String, String>,
    headers: &HeaderMap,
    base: &str,
    tl: &mut TokenLog,
) -> Result<Value, TokenErr> {
    let seg = tenant_seg.to_ascii_lowercase();
    let multi = seg == "common" || seg == "organizations";
    let path_tenant = if multi {
        None
    } else {
        Some(
            w.find_tenant(tenant_seg)
                .ok_or_else(|| tenant_not_found(tenant_seg))?
                .id
                .clone(),
        )
    };
    tl.tenant = path_tenant.clone();
    let grant = form
        .get("grant_type")
        .cloned()
        .ok_or_else(|| missing_param("grant_type"))?;
    // Client id from the form or HTTP Basic.
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':').map(|(a, b)| {
                (
                    crate::util::percent_decode(a, true),
                    crate::util::percent_decode(b, true),
                )
            })
        });
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .ok_or_else(|| missing_param("client_id"))?;
    tl.app = Some(client_id.clone());
    let app = w
        .apps
        .get(&client_id)
        .cloned()
        .ok_or_else(|| app_not_in_tenant(&client_id, tenant_seg))?;
    let now = w.now();
    // Client authentication.
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    if let Some(secret) = secret {
        match app.secrets.iter().find(|s| s.value == secret) {
            None => {
                return Err(TokenErr::new(
                    401,
                    "invalid_client",
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
            Some(s) if s.expires_at.is_some_and(|e| e <= now.unix_timestamp()) => {
                return Err(TokenErr::new(
                    401,
                    "invalid_client",
                    7000222,
                    format!(
                        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
                    ),
                ));
            }
            Some(_) => {}
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
            return Err(TokenErr::bad(
                "invalid_request",
                700020,
                format!("The client_assertion_type must be '{ASSERTION_TYPE}'."),
            ));
        }
        let t_for_aud: Vec<String> = match &path_tenant {
            Some(t) => {
                let ten = &w.tenants[t];
                vec![ten.id.clone(), ten.domain.clone(), tenant_seg.to_string()]
            }
            None => vec![tenant_seg.to_string()],
        };
        let auds: Vec<String> = t_for_aud
            .iter()
            .map(|t| format!("{base}/{t}/oauth2/v2.0/token"))
            .collect();
        verify_assertion(&app, assertion, &auds, now)?;
    } else if !app.secrets.is_empty() || !app.certificates.is_empty() {
        return Err(TokenErr::new(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    }

    match grant.as_str() {
        "client_credentials" => {
            let Some(tid) = path_tenant else {
                return Err(TokenErr::bad(
                    "invalid_request",
                    50059,
                    "No tenant-identifying information found in either the request or implied by any provided credentials.",
                ));
            };
            let scope = form
                .get("scope")
                .cloned()
                .ok_or_else(|| missing_param("scope"))?;
            let (res, _) = parse_scopes(&scope);
            if res.len() != 1 || res[0] != ".default" {
                return Err(TokenErr::bad(
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ));
            }
            let tenant = w.tenants[&tid].clone();
            let Some(sp) = tenant.service_principals.get(&client_id) else {
                return Err(app_not_in_tenant(&client_id, &tenant.domain));
            };
            let roles: Vec<String> = sp.roles.iter().cloned().collect();
            let lifetime = tenant.settings.access_token_lifetime_secs as i64;
            let claims = AccessClaims {
                aud: GRAPH_RESOURCE.into(),
                iss: format!("https://sts.windows.net/{tid}/"),
                iat: now.unix_timestamp(),
                nbf: now.unix_timestamp(),
                exp: now.unix_timestamp() + lifetime,
                tid: tid.clone(),
                appid: client_id.clone(),
                app_displayname: app.display_name.clone(),
                idtyp: "app".into(),
                oid: sp.id.clone(),
                sub: sp.id.clone(),
                upn: None,
                unique_name: None,
                scp: None,
                roles: (!roles.is_empty()).then_some(roles),
                uti: w.gen_.token(16),
                ver: "1.0".into(),
            };
            Ok(json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": sign_access_token(sim, &claims),
            }))
        }
        "authorization_code" => {
            let code = form
                .get("code")
                .cloned()
                .ok_or_else(|| missing_param("code"))?;
            let Some(ac) = w.codes.get(&code).cloned() else {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                ));
            };
            tl.user = w.users.get(&ac.user_id).map(|u| u.upn.clone());
            tl.tenant = Some(ac.tenant_id.clone());
            if ac.client_id != client_id {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    70000,
                    "The provided authorization code was issued to a different client.",
                ));
            }
            if ac.redeemed {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                ));
            }
            if (now - ac.issued_at).whole_seconds() > CODE_LIFETIME_SECS {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                ));
            }
            let redirect = form.get("redirect_uri").cloned().unwrap_or_default();
            if redirect != ac.redirect_uri {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'redirect_uri' is not valid. The redirect_uri must match the one used in the authorization request.",
                ));
            }
            let Some(verifier) = form.get("code_verifier") else {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ));
            };
            if pkce_s256(verifier) != ac.code_challenge {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ));
            }
            if let Some(t) = &path_tenant
                && t != &ac.tenant_id
            {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    50020,
                    "The user account does not exist in the tenant of this request.",
                ));
            }
            w.codes.get_mut(&code).expect("code").redeemed = true;
            let tenant = w.tenants[&ac.tenant_id].clone();
            if !tenant.service_principals.contains_key(&client_id) {
                return Err(app_not_in_tenant(&client_id, &tenant.domain));
            }
            let user = w.users[&ac.user_id].clone();
            if !user.enabled {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    50057,
                    "The user account is disabled.",
                ));
            }
            issue_delegated(
                sim,
                w,
                &app,
                &ac.tenant_id,
                &ac.user_id,
                &ac.scopes,
                ac.nonce.as_deref(),
                base,
            )
        }
        "refresh_token" => {
            let rt_s = form
                .get("refresh_token")
                .cloned()
                .ok_or_else(|| missing_param("refresh_token"))?;
            let Some(rt) = w.refresh_tokens.get(&rt_s).cloned() else {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                ));
            };
            tl.user = w.users.get(&rt.user_id).map(|u| u.upn.clone());
            tl.tenant = Some(rt.tenant_id.clone());
            if rt.client_id != client_id {
                return Err(TokenErr::bad(
                    "invalid_grant",
                    70000,
                    "The refresh token was issued to a different client.",
                ));
            }
            let tenant = w.tenants[&rt.tenant_id].clone();
            if let Some(e) = blocking_event(w, &rt) {
                return Err(e);
            }
            if !tenant.service_principals.contains_key(&client_id) {
                return Err(app_not_in_tenant(&client_id, &tenant.domain));
            }
            if (now - rt.last_used).whole_seconds() > RT_MAX_INACTIVE_SECS {
                return Err(inactive_err(&rt));
            }
            // Scope: equal to or a subset of what is consented.
            let mut scopes = rt.scopes.clone();
            if let Some(s) = form.get("scope") {
                let (mut res, oidc) = parse_scopes(s);
                let mut granted: BTreeSet<String> = w
                    .user_consents
                    .get(&(client_id.clone(), rt.user_id.clone()))
                    .cloned()
                    .unwrap_or_default();
                if let Some(sp) = tenant.service_principals.get(&client_id) {
                    granted.extend(sp.admin_delegated.iter().cloned());
                }
                if res.iter().any(|s| s == ".default") {
                    res = rt
                        .scopes
                        .iter()
                        .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
                        .cloned()
                        .collect();
                }
                if let Some(bad) = res.iter().find(|s| !contains_ci(&granted, s)) {
                    return Err(TokenErr::bad(
                        "invalid_grant",
                        65001,
                        format!(
                            "The user or administrator has not consented to use the application with ID '{client_id}' named '{}'. Send an interactive authorization request for this user and resource. (scope {bad})",
                            app.display_name
                        ),
                    )
                    .sub("consent_required"));
                }
                scopes = res;
                scopes.extend(oidc);
                if !scopes.iter().any(|s| s == "offline_access") {
                    // A refresh grant always returns a new refresh token.
                    scopes.push("offline_access".into());
                }
            }
            if let Some(r) = w.refresh_tokens.get_mut(&rt_s) {
                r.last_used = now;
            }
            issue_delegated(
                sim,
                w,
                &app,
                &rt.tenant_id,
                &rt.user_id,
                &scopes,
                None,
                base,
            )
        }
        other => Err(TokenErr::bad(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

fn inactive_err(rt: &RefreshToken) -> TokenErr {
    TokenErr::bad(
        "invalid_grant",
        700082,
        format!(
            "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for 90.00:00:00.",
            fmt_time(rt.issued_at)
        ),
    )
}

/// The first identity event after the refresh token was issued that invalidates it.
fn blocking_event(w: &World, rt: &RefreshToken) -> Option<TokenErr> {
    let app = w.apps.get(&rt.client_id)?;
    let tenant = w.tenants.get(&rt.tenant_id)?;
    for e in w
        .events
        .iter()
        .filter(|e| e.seq > rt.issued_seq && e.effective)
    {
        let user_ok = e.user_id.as_deref().is_none_or(|u| u == rt.user_id);
        let app_ok = e.app_id.as_deref().is_none_or(|a| a == rt.client_id);
        let tenant_ok = e.tenant_id.as_deref().is_none_or(|t| t == rt.tenant_id);
        if !(user_ok && app_ok && tenant_ok) {
            continue;
        }
        let err = match e.kind {
            EventKind::PasswordChanged | EventKind::TokensRevoked => TokenErr::bad(
                "invalid_grant",
                50173,
                format!(
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                    fmt_time(rt.issued_at),
                    e.at
                ),
            ),
            EventKind::MfaRequired => {
                if !tenant.mfa_required {
                    continue;
                }
                let error = if tenant.settings.mfa_error_kind == "interaction_required" {
                    "interaction_required"
                } else {
                    "invalid_grant"
                };
                TokenErr::bad(
                    error,
                    50076,
                    format!(
                        "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{GRAPH_APP_ID}'."
                    ),
                )
                .sub("basic_action")
            }
            EventKind::RefreshTokenInactive => inactive_err(rt),
            EventKind::ConsentRevoked => TokenErr::bad(
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.",
                    app.client_id, app.display_name
                ),
            )
            .sub("consent_required"),
            EventKind::UserDisabled => {
                TokenErr::bad("invalid_grant", 50057, "The user account is disabled.")
            }
            EventKind::AppRemoved => app_not_in_tenant(&app.client_id, &tenant.domain),
            EventKind::SecretExpired => continue,
        };
        return Some(err);
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn issue_delegated(
    sim: &Sim,
    w: &mut World,
    app: &crate::model::App,
    tenant_id: &str,
    user_id: &str,
    scopes: &[String],
    nonce: Option<&str>,
    base: &str,
) -> Result<Value, TokenErr> {
    let now = w.now();
    let tenant = w.tenants[tenant_id].clone();
    let user = w.users[user_id].clone();
    let lifetime = tenant.settings.access_token_lifetime_secs as i64;
    let res: Vec<String> = scopes
        .iter()
        .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
        .cloned()
        .collect();
    let claims = AccessClaims {
        aud: GRAPH_RESOURCE.into(),
        iss: format!("https://sts.windows.net/{tenant_id}/"),
        iat: now.unix_timestamp(),
        nbf: now.unix_timestamp(),
        exp: now.unix_timestamp() + lifetime,
        tid: tenant_id.into(),
        appid: app.client_id.clone(),
        app_displayname: app.display_name.clone(),
        idtyp: "user".into(),
        oid: user.id.clone(),
        sub: user.id.clone(),
        upn: Some(user.upn.clone()),
        unique_name: Some(user.upn.clone()),
        scp: Some(res.join(" ")),
        roles: None,
        uti: w.gen_.token(16),
        ver: "1.0".into(),
    };
    let mut scope_out: Vec<String> = res
        .iter()
        .map(|s| format!("{GRAPH_RESOURCE}/{s}"))
        .collect();
    for o in OIDC_SCOPES {
        if scopes.iter().any(|s| s == o) {
            scope_out.push(o.to_string());
        }
    }
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope_out.join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": sign_access_token(sim, &claims),
    });
    if scopes.iter().any(|s| s == "offline_access") {
        let rt = format!("1.A{}", w.gen_.token(150));
        let seq = w.gen_.next_seq();
        w.refresh_tokens.insert(
            rt.clone(),
            RefreshToken {
                client_id: app.client_id.clone(),
                user_id: user.id.clone(),
                tenant_id: tenant_id.into(),
                scopes: scopes.to_vec(),
                issued_seq: seq,
                issued_at: now,
                last_used: now,
            },
        );
        body["refresh_token"] = json!(rt);
    }
    if scopes.iter().any(|s| s == "openid") {
        let mut id = json!({
            "aud": app.client_id,
            "iss": format!("{base}/{tenant_id}/v2.0"),
            "iat": now.unix_timestamp(),
            "nbf": now.unix_timestamp(),
            "exp": now.unix_timestamp() + 3600,
            "tid": tenant_id,
            "oid": user.id,
            "sub": user.id,
            "name": user.display_name,
            "preferred_username": user.upn,
            "ver": "2.0",
        });
        if let Some(n) = nonce {
            id["nonce"] = json!(n);
        }
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("JWT".into());
        body["id_token"] = json!(
            jsonwebtoken::encode(&h, &id, &EncodingKey::from_secret(&sim.jwt_key)).expect("sign")
        );
    }
    Ok(body)
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

fn verify_assertion(
    app: &crate::model::App,
    assertion: &str,
    auds: &[String],
    now: OffsetDateTime,
) -> Result<(), TokenErr> {
    let invalid = |msg: String| TokenErr::new(401, "invalid_client", 700027, msg);
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| invalid(format!("Client assertion contains an invalid signature. [Reason - The token is malformed: {e}.]")))?;
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
        return Err(invalid(format!(
            "Client assertion contains an invalid signature. [Reason - The algorithm '{:?}' is not supported; use PS256 or RS256.]",
            header.alg
        )));
    }
    if app.certificates.is_empty() {
        return Err(invalid(format!(
            "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
            header
                .x5t_s256
                .clone()
                .or(header.x5t.clone())
                .unwrap_or_default(),
            app.client_id
        )));
    }
    let candidates: Vec<&crate::model::Certificate> = match &header.x5t_s256 {
        Some(t) => app
            .certificates
            .iter()
            .filter(|c| c.x5t_s256.as_deref() == Some(t.as_str()))
            .collect(),
        None => app.certificates.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(invalid(format!(
            "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
            header.x5t_s256.unwrap_or_default(),
            app.client_id
        )));
    }
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = true;
    v.set_audience(auds);
    v.required_spec_claims = ["aud".to_string()].into_iter().collect();
    let mut last_err = String::new();
    for c in candidates {
        let Ok(key) = DecodingKey::from_rsa_pem(c.public_key_pem.as_bytes()) else {
            continue;
        };
        match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v) {
            Ok(data) => {
                let cl = data.claims;
                if cl.iss.as_deref() != Some(app.client_id.as_str())
                    || cl.sub.as_deref() != Some(app.client_id.as_str())
                {
                    return Err(TokenErr::new(
                        401,
                        "invalid_client",
                        700021,
                        "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
                    ));
                }
                let Some(exp) = cl.exp else {
                    return Err(invalid(
                        "Client assertion is missing the 'exp' claim.".into(),
                    ));
                };
                if exp <= now.unix_timestamp()
                    || cl.nbf.is_some_and(|n| n > now.unix_timestamp() + 300)
                {
                    return Err(TokenErr::new(
                        401,
                        "invalid_client",
                        700024,
                        format!(
                            "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                            fmt_time(now),
                            cl.nbf
                                .and_then(|n| OffsetDateTime::from_unix_timestamp(n).ok())
                                .map(fmt_time)
                                .unwrap_or_default(),
                            OffsetDateTime::from_unix_timestamp(exp)
                                .map(fmt_time)
                                .unwrap_or_default()
                        ),
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidAudience) {
                    return Err(TokenErr::new(
                        401,
                        "invalid_client",
                        700212,
                        format!(
                            "The audience claim of the client assertion is not valid. Expected one of: {}.",
                            auds.join(", ")
                        ),
                    ));
                }
                last_err = e.to_string();
            }
        }
    }
    Err(invalid(format!(
        "Client assertion contains an invalid signature. [Reason - {last_err}]"
    )))
}

pub async fn openid_configuration(
    State(sim): State<Arc<Sim>>,
    Path(tenant_seg): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = sim.base_url(&headers);
    axum::Json(json!({
        "token_endpoint": format!("{base}/{tenant_seg}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tenant_seg}/oauth2/v2.0/authorize"),
        "issuer": format!("{base}/{tenant_seg}/v2.0"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}
