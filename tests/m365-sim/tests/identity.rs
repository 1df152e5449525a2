//! Entra ID v2.0: authorize, admin consent, token grants, client assertions, identity events.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn cert_thumb_s256() -> String {
    let pem = data("app.crt");
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

fn assertion(alg: Algorithm, key_file: &str, aud: &str, exp_in: i64, with_thumb: bool) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut h = Header::new(alg);
    h.typ = Some("JWT".into());
    if with_thumb {
        h.x5t_s256 = Some(cert_thumb_s256());
    }
    let claims = json!({
        "aud": aud, "iss": CLIENT_ID, "sub": CLIENT_ID, "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now - 10, "iat": now - 10, "exp": now + exp_in,
    });
    let key = EncodingKey::from_rsa_pem(data(key_file).as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

async fn assertion_token(t: &T, a: &str) -> (reqwest::StatusCode, Value) {
    t.token_form(
        TENANT_ID,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", a),
        ],
    )
    .await
}

fn assert_entra_error(v: &Value, error: &str, code: u64) {
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["error_codes"], json!([code]), "{v}");
    let d = v["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("Trace ID: ") && d.contains("Correlation ID: ") && d.contains("Timestamp: ")
    );
    for f in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(v[f].is_string(), "{f} missing in {v}");
    }
}

