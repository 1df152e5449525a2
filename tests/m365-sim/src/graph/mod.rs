//! Microsoft Graph under `/v1.0`: request pipeline (authentication, mailbox resolution, access
//! checks, faults, throttling, request log) shared by direct requests and `$batch` items.

pub mod batch;
pub mod delta;
pub mod mail;
pub mod query;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::faults::{self, FaultKind, Throttled};
use crate::identity::{TokenCheck, verify_access_token};
use crate::model::{AccessRight, LogEntry, World};
use crate::util::{Prefer, fmt_time, graph_error_body, parse_prefer, parse_query, percent_decode};
use crate::{ConnCtl, Sim};

pub const JSON_CT: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// One Graph request (direct or a batch item).
#[derive(Clone)]
pub struct GReq {
    pub method: Method,
    /// Raw path after `/v1.0`, e.g. `/users/a%40b.com/messages`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Scheme and host, e.g. `http://127.0.0.1:4000`.
    pub base: String,
    pub batched: bool,
}

impl GReq {
    pub fn q(&self, k: &str) -> Option<&str> {
        crate::util::query_get(&self.query, k)
    }
    pub fn json_body(&self) -> Result<Value, GErr> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| GErr::new(400, "RequestBodyRead", &format!("Invalid JSON. {e}")))
    }
}

#[derive(Debug, Clone)]
pub enum GBody {
    None,
    Json(Value),
    Raw(String),
}

#[derive(Debug, Clone)]
pub struct GResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: GBody,
    pub drop_conn: bool,
}

