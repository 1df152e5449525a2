//! Control and observation API under `/_sim` (see README.md for the full list).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Sim;
use crate::faults::FaultRule;
use crate::model::{
    AccessPolicy, AccessRight, Addr, App, Certificate, DeltaExpiry, EventKind, IdentityEvent,
    Interactive, Mailbox, Message, Secret, Settings, Tenant, TenantSettings, ThrottleConfig, User,
    UserKind, World,
};
use crate::util::{fmt_time, parse_time, trunc_secs};

type CResult = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn cerr(status: StatusCode, msg: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"error": msg.into()})))
}
fn not_found(what: &str) -> (StatusCode, Json<Value>) {
    cerr(StatusCode::NOT_FOUND, format!("{what} not found"))
}
fn bad(msg: impl Into<String>) -> (StatusCode, Json<Value>) {
    cerr(StatusCode::BAD_REQUEST, msg)
}

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/reset", post(reset))
        .route("/state", get(state))
        .route("/tenants", post(create_tenant))
        .route("/tenants/{t}", get(get_tenant).patch(patch_tenant))
        .route("/tenants/{t}/admin-consent", post(tenant_admin_consent))
        .route(
            "/tenants/{t}/access-policies",
            put(put_policies).get(get_policies),
        )
        .route("/apps", post(create_app))
        .route("/apps/{cid}", get(get_app))
        .route("/apps/{cid}/secrets", post(add_secret))
        .route("/apps/{cid}/certificates", post(add_certificate))
        .route("/users", post(create_user))
        .route("/users/{u}", get(get_user).patch(patch_user))
        .route("/users/{u}/shared-access", post(grant_shared))
        .route("/interactive", put(put_interactive).get(get_interactive))
        .route("/events", post(trigger_event).get(list_events))
        .route(
            "/faults",
            get(get_faults)
                .put(put_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route("/throttling", get(get_throttling).put(put_throttling))
        .route("/settings", get(get_settings).put(put_settings))
        .route("/clock/advance", post(advance_clock))
        .route("/delta/expire", post(expire_all_delta))
        .route("/mailboxes/{m}/delta/expire", post(expire_mailbox_delta))
        .route(
            "/mailboxes/{m}/messages",
            post(deliver_messages).get(list_messages),
        )
        .route(
            "/mailboxes/{m}/messages/{id}",
            get(get_message)
                .patch(user_patch_message)
                .delete(user_delete_message),
        )
        .route("/mailboxes/{m}/messages/{id}/move", post(user_move_message))
        .route(
            "/mailboxes/{m}/folders",
            get(list_folders).post(user_create_folder),
        )
        .route("/mailboxes/{m}/categories", get(list_categories))
        .route("/mailboxes/{m}/generate", post(generate_messages))
        .route("/sent", get(list_sent).delete(clear_sent))
        .route("/requests", get(list_requests).delete(clear_requests))
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ResetBody {
    seed: Option<u64>,
}

async fn reset(State(sim): State<Arc<Sim>>, body: Option<Json<ResetBody>>) -> CResult {
    let seed = body.and_then(|b| b.0.seed);
    sim.reset(seed);
    Ok(Json(json!({"ok": true})))
}

async fn state(State(sim): State<Arc<Sim>>) -> CResult {
    let w = sim.world();
    Ok(Json(json!({
        "tenants": w.tenants.values().collect::<Vec<_>>(),
        "apps": w.apps.values().collect::<Vec<_>>(),
        "users": w.users.values().collect::<Vec<_>>(),
        "seed": w.seed,
        "now": fmt_time(w.now()),
    })))
}

#[derive(Deserialize)]
struct TenantBody {
    id: Option<String>,
    domain: String,
    display_name: Option<String>,
    #[serde(default)]
    settings: Option<TenantSettings>,
}

async fn create_tenant(State(sim): State<Arc<Sim>>, Json(b): Json<TenantBody>) -> CResult {
    let mut w = sim.world();
    let id = b.id.unwrap_or_else(|| w.gen_.uuid());
    if w.find_tenant(&id).is_some() || w.find_tenant(&b.domain).is_some() {
        return Err(cerr(StatusCode::CONFLICT, "tenant exists"));
    }
    let t = Tenant {
        id: id.clone(),
        domain: b.domain.clone(),
        display_name: b.display_name.unwrap_or_else(|| b.domain.clone()),
        settings: b.settings.unwrap_or_default(),
        mfa_required: false,
        service_principals: BTreeMap::new(),
        access_policies: vec![],
    };
    w.tenants.insert(id.clone(), t.clone());
    Ok(Json(json!(t)))
}

fn tenant_id(w: &World, t: &str) -> Result<String, (StatusCode, Json<Value>)> {
    w.find_tenant(t)
        .map(|t| t.id.clone())
        .ok_or_else(|| not_found("tenant"))
}

async fn get_tenant(State(sim): State<Arc<Sim>>, Path(t): Path<String>) -> CResult {
    let w = sim.world();
    let id = tenant_id(&w, &t)?;
    Ok(Json(json!(w.tenants[&id])))
}

async fn patch_tenant(
    State(sim): State<Arc<Sim>>,
    Path(t): Path<String>,
    Json(patch): Json<Value>,
) -> CResult {
    let mut w = sim.world();
    let id = tenant_id(&w, &t)?;
    let tenant = w.tenants.get_mut(&id).expect("tenant");
    let settings_patch = patch.get("settings").cloned().unwrap_or(patch.clone());
    let mut cur = serde_json::to_value(&tenant.settings).expect("settings");
    if let (Some(c), Some(p)) = (cur.as_object_mut(), settings_patch.as_object()) {
        for (k, v) in p {
            if c.contains_key(k) {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    tenant.settings = serde_json::from_value(cur).map_err(|e| bad(e.to_string()))?;
    if let Some(n) = patch.get("display_name").and_then(Value::as_str) {
        tenant.display_name = n.to_string();
    }
    Ok(Json(json!(tenant)))
}

#[derive(Deserialize)]
struct ConsentBody {
    client_id: String,
}

async fn tenant_admin_consent(
    State(sim): State<Arc<Sim>>,
    Path(t): Path<String>,
    Json(b): Json<ConsentBody>,
) -> CResult {
    let mut w = sim.world();
    let id = tenant_id(&w, &t)?;
    if !w.apps.contains_key(&b.client_id) {
        return Err(not_found("app"));
    }
    crate::identity::grant_admin_consent(&mut w, &id, &b.client_id);
    Ok(Json(json!(w.tenants[&id].service_principals[&b.client_id])))
}

#[derive(Deserialize)]
struct PolicyBody {
    app_id: String,
    #[serde(default = "default_restrict")]
    access_right: AccessRight,
    mailboxes: Vec<String>,
}
fn default_restrict() -> AccessRight {
    AccessRight::RestrictAccess
}

#[derive(Deserialize)]
struct PoliciesBody {
    policies: Vec<PolicyBody>,
}

async fn put_policies(
    State(sim): State<Arc<Sim>>,
    Path(t): Path<String>,
    Json(b): Json<PoliciesBody>,
) -> CResult {
    let mut w = sim.world();
    let id = tenant_id(&w, &t)?;
    let mut out = vec![];
    for p in b.policies {
        let mut set = BTreeSet::new();
        for m in p.mailboxes {
            let u = w
                .find_user(&m)
                .ok_or_else(|| not_found(&format!("mailbox {m}")))?;
            set.insert(u.id.clone());
        }
        out.push(AccessPolicy {
            app_id: p.app_id,
            access_right: p.access_right,
            mailboxes: set,
        });
    }
    w.tenants.get_mut(&id).expect("tenant").access_policies = out.clone();
    Ok(Json(json!({"policies": out})))
}

async fn get_policies(State(sim): State<Arc<Sim>>, Path(t): Path<String>) -> CResult {
    let w = sim.world();
    let id = tenant_id(&w, &t)?;
    Ok(Json(json!({"policies": w.tenants[&id].access_policies})))
}

#[derive(Deserialize, Default)]
struct SecretBody {
    value: Option<String>,
    id: Option<String>,
    expires_in_secs: Option<i64>,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct CertBody {
    pem: String,
}

#[derive(Deserialize)]
struct AppBody {
    client_id: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    secrets: Vec<SecretBody>,
    #[serde(default)]
    certificates: Vec<CertBody>,
    #[serde(default)]
    application_permissions: Vec<String>,
    #[serde(default)]
    delegated_scopes: Vec<String>,
}

fn make_secret(w: &mut World, b: SecretBody) -> Result<Secret, (StatusCode, Json<Value>)> {
    let now = w.now();
    let expires_at = match (b.expires_at, b.expires_in_secs) {
        (Some(s), _) => Some(
            parse_time(&s)
                .ok_or_else(|| bad("expires_at must be RFC 3339"))?
                .unix_timestamp(),
        ),
        (None, Some(n)) => Some(now.unix_timestamp() + n),
        (None, None) => None,
    };
    Ok(Secret {
        id: b.id.unwrap_or_else(|| w.gen_.uuid()),
        value: b
            .value
            .unwrap_or_else(|| format!("sim~{}", w.gen_.token(30))),
        expires_at,
    })
}

async fn create_app(State(sim): State<Arc<Sim>>, Json(b): Json<AppBody>) -> CResult {
    let mut w = sim.world();
    let client_id = b.client_id.unwrap_or_else(|| w.gen_.uuid());
    if w.apps.contains_key(&client_id) {
        return Err(cerr(StatusCode::CONFLICT, "app exists"));
    }
    let mut secrets = vec![];
    for s in b.secrets {
        secrets.push(make_secret(&mut w, s)?);
    }
    let mut certs = vec![];
    for c in b.certificates {
        let id = w.gen_.uuid();
        certs.push(parse_cert(&c.pem, id).map_err(bad)?);
    }
    let app = App {
        client_id: client_id.clone(),
        display_name: b.display_name.unwrap_or_else(|| "Mail Automation".into()),
        redirect_uris: b.redirect_uris,
        secrets,
        certificates: certs,
        application_permissions: b.application_permissions,
        delegated_scopes: b.delegated_scopes,
    };
    w.apps.insert(client_id, app.clone());
    Ok(Json(json!(app)))
}

async fn get_app(State(sim): State<Arc<Sim>>, Path(cid): Path<String>) -> CResult {
    let w = sim.world();
    Ok(Json(json!(
        w.apps.get(&cid).ok_or_else(|| not_found("app"))?
    )))
}

async fn add_secret(
    State(sim): State<Arc<Sim>>,
    Path(cid): Path<String>,
    body: Option<Json<SecretBody>>,
) -> CResult {
    let mut w = sim.world();
    if !w.apps.contains_key(&cid) {
        return Err(not_found("app"));
    }
    let s = make_secret(&mut w, body.map(|b| b.0).unwrap_or_default())?;
    w.apps.get_mut(&cid).expect("app").secrets.push(s.clone());
    Ok(Json(json!(s)))
}

async fn add_certificate(
    State(sim): State<Arc<Sim>>,
    Path(cid): Path<String>,
    Json(b): Json<CertBody>,
) -> CResult {
    let mut w = sim.world();
    if !w.apps.contains_key(&cid) {
        return Err(not_found("app"));
    }
    let id = w.gen_.uuid();
    let c = parse_cert(&b.pem, id).map_err(bad)?;
    w.apps
        .get_mut(&cid)
        .expect("app")
        .certificates
        .push(c.clone());
    Ok(Json(json!(c)))
}

// --- certificates ------------------------------------------------------------------------------

fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    let b = *d.get(1)?;
    let mut i = 2;
    let len = if b < 0x80 {
        b as usize
    } else {
        let n = (b & 0x7f) as usize;
        let mut l = 0usize;
        for _ in 0..n {
            l = (l << 8) | *d.get(i)? as usize;
            i += 1;
        }
        l
    };
    let content = d.get(i..i + len)?;
    Some((tag, content, &d[i + len..]))
}

fn spki_from_cert(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xA0 {
        rest = r;
    }
    for _ in 0..5 {
        let (_, _, r) = tlv(rest)?;
        rest = r;
    }
    let (_, _, r) = tlv(rest)?;
    Some(rest[..rest.len() - r.len()].to_vec())
}

fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let a = pem.find(&begin)? + begin.len();
    let b = pem[a..].find(&end)? + a;
    let b64: String = pem[a..b].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn to_pem(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("ascii"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Accepts a certificate PEM (public key and thumbprints extracted) or a public key PEM.
pub fn parse_cert(pem: &str, id: String) -> Result<Certificate, String> {
    let (public_key_pem, x5t_s256) = if let Some(der) = pem_body(pem, "CERTIFICATE") {
        let spki = spki_from_cert(&der).ok_or("cannot parse the certificate")?;
        let thumb = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
        (to_pem(&spki, "PUBLIC KEY"), Some(thumb))
    } else if pem.contains("BEGIN PUBLIC KEY") || pem.contains("BEGIN RSA PUBLIC KEY") {
        (pem.to_string(), None)
    } else {
        return Err("expected a CERTIFICATE or PUBLIC KEY PEM".into());
    };
    jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
        .map_err(|e| format!("not an RSA public key: {e}"))?;
    Ok(Certificate {
        id,
        x5t_s256,
        x5t: None,
        public_key_pem,
    })
}

// --- users -------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct UserBody {
    tenant: String,
    upn: String,
    id: Option<String>,
    display_name: Option<String>,
    mail: Option<String>,
    #[serde(default = "yes")]
    mailbox: bool,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    kind: Option<String>,
}
fn yes() -> bool {
    true
}

async fn create_user(State(sim): State<Arc<Sim>>, Json(b): Json<UserBody>) -> CResult {
    let mut w = sim.world();
    let tid = tenant_id(&w, &b.tenant)?;
    if w.find_user(&b.upn).is_some() {
        return Err(cerr(StatusCode::CONFLICT, "user exists"));
    }
    let id = b.id.unwrap_or_else(|| w.gen_.uuid());
    let kind = match b.kind.as_deref() {
        Some("shared") => UserKind::Shared,
        _ => UserKind::User,
    };
    let display = b.display_name.unwrap_or_else(|| {
        b.upn
            .split('@')
            .next()
            .unwrap_or(&b.upn)
            .split(['.', '_'])
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    let user = User {
        id: id.clone(),
        tenant_id: tid,
        upn: b.upn.clone(),
        display_name: display,
        mail: b.mail.unwrap_or(b.upn),
        kind,
        has_mailbox: b.mailbox,
        enabled: b.enabled,
        shared_access: BTreeSet::new(),
    };
    if user.has_mailbox {
        let mb = Mailbox::new(&mut w.gen_, &id);
        w.mailboxes.insert(id.clone(), mb);
    }
    w.users.insert(id, user.clone());
    Ok(Json(json!(user)))
}

fn user_id(w: &World, u: &str) -> Result<String, (StatusCode, Json<Value>)> {
    w.find_user(u)
        .map(|u| u.id.clone())
        .ok_or_else(|| not_found("user"))
}

async fn get_user(State(sim): State<Arc<Sim>>, Path(u): Path<String>) -> CResult {
    let w = sim.world();
    let id = user_id(&w, &u)?;
    Ok(Json(json!(w.users[&id])))
}

async fn patch_user(
    State(sim): State<Arc<Sim>>,
    Path(u): Path<String>,
    Json(p): Json<Value>,
) -> CResult {
    let mut w = sim.world();
    let id = user_id(&w, &u)?;
    let user = w.users.get_mut(&id).expect("user");
    if let Some(e) = p.get("enabled").and_then(Value::as_bool) {
        user.enabled = e;
    }
    if let Some(n) = p.get("display_name").and_then(Value::as_str) {
        user.display_name = n.to_string();
    }
    let user = user.clone();
    Ok(Json(json!(user)))
}

#[derive(Deserialize)]
struct SharedBody {
    mailbox: String,
}

async fn grant_shared(
    State(sim): State<Arc<Sim>>,
    Path(u): Path<String>,
    Json(b): Json<SharedBody>,
) -> CResult {
    let mut w = sim.world();
    let id = user_id(&w, &u)?;
    let mb = user_id(&w, &b.mailbox)?;
    let user = w.users.get_mut(&id).expect("user");
    user.shared_access.insert(mb);
    Ok(Json(json!(user.clone())))
}

async fn put_interactive(State(sim): State<Arc<Sim>>, Json(b): Json<Interactive>) -> CResult {
    let mut w = sim.world();
    w.interactive = b;
    Ok(Json(json!(w.interactive)))
}

async fn get_interactive(State(sim): State<Arc<Sim>>) -> CResult {
    Ok(Json(json!(sim.world().interactive)))
}

// --- identity events ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct EventBody {
    #[serde(rename = "type")]
    kind: String,
    user: Option<String>,
    tenant: Option<String>,
    app: Option<String>,
    value: Option<bool>,
}

async fn trigger_event(State(sim): State<Arc<Sim>>, Json(b): Json<EventBody>) -> CResult {
    let mut w = sim.world();
    let user = b.user.as_deref().map(|u| user_id(&w, u)).transpose()?;
    let user_tenant = user.as_ref().map(|u| w.users[u].tenant_id.clone());
    let tenant = match b.tenant.as_deref() {
        Some(t) => Some(tenant_id(&w, t)?),
        None => user_tenant.clone(),
    };
    if let Some(a) = &b.app
        && !w.apps.contains_key(a)
    {
        return Err(not_found("app"));
    }
    let need_user = || user.clone().ok_or_else(|| bad("this event needs 'user'"));
    let need_tenant = || {
        tenant
            .clone()
            .ok_or_else(|| bad("this event needs 'tenant'"))
    };
    let need_app = || b.app.clone().ok_or_else(|| bad("this event needs 'app'"));
    let now = w.now();
    let (kind, effective, ev_user, ev_tenant, ev_app) = match b.kind.as_str() {
        "password_changed" => {
            let u = need_user()?;
            let t = w.users[&u].tenant_id.clone();
            let eff = w.tenants[&t]
                .settings
                .password_change_revokes_refresh_tokens;
            (EventKind::PasswordChanged, eff, Some(u), None, None)
        }
        "tokens_revoked" => (
            EventKind::TokensRevoked,
            true,
            Some(need_user()?),
            None,
            None,
        ),
        "mfa_required" => {
            let t = need_tenant()?;
            w.tenants.get_mut(&t).expect("tenant").mfa_required = true;
            (EventKind::MfaRequired, true, None, Some(t), None)
        }
        "mfa_cleared" => {
            let t = need_tenant()?;
            w.tenants.get_mut(&t).expect("tenant").mfa_required = false;
            return Ok(Json(json!({"ok": true})));
        }
        "refresh_token_inactive" => (
            EventKind::RefreshTokenInactive,
            true,
            user.clone(),
            tenant.clone(),
            b.app.clone(),
        ),
        "consent_revoked" => {
            let u = need_user()?;
            let a = need_app()?;
            w.user_consents.remove(&(a.clone(), u.clone()));
            (EventKind::ConsentRevoked, true, Some(u), None, Some(a))
        }
        "user_disabled" => {
            let u = need_user()?;
            w.users.get_mut(&u).expect("user").enabled = false;
            (EventKind::UserDisabled, true, Some(u), None, None)
        }
        "user_enabled" => {
            let u = need_user()?;
            w.users.get_mut(&u).expect("user").enabled = true;
            return Ok(Json(json!({"ok": true})));
        }
        "secret_expired" => {
            let a = need_app()?;
            let ts = now.unix_timestamp() - 1;
            for s in &mut w.apps.get_mut(&a).expect("app").secrets {
                s.expires_at = Some(ts);
            }
            (EventKind::SecretExpired, false, None, None, Some(a))
        }
        "app_removed" => {
            let t = need_tenant()?;
            let a = need_app()?;
            w.tenants
                .get_mut(&t)
                .expect("tenant")
                .service_principals
                .remove(&a);
            let users: Vec<String> = w
                .users
                .values()
                .filter(|u| u.tenant_id == t)
                .map(|u| u.id.clone())
                .collect();
            for u in users {
                w.user_consents.remove(&(a.clone(), u));
            }
            (EventKind::AppRemoved, true, None, Some(t), Some(a))
        }
        "admin_consent_only_for_mail" => {
            let t = need_tenant()?;
            w.tenants
                .get_mut(&t)
                .expect("tenant")
                .settings
                .admin_consent_only_for_mail = b.value.unwrap_or(true);
            return Ok(Json(json!({"ok": true})));
        }
        other => return Err(bad(format!("unknown event type '{other}'"))),
    };
    let seq = w.gen_.next_seq();
    let ev = IdentityEvent {
        seq,
        kind,
        tenant_id: ev_tenant,
        user_id: ev_user,
        app_id: ev_app,
        effective,
        at: fmt_time(now),
    };
    w.events.push(ev.clone());
    Ok(Json(json!(ev)))
}

async fn list_events(State(sim): State<Arc<Sim>>) -> CResult {
    Ok(Json(json!({"events": sim.world().events})))
}

// --- faults, throttling, settings, clock -------------------------------------------------------

#[derive(Deserialize)]
struct FaultsBody {
    seed: Option<u64>,
    #[serde(default)]
    rules: Vec<FaultRule>,
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> CResult {
    Ok(Json(json!({"rules": sim.world().faults.rules})))
}

async fn put_faults(State(sim): State<Arc<Sim>>, Json(b): Json<FaultsBody>) -> CResult {
    let mut w = sim.world();
    if let Some(s) = b.seed {
        w.faults.reseed(s);
    }
    w.faults.rules.clear();
    let ids: Vec<String> = b.rules.into_iter().map(|r| w.faults.add(r)).collect();
    Ok(Json(json!({"ids": ids})))
}

async fn add_fault(State(sim): State<Arc<Sim>>, Json(r): Json<FaultRule>) -> CResult {
    if let Some(rate) = r.rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(bad("rate must be in [0,1]"));
    }
    let mut w = sim.world();
    let id = w.faults.add(r);
    Ok(Json(json!({"id": id})))
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> CResult {
    sim.world().faults.rules.clear();
    Ok(Json(json!({"ok": true})))
}

async fn get_throttling(State(sim): State<Arc<Sim>>) -> CResult {
    Ok(Json(json!(sim.world().throttle)))
}

async fn put_throttling(State(sim): State<Arc<Sim>>, Json(p): Json<Value>) -> CResult {
    let mut w = sim.world();
    let mut cur = serde_json::to_value(&w.throttle).expect("throttle");
    merge(&mut cur, &p);
    w.throttle = serde_json::from_value::<ThrottleConfig>(cur).map_err(|e| bad(e.to_string()))?;
    w.usage.clear();
    Ok(Json(json!(w.throttle)))
}

fn merge(cur: &mut Value, p: &Value) {
    if let (Some(c), Some(p)) = (cur.as_object_mut(), p.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
}

async fn get_settings(State(sim): State<Arc<Sim>>) -> CResult {
    Ok(Json(json!(sim.world().settings)))
}

async fn put_settings(State(sim): State<Arc<Sim>>, Json(p): Json<Value>) -> CResult {
    let mut w = sim.world();
    let mut cur = serde_json::to_value(&w.settings).expect("settings");
    merge(&mut cur, &p);
    w.settings = serde_json::from_value::<Settings>(cur).map_err(|e| bad(e.to_string()))?;
    Ok(Json(json!(w.settings)))
}

#[derive(Deserialize)]
struct ClockBody {
    secs: i64,
}

async fn advance_clock(State(sim): State<Arc<Sim>>, Json(b): Json<ClockBody>) -> CResult {
    let mut w = sim.world();
    w.clock_offset_secs += b.secs;
    Ok(Json(
        json!({"now": fmt_time(w.now()), "offset_secs": w.clock_offset_secs}),
    ))
}

// --- delta -------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ExpireBody {
    mailbox: Option<String>,
    /// 410 (Gone + Location, default) or 400.
    status: Option<u16>,
    /// Error code, e.g. resyncRequired, syncStateNotFound, SyncStateNotFound, SyncStateInvalid.
    code: Option<String>,
}

fn expire(w: &mut World, mailbox: Option<String>, b: &ExpireBody) -> usize {
    let status = b.status.unwrap_or(410);
    let code = b.code.clone().unwrap_or_else(|| {
        if status == 410 {
            "resyncRequired".into()
        } else {
            "syncStateNotFound".into()
        }
    });
    let mut n = 0;
    for st in w.delta_tokens.values_mut() {
        if mailbox.as_ref().is_none_or(|m| &st.mailbox == m) {
            st.expired = Some(DeltaExpiry {
                status,
                code: code.clone(),
            });
            n += 1;
        }
    }
    n
}

async fn expire_all_delta(State(sim): State<Arc<Sim>>, body: Option<Json<ExpireBody>>) -> CResult {
    let b = body.map(|b| b.0).unwrap_or_default();
    let mut w = sim.world();
    let mb = b.mailbox.as_deref().map(|m| user_id(&w, m)).transpose()?;
    let n = expire(&mut w, mb, &b);
    Ok(Json(json!({"expired": n})))
}

async fn expire_mailbox_delta(
    State(sim): State<Arc<Sim>>,
    Path(m): Path<String>,
    body: Option<Json<ExpireBody>>,
) -> CResult {
    let b = body.map(|b| b.0).unwrap_or_default();
    let mut w = sim.world();
    let mb = user_id(&w, &m)?;
    let n = expire(&mut w, Some(mb), &b);
    Ok(Json(json!({"expired": n})))
}

// --- messages ----------------------------------------------------------------------------------

/// A message to deliver (control API and generator).
#[derive(Deserialize, Serialize, Default, Clone, Debug)]
#[serde(default)]
pub struct DeliverSpec {
    /// Folder id, well-known name or display-name path (default `inbox`).
    pub folder: Option<String>,
    /// `{"name","address"}` or `"Name <addr>"` or `"addr"`.
    pub from: Option<Value>,
    pub to: Option<Value>,
    pub cc: Option<Value>,
    pub bcc: Option<Value>,
    pub reply_to: Option<Value>,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    /// `[{"name","value"}]` or `{"Header": "value"}`.
    pub headers: Option<Value>,
    pub has_attachments: Option<bool>,
    pub importance: Option<String>,
    /// RFC 3339; default: now.
    pub received: Option<String>,
    pub sent: Option<String>,
    pub is_read: Option<bool>,
    pub categories: Option<Vec<String>>,
    pub flag_status: Option<String>,
    /// `message` (default), `meeting_request`, `meeting_cancelled`, `automatic_reply`, `ndr`,
    /// `read_receipt`.
    pub kind: Option<String>,
    pub internet_message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub size: Option<u64>,
    pub inference: Option<String>,
}

fn addr_of(v: &Value) -> Option<Addr> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            match (s.find('<'), s.find('>')) {
                (Some(a), Some(b)) if a < b => Some(Addr {
                    name: s[..a].trim().trim_matches('"').to_string(),
                    address: s[a + 1..b].to_string(),
                }),
                _ => Some(Addr {
                    name: s.to_string(),
                    address: s.to_string(),
                }),
            }
        }
        Value::Object(_) => Addr::from_json(v),
        _ => None,
    }
}

fn addrs_of(v: &Option<Value>) -> Vec<Addr> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(addr_of).collect(),
        Some(v) => addr_of(v).into_iter().collect(),
        None => vec![],
    }
}

pub fn deliver(w: &mut World, mailbox: &str, s: &DeliverSpec) -> Result<u64, String> {
    let now = w.now();
    let owner = w.users.get(mailbox).ok_or("no such mailbox")?.clone();
    let domain = owner
        .mail
        .split('@')
        .nth(1)
        .unwrap_or("contoso.com")
        .to_string();
    let owner_addr = Addr {
        name: owner.display_name.clone(),
        address: owner.mail.clone(),
    };
    let kind = s.kind.clone().unwrap_or_else(|| "message".into());
    let mut from = s.from.as_ref().and_then(addr_of);
    let mut subject = s.subject.clone().unwrap_or_default();
    let mut headers: Vec<(String, String)> = vec![];
    let mut meeting_type = None;
    match kind.as_str() {
        "message" => {}
        "meeting_request" => {
            meeting_type = Some("meetingRequest".to_string());
            headers.push((
                "Content-Type".into(),
                "multipart/alternative; boundary=\"_000_\"; text/calendar; method=REQUEST".into(),
            ));
        }
        "meeting_cancelled" => {
            meeting_type = Some("meetingCancelled".to_string());
            headers.push(("Content-Type".into(), "text/calendar; method=CANCEL".into()));
        }
        "automatic_reply" => {
            headers.push(("Auto-Submitted".into(), "auto-replied".into()));
            headers.push(("X-Auto-Response-Suppress".into(), "All".into()));
            if subject.is_empty() {
                subject = "Automatic reply".into();
            }
        }
        "ndr" => {
            from.get_or_insert_with(|| Addr {
                name: "Microsoft Outlook".into(),
                address: format!("MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@{domain}"),
            });
            headers.push((
                "Content-Type".into(),
                "multipart/report; report-type=delivery-status; boundary=\"_000_\"".into(),
            ));
            headers.push(("Auto-Submitted".into(), "auto-replied".into()));
            if subject.is_empty() {
                subject = "Undeliverable: ".into();
            }
        }
        "read_receipt" => {
            headers.push((
                "Content-Type".into(),
                "multipart/report; report-type=disposition-notification; boundary=\"_000_\"".into(),
            ));
        }
        other => return Err(format!("unknown kind '{other}'")),
    }
    let from = from.unwrap_or_else(|| Addr {
        name: "Unknown Sender".into(),
        address: format!("sender@{domain}"),
    });
    let to = {
        let t = addrs_of(&s.to);
        if t.is_empty() {
            vec![owner_addr.clone()]
        } else {
            t
        }
    };
    let cc = addrs_of(&s.cc);
    let received = match &s.received {
        Some(r) => parse_time(r).ok_or("received must be RFC 3339")?,
        None => now,
    };
    let received = trunc_secs(received);
    let sent = match &s.sent {
        Some(r) => parse_time(r).ok_or("sent must be RFC 3339")?,
        None => received - time::Duration::seconds(2),
    };
    let imid = s.internet_message_id.clone().unwrap_or_else(|| {
        format!(
            "<{}@{}>",
            w.gen_.token(18),
            from.address.split('@').nth(1).unwrap_or("mail.example")
        )
    });
    let (body, html) = match (&s.body_html, &s.body_text) {
        (Some(h), _) => (h.clone(), true),
        (None, Some(t)) => (t.clone(), false),
        (None, None) => (String::new(), false),
    };
    let mut all_headers = vec![
        (
            "Received".to_string(),
            format!(
                "from mail.{} by {}.prod.outlook.com with SMTP; {}",
                from.address.split('@').nth(1).unwrap_or("example"),
                domain.replace('.', "-"),
                fmt_time(received)
            ),
        ),
        ("From".into(), format!("{} <{}>", from.name, from.address)),
        (
            "To".into(),
            to.iter()
                .map(|a| format!("{} <{}>", a.name, a.address))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Subject".into(), subject.clone()),
        ("Date".into(), fmt_time(sent)),
        ("Message-ID".into(), imid.clone()),
        ("MIME-Version".into(), "1.0".into()),
    ];
    if !headers.iter().any(|(k, _)| k == "Content-Type") {
        all_headers.push((
            "Content-Type".into(),
            if html {
                "text/html; charset=\"utf-8\""
            } else {
                "text/plain; charset=\"utf-8\""
            }
            .into(),
        ));
    }
    all_headers.extend(headers);
    match &s.headers {
        Some(Value::Array(a)) => {
            for h in a {
                if let (Some(n), Some(v)) = (
                    h.get("name").and_then(Value::as_str),
                    h.get("value").and_then(Value::as_str),
                ) {
                    all_headers.push((n.into(), v.into()));
                }
            }
        }
        Some(Value::Object(o)) => {
            for (k, v) in o {
                all_headers.push((
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                ));
            }
        }
        _ => {}
    }
    let conv = s
        .conversation_id
        .clone()
        .unwrap_or_else(|| crate::util::exchange_id(&mut w.gen_.rng, "AAQkAD", 24));
    let mb = w.mailboxes.get(mailbox).ok_or("the user has no mailbox")?;
    let folder = match &s.folder {
        Some(f) => mb
            .resolve_folder_path(f)
            .ok_or_else(|| format!("no folder '{f}'"))?,
        None => mb.well_known("inbox").expect("inbox").to_string(),
    };
    let size = s.size.unwrap_or_else(|| {
        body.len() as u64
            + 1500
            + if s.has_attachments.unwrap_or(false) {
                50_000
            } else {
                0
            }
    });
    let m = Message {
        key: 0,
        immutable_id: String::new(),
        rest_id: String::new(),
        folder_id: folder,
        created: received,
        last_modified: received,
        received,
        sent: trunc_secs(sent),
        has_attachments: s.has_attachments.unwrap_or(false),
        internet_message_id: imid,
        subject,
        body_html: html,
        body,
        importance: s
            .importance
            .clone()
            .unwrap_or_else(|| "normal".into())
            .to_ascii_lowercase(),
        conversation_id: conv,
        is_read: s.is_read.unwrap_or(false),
        is_draft: false,
        inference: s.inference.clone().unwrap_or_else(|| "focused".into()),
        sender: Some(from.clone()),
        from: Some(from),
        to,
        cc,
        bcc: addrs_of(&s.bcc),
        reply_to: addrs_of(&s.reply_to),
        flag: json!({"flagStatus": s.flag_status.clone().unwrap_or_else(|| "notFlagged".into())}),
        categories: s.categories.clone().unwrap_or_default(),
        headers: all_headers,
        meeting_type,
        size,
        version: 1,
        delivery_receipt: false,
        read_receipt: kind == "read_receipt",
        forward_of: None,
        forward_comment: None,
    };
    let World {
        gen_, mailboxes, ..
    } = w;
    let mb = mailboxes.get_mut(mailbox).expect("mailbox");
    Ok(mb.insert(gen_, m))
}

fn message_view(mb: &Mailbox, m: &Message) -> Value {
    json!({
        "id": m.rest_id,
        "immutable_id": m.immutable_id,
        "internet_message_id": m.internet_message_id,
        "subject": m.subject,
        "from": m.from,
        "to": m.to,
        "cc": m.cc,
        "folder_id": m.folder_id,
        "folder_path": mb.folder_path(&m.folder_id),
        "categories": m.categories,
        "flag_status": m.flag.get("flagStatus").cloned().unwrap_or(json!("notFlagged")),
        "flag": m.flag,
        "is_read": m.is_read,
        "is_draft": m.is_draft,
        "importance": m.importance,
        "inference_classification": m.inference,
        "has_attachments": m.has_attachments,
        "received": fmt_time(m.received),
        "last_modified": fmt_time(m.last_modified),
        "meeting_message_type": m.meeting_type,
        "size": m.size,
    })
}

fn mailbox_id(w: &World, m: &str) -> Result<String, (StatusCode, Json<Value>)> {
    let id = user_id(w, m)?;
    if !w.mailboxes.contains_key(&id) {
        return Err(bad("the user has no mailbox"));
    }
    Ok(id)
}

async fn deliver_messages(
    State(sim): State<Arc<Sim>>,
    Path(m): Path<String>,
    Json(body): Json<Value>,
) -> CResult {
    let mut w = sim.world();
    let mb = mailbox_id(&w, &m)?;
    let specs: Vec<DeliverSpec> = match body.get("messages") {
        Some(arr) => serde_json::from_value(arr.clone()).map_err(|e| bad(e.to_string()))?,
        None => vec![serde_json::from_value(body).map_err(|e| bad(e.to_string()))?],
    };
    let mut out = vec![];
    for s in &specs {
        let key = deliver(&mut w, &mb, s).map_err(bad)?;
        let mbx = &w.mailboxes[&mb];
        out.push(message_view(mbx, &mbx.messages[&key]));
    }
    Ok(Json(json!({"messages": out})))
}

async fn list_messages(
    State(sim): State<Arc<Sim>>,
    Path(m): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> CResult {
    let w = sim.world();
    let id = mailbox_id(&w, &m)?;
    let mb = &w.mailboxes[&id];
    let folder = match q.get("folder") {
        Some(f) => Some(
            mb.resolve_folder_path(f)
                .ok_or_else(|| not_found("folder"))?,
        ),
        None => None,
    };
    let mut list: Vec<&Message> = mb
        .messages
        .values()
        .filter(|m| folder.as_ref().is_none_or(|f| &m.folder_id == f))
        .collect();
    list.sort_by(|a, b| b.received.cmp(&a.received).then(b.key.cmp(&a.key)));
    Ok(Json(
        json!({"messages": list.iter().map(|m| message_view(mb, m)).collect::<Vec<_>>()}),
    ))
}

fn find_msg(mb: &Mailbox, id: &str) -> Result<u64, (StatusCode, Json<Value>)> {
    mb.find(id)
        .or_else(|| {
            mb.messages
                .values()
                .find(|m| m.internet_message_id == id)
                .map(|m| m.key)
        })
        .ok_or_else(|| not_found("message"))
}

async fn get_message(
    State(sim): State<Arc<Sim>>,
    Path((m, id)): Path<(String, String)>,
) -> CResult {
    let w = sim.world();
    let mbid = mailbox_id(&w, &m)?;
    let mb = &w.mailboxes[&mbid];
    let key = find_msg(mb, &id)?;
    let msg = &mb.messages[&key];
    let mut v = message_view(mb, msg);
    v["body"] = json!(msg.body);
    v["headers"] = json!(
        msg.headers
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect::<Vec<_>>()
    );
    Ok(Json(v))
}

/// The mailbox user changes a message in Outlook (read state, categories, flag, importance).
async fn user_patch_message(
    State(sim): State<Arc<Sim>>,
    Path((m, id)): Path<(String, String)>,
    Json(p): Json<Value>,
) -> CResult {
    let mut w = sim.world();
    let mbid = mailbox_id(&w, &m)?;
    let now = w.now();
    let World {
        gen_, mailboxes, ..
    } = &mut *w;
    let mb = mailboxes.get_mut(&mbid).expect("mailbox");
    let key = find_msg(mb, &id)?;
    mb.update(gen_, key, now, |msg| {
        if let Some(b) = p.get("is_read").and_then(Value::as_bool) {
            msg.is_read = b;
        }
        if let Some(c) = p.get("categories").and_then(Value::as_array) {
            msg.categories = c
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
        }
        if let Some(f) = p.get("flag_status").and_then(Value::as_str) {
            msg.flag = json!({"flagStatus": f});
        }
        if let Some(i) = p.get("importance").and_then(Value::as_str) {
            msg.importance = i.to_string();
        }
        if let Some(s) = p.get("subject").and_then(Value::as_str) {
            msg.subject = s.to_string();
        }
    });
    Ok(Json(message_view(mb, &mb.messages[&key])))
}

#[derive(Deserialize)]
struct MoveBody {
    folder: String,
}

async fn user_move_message(
    State(sim): State<Arc<Sim>>,
    Path((m, id)): Path<(String, String)>,
    Json(b): Json<MoveBody>,
) -> CResult {
    let mut w = sim.world();
    let mbid = mailbox_id(&w, &m)?;
    let now = w.now();
    let World {
        gen_, mailboxes, ..
    } = &mut *w;
    let mb = mailboxes.get_mut(&mbid).expect("mailbox");
    let key = find_msg(mb, &id)?;
    let dest = mb
        .resolve_folder_path(&b.folder)
        .ok_or_else(|| not_found("folder"))?;
    mb.move_to(gen_, key, &dest, now);
    Ok(Json(message_view(mb, &mb.messages[&key])))
}

async fn user_delete_message(
    State(sim): State<Arc<Sim>>,
    Path((m, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> CResult {
    let mut w = sim.world();
    let mbid = mailbox_id(&w, &m)?;
    let now = w.now();
    let World {
        gen_, mailboxes, ..
    } = &mut *w;
    let mb = mailboxes.get_mut(&mbid).expect("mailbox");
    let key = find_msg(mb, &id)?;
    let hard = q.get("hard").is_some_and(|v| v == "true");
    let deleted = mb
        .well_known("deleteditems")
        .expect("deleteditems")
        .to_string();
    if hard || mb.messages[&key].folder_id == deleted {
        mb.remove(gen_, key);
        Ok(Json(json!({"deleted": true})))
    } else {
        mb.move_to(gen_, key, &deleted, now);
        Ok(Json(message_view(mb, &mb.messages[&key])))
    }
}

async fn list_folders(State(sim): State<Arc<Sim>>, Path(m): Path<String>) -> CResult {
    let w = sim.world();
    let id = mailbox_id(&w, &m)?;
    let mb = &w.mailboxes[&id];
    let mut out = vec![];
    // Depth-first from the root, in child order.
    let mut stack: Vec<String> = mb.folders[&mb.root_id]
        .children
        .iter()
        .rev()
        .cloned()
        .collect();
    while let Some(fid) = stack.pop() {
        let f = &mb.folders[&fid];
        let (total, unread) = mb.counts(&fid);
        out.push(json!({
            "id": f.id,
            "path": mb.folder_path(&fid),
            "display_name": f.display_name,
            "parent_id": f.parent_id,
            "well_known": f.well_known,
            "is_hidden": f.is_hidden,
            "total": total,
            "unread": unread,
        }));
        for c in f.children.iter().rev() {
            stack.push(c.clone());
        }
    }
    Ok(Json(json!({"root_id": mb.root_id, "folders": out})))
}

#[derive(Deserialize)]
struct FolderBody {
    /// Parent folder (id, well-known name or path); default: the top of the mailbox.
    parent: Option<String>,
    name: String,
    #[serde(default)]
    hidden: bool,
}

async fn user_create_folder(
    State(sim): State<Arc<Sim>>,
    Path(m): Path<String>,
    Json(b): Json<FolderBody>,
) -> CResult {
    let mut w = sim.world();
    let id = mailbox_id(&w, &m)?;
    let World {
        gen_, mailboxes, ..
    } = &mut *w;
    let mb = mailboxes.get_mut(&id).expect("mailbox");
    let parent = match &b.parent {
        Some(p) => mb
            .resolve_folder_path(p)
            .ok_or_else(|| not_found("parent folder"))?,
        None => mb.root_id.clone(),
    };
    let fid = mb
        .create_folder(gen_, &parent, &b.name, b.hidden)
        .map_err(|e| cerr(StatusCode::CONFLICT, format!("{e:?}")))?;
    Ok(Json(json!({"id": fid, "path": mb.folder_path(&fid)})))
}

async fn list_categories(State(sim): State<Arc<Sim>>, Path(m): Path<String>) -> CResult {
    let w = sim.world();
    let id = mailbox_id(&w, &m)?;
    Ok(Json(json!({"categories": w.mailboxes[&id].categories})))
}

#[derive(Deserialize)]
struct GenerateBody {
    count: usize,
    seed: Option<u64>,
    folder: Option<String>,
}

async fn generate_messages(
    State(sim): State<Arc<Sim>>,
    Path(m): Path<String>,
    Json(b): Json<GenerateBody>,
) -> CResult {
    let mut w = sim.world();
    let id = mailbox_id(&w, &m)?;
    let u = w.users[&id].clone();
    let domain = u
        .mail
        .split('@')
        .nth(1)
        .unwrap_or("contoso.com")
        .to_string();
    let seed = b.seed.unwrap_or(w.seed);
    let now = w.now();
    let mut specs =
        crate::generate::generate(seed, b.count, &u.display_name, &u.mail, &domain, now);
    specs.sort_by(|a, b| a.received.cmp(&b.received));
    let mut n = 0;
    for mut s in specs {
        if b.folder.is_some() {
            s.folder = b.folder.clone();
        }
        deliver(&mut w, &id, &s).map_err(bad)?;
        n += 1;
    }
    Ok(Json(json!({"delivered": n})))
}

async fn list_sent(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> CResult {
    let w = sim.world();
    let mb = q.get("mailbox").map(|m| user_id(&w, m)).transpose()?;
    let list: Vec<_> = w
        .sent
        .iter()
        .filter(|s| mb.as_ref().is_none_or(|m| &s.mailbox == m))
        .collect();
    Ok(Json(json!({"sent": list})))
}

async fn clear_sent(State(sim): State<Arc<Sim>>) -> CResult {
    sim.world().sent.clear();
    Ok(Json(json!({"ok": true})))
}

async fn list_requests(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> CResult {
    let w = sim.world();
    let since: u64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let kind = q.get("kind");
    let list: Vec<_> = w
        .log
        .iter()
        .filter(|e| e.seq > since)
        .filter(|e| kind.is_none_or(|k| &e.kind == k))
        .collect();
    Ok(Json(json!({"requests": list, "last_seq": w.log_seq})))
}

async fn clear_requests(State(sim): State<Arc<Sim>>) -> CResult {
    sim.world().log.clear();
    Ok(Json(json!({"ok": true})))
}