#[tokio::test]
async fn client_credentials_with_secret_yields_roles() {
    let t = T::new().await;
    let (s, v) = t
        .token_form(
            DOMAIN,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v.get("refresh_token").is_none());
    let at = v["access_token"].as_str().unwrap();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(at.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["tid"], TENANT_ID);
    assert_eq!(payload["appid"], CLIENT_ID);
    let roles: Vec<&str> = payload["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for p in APP_PERMS {
        assert!(roles.contains(p));
    }
    let (s, _) = t
        .get(at, &format!("/users/{ALICE}/mailFolders/inbox"))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn client_credentials_errors() {
    let t = T::new().await;
    // Wrong scope.
    let (s, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/Mail.Read"),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_scope", 1002012);
    // Tenant-less endpoint.
    let (s, v) = t
        .token_form(
            "common",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_request", 50059);
    // Unknown tenant.
    let (s, v) = t
        .token_form(
            "nosuchtenant.onmicrosoft.com",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_request", 90002);
    // Wrong secret.
    let (s, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", "nope"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 401);
    assert_entra_error(&v, "invalid_client", 7000215);
    // No credential.
    let (s, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 401);
    assert_entra_error(&v, "invalid_client", 7000218);
    // Unknown client.
    let (s, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "99999999-0000-0000-0000-000000000000"),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "unauthorized_client", 700016);
}

#[tokio::test]
async fn client_secret_via_basic_auth() {
    let t = T::new().await;
    let resp = t
        .http
        .post(format!("{}/{TENANT_ID}/oauth2/v2.0/token", t.base))
        .basic_auth(CLIENT_ID, Some(SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn certificate_assertions_ps256_and_rs256() {
    let t = T::new().await;
    let aud = format!("{}/{TENANT_ID}/oauth2/v2.0/token", t.base);
    for alg in [Algorithm::PS256, Algorithm::RS256] {
        for thumb in [true, false] {
            let (s, v) = assertion_token(&t, &assertion(alg, "app.key", &aud, 300, thumb)).await;
            assert_eq!(s, 200, "{alg:?} {v}");
            assert!(v["access_token"].is_string());
        }
    }
    // Wrong audience.
    let (s, v) = assertion_token(
        &t,
        &assertion(
            Algorithm::PS256,
            "app.key",
            "https://elsewhere.example/token",
            300,
            true,
        ),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"], "invalid_client");
    // Signed with an unregistered key.
    let (s, v) = assertion_token(
        &t,
        &assertion(Algorithm::PS256, "other.key", &aud, 300, false),
    )
    .await;
    assert_eq!(s, 401);
    assert_entra_error(&v, "invalid_client", 700027);
    // Expired.
    let (s, v) =
        assertion_token(&t, &assertion(Algorithm::RS256, "app.key", &aud, -60, true)).await;
    assert_eq!(s, 401);
    assert_entra_error(&v, "invalid_client", 700024);
    // Public key PEM registration works too.
    t.ctl("POST", "/apps", json!({"client_id": "pk-app", "certificates": [{"pem": data("app.pub.pem")}], "application_permissions": ["Mail.Read"]}))
        .await;
    t.ctl(
        "POST",
        &format!("/tenants/{TENANT_ID}/admin-consent"),
        json!({"client_id": "pk-app"}),
    )
    .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let a = jsonwebtoken::encode(
        &Header::new(Algorithm::PS256),
        &json!({"aud": aud, "iss": "pk-app", "sub": "pk-app", "jti": "x", "exp": now + 300}),
        &EncodingKey::from_rsa_pem(data("app.key").as_bytes()).unwrap(),
    )
    .unwrap();
    let (s, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "pk-app"),
                ("scope", "https://graph.microsoft.com/.default"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn auth_code_pkce_flow_and_rotation() {
    let t = T::new().await;
    let scope = "openid offline_access https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/User.Read";
    let v = t.delegated(ALICE, scope).await;
    assert!(v["refresh_token"].is_string());
    assert!(v["id_token"].is_string());
    assert!(
        v["scope"]
            .as_str()
            .unwrap()
            .contains("https://graph.microsoft.com/Mail.ReadWrite")
    );
    let at = v["access_token"].as_str().unwrap();
    let (s, me) = t.get(at, "/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["userPrincipalName"], ALICE);
    // Rotation: a new refresh token each time; the old one stays valid.
    let rt1 = v["refresh_token"].as_str().unwrap().to_string();
    let (s, r2) = t.refresh(&rt1).await;
    assert_eq!(s, 200, "{r2}");
    let rt2 = r2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    let (s, _) = t.refresh(&rt1).await;
    assert_eq!(s, 200);
    let (s, _) = t.refresh(&rt2).await;
    assert_eq!(s, 200);
    // Without offline_access: no refresh token.
    let v = t
        .delegated(ALICE, "https://graph.microsoft.com/Mail.ReadWrite")
        .await;
    assert!(v.get("refresh_token").is_none());
    assert!(v.get("id_token").is_none());
}

#[tokio::test]
async fn auth_code_errors() {
    let t = T::new().await;
    t.ctl("PUT", "/interactive", json!({"signin_user": ALICE}))
        .await;
    let ch = challenge(VERIFIER);
    let scope = "offline_access Mail.ReadWrite";
    let (s, loc) = t
        .authorize(TENANT_ID, &T::standard_authz(scope, "xyz", &ch))
        .await;
    assert_eq!(s, 302);
    assert!(loc.starts_with(REDIRECT));
    let q = query_of(&loc);
    assert_eq!(q["state"], "xyz");
    let code = q["code"].clone();
    let redeem = |code: String, verifier: &'static str, redirect: &'static str| {
        let t = &t;
        async move {
            t.token_form(
                TENANT_ID,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", SECRET),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    // Wrong verifier.
    let (s, v) = redeem(code.clone(), "wrong-verifier", REDIRECT).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_grant", 501481);
    // Wrong redirect_uri.
    let (s, v) = redeem(code.clone(), VERIFIER, "https://app.example.com/other").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_grant");
    // Success, then reuse.
    let (s, _) = redeem(code.clone(), VERIFIER, REDIRECT).await;
    assert_eq!(s, 200);
    let (s, v) = redeem(code.clone(), VERIFIER, REDIRECT).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_grant", 54005);
    // Code lifetime: ~10 minutes.
    let (_, loc) = t
        .authorize(TENANT_ID, &T::standard_authz(scope, "a", &ch))
        .await;
    let code = query_of(&loc)["code"].clone();
    t.ctl("POST", "/clock/advance", json!({"secs": 660})).await;
    let (s, v) = redeem(code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_grant", 70008);
    // PKCE missing / plain.
    let mut p = T::standard_authz(scope, "st1", &ch);
    p.retain(|(k, _)| !k.starts_with("code_challenge"));
    let (s, loc) = t.authorize(TENANT_ID, &p).await;
    assert_eq!(s, 302);
    let q = query_of(&loc);
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st1");
    let mut p = T::standard_authz(scope, "st2", VERIFIER);
    p.retain(|(k, _)| *k != "code_challenge_method");
    p.push(("code_challenge_method", "plain"));
    let (_, loc) = t.authorize(TENANT_ID, &p).await;
    assert_eq!(query_of(&loc)["error"], "invalid_request");
    // Unregistered redirect URI and unknown client: an error page, no redirect.
    let mut p = T::standard_authz(scope, "s", &ch);
    p.retain(|(k, _)| *k != "redirect_uri");
    p.push(("redirect_uri", "https://evil.example/cb"));
    let (s, loc) = t.authorize(TENANT_ID, &p).await;
    assert_eq!(s, 400);
    assert!(loc.is_empty());
    let mut p = T::standard_authz(scope, "s", &ch);
    p.retain(|(k, _)| *k != "client_id");
    p.push(("client_id", "unknown-client"));
    let (s, _) = t.authorize(TENANT_ID, &p).await;
    assert_eq!(s, 400);
    // Unknown tenant.
    let (s, _) = t
        .authorize("nope.example", &T::standard_authz(scope, "s", &ch))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn login_hint_picks_the_user_and_decline_is_access_denied() {
    let t = T::new().await;
    let ch = challenge(VERIFIER);
    let mut p = T::standard_authz("Mail.ReadWrite offline_access", "s1", &ch);
    p.push(("login_hint", BOB));
    let (s, loc) = t.authorize("organizations", &p).await;
    assert_eq!(s, 302);
    let code = query_of(&loc)["code"].clone();
    let (s, v) = t
        .token_form(
            "organizations",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(s, 200);
    let at = v["access_token"].as_str().unwrap();
    let (s, me) = t.get(at, "/me/mailFolders/inbox").await;
    assert_eq!(s, 200, "{me}");
    let logs = t.requests().await;
    assert!(
        logs.iter()
            .any(|l| l["kind"] == "graph" && l["mailbox"] == BOB)
    );
    // A scope nobody consented yet (MailboxSettings.Read is not in the admin grant) + decline.
    t.ctl(
        "PUT",
        "/interactive",
        json!({"signin_user": ALICE, "user_consent": "decline"}),
    )
    .await;
    let (_, loc) = t
        .authorize(
            TENANT_ID,
            &T::standard_authz("MailboxSettings.Read", "s2", &ch),
        )
        .await;
    let q = query_of(&loc);
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS65004"));
    assert_eq!(q["state"], "s2");
    // prompt=none without consent.
    let mut p = T::standard_authz("MailboxSettings.Read", "s3", &ch);
    p.push(("prompt", "none"));
    let (_, loc) = t.authorize(TENANT_ID, &p).await;
    assert_eq!(query_of(&loc)["error"], "consent_required");
}

#[tokio::test]
async fn admin_approval_required_for_mail_scopes() {
    let t = T::empty().await;
    t.ctl("POST", "/tenants", json!({"id": "t2", "domain": "fabrikam.com", "settings": {"admin_consent_only_for_mail": true}})).await;
    t.ctl("POST", "/apps", json!({"client_id": CLIENT_ID, "redirect_uris": [REDIRECT], "secrets": [{"value": SECRET}], "delegated_scopes": ["Mail.ReadWrite"]})).await;
    t.ctl(
        "POST",
        "/users",
        json!({"tenant": "t2", "upn": "u@fabrikam.com"}),
    )
    .await;
    let ch = challenge(VERIFIER);
    let (s, loc) = t
        .authorize(
            "fabrikam.com",
            &T::standard_authz("offline_access Mail.ReadWrite", "st", &ch),
        )
        .await;
    assert_eq!(s, 302);
    let q = query_of(&loc);
    assert_eq!(q["error"], "consent_required");
    assert!(q["error_description"].starts_with("AADSTS90094"));
    assert_eq!(q["state"], "st");
    // User.Read alone is fine.
    let (_, loc) = t
        .authorize("fabrikam.com", &T::standard_authz("User.Read", "st", &ch))
        .await;
    assert!(query_of(&loc).contains_key("code"));
    // After admin consent (which grants the app's delegated scopes tenant-wide) it works.
    t.ctl(
        "POST",
        "/tenants/t2/admin-consent",
        json!({"client_id": CLIENT_ID}),
    )
    .await;
    let (_, loc) = t
        .authorize(
            "fabrikam.com",
            &T::standard_authz("offline_access Mail.ReadWrite", "st", &ch),
        )
        .await;
    assert!(query_of(&loc).contains_key("code"), "{loc}");
}

#[tokio::test]
async fn admin_consent_endpoint() {
    let t = T::empty().await;
    t.ctl("POST", "/tenants", json!({"id": "t1", "domain": "one.com"}))
        .await;
    t.ctl("POST", "/tenants", json!({"id": "t2", "domain": "two.com"}))
        .await;
    t.ctl("POST", "/apps", json!({"client_id": CLIENT_ID, "redirect_uris": [REDIRECT], "secrets": [{"value": SECRET}], "application_permissions": ["Mail.ReadWrite"]})).await;
    let cc = |tenant: &'static str| {
        let t = &t;
        async move {
            t.token_form(
                tenant,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", SECRET),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await
        }
    };
    let (s, v) = cc("t2").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "unauthorized_client");
    let url = |tenant: &str, scope: &str| {
        reqwest::Url::parse_with_params(
            &format!("{}/{tenant}/v2.0/adminconsent", t.base),
            &[
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("scope", scope),
                ("state", "abc"),
            ],
        )
        .unwrap()
    };
    // Decline: error redirect that still carries admin_consent=True.
    t.ctl(
        "PUT",
        "/interactive",
        json!({"admin_consent": "decline", "admin_tenant": "t2"}),
    )
    .await;
    let r = t
        .http
        .get(url("organizations", "https://graph.microsoft.com/.default"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS65004"));
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["state"], "abc");
    // Wrong scope.
    let r = t.http.get(url("t2", "Mail.Read")).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert!(q.contains_key("error"));
    assert_eq!(q["admin_consent"], "True");
    // Approve on organizations: the configured tenant's admin consents.
    t.ctl(
        "PUT",
        "/interactive",
        json!({"admin_consent": "approve", "admin_tenant": "two.com"}),
    )
    .await;
    let r = t
        .http
        .get(url("organizations", "https://graph.microsoft.com/.default"))
        .send()
        .await
        .unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["tenant"], "t2");
    assert_eq!(q["state"], "abc");
    assert_eq!(q["scope"], "https://graph.microsoft.com/.default");
    assert!(!q.contains_key("error"));
    let (s, v) = cc("t2").await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = cc("t1").await;
    assert_eq!(s, 400);
    // `common` is not allowed for admin consent.
    let r = t
        .http
        .get(url("common", "https://graph.microsoft.com/.default"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let log = t.requests().await;
    assert!(log.iter().any(|l| l["kind"] == "adminconsent"));
}

async fn signed_in(t: &T, user: &str) -> String {
    let v = t
        .delegated(user, "offline_access Mail.ReadWrite User.Read")
        .await;
    v["refresh_token"].as_str().unwrap().to_string()
}

async fn event(t: &T, body: Value) {
    t.ctl("POST", "/events", body).await;
}

#[tokio::test]
async fn password_change_revokes_unless_tenant_says_otherwise() {
    let t = T::new().await;
    let rt = signed_in(&t, ALICE).await;
    event(&t, json!({"type": "password_changed", "user": ALICE})).await;
    let (s, v) = t.refresh(&rt).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_grant", 50173);
    // A new sign-in works again.
    let rt2 = signed_in(&t, ALICE).await;
    assert_eq!(t.refresh(&rt2).await.0, 200);
    // Tenant setting off (Microsoft's confidential-client behaviour): tokens survive.
    t.ctl(
        "PATCH",
        &format!("/tenants/{TENANT_ID}"),
        json!({"password_change_revokes_refresh_tokens": false}),
    )
    .await;
    let rt3 = signed_in(&t, BOB).await;
    event(&t, json!({"type": "password_changed", "user": BOB})).await;
    assert_eq!(t.refresh(&rt3).await.0, 200);
    // Explicit revocation always revokes.
    event(&t, json!({"type": "tokens_revoked", "user": BOB})).await;
    assert_eq!(t.refresh(&rt3).await.1["error_codes"], json!([50173]));
}

#[tokio::test]
async fn mfa_required_both_error_kinds() {
    let t = T::new().await;
    let rt = signed_in(&t, ALICE).await;
    event(&t, json!({"type": "mfa_required", "tenant": TENANT_ID})).await;
    let (s, v) = t.refresh(&rt).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_grant", 50076);
    assert_eq!(v["suberror"], "basic_action");
    t.ctl(
        "PATCH",
        &format!("/tenants/{TENANT_ID}"),
        json!({"mfa_error_kind": "interaction_required"}),
    )
    .await;
    let (_, v) = t.refresh(&rt).await;
    assert_entra_error(&v, "interaction_required", 50076);
    assert_eq!(v["suberror"], "basic_action");
    // A fresh interactive sign-in satisfies MFA.
    let rt2 = signed_in(&t, ALICE).await;
    assert_eq!(t.refresh(&rt2).await.0, 200);
    // App-only tokens are not affected.
    t.app_token().await;
}

#[tokio::test]
async fn inactivity_consent_disabled_and_app_removed() {
    let t = T::new().await;
    // Inactivity, by event and by the clock (90 days).
    let rt = signed_in(&t, ALICE).await;
    event(&t, json!({"type": "refresh_token_inactive", "user": ALICE})).await;
    assert_entra_error(&t.refresh(&rt).await.1, "invalid_grant", 700082);
    let rt = signed_in(&t, ALICE).await;
    t.ctl("POST", "/clock/advance", json!({"secs": 91 * 24 * 3600}))
        .await;
    assert_entra_error(&t.refresh(&rt).await.1, "invalid_grant", 700082);
    // Consent revoked.
    let rt = signed_in(&t, ALICE).await;
    event(
        &t,
        json!({"type": "consent_revoked", "user": ALICE, "app": CLIENT_ID}),
    )
    .await;
    let (_, v) = t.refresh(&rt).await;
    assert_entra_error(&v, "invalid_grant", 65001);
    assert_eq!(v["suberror"], "consent_required");
    // User disabled.
    let rt = signed_in(&t, BOB).await;
    event(&t, json!({"type": "user_disabled", "user": BOB})).await;
    let (s, v) = t.refresh(&rt).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "invalid_grant", 50057);
    // ...and cannot sign in.
    t.ctl("PUT", "/interactive", json!({"signin_user": BOB}))
        .await;
    let (_, loc) = t
        .authorize(
            TENANT_ID,
            &T::standard_authz("Mail.ReadWrite", "s", &challenge(VERIFIER)),
        )
        .await;
    assert_eq!(query_of(&loc)["error"], "access_denied");
    event(&t, json!({"type": "user_enabled", "user": BOB})).await;
    signed_in(&t, BOB).await;
    // Admin removed the app: refresh, client credentials and existing access tokens fail.
    let rt = signed_in(&t, ALICE).await;
    let at = t.app_token().await;
    assert_eq!(t.get(&at, &format!("/users/{ALICE}/messages")).await.0, 200);
    event(
        &t,
        json!({"type": "app_removed", "tenant": TENANT_ID, "app": CLIENT_ID}),
    )
    .await;
    let (s, v) = t.refresh(&rt).await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "unauthorized_client", 700016);
    let (s, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert_entra_error(&v, "unauthorized_client", 700016);
    let (s, v) = t.get(&at, &format!("/users/{ALICE}/messages")).await;
    assert_eq!(s, 401);
    assert_eq!(code_of(&v), "InvalidAuthenticationToken");
}

#[tokio::test]
async fn secret_expiry() {
    let t = T::new().await;
    let rt = signed_in(&t, ALICE).await;
    event(&t, json!({"type": "secret_expired", "app": CLIENT_ID})).await;
    let (s, v) = t.refresh(&rt).await;
    assert_eq!(s, 401);
    assert_entra_error(&v, "invalid_client", 7000222);
    let (s, _) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 401);
    // A new secret fixes it.
    t.ctl(
        "POST",
        &format!("/apps/{CLIENT_ID}/secrets"),
        json!({"value": "new-secret", "expires_in_secs": 3600}),
    )
    .await;
    let (s, _) = t
        .token_form(
            "organizations",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("client_secret", "new-secret"),
                ("refresh_token", &rt),
            ],
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn access_token_expiry_and_validation() {
    let t = T::new().await;
    t.ctl(
        "PATCH",
        &format!("/tenants/{TENANT_ID}"),
        json!({"access_token_lifetime_secs": 1}),
    )
    .await;
    let at = t.app_token().await;
    let path = format!("/users/{ALICE}/mailFolders");
    assert_eq!(t.get(&at, &path).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, h, v) = t.g(&at, "GET", &path, None, &[]).await;
    assert_eq!(s, 401);
    assert_eq!(code_of(&v), "InvalidAuthenticationToken");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    assert!(h.contains_key("www-authenticate"));
    for k in ["date", "request-id", "client-request-id"] {
        assert!(v["error"]["innerError"][k].is_string(), "{v}");
    }
    let (s, v) = t.get("", &path).await;
    assert_eq!(s, 401);
    assert_eq!(code_of(&v), "InvalidAuthenticationToken");
    let (s, _) = t.get("not.a.jwt", &path).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn token_endpoint_faults() {
    let t = T::new().await;
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "unavailable", "target": "identity", "count": 1, "retry_after": "3"}),
    )
    .await;
    let resp = t
        .http
        .post(format!("{}/{TENANT_ID}/oauth2/v2.0/token", t.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    t.app_token().await;
    let log = t.requests().await;
    let tokens: Vec<_> = log.iter().filter(|l| l["kind"] == "token").collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["fault"], "unavailable");
    assert_eq!(tokens[1]["grant_type"], "client_credentials");
    assert_eq!(tokens[1]["tenant"], TENANT_ID);
}
