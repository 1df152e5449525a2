//! `make demo`: the product end to end on the local stack, through the real Lambda binaries.
//!
//! A simulated company (Contoso) gets an organization-wide connection (admin consent) for its
//! shared and executive mailboxes and a personal connection (Alice, with a shared team mailbox).
//! Example rules are installed, mail keeps arriving, and scheduled ticks run the dispatcher, the
//! sync worker and rule evaluation. Then Alice changes her password and the tenant turns on MFA:
//! her personal connection needs a reconnect while the organization-wide one keeps syncing; she
//! reconnects and sync resumes with nothing lost or repeated. A report closes the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, bail};
use e2e::api_client::ApiWorld;
use e2e::{FunctionHarness, SqsEventSource};
use outlook_core::ids::WorkspaceId;
use outlook_core::model::Mailbox;
use outlook_core::services::Services;
use serde_json::{Value, json};

const WORKSPACE: &str = "contoso-demo";

const RULES: &str = r#"[
  {"id": "invoices", "name": "Invoices to Finance/Invoices", "order": 1, "enabled": true,
   "conditions": [{"subjectContains": ["invoice"]}],
   "actions": [{"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
               {"moveToFolder": {"path": "Finance/Invoices"}}]},
  {"id": "vip", "name": "Flag VIP senders", "order": 2, "enabled": true,
   "conditions": [{"fromAddresses": ["ceo@contoso.com", "chair@fabrikam.com"]}],
   "actions": [{"flag": {"status": "flagged"}}, {"markImportance": {"importance": "high"}}]},
  {"id": "urgent-support", "name": "Forward urgent support mail", "order": 3, "enabled": true,
   "conditions": [{"subjectContains": ["urgent"]}],
   "exceptions": [{"isAutomaticReply": true}],
   "actions": [{"forwardTo": {"recipients": ["oncall@contoso.com"], "comment": "Urgent customer mail, please pick up."}}]}
]"#;

fn step(text: &str) {
    println!("\n== {text}");
}

/// A round of realistic new mail for one mailbox.
fn round(mailbox: &str, round: usize, count: usize) -> Vec<Value> {
    let senders = [
        ("Acme Billing", "billing@acme-supplies.com"),
        ("Dana Lee", "dana@customer-corp.com"),
        ("Contoso CEO", "ceo@contoso.com"),
        ("Fabrikam Chair", "chair@fabrikam.com"),
        ("Product News", "news@saas-weekly.com"),
        ("Sam Ortiz", "sam@startup.io"),
    ];
    (0..count)
        .map(|i| {
            let n = round * 1000 + i;
            let (name, address) = senders[(n * 7 + mailbox.len()) % senders.len()];
            let subject = match n % 6 {
                0 => format!("Invoice INV-{n:05} for October"),
                1 => format!("URGENT: order #{n} not delivered"),
                2 => format!("Board pack {n}"),
                3 => format!("Weekly digest #{n}"),
                4 => format!("Re: meeting notes {n}"),
                _ => format!("Question about plan {n}"),
            };
            json!({
                "from": {"name": name, "address": address},
                "to": mailbox,
                "subject": subject,
                "body_html": format!("<p>Hello,</p><p>{subject}.</p><p>Regards,<br>{name}</p>"),
                "has_attachments": n.is_multiple_of(6),
            })
        })
        .collect()
}

struct Demo {
    api: ApiWorld,
    token: String,
    services: Services,
    dispatcher: FunctionHarness,
    sync: FunctionHarness,
    rules: FunctionHarness,
    sync_source: SqsEventSource,
    rules_source: SqsEventSource,
    delivered: HashMap<String, Vec<String>>,
}

impl Demo {
    /// A new sign-in through the management API's reconnect, Microsoft and the real callback.
    async fn reconnect(&self, integration: &str) -> anyhow::Result<()> {
        let answer = self
            .api
            .call(
                "POST",
                &format!("/api/integrations/{integration}/reconnect"),
                Some(&self.token),
                None,
            )
            .await;
        let url = answer.json()["url"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("reconnect: {}", answer.text))?;
        let (status, page) = self.api.world.complete_sign_in(&url, None).await?;
        if status != 200 {
            bail!("the callback answered {status}: {page}");
        }
        Ok(())
    }

