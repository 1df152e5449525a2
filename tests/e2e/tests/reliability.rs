//! Reliability under faults and crashes, end to end: the REAL `sync-dispatcher`, `mailbox-sync`
//! and `rule-eval` binaries under the Lambda runtime emulator, fed by the SQS event sources,
//! against the AWS emulator and the Microsoft 365 simulator.
//!
//! Several organization-wide mailboxes receive mail in rounds while the simulator injects faults
//! at a set rate (429 with Retry-After, 503, 504, dropped connections, malformed bodies, delays)
//! plus one delta-token expiry, and the sync and rule functions are SIGKILLed at random points
//! and restarted. At the end the simulator's own record (message folders and categories, sent
//! mail) and the audit records must show every delivered message evaluated exactly once,
//! every action applied exactly once, and nothing lost.
//!
//! Short by default (runs in `make test`). Scale it up with `SOAK_ROUNDS` (rounds of mail,
//! default 3), `SOAK_MESSAGES` (messages per mailbox per round, default 5), `SOAK_MAILBOXES`
//! (default 4) and `SOAK_FAULT_RATE` (per fault kind, default 0.03); `make soak` does.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e::chaos::{Expected, Rng, Verdict, deliver_mix, env_num, invoice_and_urgent_rules};
use e2e::{Batch, FunctionHarness, SqsEventSource, World};
use outlook_core::model::{Integration, Mailbox};
use serde_json::{Value, json};

const AP: &str = "urgent-desk@fabrikam.com";

struct Pipeline {
    world: World,
    sync: FunctionHarness,
    rules: FunctionHarness,
    sync_source: SqsEventSource,
    rules_source: SqsEventSource,
    crashes: usize,
    rng: Rng,
    /// Failed batches, made visible again once the leases of their attempts have run out (as
    /// the visibility timeout would; retrying at once would only burn the redrive budget).
    pending: Vec<(bool, Batch)>,
}

impl Pipeline {
    /// Polls one batch, optionally killing the function after a random delay while it runs;
    /// failed batches are made visible again at once.
    async fn poll(&mut self, which: &str, crash: bool) -> Batch {
        let delay = Duration::from_millis(self.rng.below(400));
        let (source, function) = if which == "sync" {
            (&self.sync_source, &self.sync)
        } else {
            (&self.rules_source, &self.rules)
        };
        let batch = if crash {
            let kill = async {
                tokio::time::sleep(delay).await;
                function.kill().await;
            };
            let (batch, ()) = tokio::join!(source.poll_once(function), kill);
            function.restart().await.expect("restart after crash");
            self.crashes += 1;
            batch
        } else {
            source.poll_once(function).await
        }
        .expect("poll");
        if !batch.failed.is_empty() {
            self.pending.push((which == "sync", batch.clone()));
        }
        batch
    }