impl GResp {
    pub fn json(status: u16, v: Value) -> Self {
        Self {
            status,
            headers: vec![],
            body: GBody::Json(v),
            drop_conn: false,
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: GBody::None,
            drop_conn: false,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn error_code(&self) -> Option<String> {
        match &self.body {
            GBody::Json(v) => v
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        }
    }
}

/// A Graph error, rendered as `{"error":{"code","message","innerError"}}`.
#[derive(Debug, Clone)]
pub struct GErr {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

impl GErr {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: vec![],
        }
    }
    pub fn item_not_found() -> Self {
        Self::new(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }
    pub fn access_denied() -> Self {
        Self::new(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    }
    pub fn bad(code: &str, message: &str) -> Self {
        Self::new(400, code, message)
    }
    pub fn with_header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn into_resp(self, w: &mut World, req: &GReq) -> GResp {
        let now = w.now();
        let rid = w.gen_.uuid();
        let crid = req
            .headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| rid.clone());
        GResp {
            status: self.status,
            headers: self.headers,
            body: GBody::Json(graph_error_body(
                &self.code,
                &self.message,
                now,
                &rid,
                &crid,
            )),
            drop_conn: false,
        }
    }
}

/// Who is calling, from the access token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant_id: String,
    pub app_id: String,
    pub user_id: Option<String>,
    pub scopes: BTreeSet<String>,
    pub roles: BTreeSet<String>,
}

impl Caller {
    pub fn app_only(&self) -> bool {
        self.user_id.is_none()
    }
    fn has_any(&self, names: &[&str]) -> bool {
        let set = if self.app_only() {
            &self.roles
        } else {
            &self.scopes
        };
        names
            .iter()
            .any(|n| set.iter().any(|s| s.eq_ignore_ascii_case(n)))
    }
}

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Need {
    UserRead,
    MailRead,
    MailWrite,
    MailSend,
    SettingsRead,
    SettingsWrite,
}

fn permitted(c: &Caller, need: Need, own: bool) -> bool {
    use Need::*;
    if c.app_only() {
        return match need {
            UserRead => c.has_any(&["User.Read.All", "User.ReadBasic.All", "User.ReadWrite.All"]),
            MailRead => c.has_any(&[
                "Mail.Read",
                "Mail.ReadWrite",
                "Mail.ReadBasic",
                "Mail.ReadBasic.All",
            ]),
            MailWrite => c.has_any(&["Mail.ReadWrite"]),
            MailSend => c.has_any(&["Mail.Send"]),
            SettingsRead => c.has_any(&["MailboxSettings.Read", "MailboxSettings.ReadWrite"]),
            SettingsWrite => c.has_any(&["MailboxSettings.ReadWrite"]),
        };
    }
    if own {
        match need {
            UserRead => c.has_any(&[
                "User.Read",
                "User.ReadWrite",
                "User.ReadBasic.All",
                "User.Read.All",
                "User.ReadWrite.All",
            ]),
            MailRead => c.has_any(&[
                "Mail.Read",
                "Mail.ReadWrite",
                "Mail.ReadBasic",
                "Mail.Read.Shared",
                "Mail.ReadWrite.Shared",
            ]),
            MailWrite => c.has_any(&["Mail.ReadWrite", "Mail.ReadWrite.Shared"]),
            MailSend => c.has_any(&["Mail.Send", "Mail.Send.Shared"]),
            SettingsRead => c.has_any(&["MailboxSettings.Read", "MailboxSettings.ReadWrite"]),
            SettingsWrite => c.has_any(&["MailboxSettings.ReadWrite"]),
        }
    } else {
        match need {
            UserRead => c.has_any(&["User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All"]),
            MailRead => c.has_any(&["Mail.Read.Shared", "Mail.ReadWrite.Shared"]),
            MailWrite => c.has_any(&["Mail.ReadWrite.Shared"]),
            MailSend => c.has_any(&["Mail.Send.Shared"]),
            SettingsRead | SettingsWrite => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Move,
    Copy,
    Forward,
    CreateForward,
    Send,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    User,
    /// List or create folders: top level (None) or children of a folder.
    Folders(Option<String>),
    Folder(String),
    FolderMessages(String),
    Delta(String),
    Messages,
    Message(String),
    MessageAction(String, Action),
    Categories,
}

/// Splits a raw path into decoded segments; `name('value')` becomes `name`, `value`.
pub fn segments(path: &str) -> Vec<String> {
    let mut out = vec![];
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let s = percent_decode(raw, false);
        if let Some(open) = s.find("('")
            && s.ends_with("')")
        {
            out.push(s[..open].to_string());
            out.push(s[open + 2..s.len() - 2].replace("''", "'"));
            continue;
        }
        if let Some(open) = s.find('(')
            && s.ends_with(')')
            && open > 0
        {
            out.push(s[..open].to_string());
            out.push(s[open + 1..s.len() - 1].to_string());
            continue;
        }
        out.push(s);
    }
    out
}

fn is(s: &str, k: &str) -> bool {
    s.eq_ignore_ascii_case(k)
}

/// Parses the part after `/me` or `/users/{id}`.
pub fn parse_route(rest: &[String]) -> Option<Route> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    let action = |a: &str| -> Option<Action> {
        Some(match a.to_ascii_lowercase().as_str() {
            "move" => Action::Move,
            "copy" => Action::Copy,
            "forward" => Action::Forward,
            "createforward" => Action::CreateForward,
            "send" => Action::Send,
            _ => return None,
        })
    };
    let messages = |r: &[&str], folder: Option<String>| -> Option<Route> {
        match r {
            [] => Some(match folder {
                Some(f) => Route::FolderMessages(f),
                None => Route::Messages,
            }),
            [d] if is(d, "delta") => folder.map(Route::Delta),
            [m] => Some(Route::Message(m.to_string())),
            [m, a] => Some(Route::MessageAction(m.to_string(), action(a)?)),
            _ => None,
        }
    };
    match r.as_slice() {
        [] => Some(Route::User),
        [o, c] if is(o, "outlook") && is(c, "masterCategories") => Some(Route::Categories),
        [m, rest @ ..] if is(m, "messages") => messages(rest, None),
        [f] if is(f, "mailFolders") => Some(Route::Folders(None)),
        [f, id, rest @ ..] if is(f, "mailFolders") => {
            let mut folder = id.to_string();
            let mut rest = rest;
            while rest.len() >= 2 && is(rest[0], "childFolders") {
                folder = rest[1].to_string();
                rest = &rest[2..];
            }
            match rest {
                [] => Some(Route::Folder(folder)),
                [c] if is(c, "childFolders") => Some(Route::Folders(Some(folder))),
                [m, rest @ ..] if is(m, "messages") => messages(rest, Some(folder)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn need_for(route: &Route, method: &Method) -> Result<Need, GErr> {
    let bad_method = || {
        GErr::new(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    };
    let m = method.as_str();
    Ok(match route {
        Route::User => match m {
            "GET" => Need::UserRead,
            _ => return Err(bad_method()),
        },
        Route::Folders(_) => match m {
            "GET" => Need::MailRead,
            "POST" => Need::MailWrite,
            _ => return Err(bad_method()),
        },
        Route::Folder(_) | Route::FolderMessages(_) | Route::Messages | Route::Delta(_) => {
            match m {
                "GET" => Need::MailRead,
                _ => return Err(bad_method()),
            }
        }
        Route::Message(_) => match m {
            "GET" => Need::MailRead,
            "PATCH" | "DELETE" => Need::MailWrite,
            _ => return Err(bad_method()),
        },
        Route::MessageAction(_, a) => {
            if m != "POST" {
                return Err(bad_method());
            }
            match a {
                Action::Forward | Action::Send => Need::MailSend,
                _ => Need::MailWrite,
            }
        }
        Route::Categories => match m {
            "GET" => Need::SettingsRead,
            "POST" => Need::SettingsWrite,
            _ => return Err(bad_method()),
        },
    })
}

/// Per-request context handed to the handlers.
pub struct Ctx {
    pub caller: Caller,
    /// Target user id (mailbox owner).
    pub user_id: String,
    /// `/me` or `/users/{segment}` as requested (raw), for links.
    pub prefix: String,
    pub prefer: Prefer,
    pub base: String,
}

impl Ctx {
    pub fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base)
    }
}

#[derive(Default)]
struct LogInfo {
    mailbox: Option<String>,
    tenant: Option<String>,
    app: Option<String>,
    user: Option<String>,
    fault: Option<String>,
}

/// Runs one Graph request through the whole pipeline and logs it.
pub async fn execute(sim: &Arc<Sim>, req: GReq) -> GResp {
    let mut info = LogInfo::default();
    let resp = execute_inner(sim, &req, &mut info).await;
    let mut w = sim.world();
    let now = w.now();
    let code = resp.error_code();
    w.log_entry(LogEntry {
        seq: 0,
        time: fmt_time(now),
        kind: "graph".into(),
        method: req.method.to_string(),
        path: format!("/v1.0{}", req.path),
        query: crate::util::encode_query(&req.query),
        status: resp.status,
        mailbox: info.mailbox,
        tenant: info.tenant,
        app_id: info.app,
        user: info.user,
        grant_type: None,
        batched: req.batched,
        fault: info.fault,
        error_code: code,
    });
    resp
}

fn finish(sim: &Sim, req: &GReq, e: GErr) -> GResp {
    let mut w = sim.world();
    e.into_resp(&mut w, req)
}

fn authenticate(sim: &Sim, req: &GReq) -> Result<Caller, GErr> {
    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .unwrap_or("");
    let w = sim.world();
    let unauth = |msg: &str| {
        GErr::new(401, "InvalidAuthenticationToken", msg).with_header(
            "WWW-Authenticate",
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        )
    };
    let claims = match verify_access_token(sim, token, w.now()) {
        TokenCheck::Valid(c) => *c,
        TokenCheck::Missing => return Err(unauth("Access token is empty.")),
        TokenCheck::Expired => return Err(unauth("Access token has expired or is not yet valid.")),
        TokenCheck::Invalid(e) => {
            return Err(unauth(&format!("Access token validation failure. {e}")));
        }
    };
    let Some(tenant) = w.tenants.get(&claims.tid) else {
        return Err(unauth("Access token validation failure. Invalid tenant."));
    };
    if !tenant.service_principals.contains_key(&claims.appid) {
        return Err(unauth(
            "Access token validation failure. The application was not found in the tenant.",
        ));
    }
    let user_id = if claims.idtyp == "user" {
        Some(claims.oid.clone())
    } else {
        None
    };
    Ok(Caller {
        tenant_id: claims.tid,
        app_id: claims.appid,
        user_id,
        scopes: claims
            .scp
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        roles: claims.roles.unwrap_or_default().into_iter().collect(),
    })
}

async fn execute_inner(sim: &Arc<Sim>, req: &GReq, info: &mut LogInfo) -> GResp {
    let segs = segments(&req.path);
    if segs.first().is_some_and(|s| s == "$batch") && segs.len() == 1 {
        if req.batched {
            return finish(
                sim,
                req,
                GErr::bad("BadRequest", "Nested batch requests are not supported."),
            );
        }
        if req.method != Method::POST {
            return finish(
                sim,
                req,
                GErr::new(405, "BadRequest", "Batch requests must use POST."),
            );
        }
        let fault = {
            let mut w = sim.world();
            let path = format!("/v1.0{}", req.path);
            w.faults.pick(&faults::FaultCtx {
                target: "graph",
                method: req.method.as_str(),
                path: &path,
                mailbox_ids: &[],
                batched: false,
            })
        };
        let mut malformed = false;
        if let Some(f) = &fault {
            info.fault = Some(f.kind.name().to_string());
            match apply_fault(sim, req, f).await {
                FaultOutcome::Respond(r) => return r,
                FaultOutcome::Continue { malformed: m } => malformed = m,
            }
        }
        let resp = batch::handle(sim.clone(), req.clone()).await;
        return if malformed { truncate(resp) } else { resp };
    }
    let caller = match authenticate(sim, req) {
        Ok(c) => c,
        Err(e) => return finish(sim, req, e),
    };
    info.tenant = Some(caller.tenant_id.clone());
    info.app = Some(caller.app_id.clone());
    // Resolve the target user.
    let raw_segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let (target_key, prefix, rest): (String, String, Vec<String>) = match segs.first() {
        Some(s) if is(s, "me") => {
            let Some(u) = caller.user_id.clone() else {
                return finish(
                    sim,
                    req,
                    GErr::bad(
                        "BadRequest",
                        "/me request is only valid with delegated authentication flow.",
                    ),
                );
            };
            (u, "/me".into(), segs[1..].to_vec())
        }
        Some(s) if is(s, "users") && segs.len() >= 2 => {
            // Keep `users('x')` or `users/x` as sent, for links.
            let prefix = if raw_segs.first().is_some_and(|r| r.contains('(')) {
                format!("/{}", raw_segs[0])
            } else {
                format!("/{}/{}", raw_segs[0], raw_segs.get(1).unwrap_or(&""))
            };
            (segs[1].clone(), prefix, segs[2..].to_vec())
        }
        Some(s) => {
            return finish(
                sim,
                req,
                GErr::bad(
                    "BadRequest",
                    &format!("Resource not found for the segment '{s}'."),
                ),
            );
        }
        None => {
            return finish(sim, req, GErr::bad("BadRequest", "Invalid request."));
        }
    };
    let Some(route) = parse_route(&rest) else {
        let seg = rest.last().cloned().unwrap_or_default();
        return finish(
            sim,
            req,
            GErr::bad(
                "BadRequest",
                &format!("Resource not found for the segment '{seg}'."),
            ),
        );
    };
    let (user, own) = {
        let w = sim.world();
        if let Some(u) = &caller.user_id {
            info.user = w.users.get(u).map(|u| u.upn.clone());
        }
        let Some(user) = w.find_user(&target_key).cloned() else {
            drop(w);
            return finish(
                sim,
                req,
                GErr::new(
                    404,
                    "ErrorInvalidUser",
                    &format!("The requested user '{target_key}' is invalid."),
                ),
            );
        };
        let own = caller.user_id.as_deref() == Some(user.id.as_str());
        (user, own)
    };
    info.mailbox = Some(user.upn.clone());
    if user.tenant_id != caller.tenant_id {
        return finish(sim, req, GErr::access_denied());
    }
    // Faults.
    let fault = {
        let mut w = sim.world();
        let ids = [user.id.clone(), user.upn.clone()];
        // The query is part of what `path_contains` sees, so a rule can single out e.g. the
        // `$skiptoken` pages of a delta round.
        let path = match crate::util::encode_query(&req.query) {
            q if q.is_empty() => format!("/v1.0{}", req.path),
            q => format!("/v1.0{}?{q}", req.path),
        };
        w.faults.pick(&faults::FaultCtx {
            target: "graph",
            method: req.method.as_str(),
            path: &path,
            mailbox_ids: &ids,
            batched: req.batched,
        })
    };
    let mut malformed = false;
    if let Some(f) = &fault {
        info.fault = Some(f.kind.name().to_string());
        match apply_fault(sim, req, f).await {
            FaultOutcome::Respond(r) => return r,
            FaultOutcome::Continue { malformed: m } => malformed = m,
        }
    }
    let need = match need_for(&route, &req.method) {
        Ok(n) => n,
        Err(e) => return finish(sim, req, e),
    };
    // Permissions.
    if need == Need::UserRead {
        if !permitted(&caller, need, own) {
            return finish(
                sim,
                req,
                GErr::new(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                ),
            );
        }
    } else {
        if !user.has_mailbox {
            return finish(
                sim,
                req,
                GErr::new(
                    404,
                    "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                ),
            );
        }
        if !permitted(&caller, need, own) {
            return finish(sim, req, GErr::access_denied());
        }
        let w = sim.world();
        if caller.app_only() {
            let tenant = &w.tenants[&caller.tenant_id];
            let policies: Vec<_> = tenant
                .access_policies
                .iter()
                .filter(|p| p.app_id == caller.app_id)
                .collect();
            let denied = policies.iter().any(|p| {
                p.access_right == AccessRight::DenyAccess && p.mailboxes.contains(&user.id)
            });
            let restricts: Vec<_> = policies
                .iter()
                .filter(|p| p.access_right == AccessRight::RestrictAccess)
                .collect();
            let allowed_by_restrict =
                restricts.is_empty() || restricts.iter().any(|p| p.mailboxes.contains(&user.id));
            if denied || !allowed_by_restrict {
                drop(w);
                return finish(
                    sim,
                    req,
                    GErr::new(403, "ErrorAccessDenied", "Access to OData is disabled."),
                );
            }
        } else if !own {
            let me = caller.user_id.as_deref().and_then(|u| w.users.get(u));
            let granted = me.is_some_and(|m| m.shared_access.contains(&user.id));
            if !granted {
                drop(w);
                return finish(sim, req, GErr::access_denied());
            }
        }
    }
    // Throttling (per app per mailbox).
    let _guard = if need != Need::UserRead {
        match faults::admit(sim, &caller.app_id, &user.id) {
            Ok(g) => g,
            Err(Throttled::Budget(secs)) => {
                info.fault = Some("throttled".into());
                return throttled_resp(sim, req, "TooManyRequests", &secs.to_string());
            }
            Err(Throttled::Concurrency(ra)) => {
                info.fault = Some("throttled".into());
                return finish(
                    sim,
                    req,
                    GErr::new(
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.",
                    )
                    .with_header("Retry-After", ra),
                );
            }
        }
    } else {
        None
    };
    let latency = sim.world().settings.graph_latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let ctx = Ctx {
        caller,
        user_id: user.id.clone(),
        prefix,
        prefer: parse_prefer(&req.headers),
        base: req.base.clone(),
    };
    let mut resp = {
        let mut w = sim.world();
        let r = match &route {
            Route::Delta(f) => delta::handle(&mut w, &ctx, req, f),
            _ => mail::handle(&mut w, &ctx, req, &route),
        };
        match r {
            Ok(r) => r,
            Err(e) => e.into_resp(&mut w, req),
        }
    };
    if ctx.prefer.immutable_ids {
        // Graph echoes the preferences it applied.
        let has = resp
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case("Preference-Applied"));
        match has {
            Some((_, v)) => v.push_str(", IdType=\"ImmutableId\""),
            None => resp
                .headers
                .push(("Preference-Applied".into(), "IdType=\"ImmutableId\"".into())),
        }
    }
    if malformed {
        resp = truncate(resp);
    }
    resp
}

/// A 200 with the first half of the JSON body (the "malformed page" fault).
fn truncate(mut resp: GResp) -> GResp {
    let full = match &resp.body {
        GBody::Json(v) => v.to_string(),
        _ => "{\"value\":[]}".to_string(),
    };
    let mut cut_at = (full.len() / 2).max(1);
    while !full.is_char_boundary(cut_at) {
        cut_at -= 1;
    }
    resp.status = 200;
    resp.body = GBody::Raw(full[..cut_at].to_string());
    resp
}

enum FaultOutcome {
    Respond(GResp),
    Continue { malformed: bool },
}

async fn apply_fault(sim: &Sim, req: &GReq, f: &faults::FaultRule) -> FaultOutcome {
    match f.kind {
        FaultKind::Delay => {
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms.unwrap_or(1000))).await;
            FaultOutcome::Continue { malformed: false }
        }
        FaultKind::Malformed => FaultOutcome::Continue { malformed: true },
        FaultKind::Drop => FaultOutcome::Respond(GResp {
            status: 0,
            headers: vec![],
            body: GBody::None,
            drop_conn: true,
        }),
        FaultKind::Throttle => {
            let ra = f.retry_after.clone().unwrap_or_else(|| "1".into());
            let code = f.code.clone().unwrap_or_else(|| "TooManyRequests".into());
            FaultOutcome::Respond(throttled_resp(sim, req, &code, &ra))
        }
        FaultKind::Unavailable => {
            let mut e = GErr::new(
                503,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry after a delay.",
            );
            if let Some(ra) = &f.retry_after {
                e = e.with_header("Retry-After", ra.clone());
            }
            FaultOutcome::Respond(finish(sim, req, e))
        }
        FaultKind::GatewayTimeout => FaultOutcome::Respond(finish(
            sim,
            req,
            GErr::new(
                504,
                "UnknownError",
                "The operation did not complete within the allotted timeout.",
            ),
        )),
    }
}

fn throttled_resp(sim: &Sim, req: &GReq, code: &str, retry_after: &str) -> GResp {
    let mut w = sim.world();
    let now = w.now();
    let rid = w.gen_.uuid();
    let body = serde_json::json!({
        "error": {
            "code": code,
            "message": if code == "ApplicationThrottled" {
                "Application is over its MailboxConcurrency limit."
            } else {
                "Please retry again later."
            },
            "innerError": {
                "code": "429",
                "date": crate::util::fmt_inner_date(now),
                "message": "Please retry after",
                "request-id": rid,
                "client-request-id": req.headers.get("client-request-id").and_then(|v| v.to_str().ok()).unwrap_or(&rid),
                "status": "429",
            }
        }
    });
    GResp::json(429, body).header("Retry-After", retry_after)
}

/// axum entry for everything under `/v1.0`.
pub async fn entry(State(sim): State<Arc<Sim>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let conn = parts.extensions.get::<ConnCtl>().cloned();
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => Bytes::new(),
    };
    let path = parts.uri.path();
    let path = path.strip_prefix("/v1.0").unwrap_or(path).to_string();
    let req = GReq {
        method: parts.method.clone(),
        path,
        query: parse_query(parts.uri.query().unwrap_or("")),
        base: sim.base_url(&parts.headers),
        headers: parts.headers,
        body,
        batched: false,
    };
    let resp = execute(&sim, req.clone()).await;
    to_http(&sim, resp, conn, &req).await
}

async fn to_http(sim: &Sim, resp: GResp, conn: Option<ConnCtl>, req: &GReq) -> Response {
    if resp.drop_conn {
        if let Some(c) = conn {
            c.0.notify_one();
            std::future::pending::<()>().await;
        }
        return dropped_response();
    }
    let rid = sim.world().gen_.uuid();
    let crid = req
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&rid)
        .to_string();
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match resp.body {
        GBody::None => status.into_response(),
        GBody::Json(v) => (status, [("content-type", JSON_CT)], v.to_string()).into_response(),
        GBody::Raw(s) => (status, [("content-type", JSON_CT)], s).into_response(),
    };
    let h = r.headers_mut();
    h.insert("request-id", HeaderValue::from_str(&rid).expect("uuid"));
    if let Ok(v) = HeaderValue::from_str(&crid) {
        h.insert("client-request-id", v);
    }
    h.insert("odata-version", HeaderValue::from_static("4.0"));
    for (k, v) in resp.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(&v)) {
            h.append(k, v);
        }
    }
    r
}

/// What a handler returns when asked to drop a connection but no [`ConnCtl`] is available
/// (router served by plain `axum::serve`): an empty 502, the closest thing.
pub fn dropped_response() -> Response {
    StatusCode::BAD_GATEWAY.into_response()
}

pub async fn not_found(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let _ = headers;
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        serde_json::json!({"error": {"code": "NotFound", "message": format!("No route for {}", uri.path())}}).to_string(),
    )
        .into_response()
}