    async fn deliver(&mut self, mailbox: &str, messages: Vec<Value>) -> anyhow::Result<()> {
        let ids = self.api.world.deliver(mailbox, messages).await?;
        self.delivered
            .entry(mailbox.to_owned())
            .or_default()
            .extend(ids);
        Ok(())
    }

    /// One scheduled minute: the dispatcher enqueues due mailboxes, the sync worker runs delta,
    /// rule evaluation acts on what was handed on.
    async fn tick(&self, label: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let report = self
            .dispatcher
            .invoke(&json!({"trigger": "schedule"}))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let synced = drain_with_redelivery(&self.sync_source, &self.sync).await?;
        let evaluated = drain_with_redelivery(&self.rules_source, &self.rules).await?;
        println!(
            "   tick {label}: {} mailboxes due, {} sync batches, {} rule batches ({} messages) in {:.1} s",
            report["due"],
            synced.len(),
            evaluated.len(),
            evaluated.iter().map(|b| b.message_ids.len()).sum::<usize>(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    async fn install_rules(&self, integration: &str) -> anyhow::Result<()> {
        let rules: Value = serde_json::from_str(RULES)?;
        let answer = self
            .api
            .call(
                "PUT",
                &format!("/api/integrations/{integration}/rules/all"),
                Some(&self.token),
                Some(&json!({"expectedVersion": 0, "rules": rules})),
            )
            .await;
        if answer.status != 200 {
            bail!(
                "installing rules answered {}: {}",
                answer.status,
                answer.text
            );
        }
        Ok(())
    }

    async fn mailboxes(&self) -> anyhow::Result<Vec<Mailbox>> {
        Ok(self
            .services
            .store
            .list_mailboxes(&WorkspaceId::parse(WORKSPACE)?, None)
            .await?)
    }

    /// The integration's state as the management API shows it.
    async fn status_line(&self, integration: &str) -> anyhow::Result<String> {
        let answer = self
            .api
            .call(
                "GET",
                &format!("/api/integrations/{integration}"),
                Some(&self.token),
                None,
            )
            .await;
        let view = answer.json();
        Ok(match view["reason"]["code"].as_str() {
            Some(code) => format!(
                "{}: {code} ({})",
                view["stateLabel"].as_str().unwrap_or("?"),
                view["reason"]["message"].as_str().unwrap_or("")
            ),
            None => view["stateLabel"].as_str().unwrap_or("?").to_owned(),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    step(
        "Starting the local world: AWS emulator resources from infra/template.yaml, Microsoft 365 simulator, Lambda functions",
    );
    let api = ApiWorld::new("demo").await?;
    let world = &api.world;
    let dispatcher = world.start_function("sync-dispatcher").await?;
    // One-second sync interval so several scheduled minutes fit in the demo.
    let sync = world
        .start_function_with("mailbox-sync", &[("SYNC_INTERVAL_SECONDS", "1")])
        .await?;
    let rules = world.start_function("rule-eval").await?;
    let sync_source =
        SqsEventSource::for_function(world.stack.sdk_config(), &world.resources, "mailbox-sync")?;
    let rules_source =
        SqsEventSource::for_function(world.stack.sdk_config(), &world.resources, "rule-eval")?;
    let services = world.services().await?;
    println!(
        "   HTTP API {}, table {}, simulator {}",
        world.gateway.base_url(),
        world.resources.table_name,
        world.sim.base_url
    );
    let token = api.token(WORKSPACE);

    let mut demo = Demo {
        api,
        token,
        services,
        dispatcher,
        sync,
        rules,
        sync_source,
        rules_source,
        delivered: HashMap::new(),
    };
    let world = &demo.api.world;

    step("Creating Contoso in Microsoft 365: users, shared mailboxes and 30 days of history");
    let finance = world.add_user("finance", "shared").await?;
    let support = world.add_user("support", "shared").await?;
    let ceo = world.add_user("ceo", "user").await?;
    let alice = world.add_user("alice", "user").await?;
    let team = world.add_user("team", "shared").await?;
    world
        .sim_post(
            &format!("/users/{alice}/shared-access"),
            &json!({"mailbox": team}),
        )
        .await?;
    for mailbox in [&finance, &support, &ceo, &alice, &team] {
        world
            .sim_post(
                &format!("/mailboxes/{mailbox}/generate"),
                &json!({"count": 40, "seed": 3}),
            )
            .await?;
    }
    println!(
        "   5 mailboxes, 200 historical emails (history is not processed: sync starts from the connection)"
    );

    step(
        "Organization-wide connection through the management API: the Microsoft 365 admin grants consent once",
    );
    let org = demo
        .api
        .connect_organization(&demo.token, &[&finance, &support, &ceo])
        .await?;
    println!("   {org}: {}", demo.status_line(&org).await?);

    step("Personal connection: Alice signs in for her mailbox and the shared team mailbox");
    let personal = demo
        .api
        .connect_personal(&demo.token, &alice, &[&team])
        .await?;
    println!("   {personal}: {}", demo.status_line(&personal).await?);

    step(
        "Installing example rules: invoices -> Finance/Invoices, flag VIP senders, forward urgent support mail",
    );
    demo.install_rules(&org).await?;
    demo.install_rules(&personal).await?;

    step("First scheduled tick: every mailbox starts syncing from now");
    demo.tick("1").await?;

    let all = [&finance, &support, &ceo, &alice, &team];
    step("Mail arrives; scheduled ticks sync and act on it");
    for (i, label) in ["2", "3"].iter().enumerate() {
        for mailbox in all {
            demo.deliver(mailbox, round(mailbox, i + 1, 24)).await?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        demo.tick(label).await?;
    }

    step(
        "Alice changes her password and Contoso turns on MFA (an hour later her access token has expired)",
    );
    let world = &demo.api.world;
    world
        .sim_post(
            "/events",
            &json!({"type": "password_changed", "user": alice}),
        )
        .await?;
    world
        .sim_post(
            "/events",
            &json!({"type": "mfa_required", "tenant": world.tenant_id}),
        )
        .await?;
    world
        .sim_post("/clock/advance", &json!({"secs": 3700}))
        .await?;
    for mailbox in all {
        demo.deliver(mailbox, round(mailbox, 3, 24)).await?;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    demo.tick("4").await?;
    println!("   organization-wide: {}", demo.status_line(&org).await?);
    println!(
        "   personal:          {}",
        demo.status_line(&personal).await?
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    demo.tick("5 (the personal integration is paused: no retries)")
        .await?;

    step("Alice reconnects (a fresh sign-in satisfies MFA); sync resumes where it stopped");
    demo.api.approve(Some(&alice)).await?;
    demo.reconnect(&personal).await?;
    println!(
        "   personal:          {}",
        demo.status_line(&personal).await?
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    demo.tick("6").await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    demo.tick("7").await?;

    report(&demo, &org, &personal).await?;
    println!(
        "\nDemo finished in {:.0} s. Everything it started stops now.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Drains a queue into its function. Batches a function reported as failed come back after the
/// queue's visibility timeout (minutes); the demo makes them visible again at once instead of
/// waiting, as often as Lambda would retry them.
async fn drain_with_redelivery(
    source: &SqsEventSource,
    function: &FunctionHarness,
) -> anyhow::Result<Vec<e2e::Batch>> {
    let mut all = Vec::new();
    for _ in 0..4 {
        let batches = source.drain(function, 200).await?;
        let failed: Vec<&e2e::Batch> = batches.iter().filter(|b| !b.failed.is_empty()).collect();
        for batch in &failed {
            source.retry_now(batch).await?;
        }
        let done = failed.is_empty();
        all.extend(batches);
        if done {
            break;
        }
    }
    Ok(all)
}

async fn report(demo: &Demo, org: &str, personal: &str) -> anyhow::Result<()> {
    step("Report");
    let sent = demo.api.world.sim_get("/sent").await?;
    let sent = sent["sent"].as_array().cloned().unwrap_or_default();
    let mut forwards: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &sent {
        *forwards
            .entry(
                mail["original_immutable_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    println!(
        "{:<24} {:<14} {:>9} {:>12} {:>7} {:>10}  status",
        "mailbox", "connection", "delivered", "categorized", "moved", "forwarded"
    );
    let mut problems = Vec::new();
    for mailbox in demo.mailboxes().await? {
        let audit = demo
            .services
            .store
            .list_audit(&mailbox.workspace_id, &mailbox.mailbox_id, 10_000)
            .await?;
        let count = |prefix: &str| {
            audit
                .iter()
                .filter(|r| {
                    r.actions
                        .iter()
                        .any(|a| a.action_key.starts_with(prefix) && a.status == "applied")
                })
                .count()
        };
        let delivered = demo
            .delivered
            .get(&mailbox.address)
            .map(Vec::len)
            .unwrap_or(0);
        let evaluated: HashSet<&str> = audit.iter().map(|r| r.message_id.as_str()).collect();
        let missing = demo
            .delivered
            .get(&mailbox.address)
            .map(|ids| {
                ids.iter()
                    .filter(|id| !evaluated.contains(id.as_str()))
                    .count()
            })
            .unwrap_or(0);
        if evaluated.len() != audit.len() {
            problems.push(format!(
                "{}: a message was evaluated twice",
                mailbox.address
            ));
        }
        if missing > 0 {
            for id in demo.delivered[&mailbox.address]
                .iter()
                .filter(|id| !evaluated.contains(id.as_str()))
            {
                let state = demo
                    .services
                    .store
                    .message_state(&mailbox.mailbox_id, id)
                    .await?;
                let view = demo
                    .api
                    .world
                    .sim_get(&format!("/mailboxes/{}/messages/{id}", mailbox.address))
                    .await?;
                problems.push(format!(
                    "{}: not processed: {:?} (sync record: {state:?}, folder {})",
                    mailbox.address, view["subject"], view["folder_path"]
                ));
            }
        }
        let connection = if mailbox.integration_id.as_str() == org {
            "organization"
        } else {
            "personal"
        };
        let forwarded = audit
            .iter()
            .filter(|r| forwards.contains_key(&r.message_id))
            .count();
        println!(
            "{:<24} {:<14} {:>9} {:>12} {:>7} {:>10}  {:?}{}",
            mailbox.address,
            connection,
            delivered,
            count("categorize"),
            count("move"),
            forwarded,
            mailbox.status,
            mailbox
                .status_reason
                .as_ref()
                .map(|r| format!(" ({})", r.code.code()))
                .unwrap_or_default()
        );
    }
    if let Some((id, n)) = forwards.iter().find(|(_, n)| **n > 1) {
        problems.push(format!("message {id} was forwarded {n} times"));
    }
    let graph = demo.api.world.sim_get("/requests?kind=graph").await?;
    let total_delivered: usize = demo.delivered.values().map(Vec::len).sum();
    println!(
        "\norganization-wide: {} | personal: {}",
        demo.status_line(org).await?,
        demo.status_line(personal).await?
    );
    println!(
        "{} new messages, {} forwards sent, {} Graph requests in all ({:.2} per message, including connection and folder set-up)",
        total_delivered,
        sent.len(),
        graph["requests"].as_array().map(Vec::len).unwrap_or(0),
        graph["requests"].as_array().map(Vec::len).unwrap_or(0) as f64
            / total_delivered.max(1) as f64
    );
    if problems.is_empty() {
        println!("Every new message was processed exactly once: nothing lost, nothing repeated.");
        Ok(())
    } else {
        for problem in &problems {
            println!("PROBLEM: {problem}");
        }
        bail!("the demo found {} problems", problems.len())
    }
}
