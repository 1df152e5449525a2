//! Scheduled mailbox sync end to end: the REAL `sync-dispatcher` and `mailbox-sync` binaries
//! under the Lambda runtime emulator, fed by the SQS event source as Lambda would, against the
//! Microsoft 365 simulator. What was handed on is read back from the rules queue.

use std::collections::{HashMap, HashSet};

use e2e::{FunctionHarness, SqsEventSource, World};
use outlook_core::health::Reason;
use outlook_core::ids::WorkspaceId;
use outlook_core::model::{Integration, IntegrationStatus, MailboxKey, MailboxStatus};
use outlook_core::services::Services;
use outlook_core::sync::dispatch::SyncJob;
use outlook_core::sync::worker::RulesJob;
use serde_json::{Value, json};

struct Ctx {
    world: World,
    services: Services,
    sync: FunctionHarness,
    source: SqsEventSource,
    sqs: aws_sdk_sqs::Client,
}

async fn ctx(name: &str) -> Ctx {
    // A short lease so a killed worker's mailbox is picked up again within the test.
    ctx_with_lease(name, 2).await
}

async fn ctx_with_lease(name: &str, lease_secs: u64) -> Ctx {
    let world = World::new(name).await.expect("world");
    let lease = lease_secs.to_string();
    let sync = world
        .start_function_with("mailbox-sync", &[("SYNC_LEASE_SECONDS", &lease)])
        .await
        .expect("sync function");
    let services = world.services().await.expect("services");
    let source =
        SqsEventSource::for_function(world.stack.sdk_config(), &world.resources, "mailbox-sync")
            .unwrap();
    let sqs = aws_sdk_sqs::Client::new(world.stack.sdk_config());
    Ctx {
        world,
        services,
        sync,
        source,
        sqs,
    }
}

fn mail(subject: &str) -> Value {
    json!({"from": "Customer <customer@example.com>", "subject": subject, "body_text": format!("About {subject}")})
}

fn mails(prefix: &str, count: usize) -> Vec<Value> {
    (0..count).map(|i| mail(&format!("{prefix} {i}"))).collect()
}

impl Ctx {
    async fn mailbox_keys(&self, integration: &Integration) -> Vec<MailboxKey> {
        self.services
            .store
            .list_mailboxes(&integration.workspace_id, Some(&integration.integration_id))
            .await
            .unwrap()
            .iter()
            .map(|m| m.key())
            .collect()
    }

    async fn mailbox(&self, key: &MailboxKey) -> outlook_core::model::Mailbox {
        self.services.store.get_mailbox(key).await.unwrap().unwrap()
    }

    async fn integration(&self, integration: &Integration) -> Integration {
        self.services
            .store
            .get_integration(&integration.workspace_id, &integration.integration_id)
            .await
            .unwrap()
            .unwrap()
    }

    /// The usual start: shared mailbox `ops` connected organization-wide for workspace `acme`
    /// and synced once (so its delta link exists).
    async fn connected_ops_mailbox(&self) -> (String, Integration, Vec<MailboxKey>) {
        let ops = self.world.add_user("ops", "shared").await.unwrap();
        let integration = self
            .world
            .connect_organization(&self.services, "acme", &[&ops])
            .await
            .unwrap();
        let keys = self.mailbox_keys(&integration).await;
        self.sync_now(&keys).await;
        (ops, integration, keys)
    }

    /// "Sync now" for the mailboxes, then lets the event source run the worker until the queue
    /// is empty (failed jobs stay invisible until their visibility timeout).
    async fn sync_now(&self, keys: &[MailboxKey]) -> Vec<e2e::Batch> {
        self.sync_now_with(&self.sync, keys).await
    }

    /// [`Ctx::sync_now`], run by `function` (a worker of the test's own).
    async fn sync_now_with(
        &self,
        function: &FunctionHarness,
        keys: &[MailboxKey],
    ) -> Vec<e2e::Batch> {
        self.world.enqueue_sync(keys.iter().cloned()).await.unwrap();
        self.source.drain(function, 20).await.unwrap()
    }

