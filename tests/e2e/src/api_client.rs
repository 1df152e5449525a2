//! Used by the API tests, the connect-page test and the demo: a world with the REAL `management-api` and
//! `oauth-callback` binaries behind the local HTTP API, and callers' bearer tokens signed with an
//! RSA key pair made for the test (its public key is the function's `API_JWT_PUBLIC_KEY`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{FunctionHarness, World};
use anyhow::{Context, anyhow, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://platform.example/identity";
pub const AUDIENCE: &str = "outlook-integration-api";

/// An RSA key pair as PEM: PKCS#8 private key, SPKI public key.
pub struct Keys {
    pub private_pem: String,
    pub public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl Keys {
    pub fn generate() -> Keys {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let private = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
        let public = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
            .expect("SPKI");
        Keys {
            private_pem: pem("PRIVATE KEY", private.as_ref()),
            public_pem: pem("PUBLIC KEY", public.as_ref()),
        }
    }

    /// Signs `claims` (RS256).
    pub fn sign(&self, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).expect("private key PEM");
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Claims of a valid caller of `workspace`.
pub fn claims(workspace: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("user-of-{workspace}"),
        "workspace_id": workspace,
        "iat": now_secs(),
        "exp": now_secs() + 3600,
    })
}

/// One HTTP answer of the API.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The stable error code of a JSON error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub struct ApiWorld {
    pub world: World,
    pub keys: Keys,
    pub api: FunctionHarness,
    pub callback: FunctionHarness,
}

impl ApiWorld {
    pub async fn new(name: &str) -> anyhow::Result<ApiWorld> {
        let world = World::new(name).await?;
        let keys = Keys::generate();
        let api = world
            .start_function_with(
                "management-api",
                &[
                    ("API_JWT_ISSUER", ISSUER),
                    ("API_JWT_AUDIENCE", AUDIENCE),
                    ("API_JWT_PUBLIC_KEY", &keys.public_pem),
                ],
            )
            .await
            .context("starting management-api")?;
        let callback = world
            .start_function("oauth-callback")
            .await
            .context("starting oauth-callback")?;
        Ok(ApiWorld {
            world,
            keys,
            api,
            callback,
        })
    }

    pub fn base(&self) -> &str {
        self.world.gateway.base_url()
    }

    /// A valid bearer token of `workspace`.
    pub fn token(&self, workspace: &str) -> String {
        self.keys.sign(&claims(workspace))
    }

    /// Sends a request through the local HTTP API; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON"));
        self.call_raw(method, path, token, bytes).await
    }

    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .world
            .http()
            .request(method, format!("{}{path}", self.base()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the local HTTP API answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            text,
        }
    }

    /// Lets the simulator approve admin consent and sign-ins (as `signin_user` when given).
    pub async fn approve(&self, signin_user: Option<&str>) -> anyhow::Result<()> {
        let mut interactive = json!({"admin_consent": "approve", "user_consent": "approve", "admin_tenant": self.world.tenant_id});
        if let Some(user) = signin_user {
            interactive["signin_user"] = json!(user);
        }
        self.world.sim_put("/interactive", &interactive).await?;
        Ok(())
    }

    /// Starts a connection through the API and completes it in the simulator and the real
    /// callback; returns the new integration's id.
    pub async fn connect(&self, token: &str, request: Value) -> anyhow::Result<String> {
        let before: Vec<String> = self.integration_ids(token).await;
        let started = self
            .call("POST", "/api/integrations", Some(token), Some(&request))
            .await;
        if started.status != 201 {
            bail!(
                "start connection answered {}: {}",
                started.status,
                started.text
            );
        }
        let url = started.json()["url"]
            .as_str()
            .ok_or_else(|| anyhow!("no url: {}", started.text))?
            .to_owned();
        let (status, page) = self.world.complete_sign_in(&url, None).await?;
        if status != 200 {
            bail!("the callback answered {status}: {page}");
        }
        self.integration_ids(token)
            .await
            .into_iter()
            .find(|id| !before.contains(id))
            .ok_or_else(|| anyhow!("no new integration"))
    }

    pub async fn integration_ids(&self, token: &str) -> Vec<String> {
        let list = self
            .call("GET", "/api/integrations", Some(token), None)
            .await;
        list.json()["integrations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Connects the world's tenant organization-wide for the token's workspace.
    pub async fn connect_organization(
        &self,
        token: &str,
        mailboxes: &[&str],
    ) -> anyhow::Result<String> {
        self.approve(None).await?;
        self.connect(
            token,
            json!({"accountType": "organization", "mailboxes": mailboxes}),
        )
        .await
    }

    /// Connects `user` personally for the token's workspace.
    pub async fn connect_personal(
        &self,
        token: &str,
        user: &str,
        shared: &[&str],
    ) -> anyhow::Result<String> {
        self.approve(Some(user)).await?;
        self.connect(
            token,
            json!({"accountType": "personal", "sharedMailboxes": shared}),
        )
        .await
    }
}
