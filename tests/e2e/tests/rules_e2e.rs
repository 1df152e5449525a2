//! Rule execution end to end: the real `rule-eval` binary under the Lambda runtime emulator,
//! the AWS emulator (store, app credentials secret) and the Microsoft 365 simulator.
//!
//! Each test provisions its own resources, starts its own simulator (tenant, app, mailbox) and
//! creates a connected organization-wide integration directly in the store. Rules jobs are built
//! the way the sync worker builds them (the message read through Graph with the worker's
//! `$select`) and handed to the function as SQS events. Checks use the simulator's own records
//! (message state, folders, master categories, sent mail, request log) and the audit records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use e2e::{FunctionHarness, LocalStack, Resources, SimProcess, provision, unique_prefix};
use outlook_core::graph::{GraphClient, MailboxRef};
use outlook_core::ids::{IntegrationId, WorkspaceId};
use outlook_core::model::{AccountType, Integration, IntegrationStatus, Mailbox, MailboxKind};
use outlook_core::store::{AuditRecord, EvaluationClaim, Store, StoredRuleSet};
use outlook_core::sync::worker::{RulesJob, SELECT};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;

const TENANT: &str = "aaaaaaaa-0000-4000-8000-00000000a11c";
const DOMAIN: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "rules-e2e-app-secret";
const UPN: &str = "alice@contoso.onmicrosoft.com";
const AP: &str = "ap@fabrikam.com";

/// One test's world: resources, simulator, integration, mailbox and the function.
struct World {
    sim: SimProcess,
    http: reqwest::Client,
    store: Store,
    dynamo: aws_sdk_dynamodb::Client,
    resources: Resources,
    integration: Integration,
    mailbox: Mailbox,
    graph: GraphClient,
    token: SecretString,
    env: Vec<(String, String)>,
}

impl World {
    async fn new(name: &str) -> World {
        Self::with_env(name, &[]).await
    }

