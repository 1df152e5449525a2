//! A whole local world for one test: its own resources from the template, its own Microsoft 365
//! simulator with the app registered and a company (tenant, users, mailboxes), an HTTP API in
//! front of the HTTPS functions, and helpers to start the real function binaries wired to all of
//! it exactly as the template wires them in AWS.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::{FunctionHarness, HttpApiGateway, LocalStack, Resources, SimProcess, provision, unique_prefix};

/// The Graph application permissions and delegated scopes the product asks for
/// (`outlook_core::connect`), registered on the simulated app.
fn app_permissions() -> Vec<&'static str> {
    outlook_core::connect::APPLICATION_PERMISSIONS.iter().map(|(p, _)| *p).collect()
}

fn delegated_scopes() -> Vec<&'static str> {
    outlook_core::connect::delegated_scopes(true)
}

pub struct World {
    pub stack: LocalStack,
    pub resources: Resources,
    pub sim: SimProcess,
    pub gateway: HttpApiGateway,
    pub client_id: String,
    pub client_secret: String,
    pub tenant_id: String,
    pub domain: String,
    http: reqwest::Client,
}

impl World {
    /// Provisions resources, starts a simulator, registers the app (redirect URI on the
    /// gateway) and creates tenant `contoso.com` with no users yet.
    pub async fn new(name: &str) -> anyhow::Result<World> {
        let stack = LocalStack::from_env().await?;
        let resources = provision(stack.sdk_config(), &unique_prefix(name)).await?;
        let sim = SimProcess::start(7).await?;
        let gateway = HttpApiGateway::start().await?;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let client_id = uuid::Uuid::new_v4().to_string();
        let client_secret = format!("sim~{}", uuid::Uuid::new_v4().simple());
        let world = World {
            stack,
            resources,
            gateway,
            client_id,
            client_secret,
            tenant_id: String::new(),
            domain: "contoso.com".into(),
            http,
            sim,
        };
        world
            .sim_post(
                "/apps",
                &json!({
                    "client_id": world.client_id,
                    "redirect_uris": [format!("{}/oauth/callback", world.gateway.base_url())],
                    "secrets": [{"value": world.client_secret}],
                    "application_permissions": app_permissions(),
                    "delegated_scopes": delegated_scopes(),
                }),
            )
            .await?;
        let tenant = world.sim_post("/tenants", &json!({"domain": world.domain})).await?;
        let tenant_id = tenant["id"].as_str().ok_or_else(|| anyhow!("tenant without id: {tenant}"))?.to_owned();
        let secrets = aws_sdk_secretsmanager::Client::new(world.stack.sdk_config());
        secrets
            .put_secret_value()
            .secret_id(&world.resources.app_credentials_secret_id)
            .secret_string(json!({"client_secret": world.client_secret}).to_string())
            .send()
            .await
            .context("storing the app credentials")?;
        Ok(World { tenant_id, ..world })
    }

    /// Creates a user with a mailbox (`kind` `user` or `shared`) in the world's tenant.
    pub async fn add_user(&self, local_part: &str, kind: &str) -> anyhow::Result<String> {
        let upn = format!("{local_part}@{}", self.domain);
        self.sim_post("/users", &json!({"tenant": self.tenant_id, "upn": upn, "kind": kind, "mailbox": true}))
            .await?;
        Ok(upn)
    }

    /// The environment the template gives `binary`, pointed at this world.
    pub fn function_env(&self, binary: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut env: BTreeMap<String, String> =
            self.resources.function_env(binary, &[("AppClientId", &self.client_id)])?.into_iter().collect();
        env.insert("GRAPH_BASE_URL".into(), self.sim.graph_base_url());
        env.insert("LOGIN_BASE_URL".into(), self.sim.login_base_url());
        env.insert("PUBLIC_BASE_URL".into(), self.gateway.base_url().to_owned());
        env.insert("AWS_ENDPOINT_URL".into(), self.stack.endpoint_url().to_owned());
        env.insert("AWS_REGION".into(), self.stack.region().to_owned());
        env.insert("AWS_ACCESS_KEY_ID".into(), "test".into());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), "test".into());
        env.insert("RUST_LOG".into(), "info".into());
        Ok(env.into_iter().collect())
    }

    /// Starts the real `binary` as a Lambda function wired to this world; HTTPS functions are
    /// added to the gateway.
    pub async fn start_function(&self, binary: &str) -> anyhow::Result<FunctionHarness> {
        self.start_function_with(binary, &[]).await
    }

    pub async fn start_function_with(&self, binary: &str, extra: &[(&str, &str)]) -> anyhow::Result<FunctionHarness> {
        let mut env = self.function_env(binary)?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let harness = FunctionHarness::start(binary, &env).await?;
        self.gateway.add(&harness)?;
        Ok(harness)
    }

    /// The library's services against this world (what a function builds at cold start).
    pub async fn services(&self) -> anyhow::Result<outlook_core::services::Services> {
        let env: BTreeMap<String, String> = self.function_env("management-api")?.into_iter().collect();
        let config = outlook_core::config::Config::from_lookup(|k| env.get(k).cloned())?;
        Ok(outlook_core::services::Services::build(config, self.stack.sdk_config()).await?)
    }

    pub fn store(&self) -> outlook_core::store::Store {
        outlook_core::store::Store::new(
            aws_sdk_dynamodb::Client::new(self.stack.sdk_config()),
            &self.resources.table_name,
        )
    }

    /// A client that does not follow redirects (each hop of a sign-in is checked by the test).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn sim_get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}/_sim{path}", self.sim.base_url)).send().await?;
        sim_json(response).await
    }

    pub async fn sim_post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.post(format!("{}/_sim{path}", self.sim.base_url)).json(body).send().await?;
        sim_json(response).await
    }

    pub async fn sim_put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.put(format!("{}/_sim{path}", self.sim.base_url)).json(body).send().await?;
        sim_json(response).await
    }

    /// Follows a browser's journey from a start URL (authorize or admin consent) through the
    /// simulator's redirect to our callback; returns the callback's status and page.
    pub async fn complete_sign_in(&self, start_url: &str, cookie: Option<&str>) -> anyhow::Result<(u16, String)> {
        let to_microsoft = self.http.get(start_url).send().await?;
        if !to_microsoft.status().is_redirection() {
            bail!("Microsoft's sign-in did not redirect ({}): {}", to_microsoft.status(), to_microsoft.text().await?);
        }
        let location = to_microsoft
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("redirect without location"))?
            .to_owned();
        self.callback(&location, cookie).await
    }

    /// Calls the callback URL as the browser would.
    pub async fn callback(&self, url: &str, cookie: Option<&str>) -> anyhow::Result<(u16, String)> {
        let mut request = self.http.get(url);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }
}

async fn sim_json(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("simulator control call failed ({status}): {text}");
    }
    Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
}
