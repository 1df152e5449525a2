//! A whole local world for one test: its own resources from the template, its own Microsoft 365
//! simulator with the app registered and a company (tenant, users, mailboxes), an HTTP API in
//! front of the HTTPS functions, and helpers to start the real function binaries wired to all of
//! it exactly as the template wires them in AWS.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use outlook_core::api::auth::Caller;
use outlook_core::connect::flows::{StartOptions, handle_callback, start};
use outlook_core::ids::{IntegrationId, WorkspaceId};
use outlook_core::model::Integration;
use outlook_core::services::Services;
use time::OffsetDateTime;

use crate::{
    FunctionHarness, HttpApiGateway, LocalStack, Resources, SimProcess, provision, unique_prefix,
};

/// The Graph application permissions and delegated scopes the product asks for
/// (`outlook_core::connect`), registered on the simulated app.
fn app_permissions() -> Vec<&'static str> {
    outlook_core::connect::APPLICATION_PERMISSIONS
        .iter()
        .map(|(p, _)| *p)
        .collect()
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
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
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
        let tenant = world
            .sim_post("/tenants", &json!({"domain": world.domain}))
            .await?;
        let tenant_id = tenant["id"]
            .as_str()
            .ok_or_else(|| anyhow!("tenant without id: {tenant}"))?
            .to_owned();
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
        self.sim_post(
            "/users",
            &json!({"tenant": self.tenant_id, "upn": upn, "kind": kind, "mailbox": true}),
        )
        .await?;
        Ok(upn)
    }

    /// The environment the template gives `binary`, pointed at this world.
    pub fn function_env(&self, binary: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut env: BTreeMap<String, String> = self
            .resources
            .function_env(binary, &[("AppClientId", &self.client_id)])?
            .into_iter()
            .collect();
        env.insert("GRAPH_BASE_URL".into(), self.sim.graph_base_url());
        env.insert("LOGIN_BASE_URL".into(), self.sim.login_base_url());
        env.insert("PUBLIC_BASE_URL".into(), self.gateway.base_url().to_owned());
        env.insert(
            "AWS_ENDPOINT_URL".into(),
            self.stack.endpoint_url().to_owned(),
        );
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

    pub async fn start_function_with(
        &self,
        binary: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<FunctionHarness> {
        let mut env = self.function_env(binary)?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let harness = FunctionHarness::start(binary, &env).await?;
        let has_routes = self
            .resources
            .template()
            .function_by_binary(binary)
            .is_some_and(|f| !f.http_routes.is_empty());
        if has_routes {
            self.gateway.add(&harness)?;
        }
        Ok(harness)
    }

    /// The library's services against this world (what a function builds at cold start).
    pub async fn services(&self) -> anyhow::Result<Services> {
        let env: BTreeMap<String, String> =
            self.function_env("management-api")?.into_iter().collect();
        let config = outlook_core::config::Config::from_lookup(|k| env.get(k).cloned())?;
        Ok(Services::build(config, self.stack.sdk_config()).await?)
    }

    pub fn store(&self) -> outlook_core::store::Store {
        outlook_core::store::Store::new(
            aws_sdk_dynamodb::Client::new(self.stack.sdk_config()),
            &self.resources.table_name,
        )
    }

    /// Stores `document` as version 1 of the integration-wide rule set (what the API's replace
    /// does, without the API).
    pub async fn put_rules(
        &self,
        integration: &Integration,
        document: &Value,
    ) -> anyhow::Result<()> {
        self.store()
            .put_ruleset(&outlook_core::store::StoredRuleSet {
                workspace_id: integration.workspace_id.clone(),
                integration_id: integration.integration_id.clone(),
                scope: outlook_core::store::ALL_MAILBOXES.into(),
                version: 1,
                document: document.to_string(),
                updated_at: OffsetDateTime::now_utc(),
                updated_by: None,
            })
            .await?;
        Ok(())
    }

    /// "Sync now" for `keys`: one forced sync job each on the sync queue (as the API's
    /// sync-now does); a function's event source then delivers them.
    pub async fn enqueue_sync(
        &self,
        keys: impl IntoIterator<Item = outlook_core::model::MailboxKey>,
    ) -> anyhow::Result<()> {
        let jobs: Vec<outlook_core::sync::dispatch::SyncJob> = keys
            .into_iter()
            .map(|k| outlook_core::sync::dispatch::SyncJob::single(k, true))
            .collect();
        let sqs = aws_sdk_sqs::Client::new(self.stack.sdk_config());
        let report =
            outlook_core::sync::dispatch::enqueue(&sqs, &self.resources.sync_queue_url, &jobs)
                .await;
        if report.failed > 0 {
            bail!("{} sync jobs were not queued", report.failed);
        }
        Ok(())
    }

    /// A client that does not follow redirects (each hop of a sign-in is checked by the test).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn sim_get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/_sim{path}", self.sim.base_url))
            .send()
            .await?;
        sim_json(response).await
    }

    pub async fn sim_post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/_sim{path}", self.sim.base_url))
            .json(body)
            .send()
            .await?;
        sim_json(response).await
    }

    pub async fn sim_put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .put(format!("{}/_sim{path}", self.sim.base_url))
            .json(body)
            .send()
            .await?;
        sim_json(response).await
    }

    /// Follows a browser's journey from a start URL (authorize or admin consent) through the
    /// simulator's redirect to our callback; returns the callback's status and page.
    pub async fn complete_sign_in(
        &self,
        start_url: &str,
        cookie: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let to_microsoft = self.http.get(start_url).send().await?;
        if !to_microsoft.status().is_redirection() {
            bail!(
                "Microsoft's sign-in did not redirect ({}): {}",
                to_microsoft.status(),
                to_microsoft.text().await?
            );
        }
        let location = to_microsoft
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("redirect without location"))?
            .to_owned();
        self.callback(&location, cookie).await
    }

    /// Connects the world's tenant organization-wide for `workspace` (admin approves) and
    /// returns the integration. Microsoft's redirect is handled in-process by the same library
    /// function the `oauth-callback` binary runs.
    pub async fn connect_organization(
        &self,
        services: &Services,
        workspace: &str,
        mailboxes: &[&str],
    ) -> anyhow::Result<Integration> {
        self.sim_put(
            "/interactive",
            &json!({"admin_consent": "approve", "user_consent": "approve", "admin_tenant": self.tenant_id}),
        )
        .await?;
        let options = StartOptions::Organization {
            mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            tenant: None,
        };
        self.connect(services, workspace, options, None).await
    }

    /// Connects `user` personally (with `shared` mailboxes) for `workspace`; with `reconnect`,
    /// signs in again for that integration.
    pub async fn connect_personal(
        &self,
        services: &Services,
        workspace: &str,
        user: &str,
        shared: &[&str],
        reconnect: Option<&IntegrationId>,
    ) -> anyhow::Result<Integration> {
        self.sim_put(
            "/interactive",
            &json!({"signin_user": user, "user_consent": "approve", "admin_consent": "approve"}),
        )
        .await?;
        let options = StartOptions::Personal {
            shared_mailboxes: shared.iter().map(|m| m.to_string()).collect(),
            login_hint: None,
        };
        self.connect(services, workspace, options, reconnect).await
    }

    async fn connect(
        &self,
        services: &Services,
        workspace: &str,
        options: StartOptions,
        reconnect: Option<&IntegrationId>,
    ) -> anyhow::Result<Integration> {
        let caller = Caller {
            workspace_id: WorkspaceId::parse(workspace)?,
            subject: "test".into(),
        };
        let now = OffsetDateTime::now_utc();
        let flow = start(services, &caller, options, reconnect, false, now)
            .await
            .map_err(|e| anyhow!("start: {e}"))?;
        let redirect = self.http.get(flow.url.as_str()).send().await?;
        let location = redirect
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("sign-in did not redirect"))?;
        let query = url::Url::parse(location)?
            .query()
            .unwrap_or_default()
            .to_owned();
        let page = handle_callback(services, &query, None, now).await;
        if !page.success {
            bail!(
                "connect failed ({}): {} {}",
                page.status,
                page.title,
                page.message
            );
        }
        let integrations = services
            .store
            .list_integrations(&caller.workspace_id)
            .await?;
        let newest = integrations
            .into_iter()
            .max_by_key(|i| i.updated_at)
            .ok_or_else(|| anyhow!("no integration stored"))?;
        Ok(newest)
    }

    /// Delivers messages (simulator JSON, see its README) into `mailbox`; returns their
    /// immutable ids.
    pub async fn deliver(
        &self,
        mailbox: &str,
        messages: Vec<Value>,
    ) -> anyhow::Result<Vec<String>> {
        let out = self
            .sim_post(
                &format!("/mailboxes/{mailbox}/messages"),
                &json!({"messages": messages}),
            )
            .await?;
        Ok(out["messages"]
            .as_array()
            .ok_or_else(|| anyhow!("no messages in {out}"))?
            .iter()
            .filter_map(|m| m["immutable_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Graph and token requests the simulator logged after `since` (a `seq`), of `kind`.
    pub async fn requests_since(&self, since: u64, kind: &str) -> anyhow::Result<Vec<Value>> {
        let out = self
            .sim_get(&format!("/requests?since={since}&kind={kind}"))
            .await?;
        Ok(out["requests"].as_array().cloned().unwrap_or_default())
    }

    /// The newest request sequence number of the simulator's log.
    pub async fn last_request_seq(&self) -> anyhow::Result<u64> {
        let out = self.sim_get("/requests?kind=graph").await?;
        Ok(out["last_seq"].as_u64().unwrap_or(0))
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
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}