    /// `extra` is added to the function's environment.
    async fn with_env(name: &str, extra: &[(&str, &str)]) -> World {
        let stack = LocalStack::from_env()
            .await
            .expect("local stack is up (make stack-up)");
        let resources = provision(stack.sdk_config(), &unique_prefix(name))
            .await
            .expect("provision");
        let sim = SimProcess::start(7).await.expect("simulator starts");
        let http = reqwest::Client::new();
        let world_ctl = |method: reqwest::Method, path: String, body: Value| {
            let http = http.clone();
            let url = format!("{}/_sim{path}", sim.base_url);
            async move {
                let response = http.request(method, &url).json(&body).send().await.unwrap();
                let status = response.status();
                let text = response.text().await.unwrap();
                assert!(status.is_success(), "{url}: {status} {text}");
            }
        };
        world_ctl(
            reqwest::Method::POST,
            "/tenants".into(),
            json!({"id": TENANT, "domain": DOMAIN, "display_name": "Contoso"}),
        )
        .await;
        world_ctl(
            reqwest::Method::POST,
            "/apps".into(),
            json!({
                "client_id": CLIENT_ID,
                "display_name": "Mail Automation",
                "secrets": [{"value": SECRET}],
                "application_permissions": ["Mail.ReadWrite", "Mail.Send", "MailboxSettings.ReadWrite", "User.Read.All"],
            }),
        )
        .await;
        world_ctl(
            reqwest::Method::POST,
            "/users".into(),
            json!({"tenant": TENANT, "upn": UPN, "display_name": "Alice"}),
        )
        .await;
        world_ctl(
            reqwest::Method::POST,
            format!("/tenants/{TENANT}/admin-consent"),
            json!({"client_id": CLIENT_ID}),
        )
        .await;

        let secrets = aws_sdk_secretsmanager::Client::new(stack.sdk_config());
        secrets
            .put_secret_value()
            .secret_id(&resources.app_credentials_secret_id)
            .secret_string(json!({"client_secret": SECRET}).to_string())
            .send()
            .await
            .expect("app credentials secret");

        let dynamo = aws_sdk_dynamodb::Client::new(stack.sdk_config());
        let store = Store::new(dynamo.clone(), &resources.table_name);
        let now = OffsetDateTime::now_utc();
        let integration = Integration {
            workspace_id: WorkspaceId::parse("acme").unwrap(),
            integration_id: IntegrationId::generate(),
            account_type: AccountType::Organization,
            tenant_id: TENANT.into(),
            status: IntegrationStatus::Connected,
            status_reason: None,
            user_principal_name: None,
            user_object_id: None,
            display_name: Some("Contoso".into()),
            scopes: vec![],
            credential_generation: 1,
            created_at: now,
            updated_at: now,
            last_successful_sync_at: None,
            version: 0,
        };
        store.create_integration(&integration).await.unwrap();
        let mailbox = Mailbox::new(
            integration.workspace_id.clone(),
            integration.integration_id.clone(),
            UPN,
            MailboxKind::Organization,
            &["inbox"],
            now,
        );
        store.create_mailbox(&mailbox).await.unwrap();

        let overridden = ["GRAPH_BASE_URL", "LOGIN_BASE_URL"];
        let mut env: Vec<(String, String)> = resources
            .function_env("rule-eval", &[("AppClientId", CLIENT_ID)])
            .expect("rule-eval in the template")
            .into_iter()
            .filter(|(k, _)| {
                !overridden.contains(&k.as_str()) && !extra.iter().any(|(e, _)| e == k)
            })
            .collect();
        env.push(("GRAPH_BASE_URL".into(), sim.graph_base_url()));
        env.push(("LOGIN_BASE_URL".into(), sim.login_base_url()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));

        let token = app_token(&http, &sim.base_url).await;
        let graph = GraphClient::new(
            reqwest::Client::new(),
            reqwest::Url::parse(&sim.graph_base_url()).unwrap(),
        );
        World {
            sim,
            http,
            store,
            dynamo,
            resources,
            integration,
            mailbox,
            graph,
            token,
            env,
        }
    }

    async fn function(&self) -> FunctionHarness {
        self.function_with(&[]).await
    }

    async fn function_with(&self, extra: &[(&str, &str)]) -> FunctionHarness {
        let mut env = self.env.clone();
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        FunctionHarness::start("rule-eval", &env)
            .await
            .expect("rule-eval starts")
    }

