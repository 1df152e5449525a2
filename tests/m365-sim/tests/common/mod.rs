//! Shared test setup: an in-process simulator with one tenant, one app, a few users.
#![allow(dead_code)]

use base64::Engine;
use m365_sim::{SimConfig, SimHandle, spawn};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "s3cr3t-value";
pub const REDIRECT: &str = "https://app.example.com/callback";
pub const TENANT_ID: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const DOMAIN: &str = "contoso.onmicrosoft.com";
pub const ALICE: &str = "alice@contoso.onmicrosoft.com";
pub const BOB: &str = "bob@contoso.onmicrosoft.com";
pub const SHARED: &str = "support@contoso.onmicrosoft.com";
pub const NOMAIL: &str = "nomail@contoso.onmicrosoft.com";
pub const VERIFIER: &str = "a-long-random-pkce-verifier-value-0123456789-abcdefghijklmnop";

pub const APP_PERMS: &[&str] = &[
    "Mail.ReadWrite",
    "Mail.Send",
    "MailboxSettings.ReadWrite",
    "User.Read.All",
];
pub const DELEGATED: &[&str] = &[
    "User.Read",
    "Mail.ReadWrite",
    "Mail.Send",
    "MailboxSettings.ReadWrite",
    "Mail.ReadWrite.Shared",
    "Mail.Send.Shared",
    "offline_access",
    "openid",
];

pub fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("test data")
}

pub struct T {
    pub sim: SimHandle,
    pub http: Client,
    pub base: String,
}

pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl T {
    /// A simulator with no tenants.
    pub async fn empty() -> T {
        let sim = spawn(SimConfig {
            seed: 42,
            ..Default::default()
        })
        .await
        .expect("spawn");
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let base = sim.base_url.clone();
        T { sim, http, base }
    }

    /// Tenant + app (secret and certificate) + users + admin consent.
    pub async fn new() -> T {
        let t = T::empty().await;
        t.ctl(
            "POST",
            "/tenants",
            json!({"id": TENANT_ID, "domain": DOMAIN, "display_name": "Contoso"}),
        )
        .await;
        t.ctl(
            "POST",
            "/apps",
            json!({
                "client_id": CLIENT_ID,
                "display_name": "Mail Automation",
                "redirect_uris": [REDIRECT],
                "secrets": [{"value": SECRET}],
                "certificates": [{"pem": data("app.crt")}],
                "application_permissions": APP_PERMS,
                "delegated_scopes": ["User.Read", "Mail.ReadWrite", "Mail.Send", "offline_access"],
            }),
        )
        .await;
        for (upn, extra) in [
            (ALICE, json!({})),
            (BOB, json!({})),
            (SHARED, json!({"kind": "shared"})),
            (NOMAIL, json!({"mailbox": false})),
        ] {
            let mut b = json!({"tenant": TENANT_ID, "upn": upn});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            t.ctl("POST", "/users", b).await;
        }
        t.ctl(
            "POST",
            &format!("/tenants/{TENANT_ID}/admin-consent"),
            json!({"client_id": CLIENT_ID}),
        )
        .await;
        t
    }

    pub fn graph(&self) -> String {
        format!("{}/v1.0", self.base)
    }

    /// Control API call; panics unless 2xx.
    pub async fn ctl(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.ctl_raw(method, path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    pub async fn ctl_raw(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(m, format!("{}/_sim{path}", self.base));
        if !body.is_null() {
            r = r.json(&body);
        }
        let resp = r.send().await.expect("control");
        let s = resp.status();
        let v = resp.json().await.unwrap_or(Value::Null);
        (s, v)
    }

    pub async fn token_form(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(form)
            .send()
            .await
            .expect("token");
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn app_token(&self) -> String {
        let (s, v) = self
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
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Runs /authorize; returns the Location header.
    pub async fn authorize(&self, tenant: &str, params: &[(&str, &str)]) -> (StatusCode, String) {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{tenant}/oauth2/v2.0/authorize", self.base),
            params,
        )
        .unwrap();
        let resp = self.http.get(url).send().await.expect("authorize");
        let s = resp.status();
        let loc = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (s, loc)
    }

    pub fn standard_authz<'a>(
        scope: &'a str,
        state: &'a str,
        ch: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("response_mode", "query"),
            ("scope", scope),
            ("state", state),
            ("code_challenge", ch),
            ("code_challenge_method", "S256"),
        ]
    }

    /// Signs `user` in (auth code + PKCE) and redeems the code.
    pub async fn delegated(&self, user: &str, scope: &str) -> Value {
        self.ctl("PUT", "/interactive", json!({"signin_user": user}))
            .await;
        let ch = challenge(VERIFIER);
        let (s, loc) = self
            .authorize("organizations", &Self::standard_authz(scope, "st", &ch))
            .await;
        assert_eq!(s, 302, "{loc}");
        let q = query_of(&loc);
        let code = q
            .get("code")
            .unwrap_or_else(|| panic!("no code: {loc}"))
            .clone();
        let (s, v) = self
            .token_form(
                "organizations",
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", SECRET),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("scope", scope),
                ],
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn refresh(&self, rt: &str) -> (StatusCode, Value) {
        self.token_form(
            "organizations",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("refresh_token", rt),
            ],
        )
        .await
    }

    /// Graph call with a bearer token; returns (status, headers, json body or Null).
    pub async fn g(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        prefer: &[&str],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.graph())
        };
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(m, url).bearer_auth(token);
        for p in prefer {
            r = r.header("Prefer", *p);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("graph");
        let s = resp.status();
        let h = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        (s, h, v)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.g(token, "GET", path, None, &[]).await;
        (s, v)
    }

    pub async fn deliver(&self, mailbox: &str, spec: Value) -> Value {
        let v = self
            .ctl("POST", &format!("/mailboxes/{mailbox}/messages"), spec)
            .await;
        v["messages"][0].clone()
    }

    pub async fn requests(&self) -> Vec<Value> {
        self.ctl("GET", "/requests", Value::Null).await["requests"]
            .as_array()
            .unwrap()
            .clone()
    }
}

pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let u = reqwest::Url::parse(url).expect("url");
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn code_of(err: &Value) -> &str {
    err["error"]["code"].as_str().unwrap_or("")
}