    /// Everything handed to rule evaluation so far (consumed from the rules queue).
    async fn take_handed_on(&self) -> Vec<RulesJob> {
        let mut jobs = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.world.resources.rules_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return jobs;
            }
            for message in messages {
                jobs.push(serde_json::from_str(message.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.world.resources.rules_queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// The user moves a message in Outlook.
    async fn user_moves(&self, mailbox: &str, message_id: &str, folder: &str) {
        self.world
            .sim_post(
                &format!("/mailboxes/{mailbox}/messages/{message_id}/move"),
                &json!({"folder": folder}),
            )
            .await
            .unwrap();
    }

    async fn fault(&self, rule: Value) {
        self.world.sim_post("/faults", &rule).await.unwrap();
    }

    async fn event(&self, body: Value) {
        self.world.sim_post("/events", &body).await.unwrap();
    }

    /// Moves Microsoft's clock past the access tokens' lifetime: a revoked sign-in shows at the
    /// next token use, as it does in Microsoft 365.
    async fn expire_access_tokens(&self) {
        self.world
            .sim_post("/clock/advance", &json!({"secs": 3700}))
            .await
            .unwrap();
    }
}

/// An SQS event with one sync job, as Lambda delivers it.
fn sqs_event(job: &SyncJob) -> Value {
    json!({"Records": [{"messageId": "m-1", "body": serde_json::to_string(job).unwrap()}]})
}

fn ids(jobs: &[RulesJob]) -> Vec<String> {
    jobs.iter().map(|j| j.message.id.clone()).collect()
}

fn assert_unique(jobs: &[RulesJob]) {
    let unique: HashSet<_> = jobs.iter().map(|j| &j.message.id).collect();
    assert_eq!(unique.len(), jobs.len(), "a message was handed on twice");
}

#[tokio::test]
async fn dispatcher_enqueues_due_mailboxes_and_first_sync_starts_from_now() {
    let ctx = ctx("sync-steady").await;
    let ops = ctx.world.add_user("ops", "shared").await.unwrap();
    // History before the connection is not handed to rules.
    ctx.world.deliver(&ops, mails("history", 3)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let integration = ctx
        .world
        .connect_organization(&ctx.services, "acme", &[&ops])
        .await
        .unwrap();

    // One scheduled tick through the real dispatcher binary.
    let dispatcher = ctx.world.start_function("sync-dispatcher").await.unwrap();
    let report = dispatcher
        .invoke(&json!({"source": "aws.scheduler"}))
        .await
        .unwrap();
    assert_eq!(report["due"], 1, "{report}");
    assert_eq!(report["enqueued"], 1);
    ctx.source.drain(&ctx.sync, 5).await.unwrap();
    assert!(
        ctx.take_handed_on().await.is_empty(),
        "history must not be handed on"
    );
    // Not due again right away.
    let report = dispatcher.invoke(&json!({})).await.unwrap();
    assert_eq!(report["due"], 0, "{report}");

    let keys = ctx.mailbox_keys(&integration).await;
    let seq = ctx.world.last_request_seq().await.unwrap();
    let delivered = ctx.world.deliver(&ops, mails("new", 5)).await.unwrap();
    ctx.sync_now(&keys).await;
    let handed = ctx.take_handed_on().await;
    assert_eq!(handed.len(), 5);
    assert_unique(&handed);
    let handed_ids: HashSet<_> = ids(&handed).into_iter().collect();
    assert_eq!(
        handed_ids,
        delivered.iter().cloned().collect::<HashSet<_>>(),
        "immutable ids are handed on"
    );
    let graph = ctx.world.requests_since(seq, "graph").await.unwrap();
    let tokens = ctx.world.requests_since(seq, "token").await.unwrap();
    println!(
        "graph requests per synced message (steady state, 5 messages): {:.2} ({} graph, {} token requests)",
        graph.len() as f64 / 5.0,
        graph.len(),
        tokens.len()
    );
    assert!(
        graph.len() <= 2,
        "one delta call should fetch the new messages: {graph:?}"
    );
    for request in &graph {
        assert!(
            request["path"]
                .as_str()
                .unwrap()
                .contains("/messages/delta"),
            "{request}"
        );
    }

    // Steady state: nothing new, nothing handed on; the app token is reused across invocations.
    ctx.sync_now(&keys).await;
    assert!(ctx.take_handed_on().await.is_empty());
    let tokens = ctx.world.requests_since(seq, "token").await.unwrap();
    assert!(
        tokens.is_empty(),
        "the cached app token must be reused: {tokens:?}"
    );
    let mailbox = ctx.mailbox(&keys[0]).await;
    assert!(mailbox.folders["inbox"].delta_link.is_some());
    assert_eq!(mailbox.counters.messages_handed_on, 5);
}

#[tokio::test]
async fn many_pages_removed_and_moved_messages_hand_on_each_id_once() {
    let ctx = ctx("sync-pages").await;
    let (ops, _, keys) = ctx.connected_ops_mailbox().await;

    let delivered = ctx.world.deliver(&ops, mails("bulk", 250)).await.unwrap();
    let seq = ctx.world.last_request_seq().await.unwrap();
    ctx.sync_now(&keys).await;
    let handed = ctx.take_handed_on().await;
    assert_eq!(handed.len(), 250);
    assert_unique(&handed);
    let pages = ctx.world.requests_since(seq, "graph").await.unwrap();
    assert!(
        pages.len() <= 4,
        "250 messages at 100 per page: {} requests",
        pages.len()
    );

    // The user moves one message away, deletes another, and moves one out and back in.
    ctx.user_moves(&ops, &delivered[0], "archive").await;
    ctx.world
        .http()
        .delete(format!(
            "{}/_sim/mailboxes/{ops}/messages/{}",
            ctx.world.sim.base_url, delivered[1]
        ))
        .send()
        .await
        .unwrap();
    ctx.user_moves(&ops, &delivered[2], "archive").await;
    ctx.user_moves(&ops, &delivered[2], "inbox").await;
    // And marks one read (an update shows up in delta again).
    ctx.world
        .http()
        .patch(format!(
            "{}/_sim/mailboxes/{ops}/messages/{}",
            ctx.world.sim.base_url, delivered[3]
        ))
        .json(&json!({"is_read": true}))
        .send()
        .await
        .unwrap();
    let new = ctx.world.deliver(&ops, mails("after", 2)).await.unwrap();
    ctx.sync_now(&keys).await;
    let handed = ctx.take_handed_on().await;
    assert_eq!(
        ids(&handed).into_iter().collect::<HashSet<_>>(),
        new.into_iter().collect::<HashSet<_>>()
    );
}

#[tokio::test]
async fn an_expired_delta_token_resyncs_without_handing_on_again() {
    let ctx = ctx("sync-expiry").await;
    let ops = ctx.world.add_user("ops", "shared").await.unwrap();
    let integration = ctx
        .world
        .connect_organization(&ctx.services, "acme", &[&ops])
        .await
        .unwrap();
    let keys = ctx.mailbox_keys(&integration).await;
    ctx.world.deliver(&ops, mails("first", 4)).await.unwrap();
    ctx.sync_now(&keys).await;
    assert_eq!(ctx.take_handed_on().await.len(), 4);

    for (status, code) in [
        (410, None),
        (400, Some("SyncStateNotFound")),
        (400, Some("resyncRequired")),
    ] {
        let new = ctx
            .world
            .deliver(&ops, mails(&format!("after {status}"), 2))
            .await
            .unwrap();
        let mut body = json!({"status": status});
        if let Some(code) = code {
            body["code"] = json!(code);
        }
        ctx.world
            .sim_post(&format!("/mailboxes/{ops}/delta/expire"), &body)
            .await
            .unwrap();
        ctx.sync_now(&keys).await;
        let handed = ctx.take_handed_on().await;
        assert_eq!(
            ids(&handed).into_iter().collect::<HashSet<_>>(),
            new.into_iter().collect::<HashSet<_>>(),
            "after a {status} {code:?} only the new messages are handed on"
        );
    }
    let mailbox = ctx.mailbox(&keys[0]).await;
    assert_eq!(mailbox.counters.resyncs, 3);
    assert!(mailbox.last_successful_sync_at.is_some());
}

#[tokio::test]
async fn throttling_and_transient_failures_defer_without_losing_messages() {
    let ctx = ctx("sync-faults").await;
    let (ops, _, keys) = ctx.connected_ops_mailbox().await;

    // Transient 503s and a dropped connection are retried within the invocation.
    let delivered = ctx
        .world
        .deliver(&ops, mails("transient", 3))
        .await
        .unwrap();
    ctx.fault(
        json!({"kind": "unavailable", "count": 2, "path_contains": "/delta", "retry_after": "0.2"}),
    )
    .await;
    ctx.fault(json!({"kind": "drop", "count": 1, "path_contains": "/delta"}))
        .await;
    let batches = ctx.sync_now(&keys).await;
    assert!(
        batches.iter().all(|b| b.failed.is_empty()),
        "retried within the budget: {batches:?}"
    );
    assert_eq!(
        ids(&ctx.take_handed_on().await)
            .into_iter()
            .collect::<HashSet<_>>(),
        delivered.into_iter().collect()
    );

    // Throttling beyond the per-invocation budget: the job goes back to the queue, the mailbox
    // records when to retry, and nothing is lost.
    let delivered = ctx
        .world
        .deliver(&ops, mails("throttled", 3))
        .await
        .unwrap();
    ctx.fault(
        json!({"kind": "throttle", "count": 20, "path_contains": "/delta", "retry_after": "2"}),
    )
    .await;
    let batches = ctx.sync_now(&keys).await;
    assert_eq!(
        batches.iter().map(|b| b.failed.len()).sum::<usize>(),
        1,
        "{batches:?}"
    );
    let mailbox = ctx.mailbox(&keys[0]).await;
    assert!(mailbox.throttled_until.is_some());
    assert_eq!(mailbox.counters.throttled, 1);
    assert!(ctx.take_handed_on().await.is_empty());

    ctx.world
        .http()
        .delete(format!("{}/_sim/faults", ctx.world.sim.base_url))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    ctx.sync_now(&keys).await;
    assert_eq!(
        ids(&ctx.take_handed_on().await)
            .into_iter()
            .collect::<HashSet<_>>(),
        delivered.into_iter().collect()
    );
    assert!(ctx.mailbox(&keys[0]).await.throttled_until.is_none());
}

#[tokio::test]
async fn a_worker_killed_mid_round_loses_nothing_and_a_second_worker_backs_off() {
    let ctx = ctx_with_lease("sync-crash", 8).await;
    let (ops, _, keys) = ctx.connected_ops_mailbox().await;

    let delivered = ctx.world.deliver(&ops, mails("crash", 250)).await.unwrap();
    // The second page of the round hangs; the worker is killed while waiting for it, after the
    // first page was handed on and checkpointed.
    ctx.fault(json!({"kind": "delay", "delay_ms": 8000, "count": 1, "path_contains": "skiptoken"}))
        .await;
    let job = SyncJob::single(keys[0].clone(), true);
    outlook_core::sync::dispatch::enqueue(
        &ctx.sqs,
        &ctx.world.resources.sync_queue_url,
        std::slice::from_ref(&job),
    )
    .await;
    let poll = ctx.source.poll_once(&ctx.sync);
    // Killed once the first page is checkpointed, i.e. while the worker waits for the second.
    let kill = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while ctx.mailbox(&keys[0]).await.folders["inbox"]
            .page_link
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the first page was never checkpointed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        ctx.sync.kill().await;
    };
    let (batch, ()) = tokio::join!(poll, kill);
    let batch = batch.unwrap();
    assert!(
        batch.error.is_some() || !batch.failed.is_empty(),
        "the killed invocation failed: {batch:?}"
    );
    let first = ctx.take_handed_on().await;
    assert_eq!(first.len(), 100, "exactly the first page was handed on");
    let mailbox = ctx.mailbox(&keys[0]).await;
    assert!(
        mailbox.folders["inbox"].page_link.is_some(),
        "the first page was checkpointed"
    );

    // While the dead worker's lease runs, another worker backs off.
    ctx.sync.restart().await.unwrap();
    let second = ctx
        .world
        .start_function_with("mailbox-sync", &[("SYNC_LEASE_SECONDS", "8")])
        .await
        .unwrap();
    let direct = sqs_event(&job);
    second.invoke(&direct).await.unwrap();
    assert!(
        ctx.take_handed_on().await.is_empty(),
        "a leased mailbox is not synced twice"
    );

    // After the dead worker's lease, the redelivered job resumes from the checkpoint.
    let lease_until_ms = ctx
        .mailbox(&keys[0])
        .await
        .lease_until_ms
        .expect("the dead worker's lease");
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    tokio::time::sleep(std::time::Duration::from_millis(
        (lease_until_ms - now_ms).max(0) as u64 + 200,
    ))
    .await;
    ctx.source.retry_now(&batch).await.ok();
    ctx.sync_now(&keys).await;
    let rest = ctx.take_handed_on().await;
    let first_ids: HashSet<_> = ids(&first).into_iter().collect();
    let rest_ids: HashSet<_> = ids(&rest).into_iter().collect();
    println!(
        "crash test: first {} ({} unique), rest {} ({} unique), overlap {}",
        first.len(),
        first_ids.len(),
        rest.len(),
        rest_ids.len(),
        first_ids.intersection(&rest_ids).count()
    );
    // Nothing lost. A message can reach the queue twice only if the crash hit between its SQS
    // batch (ten) being accepted and being marked handed on; rule evaluation's claim drops that
    // copy (tests/e2e/tests/rules_e2e.rs covers duplicate deliveries).
    let overlap = first_ids.intersection(&rest_ids).count();
    assert!(
        overlap <= 10,
        "at most the batch in flight is re-sent, got {overlap}"
    );
    let mut all = first;
    all.extend(rest);
    assert_eq!(
        ids(&all).into_iter().collect::<HashSet<_>>(),
        delivered.into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(all.len(), 250 + overlap);
}

#[tokio::test]
async fn two_workers_on_one_mailbox_sync_it_once() {
    let ctx = ctx("sync-two").await;
    let (ops, _, keys) = ctx.connected_ops_mailbox().await;
    let delivered = ctx.world.deliver(&ops, mails("race", 30)).await.unwrap();
    ctx.world
        .sim_put("/settings", &json!({"graph_latency_ms": 300}))
        .await
        .unwrap();
    let other = ctx
        .world
        .start_function_with("mailbox-sync", &[("SYNC_LEASE_SECONDS", "30")])
        .await
        .unwrap();
    let job = SyncJob::single(keys[0].clone(), true);
    let event = sqs_event(&job);
    let (a, b) = tokio::join!(ctx.sync.invoke(&event), other.invoke(&event));
    a.unwrap();
    b.unwrap();
    let handed = ctx.take_handed_on().await;
    assert_unique(&handed);
    assert_eq!(
        ids(&handed).into_iter().collect::<HashSet<_>>(),
        delivered.into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        ctx.mailbox(&keys[0]).await.counters.syncs,
        2,
        "one of the two backed off"
    );
}

/// Every identity event gives the integration the status and reason a person needs, and a
/// broken personal integration stops syncing (no retry storm).
#[tokio::test]
async fn identity_events_map_to_statuses_and_stop_syncing() {
    let ctx = ctx("sync-identity").await;
    let cases: &[(&str, Reason)] = &[
        ("password_changed", Reason::PasswordChanged),
        ("mfa_required", Reason::MfaRequired),
        ("refresh_token_inactive", Reason::RefreshTokenExpired),
        ("consent_revoked", Reason::ConsentRevoked),
        ("user_disabled", Reason::AccountDisabled),
    ];
    for (event, reason) in cases {
        let user = ctx
            .world
            .add_user(&format!("u-{event}"), "user")
            .await
            .unwrap();
        let workspace = format!("ws-{}", event.replace('_', "-"));
        let integration = ctx
            .world
            .connect_personal(&ctx.services, &workspace, &user, &[], None)
            .await
            .unwrap();
        let keys = ctx.mailbox_keys(&integration).await;
        ctx.sync_now(&keys).await;
        let mut body = json!({"type": event, "user": user, "tenant": ctx.world.tenant_id, "app": ctx.world.client_id});
        if *event == "mfa_required" {
            body = json!({"type": event, "tenant": ctx.world.tenant_id});
        }
        ctx.event(body).await;
        ctx.expire_access_tokens().await;
        ctx.sync_now(&keys).await;
        let current = ctx.integration(&integration).await;
        assert_eq!(current.status, IntegrationStatus::NeedsReconnect, "{event}");
        assert_eq!(
            current.status_reason.as_ref().unwrap().code,
            *reason,
            "{event}"
        );
        assert_eq!(
            ctx.mailbox(&keys[0]).await.status,
            MailboxStatus::Paused,
            "{event}"
        );
        // No retry storm: the scheduler no longer sees it, and a forced job makes no token request.
        let seq = ctx.world.last_request_seq().await.unwrap();
        let due = ctx
            .services
            .store
            .due_mailboxes(time::OffsetDateTime::now_utc() + time::Duration::hours(1))
            .await
            .unwrap();
        assert!(
            !due.iter().any(|k| k.mailbox_id == keys[0].mailbox_id),
            "{event}"
        );
        ctx.sync_now(&keys).await;
        assert!(
            ctx.world
                .requests_since(seq, "token")
                .await
                .unwrap()
                .is_empty(),
            "{event}"
        );
        if *event == "mfa_required" {
            ctx.event(json!({"type": "mfa_cleared", "tenant": ctx.world.tenant_id}))
                .await;
        }
    }
}

#[tokio::test]
async fn organization_wide_keeps_syncing_when_the_personal_one_breaks_and_reconnect_resumes() {
    let ctx = ctx("sync-side-by-side").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    let org = ctx
        .world
        .connect_organization(&ctx.services, "org-ws", &[&alice])
        .await
        .unwrap();
    let personal = ctx
        .world
        .connect_personal(&ctx.services, "personal-ws", &alice, &[], None)
        .await
        .unwrap();
    let org_keys = ctx.mailbox_keys(&org).await;
    let personal_keys = ctx.mailbox_keys(&personal).await;
    let all_keys: Vec<_> = org_keys.iter().chain(&personal_keys).cloned().collect();
    ctx.sync_now(&all_keys).await;
    let before = ctx.world.deliver(&alice, mails("before", 2)).await.unwrap();
    ctx.sync_now(&all_keys).await;
    let handed = ctx.take_handed_on().await;
    assert_eq!(handed.len(), 4, "both integrations saw both messages");
    let delta_before = ctx.mailbox(&personal_keys[0]).await.folders["inbox"]
        .delta_link
        .clone()
        .unwrap();

    // Alice changes her password and the tenant turns on MFA.
    ctx.event(json!({"type": "password_changed", "user": alice}))
        .await;
    ctx.event(json!({"type": "mfa_required", "tenant": ctx.world.tenant_id}))
        .await;
    ctx.expire_access_tokens().await;
    let during = ctx.world.deliver(&alice, mails("during", 3)).await.unwrap();
    ctx.sync_now(&all_keys).await;
    let handed = ctx.take_handed_on().await;
    let by_workspace: HashMap<WorkspaceId, Vec<String>> =
        handed.iter().fold(HashMap::new(), |mut acc, job| {
            acc.entry(job.mailbox.workspace_id.clone())
                .or_default()
                .push(job.message.id.clone());
            acc
        });
    let org_ws = WorkspaceId::parse("org-ws").unwrap();
    assert_eq!(
        by_workspace.get(&org_ws).map(Vec::len),
        Some(3),
        "organization-wide keeps syncing"
    );
    assert!(!by_workspace.contains_key(&WorkspaceId::parse("personal-ws").unwrap()));
    assert_eq!(
        ctx.integration(&org).await.status,
        IntegrationStatus::Connected
    );
    let broken = ctx.integration(&personal).await;
    assert_eq!(broken.status, IntegrationStatus::NeedsReconnect);
    assert_eq!(broken.status_reason.unwrap().code, Reason::PasswordChanged);

    // Alice reconnects (a fresh interactive sign-in satisfies MFA): sync resumes from the stored
    // delta link, handing on exactly the messages that arrived meanwhile.
    let reconnected = ctx
        .world
        .connect_personal(
            &ctx.services,
            "personal-ws",
            &alice,
            &[],
            Some(&personal.integration_id),
        )
        .await
        .unwrap();
    assert_eq!(reconnected.integration_id, personal.integration_id);
    assert_eq!(
        ctx.mailbox_keys(&reconnected).await,
        personal_keys,
        "the same mailbox records"
    );
    assert_eq!(
        ctx.mailbox(&personal_keys[0]).await.folders["inbox"]
            .delta_link
            .as_deref(),
        Some(delta_before.as_str())
    );
    let seq = ctx.world.last_request_seq().await.unwrap();
    ctx.sync_now(&personal_keys).await;
    let handed = ctx.take_handed_on().await;
    assert_eq!(
        ids(&handed).into_iter().collect::<HashSet<_>>(),
        during.into_iter().collect::<HashSet<_>>()
    );
    assert!(!ids(&handed).iter().any(|id| before.contains(id)));
    let graph = ctx.world.requests_since(seq, "graph").await.unwrap();
    assert!(
        graph.iter().any(|r| r["query"]
            .as_str()
            .unwrap_or_default()
            .contains("deltatoken")),
        "{graph:?}"
    );
}

#[tokio::test]
async fn app_level_failures_are_reported_without_a_retry_storm() {
    let ctx = ctx("sync-app").await;
    let ops = ctx.world.add_user("ops", "shared").await.unwrap();
    let blocked = ctx.world.add_user("blocked", "user").await.unwrap();
    let integration = ctx
        .world
        .connect_organization(&ctx.services, "acme", &[&ops, &blocked])
        .await
        .unwrap();
    let keys = ctx.mailbox_keys(&integration).await;
    ctx.sync_now(&keys).await;

    // The admin later scopes the app to `ops` only: `blocked` is reported, `ops` keeps syncing.
    ctx.world
        .sim_put(
            &format!("/tenants/{}/access-policies", ctx.world.tenant_id),
            &json!({"policies": [{"app_id": ctx.world.client_id, "mailboxes": [ops]}]}),
        )
        .await
        .unwrap();
    ctx.sync_now(&keys).await;
    for key in &keys {
        let mailbox = ctx.mailbox(key).await;
        if mailbox.address == blocked {
            assert_eq!(mailbox.status, MailboxStatus::Blocked);
            assert_eq!(
                mailbox.status_reason.unwrap().code,
                Reason::MailboxOutsideAdminScope
            );
        } else {
            assert_eq!(mailbox.status, MailboxStatus::Active);
        }
    }

    // The app's client secret expires: reported, retried only every 15 minutes.
    ctx.event(json!({"type": "secret_expired", "app": ctx.world.client_id}))
        .await;
    // A new sandbox (no cached token) meets the expired secret at its token request.
    let fresh = ctx
        .world
        .start_function_with("mailbox-sync", &[("SYNC_LEASE_SECONDS", "2")])
        .await
        .unwrap();
    let mut ops_key = None;
    for key in &keys {
        if ctx.mailbox(key).await.address == ops {
            ops_key = Some(key.clone());
        }
    }
    let ops_key = ops_key.unwrap();
    let job = SyncJob::single(ops_key.clone(), true);
    let event = sqs_event(&job);
    fresh.invoke(&event).await.unwrap();
    let current = ctx.integration(&integration).await;
    assert_eq!(current.status, IntegrationStatus::AdminActionRequired);
    assert_eq!(
        current.status_reason.unwrap().code,
        Reason::AppCredentialsExpired
    );
    let mailbox = ctx.mailbox(&ops_key).await;
    assert!(
        mailbox.next_sync_at >= time::OffsetDateTime::now_utc().unix_timestamp() + 800,
        "backs off"
    );
}

#[tokio::test]
async fn an_app_removed_from_the_tenant_stops_until_consent_is_given_again() {
    let ctx = ctx("sync-app-removed").await;
    let (ops, integration, keys) = ctx.connected_ops_mailbox().await;
    ctx.event(
        json!({"type": "app_removed", "tenant": ctx.world.tenant_id, "app": ctx.world.client_id}),
    )
    .await;
    // A new sandbox (no cached token) meets the removal at its token request.
    ctx.sync.restart().await.unwrap();
    ctx.sync_now(&keys).await;
    let current = ctx.integration(&integration).await;
    assert_eq!(current.status, IntegrationStatus::AdminActionRequired);
    assert_eq!(
        current.status_reason.unwrap().code,
        Reason::AppRemovedFromTenant
    );
    assert_eq!(ctx.mailbox(&keys[0]).await.status, MailboxStatus::Paused);
    let seq = ctx.world.last_request_seq().await.unwrap();
    ctx.sync_now(&keys).await;
    assert!(
        ctx.world
            .requests_since(seq, "token")
            .await
            .unwrap()
            .is_empty(),
        "no retry storm"
    );

    // The admin consents again: the same integration resumes.
    let again = ctx
        .world
        .connect_organization(&ctx.services, "acme", &[&ops])
        .await
        .unwrap();
    assert_eq!(again.integration_id, integration.integration_id);
    assert_eq!(
        ctx.integration(&integration).await.status,
        IntegrationStatus::Connected
    );
    assert_eq!(ctx.mailbox(&keys[0]).await.status, MailboxStatus::Active);
}

#[tokio::test]
async fn the_dispatcher_packs_due_mailboxes_into_few_jobs_and_each_is_synced_once() {
    let ctx = ctx("sync-fanout").await;
    let ops = ctx.world.add_user("ops", "shared").await.unwrap();
    let integration = ctx
        .world
        .connect_organization(&ctx.services, "acme", &[&ops])
        .await
        .unwrap();
    // 24 more mailboxes of the same integration (records only; their Graph mailboxes exist).
    let now = time::OffsetDateTime::now_utc();
    for i in 0..24 {
        let address = ctx
            .world
            .add_user(&format!("team{i}"), "shared")
            .await
            .unwrap();
        let mailbox = outlook_core::model::Mailbox::new(
            integration.workspace_id.clone(),
            integration.integration_id.clone(),
            address,
            outlook_core::model::MailboxKind::Organization,
            &["inbox"],
            now,
        );
        ctx.services.store.create_mailbox(&mailbox).await.unwrap();
    }
    let dispatcher = ctx.world.start_function("sync-dispatcher").await.unwrap();
    let report = dispatcher
        .invoke(&json!({"trigger": "schedule"}))
        .await
        .unwrap();
    assert_eq!(report["due"], 25, "{report}");
    assert_eq!(report["enqueued"], 25, "{report}");
    assert_eq!(
        report["sqs_requests"], 1,
        "25 mailboxes = 3 jobs = one SendMessageBatch: {report}"
    );
    let batches = ctx.source.drain(&ctx.sync, 10).await.unwrap();
    assert_eq!(
        batches.iter().map(|b| b.message_ids.len()).sum::<usize>(),
        3
    );
    assert!(batches.iter().all(|b| b.failed.is_empty()));
    for key in ctx.mailbox_keys(&integration).await {
        let mailbox = ctx.mailbox(&key).await;
        assert_eq!(mailbox.counters.syncs, 1, "{}", mailbox.address);
        assert!(
            mailbox.folders["inbox"].delta_link.is_some(),
            "{}",
            mailbox.address
        );
    }
}

/// Secrets Manager `GetSecretValue` calls counted since `before`.
fn secret_reads(
    counter: &e2e::AwsCallCounter,
    before: &std::collections::BTreeMap<String, e2e::awscalls::CallCount>,
) -> u64 {
    counter
        .since(before)
        .get("secretsmanager:GetSecretValue")
        .map(|c| c.calls)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_new_client_secret_reaches_the_running_worker_and_an_expired_one_is_not_read_in_a_storm()
{
    let ctx = ctx("sync-secret-rotation").await;
    // The worker under test reaches AWS through a counting proxy.
    let counter = e2e::AwsCallCounter::start(ctx.world.stack.endpoint_url())
        .await
        .unwrap();
    let sync = ctx
        .world
        .start_function_with(
            "mailbox-sync",
            &[
                ("SYNC_LEASE_SECONDS", "2"),
                ("AWS_ENDPOINT_URL", counter.url()),
            ],
        )
        .await
        .unwrap();
    let ops = ctx.world.add_user("ops", "shared").await.unwrap();
    let integration = ctx
        .world
        .connect_organization(&ctx.services, "acme", &[&ops])
        .await
        .unwrap();
    let keys = ctx.mailbox_keys(&integration).await;
    ctx.sync_now_with(&sync, &keys).await;
    ctx.world.deliver(&ops, vec![mail("Before")]).await.unwrap();
    ctx.sync_now_with(&sync, &keys).await;
    assert_eq!(ctx.take_handed_on().await.len(), 1);

    // The app's client secret expires; an hour later the worker's cached token has expired too.
    ctx.event(json!({"type": "secret_expired", "app": ctx.world.client_id}))
        .await;
    ctx.expire_access_tokens().await;
    let while_broken = ctx
        .world
        .deliver(&ops, mails("While broken", 2))
        .await
        .unwrap();
    let reads = counter.snapshot();
    let seq = ctx.world.last_request_seq().await.unwrap();
    ctx.sync_now_with(&sync, &keys).await;
    let current = ctx.integration(&integration).await;
    assert_eq!(current.status, IntegrationStatus::AdminActionRequired);
    assert_eq!(
        current.status_reason.unwrap().code,
        Reason::AppCredentialsExpired
    );
    assert!(ctx.take_handed_on().await.is_empty());
    let tokens = ctx.world.requests_since(seq, "token").await.unwrap();
    assert_eq!(tokens.len(), 1, "one refused token request: {tokens:?}");
    assert_eq!(tokens[0]["error_code"], "7000222", "{tokens:?}");
    assert!(
        secret_reads(&counter, &reads) <= 1,
        "the app-credentials secret is read again at most once: {:?}",
        counter.since(&reads)
    );

    // The operator adds a new client secret to the app and puts it in the app-credentials
    // secret (taking longer than the moment over which refusals share one read). The SAME
    // running worker picks it up at the next (forced) sync.
    tokio::time::sleep(outlook_core::identity::APP_CREDENTIALS_RELOAD_COALESCE).await;
    let new_secret = format!("sim~{}", uuid::Uuid::new_v4().simple());
    ctx.world
        .sim_post(
            &format!("/apps/{}/secrets", ctx.world.client_id),
            &json!({"value": new_secret}),
        )
        .await
        .unwrap();
    aws_sdk_secretsmanager::Client::new(ctx.world.stack.sdk_config())
        .put_secret_value()
        .secret_id(&ctx.world.resources.app_credentials_secret_id)
        .secret_string(json!({"client_secret": new_secret}).to_string())
        .send()
        .await
        .unwrap();
    let reads = counter.snapshot();
    let seq = ctx.world.last_request_seq().await.unwrap();
    ctx.sync_now_with(&sync, &keys).await;
    let current = ctx.integration(&integration).await;
    assert_eq!(
        current.status,
        IntegrationStatus::Connected,
        "{:?}",
        current.status_reason
    );
    assert!(current.status_reason.is_none());
    assert_eq!(ctx.mailbox(&keys[0]).await.status, MailboxStatus::Active);
    let handed = ctx.take_handed_on().await;
    assert_unique(&handed);
    let mut handed_ids = ids(&handed);
    handed_ids.sort();
    let mut expected = while_broken.clone();
    expected.sort();
    assert_eq!(handed_ids, expected, "the mail that came while broken");
    // One request refused with the old secret, then the same request with the new one.
    let tokens = ctx.world.requests_since(seq, "token").await.unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(tokens[1]["status"], 200, "{tokens:?}");
    assert_eq!(
        secret_reads(&counter, &reads),
        1,
        "{:?}",
        counter.since(&reads)
    );
    // Neither secret is ever logged.
    let logs = sync.logs();
    assert!(!logs.contains(&new_secret), "the new secret was logged");
    assert!(
        logs.contains("new app credentials read"),
        "the reload is visible in the logs"
    );

    // The new secret expires as well and stays expired: "sync now" again and again costs one
    // token request per try, and Secrets Manager is read again only a few times in a row (tries
    // within a second share a read), then not before the interval has passed.
    ctx.event(json!({"type": "secret_expired", "app": ctx.world.client_id}))
        .await;
    ctx.expire_access_tokens().await;
    let burst = u64::from(outlook_core::identity::APP_CREDENTIALS_RELOAD_BURST);
    let reads = counter.snapshot();
    let seq = ctx.world.last_request_seq().await.unwrap();
    let started = std::time::Instant::now();
    let mut reads_per_try = Vec::new();
    let try_once = async || {
        let before = counter.snapshot();
        ctx.sync_now_with(&sync, &keys).await;
        secret_reads(&counter, &before)
    };
    while secret_reads(&counter, &reads) < burst && started.elapsed().as_secs() < 20 {
        reads_per_try.push(try_once().await);
    }
    let used_up = reads_per_try.len();
    for _ in 0..4 {
        reads_per_try.push(try_once().await);
    }
    let tries = reads_per_try.len();
    eprintln!("Secrets Manager reads per try while the secret stays expired: {reads_per_try:?}");
    assert!(
        started.elapsed() < outlook_core::identity::APP_CREDENTIALS_RELOAD_INTERVAL,
        "the tries took too long to test the interval"
    );
    assert_eq!(
        secret_reads(&counter, &reads),
        burst,
        "reads per try: {reads_per_try:?}"
    );
    assert!(
        used_up > burst as usize,
        "tries within a second share a read: {reads_per_try:?}"
    );
    assert!(
        reads_per_try[used_up..].iter().all(|r| *r == 0),
        "after the burst, no more reads within the interval: {reads_per_try:?}"
    );
    let current = ctx.integration(&integration).await;
    assert_eq!(current.status, IntegrationStatus::AdminActionRequired);
    let tokens = ctx.world.requests_since(seq, "token").await.unwrap();
    assert!(
        tokens.len() <= tries,
        "at most one token request per try: {} for {tries}",
        tokens.len()
    );
}