    async fn ctl(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_sim{path}", self.sim.base_url);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{url}: {status} {value}");
        value
    }

    async fn put_rules(&self, scope: &str, doc: Value) {
        self.store
            .put_ruleset(&StoredRuleSet {
                workspace_id: self.integration.workspace_id.clone(),
                integration_id: self.integration.integration_id.clone(),
                scope: scope.into(),
                version: doc["version"].as_u64().unwrap(),
                document: doc.to_string(),
                updated_at: OffsetDateTime::now_utc(),
                updated_by: None,
            })
            .await
            .unwrap();
    }

    /// Delivers a message to the inbox; returns its immutable id.
    async fn deliver(&self, subject: &str) -> String {
        let out = self
            .ctl(
                reqwest::Method::POST,
                &format!("/mailboxes/{UPN}/messages"),
                Some(json!({
                    "from": "Billing <billing@acme.example>",
                    "subject": subject,
                    "body_text": "Please find the invoice attached.",
                    "categories": ["Existing"],
                })),
            )
            .await;
        out["messages"][0]["immutable_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The rules job the sync worker would send for this message.
    async fn job(&self, id: &str) -> RulesJob {
        let message = self
            .graph
            .get_message(&self.token, &MailboxRef::User(UPN.into()), id, SELECT)
            .await
            .expect("message readable")
            .into_mail_message("inbox")
            .unwrap();
        RulesJob {
            mailbox: self.mailbox.key(),
            address: UPN.into(),
            kind: MailboxKind::Organization,
            account_type: AccountType::Organization,
            tenant_id: TENANT.into(),
            message,
        }
    }

    async fn sim_message(&self, id: &str) -> Value {
        self.ctl(
            reqwest::Method::GET,
            &format!("/mailboxes/{UPN}/messages/{id}"),
            None,
        )
        .await
    }

    async fn sent(&self) -> Vec<Value> {
        self.ctl(reqwest::Method::GET, &format!("/sent?mailbox={UPN}"), None)
            .await["sent"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn master_categories(&self) -> Vec<Value> {
        self.ctl(
            reqwest::Method::GET,
            &format!("/mailboxes/{UPN}/categories"),
            None,
        )
        .await["categories"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn folder_messages(&self, folder: &str) -> Vec<Value> {
        self.ctl(
            reqwest::Method::GET,
            &format!("/mailboxes/{UPN}/messages?folder={folder}"),
            None,
        )
        .await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn last_request_seq(&self) -> u64 {
        self.ctl(reqwest::Method::GET, "/requests?since=999999999", None)
            .await["last_seq"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Graph requests (not token requests) logged after `since`.
    async fn graph_requests_since(&self, since: u64) -> Vec<Value> {
        self.ctl(
            reqwest::Method::GET,
            &format!("/requests?kind=graph&since={since}"),
            None,
        )
        .await["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn fault(&self, rule: Value) {
        self.ctl(reqwest::Method::POST, "/faults", Some(rule)).await;
    }

    async fn audit(&self) -> Vec<AuditRecord> {
        self.store
            .list_audit(
                &self.integration.workspace_id,
                &self.mailbox.mailbox_id,
                100,
            )
            .await
            .unwrap()
    }

    async fn audit_of(&self, id: &str) -> AuditRecord {
        let records: Vec<AuditRecord> = self
            .audit()
            .await
            .into_iter()
            .filter(|r| r.message_id == id)
            .collect();
        assert_eq!(records.len(), 1, "one audit record for {id}: {records:?}");
        records.into_iter().next().unwrap()
    }

    /// The forward claim's draft id, once an attempt recorded it.
    async fn recorded_draft(&self, message_id: &str) -> Option<String> {
        let items = self
            .dynamo
            .query()
            .table_name(&self.resources.table_name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(format!("ACT#{}#{message_id}", self.mailbox.mailbox_id)),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        items.into_iter().find_map(|item| {
            let sk = item.get("sk")?.as_s().ok()?;
            if !sk.starts_with("forward:") {
                return None;
            }
            item.get("draft_id")?.as_s().ok().cloned()
        })
    }
}

async fn app_token(http: &reqwest::Client, base: &str) -> SecretString {
    let response: Value = http
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    SecretString::from(
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("token: {response}"))
            .to_owned(),
    )
}

/// An SQS event with one record per `(sqs message id, job)`.
fn event(records: &[(&str, &RulesJob)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, job)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("handle-{id}"),
                "body": serde_json::to_string(job).unwrap(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:rules",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({"Records": records})
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn statuses(record: &AuditRecord) -> Vec<(String, String)> {
    record
        .actions
        .iter()
        .map(|a| {
            (
                a.action_key.split(':').next().unwrap().to_owned(),
                a.status.clone(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect()
}

fn invoice_rules() -> Value {
    json!({"version": 1, "rules": [{
        "id": "acme-invoices", "name": "Invoices from Acme", "order": 10,
        "conditions": [{"subjectContains": ["invoice"]}, {"senderDomain": {"domain": "acme.example"}}],
        "actions": [
            {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
            {"forwardTo": {"recipients": [AP], "comment": "For booking"}},
            {"moveToFolder": {"path": "Clients/Acme/Invoices"}}
        ]
    }]})
}

fn categorize_and_move_rules() -> Value {
    json!({"version": 1, "rules": [{
        "id": "acme-invoices", "name": "Invoices from Acme", "order": 10,
        "conditions": [{"subjectContains": ["invoice"]}],
        "actions": [
            {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
            {"moveToFolder": {"path": "Clients/Acme/Invoices"}}
        ]
    }]})
}

#[tokio::test]
async fn categorize_move_into_a_new_nested_folder_and_forward_once_even_when_delivered_twice() {
    let world = World::new("rules-basic").await;
    world.put_rules("*", invoice_rules()).await;
    let id = world.deliver("Invoice 2024-117").await;
    let other = world.deliver("Lunch on Friday?").await;
    let job = world.job(&id).await;
    let other_job = world.job(&other).await;
    let function = world.function().await;

    let response = function
        .invoke(&event(&[("sqs-1", &job), ("sqs-2", &other_job)]))
        .await
        .unwrap();
    assert!(failures(&response).is_empty(), "{response}");

    let message = world.sim_message(&id).await;
    assert_eq!(message["folder_path"], "Clients/Acme/Invoices", "{message}");
    let categories: Vec<&str> = message["categories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(categories, ["Existing", "Invoices"]);
    let master = world.master_categories().await;
    assert!(
        master
            .iter()
            .any(|c| c["displayName"] == "Invoices" && c["color"] == "preset4"),
        "master category created with its colour: {master:?}"
    );
    let sent = world.sent().await;
    assert_eq!(sent.len(), 1, "exactly one forward: {sent:?}");
    assert_eq!(sent[0]["to"][0]["address"], AP);
    assert_eq!(sent[0]["comment"], "For booking");
    assert_eq!(sent[0]["original_immutable_id"], id.as_str());
    assert!(
        world.folder_messages("drafts").await.is_empty(),
        "no draft left behind"
    );
    let untouched = world.sim_message(&other).await;
    assert_eq!(untouched["folder_path"], "Inbox");

    let audit = world.audit_of(&id).await;
    assert_eq!(audit.matched_rules[0].rule_id, "acme-invoices");
    assert_eq!(audit.rules_version, 1);
    assert_eq!(
        statuses(&audit),
        pairs(&[
            ("categorize", "applied"),
            ("forward", "applied"),
            ("move", "applied")
        ])
    );
    let quiet = world.audit_of(&other).await;
    assert!(quiet.matched_rules.is_empty() && quiet.actions.is_empty());

    // The same queue message again (SQS delivers at least once), alone and twice in one batch.
    let before = world.last_request_seq().await;
    for records in [
        vec![("sqs-1", &job)],
        vec![("sqs-1", &job), ("sqs-1b", &job)],
    ] {
        let response = function.invoke(&event(&records)).await.unwrap();
        assert!(failures(&response).is_empty(), "{response}");
    }
    assert_eq!(world.sent().await.len(), 1, "still exactly one forward");
    assert_eq!(
        world.sim_message(&id).await["folder_path"],
        "Clients/Acme/Invoices"
    );
    assert_eq!(
        world.folder_messages("Clients/Acme/Invoices").await.len(),
        1,
        "moved once"
    );
    assert_eq!(world.audit().await.len(), 2, "no second audit record");
    let repeated = world.graph_requests_since(before).await;
    assert!(
        repeated.is_empty(),
        "a duplicate costs no Graph request: {repeated:?}"
    );
}

#[tokio::test]
async fn a_crash_between_forward_draft_and_send_still_forwards_exactly_once() {
    let world = World::new("rules-crash").await;
    world.put_rules("*", invoice_rules()).await;
    let id = world.deliver("Invoice 2024-118").await;
    let job = world.job(&id).await;
    let function = Arc::new(
        world
            .function_with(&[("RULE_EVAL_CLAIM_LEASE_SECS", "3")])
            .await,
    );
    // Hold the send long enough to kill the function while it waits for it.
    world
        .fault(json!({"kind": "delay", "path_contains": "/send", "delay_ms": 6000, "count": 1}))
        .await;

    let first = tokio::spawn({
        let function = function.clone();
        let payload = event(&[("sqs-1", &job)]);
        async move { function.invoke(&payload).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let draft = loop {
        if let Some(draft) = world.recorded_draft(&id).await {
            break draft;
        }
        assert!(
            Instant::now() < deadline,
            "the forward draft was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    function.kill().await;
    let crashed = first.await.unwrap();
    assert!(
        crashed.is_err(),
        "the invocation died with the process: {crashed:?}"
    );
    assert!(world.sent().await.len() <= 1);

    // SQS redelivers after the visibility timeout; by then the claims' leases have expired.
    function.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let response = function.invoke(&event(&[("sqs-1", &job)])).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    // The delayed send may still complete in the simulator: wait it out, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let sent = world.sent().await;
    assert_eq!(
        sent.len(),
        1,
        "exactly one forward after the crash: {sent:?}"
    );
    let drafts = world.folder_messages("drafts").await;
    assert!(
        drafts.iter().all(|d| d["immutable_id"] != draft.as_str()),
        "the recorded draft was sent, not left behind: {drafts:?}"
    );
    let message = world.sim_message(&id).await;
    assert_eq!(message["folder_path"], "Clients/Acme/Invoices");
    let audit = world.audit_of(&id).await;
    assert_eq!(
        statuses(&audit),
        pairs(&[
            ("categorize", "already_applied"),
            ("forward", "applied"),
            ("move", "applied")
        ])
    );
}

#[tokio::test]
async fn a_failed_send_is_retried_with_the_recorded_draft_and_done_actions_are_not_repeated() {
    let world = World::new("rules-send-retry").await;
    world.put_rules("*", invoice_rules()).await;
    let id = world.deliver("Invoice 2024-119").await;
    let job = world.job(&id).await;
    let function = world.function().await;
    // Every attempt of the client's retry budget fails: the forward is left for the queue.
    world
        .fault(json!({"kind": "unavailable", "path_contains": "/send", "count": 4}))
        .await;

    let response = function.invoke(&event(&[("sqs-1", &job)])).await.unwrap();
    assert_eq!(failures(&response), ["sqs-1"], "{response}");
    assert!(world.sent().await.is_empty());
    let draft = world.recorded_draft(&id).await.expect("draft recorded");
    let message = world.sim_message(&id).await;
    assert_eq!(
        message["folder_path"], "Inbox",
        "no move before the forward is done"
    );
    assert!(world.audit().await.is_empty(), "not evaluated yet");

    let before = world.last_request_seq().await;
    let response = function.invoke(&event(&[("sqs-1", &job)])).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    let requests = world.graph_requests_since(before).await;
    assert!(
        requests
            .iter()
            .all(|r| r["method"] != "PATCH"
                && !r["path"].as_str().unwrap().ends_with("/createForward")),
        "no second PATCH, no second draft: {requests:?}"
    );
    let sent = world.sent().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        world
            .folder_messages("drafts")
            .await
            .iter()
            .all(|d| d["immutable_id"] != draft.as_str())
    );
    assert_eq!(
        world.sim_message(&id).await["folder_path"],
        "Clients/Acme/Invoices"
    );
    assert_eq!(
        statuses(&world.audit_of(&id).await),
        pairs(&[
            ("categorize", "already_applied"),
            ("forward", "applied"),
            ("move", "applied")
        ])
    );
}

#[tokio::test]
async fn throttled_batch_items_are_retried_and_applied_exactly_once() {
    let world = World::new("rules-throttle").await;
    world.put_rules("*", categorize_and_move_rules()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(world.deliver(&format!("Invoice {n}")).await);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(world.job(id).await);
    }
    let function = world.function().await;
    world
        .fault(json!({"kind": "throttle", "method": "PATCH", "count": 2, "retry_after": "1"}))
        .await;
    world
        .fault(
            json!({"kind": "throttle", "path_contains": "/move", "count": 1, "retry_after": "1"}),
        )
        .await;

    let before = world.last_request_seq().await;
    let records: Vec<(String, &RulesJob)> = jobs
        .iter()
        .enumerate()
        .map(|(n, j)| (format!("sqs-{n}"), j))
        .collect();
    let records: Vec<(&str, &RulesJob)> = records.iter().map(|(s, j)| (s.as_str(), *j)).collect();
    let response = function.invoke(&event(&records)).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");

    let requests = world.graph_requests_since(before).await;
    let throttled = requests.iter().filter(|r| r["status"] == 429).count();
    assert_eq!(throttled, 3, "the faults fired: {requests:#?}");
    assert!(
        requests
            .iter()
            .filter(|r| r["status"] == 429)
            .all(|r| r["batched"] == true),
        "429s were batch items"
    );
    let ok = |method: &str, suffix: &str| {
        requests
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["batched"] == true
                    && r["status"].as_u64().is_some_and(|s| s < 300)
                    && r["path"].as_str().unwrap().ends_with(suffix)
            })
            .count()
    };
    assert_eq!(ok("PATCH", ""), 3, "one successful PATCH per message");
    assert_eq!(ok("POST", "/move"), 3, "one successful move per message");
    for id in &ids {
        let message = world.sim_message(id).await;
        assert_eq!(message["folder_path"], "Clients/Acme/Invoices");
        assert_eq!(message["categories"], json!(["Existing", "Invoices"]));
        assert_eq!(
            statuses(&world.audit_of(id).await),
            pairs(&[("categorize", "applied"), ("move", "applied")])
        );
    }
}

#[tokio::test]
async fn a_message_deleted_before_its_rule_ran_fails_alone() {
    let world = World::new("rules-deleted").await;
    world.put_rules("*", invoice_rules()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(world.deliver(&format!("Invoice {n}")).await);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(world.job(id).await);
    }
    // The user deletes the second message for good after sync saw it.
    world
        .ctl(
            reqwest::Method::DELETE,
            &format!("/mailboxes/{UPN}/messages/{}?hard=true", ids[1]),
            None,
        )
        .await;
    let function = world.function().await;
    let response = function
        .invoke(&event(&[
            ("sqs-0", &jobs[0]),
            ("sqs-1", &jobs[1]),
            ("sqs-2", &jobs[2]),
        ]))
        .await
        .unwrap();
    assert!(failures(&response).is_empty(), "{response}");

    let gone = world.audit_of(&ids[1]).await;
    assert_eq!(
        statuses(&gone),
        pairs(&[
            ("categorize", "failed"),
            ("forward", "skipped"),
            ("move", "skipped")
        ])
    );
    assert_eq!(
        gone.actions[0].error.as_deref(),
        Some("message no longer exists")
    );
    assert!(
        gone.actions[1..]
            .iter()
            .all(|a| a.error.as_deref() == Some("message no longer exists"))
    );
    for id in [&ids[0], &ids[2]] {
        assert_eq!(
            world.sim_message(id).await["folder_path"],
            "Clients/Acme/Invoices"
        );
        assert_eq!(
            statuses(&world.audit_of(id).await),
            pairs(&[
                ("categorize", "applied"),
                ("forward", "applied"),
                ("move", "applied")
            ])
        );
    }
    assert_eq!(
        world.sent().await.len(),
        2,
        "the other messages were forwarded"
    );

    // Redelivery of the deleted message's job: nothing is retried.
    let before = world.last_request_seq().await;
    let response = function
        .invoke(&event(&[("sqs-1", &jobs[1])]))
        .await
        .unwrap();
    assert!(failures(&response).is_empty());
    assert!(world.graph_requests_since(before).await.is_empty());
}

/// Graph requests per message for "categorize + move", with and without `$batch` across the
/// messages of one SQS batch (printed; run with `--nocapture` to see them).
#[tokio::test]
async fn batch_combines_the_requests_of_a_mailbox() {
    let world = World::new("rules-requests").await;
    world.put_rules("*", categorize_and_move_rules()).await;
    const N: usize = 5;

    async fn measure(
        world: &World,
        function: &FunctionHarness,
        count: usize,
        tag: &str,
    ) -> (usize, usize) {
        let mut jobs = Vec::new();
        for n in 0..count {
            let id = world.deliver(&format!("Invoice {tag}-{n}")).await;
            jobs.push(world.job(&id).await);
        }
        let names: Vec<String> = (0..count).map(|n| format!("{tag}-{n}")).collect();
        let records: Vec<(&str, &RulesJob)> = names.iter().map(String::as_str).zip(&jobs).collect();
        let before = world.last_request_seq().await;
        let response = function.invoke(&event(&records)).await.unwrap();
        assert!(failures(&response).is_empty(), "{response}");
        let requests = world.graph_requests_since(before).await;
        let http = requests.iter().filter(|r| r["batched"] != true).count();
        let items = requests.iter().filter(|r| r["batched"] == true).count();
        for job in &jobs {
            assert_eq!(
                world.sim_message(&job.message.id).await["folder_path"],
                "Clients/Acme/Invoices"
            );
        }
        (http, items)
    }

    let batched = world.function().await;
    let cold = measure(&world, &batched, 1, "cold").await;
    let warm_one = measure(&world, &batched, 1, "warm").await;
    let warm_many = measure(&world, &batched, N, "many").await;
    drop(batched);

    let single = world
        .function_with(&[("RULE_EVAL_USE_BATCH", "false")])
        .await;
    let _ = measure(&world, &single, 1, "s-warmup").await;
    let unbatched_one = measure(&world, &single, 1, "s-one").await;
    let unbatched_many = measure(&world, &single, N, "s-many").await;

    eprintln!("Graph requests for categorize + move (HTTP requests, $batch items):");
    eprintln!("  cold sandbox, 1 message (folders + master category created): {cold:?}");
    eprintln!("  warm, 1 message: {warm_one:?}");
    eprintln!("  warm, {N} messages with $batch: {warm_many:?}");
    eprintln!("  warm, 1 message without $batch: {unbatched_one:?}");
    eprintln!("  warm, {N} messages without $batch: {unbatched_many:?}");

    assert_eq!(warm_one, (2, 0), "one PATCH and one move");
    assert_eq!(
        warm_many,
        (2, 2 * N),
        "one $batch of PATCHes and one of moves"
    );
    assert_eq!(unbatched_one, (2, 0));
    assert_eq!(unbatched_many, (2 * N, 0));
}

#[tokio::test]
async fn a_copy_is_not_repeated_after_a_crash_before_it_was_recorded() {
    let world = World::new("rules-copy").await;
    // A body condition: the job carries no body, so the function fetches it.
    world
        .put_rules(
            "*",
            json!({"version": 1, "rules": [{
                "id": "keep-a-copy", "name": "Keep a copy", "order": 1,
                "conditions": [{"bodyContains": ["invoice attached"]}],
                "actions": [{"copyToFolder": {"path": "Copies/Invoices"}}]
            }]}),
        )
        .await;
    let id = world.deliver("Invoice 2024-120").await;
    let job = world.job(&id).await;
    assert!(job.message.body.is_none());
    let function = world.function().await;
    let response = function.invoke(&event(&[("sqs-1", &job)])).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(world.folder_messages("Copies/Invoices").await.len(), 1);
    assert_eq!(
        world.sim_message(&id).await["folder_path"],
        "Inbox",
        "a copy leaves the original"
    );

    // Make it look as if that attempt died after Graph copied but before it recorded the copy:
    // the action claim still open (lease expired), the evaluation not completed.
    let table = &world.resources.table_name;
    let act_pk = format!("ACT#{}#{id}", world.mailbox.mailbox_id);
    let copy_sk = world
        .dynamo
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(act_pk.clone()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .into_iter()
        .find_map(|i| {
            i.get("sk")?
                .as_s()
                .ok()
                .filter(|s| s.starts_with("copy:"))
                .cloned()
        })
        .expect("copy claim");
    world
        .dynamo
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S(act_pk))
        .key("sk", AttributeValue::S(copy_sk))
        .update_expression("SET #s = :claimed, #o = :crashed, lease_until_ms = :zero")
        .expression_attribute_names("#s", "state")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":claimed", AttributeValue::S("claimed".into()))
        .expression_attribute_values(":crashed", AttributeValue::S("crashed-worker".into()))
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap();
    world
        .dynamo
        .update_item()
        .table_name(table)
        .key(
            "pk",
            AttributeValue::S(format!("MSG#{}#{id}", world.mailbox.mailbox_id)),
        )
        .key("sk", AttributeValue::S("MSG".into()))
        .update_expression("REMOVE evaluated_at, eval_lease_until_ms")
        .send()
        .await
        .unwrap();

    let before = world.last_request_seq().await;
    let response = function.invoke(&event(&[("sqs-1", &job)])).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    let requests = world.graph_requests_since(before).await;
    assert!(
        !requests
            .iter()
            .any(|r| r["path"].as_str().unwrap().ends_with("/copy")),
        "the copy was found, not made again: {requests:#?}"
    );
    assert_eq!(world.folder_messages("Copies/Invoices").await.len(), 1);
    assert_eq!(
        statuses(&world.audit_of(&id).await),
        pairs(&[("copy", "applied")])
    );
}

#[tokio::test]
async fn jobs_of_a_broken_integration_are_parked_and_a_deleted_one_is_acknowledged_with_a_note() {
    // Needs reconnect: the job is kept (parked) for the first sync after the reconnect, its
    // claim released; nothing is acted on and nothing is audited yet.
    let world = World::new("rules-disconnected").await;
    world.put_rules("*", invoice_rules()).await;
    let id = world.deliver("Invoice 2024-121").await;
    let job = world.job(&id).await;
    let mut integration = world
        .store
        .get_integration(
            &world.integration.workspace_id,
            &world.integration.integration_id,
        )
        .await
        .unwrap()
        .unwrap();
    integration.status = IntegrationStatus::NeedsReconnect;
    let integration = world.store.save_integration(&integration).await.unwrap();

    let function = world.function().await;
    let before = world.last_request_seq().await;
    let response = function.invoke(&event(&[("sqs-1", &job)])).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    assert!(world.graph_requests_since(before).await.is_empty());
    assert_eq!(world.sim_message(&id).await["folder_path"], "Inbox");
    assert!(world.audit().await.is_empty());
    let parked = world
        .store
        .parked_jobs(&job.mailbox.mailbox_id)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_id, id);
    let requeued: RulesJob = serde_json::from_str(&parked[0].body).unwrap();
    assert_eq!(requeued.message.id, id);
    // The claim was given up: the parked job, queued again, can be evaluated at once.
    let claim = world
        .store
        .claim_evaluation(
            &job.mailbox.mailbox_id,
            &id,
            "another-worker",
            OffsetDateTime::now_utc(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(claim, EvaluationClaim::Claimed);
    world
        .store
        .release_evaluation(&job.mailbox.mailbox_id, &id, "another-worker")
        .await
        .unwrap();

    // Deleted: nothing will ever resume it; acknowledged with an audit note.
    world
        .store
        .delete_integration(&integration.workspace_id, &integration.integration_id)
        .await
        .unwrap();
    let response = function.invoke(&event(&[("sqs-2", &job)])).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(world.sim_message(&id).await["folder_path"], "Inbox");
    let audit = world.audit_of(&id).await;
    assert_eq!(statuses(&audit), pairs(&[("evaluation", "skipped")]));
    assert!(
        audit.actions[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no longer exists")),
        "{audit:?}"
    );
}