    /// Runs both functions until both queues stay empty; `crash_budget` kills happen at random
    /// batches on the way.
    async fn drain(&mut self, mut crash_budget: usize, deadline: Instant) {
        let mut idle = 0;
        while idle < 3 && Instant::now() < deadline {
            let crash_sync = crash_budget > 0 && self.rng.below(3) == 0;
            let sync = self.poll("sync", crash_sync).await;
            if crash_sync && !sync.is_empty() {
                crash_budget -= 1;
            }
            let crash_rules = crash_budget > 0 && self.rng.below(3) == 0;
            let rules = self.poll("rules", crash_rules).await;
            if crash_rules && !rules.is_empty() {
                crash_budget -= 1;
            }
            if sync.is_empty() && rules.is_empty() {
                if self.pending.is_empty() {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else {
                    // Past the 2 s leases of the failed attempts, then redeliver.
                    tokio::time::sleep(Duration::from_millis(2200)).await;
                    for (sync, batch) in std::mem::take(&mut self.pending) {
                        let source = if sync {
                            &self.sync_source
                        } else {
                            &self.rules_source
                        };
                        source.retry_now(&batch).await.ok();
                    }
                    idle = 0;
                }
            } else {
                idle = 0;
            }
        }
    }

    async fn sync_now(&self, mailboxes: &[Mailbox]) {
        self.world
            .enqueue_sync(mailboxes.iter().map(Mailbox::key))
            .await
            .unwrap();
    }
}

async fn faults_fired(world: &World) -> u64 {
    let out = world.sim_get("/faults").await.unwrap_or(Value::Null);
    let rules = out["rules"]
        .as_array()
        .or_else(|| out.as_array())
        .cloned()
        .unwrap_or_default();
    rules.iter().filter_map(|r| r["fired"].as_u64()).sum()
}

#[tokio::test]
async fn messages_are_acted_on_exactly_once_under_faults_and_crashes() {
    let started = Instant::now();
    let rounds = env_num("SOAK_ROUNDS", 3.0) as usize;
    let per_round = env_num("SOAK_MESSAGES", 5.0) as usize;
    let mailbox_count = env_num("SOAK_MAILBOXES", 4.0) as usize;
    let rate = env_num("SOAK_FAULT_RATE", 0.03);
    let seed = e2e::chaos::seed();
    eprintln!(
        "reliability: seed {seed}, {mailbox_count} mailboxes, {rounds} rounds of {per_round}, fault rate {rate}"
    );

    let world = World::new("reliability").await.expect("world");
    let services = world.services().await.expect("services");
    let mut addresses = Vec::new();
    for n in 0..mailbox_count {
        addresses.push(world.add_user(&format!("team{n}"), "shared").await.unwrap());
    }
    let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let integration: Integration = world
        .connect_organization(&services, "acme", &refs)
        .await
        .expect("connect");
    let store = world.store();
    world
        .put_rules(&integration, &invoice_and_urgent_rules(AP))
        .await
        .unwrap();
    let mailboxes = store
        .list_mailboxes(&integration.workspace_id, Some(&integration.integration_id))
        .await
        .unwrap();
    assert_eq!(mailboxes.len(), mailbox_count);

    let dispatcher = world.start_function("sync-dispatcher").await.unwrap();
    let sync = world
        .start_function_with("mailbox-sync", &[("SYNC_LEASE_SECONDS", "2")])
        .await
        .unwrap();
    let rules_fn = world
        .start_function_with("rule-eval", &[("RULE_EVAL_CLAIM_LEASE_SECS", "2")])
        .await
        .unwrap();
    let sdk = world.stack.sdk_config().clone();
    let sync_source = SqsEventSource::for_function(&sdk, &world.resources, "mailbox-sync").unwrap();
    let rules_source = SqsEventSource::for_function(&sdk, &world.resources, "rule-eval").unwrap();
    let mut p = Pipeline {
        world,
        sync,
        rules: rules_fn,
        sync_source,
        rules_source,
        crashes: 0,
        rng: Rng(seed),
        pending: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(40 + 20 * (rounds * per_round) as u64 / 5);

    // First sync through the scheduled dispatcher: starts every mailbox from "now".
    let report = dispatcher
        .invoke(&json!({"source": "aws.scheduler"}))
        .await
        .unwrap();
    assert_eq!(report["enqueued"], mailbox_count as u64, "{report}");
    p.drain(0, deadline).await;

    // Faults from here on, on every Graph request (including $batch items).
    let fault = |kind: &str, extra: Value| {
        let mut rule = json!({"kind": kind, "rate": rate});
        for (k, v) in extra.as_object().unwrap() {
            rule[k] = v.clone();
        }
        rule
    };
    p.world
        .sim_put(
            "/faults",
            &json!({"seed": seed % 1_000_000, "rules": [
                fault("throttle", json!({"retry_after": "1"})),
                fault("unavailable", json!({"retry_after": "0.2"})),
                fault("gateway_timeout", json!({})),
                fault("drop", json!({})),
                fault("malformed", json!({})),
                fault("delay", json!({"delay_ms": 300})),
            ]}),
        )
        .await
        .unwrap();

    let mut delivered: Vec<Expected> = Vec::new();
    let mut serial = 0usize;
    for round in 0..rounds {
        for address in &addresses {
            delivered.extend(
                deliver_mix(&p.world, address, serial, per_round)
                    .await
                    .unwrap(),
            );
            serial += per_round;
        }
        if round == rounds / 2 {
            // One mailbox's delta token expires: it resyncs without handing anything on twice.
            p.world
                .sim_post(
                    &format!("/mailboxes/{}/delta/expire", addresses[0]),
                    &json!({"status": 410}),
                )
                .await
                .unwrap();
        }
        // The scheduler's tick (mailboxes are not due again yet), then "sync now".
        dispatcher
            .invoke(&json!({"source": "aws.scheduler"}))
            .await
            .unwrap();
        p.sync_now(&mailboxes).await;
        p.drain(2, deadline).await;
        eprintln!(
            "round {round}: {:.1}s, crashes {}",
            started.elapsed().as_secs_f64(),
            p.crashes
        );
    }

    // Faults off; sync again until every delivered message has been evaluated (a mailbox whose
    // job was dropped behind a lease of a killed worker catches up here).
    let fired = faults_fired(&p.world).await;
    p.world
        .http()
        .delete(format!("{}/_sim/faults", p.world.sim.base_url))
        .send()
        .await
        .unwrap();
    let wanted: HashSet<&str> = delivered.iter().map(|d| d.id.as_str()).collect();
    let mut audits = HashMap::<String, usize>::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.sync_now(&mailboxes).await;
        p.drain(0, deadline).await;
        audits.clear();
        for mailbox in &mailboxes {
            for record in store
                .list_audit(&integration.workspace_id, &mailbox.mailbox_id, 100_000)
                .await
                .unwrap()
            {
                *audits.entry(record.message_id.clone()).or_default() += 1;
            }
        }
        let done = wanted.iter().all(|id| audits.contains_key(*id));
        eprintln!(
            "catch-up: {:.1}s, evaluated {}/{}",
            started.elapsed().as_secs_f64(),
            audits.len(),
            wanted.len()
        );
        if done || Instant::now() > deadline {
            break;
        }
    }

    // Check against the simulator's own record.
    let mut lost = Vec::new();
    let mut duplicates = Vec::new();
    for d in &delivered {
        match audits.get(&d.id).copied().unwrap_or(0) {
            0 => lost.push(format!("{} not evaluated", d.id)),
            1 => {}
            n => duplicates.push(format!("{} evaluated {n} times", d.id)),
        }
    }
    assert!(
        audits.keys().all(|id| wanted.contains(id.as_str())),
        "audit records only for delivered messages"
    );
    let mut verdict = Verdict { lost, duplicates };
    verdict
        .check_simulator(&p.world, &addresses, &delivered)
        .await
        .unwrap();
    let Verdict { lost, duplicates } = verdict;
    println!(
        "reliability: messages {}, faults injected {fired}, crashes {}, duplicates {}, lost {} ({:.1}s)",
        delivered.len(),
        p.crashes,
        duplicates.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(duplicates.is_empty(), "duplicates: {duplicates:#?}");
    assert!(lost.is_empty(), "lost: {lost:#?}");
}
