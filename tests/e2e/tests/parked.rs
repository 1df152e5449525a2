//! Mail handed on just before an integration breaks is kept, not dropped: the REAL
//! `mailbox-sync` and `rule-eval` binaries against the simulator. Rule evaluation parks the jobs
//! it cannot run (revoked sign-in, paused mailbox), and the first sync after the reconnect
//! queues them again; each message is then acted on exactly once.

use std::collections::HashSet;

use e2e::{FunctionHarness, SqsEventSource, World};
use outlook_core::health::Reason;
use outlook_core::model::{Integration, IntegrationStatus, MailboxKey};
use outlook_core::services::Services;
use serde_json::json;

struct Ctx {
    world: World,
    services: Services,
    sync: FunctionHarness,
    rules: FunctionHarness,
    sync_source: SqsEventSource,
    rules_source: SqsEventSource,
}

impl Ctx {
    async fn new(name: &str) -> Ctx {
        let world = World::new(name).await.expect("world");
        let sync = world.start_function("mailbox-sync").await.expect("sync");
        let rules = world.start_function("rule-eval").await.expect("rules");
        let services = world.services().await.expect("services");
        let sdk = world.stack.sdk_config().clone();
        Ctx {
            sync_source: SqsEventSource::for_function(&sdk, &world.resources, "mailbox-sync")
                .unwrap(),
            rules_source: SqsEventSource::for_function(&sdk, &world.resources, "rule-eval")
                .unwrap(),
            world,
            services,
            sync,
            rules,
        }
    }

    async fn sync_now(&self, key: &MailboxKey) {
        self.world.enqueue_sync([key.clone()]).await.unwrap();
        self.sync_source.drain(&self.sync, 20).await.unwrap();
    }

    async fn evaluate(&self) {
        self.rules_source.drain(&self.rules, 20).await.unwrap();
    }

    async fn install_rules(&self, integration: &Integration) {
        let rules = json!({"version": 1, "rules": [{
            "id": "invoices", "name": "Invoices", "order": 10,
            "conditions": [{"subjectContains": ["invoice"]}],
            "actions": [
                {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
                {"moveToFolder": {"path": "Finance/Invoices"}}
            ]
        }]});
        self.world.put_rules(integration, &rules).await.unwrap();
    }

    async fn mailbox_key(&self, integration: &Integration) -> MailboxKey {
        self.services
            .store
            .list_mailboxes(&integration.workspace_id, Some(&integration.integration_id))
            .await
            .unwrap()[0]
            .key()
    }

    /// Message ids in `folder` (none while the folder does not exist yet).
    async fn in_folder(&self, mailbox: &str, folder: &str) -> HashSet<String> {
        let Ok(listed) = self
            .world
            .sim_get(&format!("/mailboxes/{mailbox}/messages?folder={folder}"))
            .await
        else {
            return HashSet::new();
        };
        listed["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["immutable_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn mail_waiting_for_rules_when_the_sign_in_is_revoked_is_acted_on_after_reconnect() {
    let ctx = Ctx::new("parked").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    let personal = ctx
        .world
        .connect_personal(&ctx.services, "parked-ws", &alice, &[], None)
        .await
        .unwrap();
    ctx.install_rules(&personal).await;
    let key = ctx.mailbox_key(&personal).await;
    ctx.sync_now(&key).await;

    // Two invoices reach the rules queue; then Alice changes her password before they run.
    let waiting = ctx
        .world
        .deliver(
            &alice,
            vec![
                json!({"from": "billing@acme.example", "subject": "Invoice 1"}),
                json!({"from": "billing@acme.example", "subject": "Invoice 2"}),
            ],
        )
        .await
        .unwrap();
    ctx.sync_now(&key).await;
    ctx.world
        .sim_post(
            "/events",
            &json!({"type": "password_changed", "user": alice}),
        )
        .await
        .unwrap();
    ctx.world
        .sim_post("/clock/advance", &json!({"secs": 3700}))
        .await
        .unwrap();
    ctx.evaluate().await;

    // Parked: nothing acted on, nothing audited as skipped, the mailbox flagged.
    let store = &ctx.services.store;
    assert!(ctx.in_folder(&alice, "Finance/Invoices").await.is_empty());
    let audit = store
        .list_audit(&key.workspace_id, &key.mailbox_id, 50)
        .await
        .unwrap();
    assert!(audit.is_empty(), "no audit record yet: {audit:?}");
    let parked: HashSet<String> = store
        .parked_jobs(&key.mailbox_id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.message_id)
        .collect();
    assert_eq!(parked, waiting.iter().cloned().collect::<HashSet<_>>());
    assert!(
        store
            .get_mailbox(&key)
            .await
            .unwrap()
            .unwrap()
            .parked_seq
            .is_some()
    );

    // Rule evaluation recorded why (so the sync worker and further batches stop asking
    // Microsoft); the next sync leaves the paused mailbox alone. More mail arrives meanwhile.
    let seq = ctx.world.last_request_seq().await.unwrap();
    ctx.sync_now(&key).await;
    assert!(
        ctx.world
            .requests_since(seq, "token")
            .await
            .unwrap()
            .is_empty(),
        "no token request for a broken integration"
    );
    let broken = store
        .get_integration(&personal.workspace_id, &personal.integration_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(broken.status, IntegrationStatus::NeedsReconnect);
    assert_eq!(broken.status_reason.unwrap().code, Reason::PasswordChanged);
    let during = ctx
        .world
        .deliver(
            &alice,
            vec![json!({"from": "billing@acme.example", "subject": "Invoice 3"})],
        )
        .await
        .unwrap();

    // Alice reconnects: the parked jobs and the new mail are each acted on exactly once.
    ctx.world
        .connect_personal(
            &ctx.services,
            "parked-ws",
            &alice,
            &[],
            Some(&personal.integration_id),
        )
        .await
        .unwrap();
    ctx.sync_now(&key).await;
    ctx.evaluate().await;
    // A second round changes nothing.
    ctx.sync_now(&key).await;
    ctx.evaluate().await;

    let expected: HashSet<String> = waiting.iter().chain(&during).cloned().collect();
    assert_eq!(ctx.in_folder(&alice, "Finance/Invoices").await, expected);
    let audit = store
        .list_audit(&key.workspace_id, &key.mailbox_id, 50)
        .await
        .unwrap();
    let audited: Vec<&str> = audit.iter().map(|a| a.message_id.as_str()).collect();
    assert_eq!(
        audited.len(),
        3,
        "one audit record per message: {audited:?}"
    );
    assert_eq!(
        audited
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>(),
        expected
    );
    assert!(
        audit
            .iter()
            .all(|a| a.actions.iter().all(|x| x.status == "applied")),
        "{audit:?}"
    );
    assert!(store.parked_jobs(&key.mailbox_id).await.unwrap().is_empty());
    let mailbox = store.get_mailbox(&key).await.unwrap().unwrap();
    assert_eq!(mailbox.parked_seq, None, "the flag is cleared");
}
