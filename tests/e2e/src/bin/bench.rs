//! `make bench`: measures the product on the local stack through the REAL function binaries and
//! writes `BENCHMARKS.md`. Options: `--out FILE` (default BENCHMARKS.md), `--rules FILE` (the
//! output of `cargo bench -p outlook-core --bench rules -- --quick`, included as is).
//! Env: `BENCH_MESSAGES` (messages per Graph-efficiency run, default 1000), `BENCH_FIRST_SYNC`
//! (messages waiting at the first sync whose peak memory is measured, default 10000),
//! `BENCH_FANOUT` (mailboxes for the dispatcher, default 10000). `E2E_BIN_DIR` chooses the
//! function binaries (`make bench` points it at the release build).
//!
//! Graph requests are counted by the simulator (`/_sim/requests`); the functions' AWS calls by
//! an [`AwsCallCounter`] proxy each function uses as its `AWS_ENDPOINT_URL`. Phases run one
//! after another, so each phase's counts are the difference of two snapshots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use e2e::awscalls::{CallCount, dynamodb_writes_reads, service_total};
use e2e::{AwsCallCounter, FunctionHarness, SqsEventSource, World};
use outlook_core::model::{Mailbox, MailboxKey, MailboxKind};
use outlook_core::store::Store;
use outlook_core::sync::dispatch::SyncJob;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// us-east-1 list prices (USD), so the cost arithmetic is visible.
const PRICE_DYNAMODB_WRU: f64 = 0.625 / 1e6; // on-demand, per write request unit (since Nov 2024)
const PRICE_DYNAMODB_RRU: f64 = 0.125 / 1e6; // on-demand, per read request unit
const PRICE_SQS_REQUEST: f64 = 0.40 / 1e6; // standard queue, per request (64 KB chunk)
const PRICE_LAMBDA_REQUEST: f64 = 0.20 / 1e6;
const PRICE_LAMBDA_GB_SECOND_ARM: f64 = 0.000_013_333_4; // arm64, first tier
const TICKS_PER_MONTH: f64 = 60.0 * 24.0 * 30.0; // one-minute sync

const FUNCTIONS: [&str; 5] = [
    "sync-dispatcher",
    "mailbox-sync",
    "rule-eval",
    "oauth-callback",
    "management-api",
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Polls `source` into `function` until the queue is empty; failed items are retried at once.
async fn drain(source: &SqsEventSource, function: &FunctionHarness) -> usize {
    let mut n = 0;
    for _ in 0..5_000 {
        let batch = source.poll_once(function).await.expect("poll");
        if batch.is_empty() {
            break;
        }
        n += 1;
        if !batch.failed.is_empty() {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            source.retry_now(&batch).await.ok();
        }
    }
    n
}

/// Peak resident memory of a process (`VmHWM` in kB), if it is running.
fn peak_rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// DynamoDB's item size rules, roughly: attribute names and values in UTF-8 bytes, numbers
/// about one byte per two digits, 3 bytes of overhead per map or list plus 1 per element.
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len().div_ceil(2) + 1,
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// What one phase cost: Graph requests (simulator log) and each function's AWS calls.
struct Usage {
    graph_http: usize,
    graph_batches: usize,
    graph_items: usize,
    graph_lines: Vec<String>,
    tokens: usize,
    aws: BTreeMap<&'static str, BTreeMap<String, CallCount>>,
    took: Duration,
}

impl Usage {
    /// Graph operations: `$batch` items one by one, the envelope not.
    fn graph_ops(&self) -> usize {
        self.graph_http - self.graph_batches + self.graph_items
    }
    fn aws_of(&self, function: &str) -> BTreeMap<String, CallCount> {
        self.aws.get(function).cloned().unwrap_or_default()
    }
    fn aws_all(&self) -> BTreeMap<String, CallCount> {
        let mut all: BTreeMap<String, CallCount> = BTreeMap::new();
        for counts in self.aws.values() {
            for (op, c) in counts {
                let e = all.entry(op.clone()).or_default();
                e.calls += c.calls;
                e.request_bytes += c.request_bytes;
                e.response_bytes += c.response_bytes;
            }
        }
        all
    }
}

struct Mark {
    seq: u64,
    aws: BTreeMap<&'static str, BTreeMap<String, CallCount>>,
    at: Instant,
}

struct Meter<'a> {
    world: &'a World,
    counters: BTreeMap<&'static str, AwsCallCounter>,
}

impl Meter<'_> {
    async fn mark(&self) -> anyhow::Result<Mark> {
        Ok(Mark {
            seq: self.world.last_request_seq().await?,
            aws: self
                .counters
                .iter()
                .map(|(f, c)| (*f, c.snapshot()))
                .collect(),
            at: Instant::now(),
        })
    }

    async fn usage(&self, mark: &Mark) -> anyhow::Result<Usage> {
        let took = mark.at.elapsed();
        let reqs = self.world.requests_since(mark.seq, "graph").await?;
        let is_batch = |r: &Value| {
            r["batched"] != true && r["path"].as_str().unwrap_or_default().ends_with("$batch")
        };
        Ok(Usage {
            graph_http: reqs.iter().filter(|r| r["batched"] != true).count(),
            graph_batches: reqs.iter().filter(|r| is_batch(r)).count(),
            graph_items: reqs.iter().filter(|r| r["batched"] == true).count(),
            graph_lines: reqs
                .iter()
                .map(|r| {
                    format!(
                        "{}{} {} -> {}",
                        if r["batched"] == true {
                            "  ($batch item) "
                        } else {
                            ""
                        },
                        r["method"].as_str().unwrap_or_default(),
                        r["path"].as_str().unwrap_or_default(),
                        r["status"]
                    )
                })
                .collect(),
            tokens: self.world.requests_since(mark.seq, "token").await?.len(),
            aws: self
                .counters
                .iter()
                .map(|(f, c)| (*f, c.since(&mark.aws[f])))
                .collect(),
            took,
        })
    }
}

/// One row of AWS calls: DynamoDB writes/reads, SQS and Secrets Manager calls, bytes.
fn aws_row(label: &str, counts: &BTreeMap<String, CallCount>, per: f64) -> String {
    let (w, r) = dynamodb_writes_reads(counts);
    let sqs = service_total(counts, "sqs");
    let sm = service_total(counts, "secretsmanager");
    let ddb = service_total(counts, "dynamodb");
    let ops: Vec<String> = counts
        .iter()
        .map(|(op, c)| format!("{op} {}", c.calls))
        .collect();
    format!(
        "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} KB | {} |",
        w as f64 / per,
        r as f64 / per,
        sqs.calls as f64 / per,
        sm.calls as f64 / per,
        (ddb.request_bytes + ddb.response_bytes + sqs.request_bytes + sqs.response_bytes) as f64
            / per
            / 1024.0,
        ops.join(", ")
    )
}

const AWS_HEADER: &str = "| | DynamoDB writes | DynamoDB reads | SQS calls | Secrets Manager calls | DynamoDB + SQS bytes (both ways) | calls in the phase |\n|---|---|---|---|---|---|---|";

fn invoice_mails(tag: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"from": "Billing <billing@acme.example>", "subject": format!("Invoice {tag} {i}"), "body_text": "x"}))
        .collect()
}

async fn deliver_all(world: &World, mailbox: &str, mails: Vec<Value>) -> anyhow::Result<()> {
    for chunk in mails.chunks(500) {
        world.deliver(mailbox, chunk.to_vec()).await?;
    }
    Ok(())
}

async fn count_in_folder(world: &World, mailbox: &str, folder: &str) -> anyhow::Result<usize> {
    Ok(world
        .sim_get(&format!("/mailboxes/{mailbox}/messages?folder={folder}"))
        .await?["messages"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0))
}

struct Functions {
    dispatcher: FunctionHarness,
    sync: FunctionHarness,
    rules: FunctionHarness,
    sync_source: SqsEventSource,
    rules_source: SqsEventSource,
    sqs: aws_sdk_sqs::Client,
    sync_queue_url: String,
    rules_queue_url: String,
}

impl Functions {
    /// Forced sync jobs for `keys` (as the dispatcher would pack them), drained through sync.
    async fn sync(&self, keys: &[MailboxKey]) {
        let jobs: Vec<SyncJob> = keys
            .iter()
            .map(|k| SyncJob::single(k.clone(), true))
            .collect();
        outlook_core::sync::dispatch::enqueue(&self.sqs, &self.sync_queue_url, &jobs).await;
        drain(&self.sync_source, &self.sync).await;
    }
    async fn sync_and_act(&self, keys: &[MailboxKey]) {
        self.sync(keys).await;
        drain(&self.rules_source, &self.rules).await;
    }
    async fn tick(&self) -> Value {
        let report = self
            .dispatcher
            .invoke(&json!({"source": "aws.scheduler"}))
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:?}")}));
        drain(&self.sync_source, &self.sync).await;
        report
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out_path = arg("--out").unwrap_or_else(|| "BENCHMARKS.md".into());
    let n = env_usize("BENCH_MESSAGES", 1_000);
    let first_sync_n = env_usize("BENCH_FIRST_SYNC", 10_000);
    let fanout = env_usize("BENCH_FANOUT", 10_000);
    let mut notes: Vec<String> = Vec::new();

    let world = World::new("bench").await?;
    let services = world.services().await?;
    let ops = world.add_user("ops", "shared").await?;
    let first = world.add_user("first", "user").await?;
    let bulk = world.add_user("bulk", "user").await?;
    let mut idle_users = Vec::new();
    for i in 0..7 {
        idle_users.push(world.add_user(&format!("idle{i}"), "user").await?);
    }
    let mut chosen: Vec<&str> = vec![&ops, &first, &bulk];
    chosen.extend(idle_users.iter().map(String::as_str));
    let integration = world
        .connect_organization(&services, "acme", &chosen)
        .await?;
    let store = world.store();
    world
        .put_rules(
            &integration,
            &json!({"version": 1, "rules": [{
                "id": "invoices", "name": "Invoices", "order": 10,
                "conditions": [{"subjectContains": ["invoice"]}],
                "actions": [
                    {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
                    {"moveToFolder": {"path": "Finance/Invoices"}}
                ]
            }]}),
        )
        .await?;
    let mailboxes = store
        .list_mailboxes(&integration.workspace_id, Some(&integration.integration_id))
        .await?;
    let key_of = |address: &str| -> MailboxKey {
        mailboxes
            .iter()
            .find(|m| m.address == address)
            .map(Mailbox::key)
            .expect("connected mailbox")
    };
    let sdk = world.stack.sdk_config().clone();

    // Each function reaches AWS through its own counting proxy. Cold start = harness start
    // (emulator + process) until the function polls its first event.
    let keys = e2e::api_client::Keys::generate();
    let mut counters = BTreeMap::new();
    let mut cold = Vec::new();
    let mut harnesses = BTreeMap::new();
    for bin in FUNCTIONS {
        let counter = AwsCallCounter::start(world.stack.endpoint_url()).await?;
        let mut extra: Vec<(&str, &str)> = vec![("AWS_ENDPOINT_URL", counter.url())];
        if bin == "mailbox-sync" {
            // Every mailbox is due again a second after its sync: the idle tick needs no wait.
            extra.push(("SYNC_INTERVAL_SECONDS", "1"));
        }
        if bin == "management-api" {
            extra.extend([
                ("API_JWT_ISSUER", e2e::api_client::ISSUER),
                ("API_JWT_AUDIENCE", e2e::api_client::AUDIENCE),
                ("API_JWT_PUBLIC_KEY", keys.public_pem.as_str()),
            ]);
        }
        let t = Instant::now();
        let h = world.start_function_with(bin, &extra).await?;
        cold.push((bin, t.elapsed()));
        harnesses.insert(bin, h);
        counters.insert(bin, counter);
    }
    let binary_path = e2e::paths::bin_path("mailbox-sync")?;
    let fns = Functions {
        dispatcher: harnesses.remove("sync-dispatcher").expect("started"),
        sync: harnesses.remove("mailbox-sync").expect("started"),
        rules: harnesses.remove("rule-eval").expect("started"),
        sync_source: SqsEventSource::for_function(&sdk, &world.resources, "mailbox-sync")?,
        rules_source: SqsEventSource::for_function(&sdk, &world.resources, "rule-eval")?,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        sync_queue_url: world.resources.sync_queue_url.clone(),
        rules_queue_url: world.resources.rules_queue_url.clone(),
    };
    let meter = Meter {
        world: &world,
        counters,
    };

    // ---------------------------------------------------------------- first sync, N messages
    // Mail that arrived between connecting and the first sync is handed on; the rule's folder
    // and category do not exist yet.
    deliver_all(&world, &first, invoice_mails("f", n)).await?;
    let mark = meter.mark().await?;
    fns.sync_and_act(&[key_of(&first)]).await;
    let first_usage = meter.usage(&mark).await?;
    let moved = count_in_folder(&world, &first, "Finance/Invoices").await?;
    if moved != n {
        notes.push(format!(
            "WARNING: first sync: {moved} messages in Finance/Invoices, expected {n}"
        ));
    }

    // ---------------------------------------------------------------- steady state, N messages
    fns.sync_and_act(&[key_of(&ops)]).await;
    world
        .deliver(
            &ops,
            vec![json!({"from": "a@b.example", "subject": "Invoice warm-up"})],
        )
        .await?;
    fns.sync_and_act(&[key_of(&ops)]).await;
    deliver_all(&world, &ops, invoice_mails("p", n)).await?;
    let mark = meter.mark().await?;
    fns.sync_and_act(&[key_of(&ops)]).await;
    let steady = meter.usage(&mark).await?;
    let rules_rss = peak_rss_kb(fns.rules.pid().await);
    let moved = count_in_folder(&world, &ops, "Finance/Invoices").await?;
    if moved != n + 1 {
        notes.push(format!(
            "WARNING: steady state: {moved} messages in Finance/Invoices, expected {}",
            n + 1
        ));
    }

    // ---------------------------------------------------------------- naive baseline
    // One inbox poll with $top paging, then PATCH + move per message, no $batch, no delta.
    deliver_all(&world, &ops, invoice_mails("n", n)).await?;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            world.sim.login_base_url(),
            world.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", world.client_id.as_str()),
            ("client_secret", world.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let folders = world.sim_get(&format!("/mailboxes/{ops}/folders")).await?;
    let dest = folders["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["path"] == "Finance/Invoices"))
        .and_then(|f| f["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let graph = world.sim.graph_base_url();
    let mark = meter.mark().await?;
    let mut url = format!(
        "{graph}/users/{ops}/mailFolders/inbox/messages?$top=50&$select=id,subject,categories"
    );
    let mut ids = Vec::new();
    loop {
        let page: Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        for m in page["value"].as_array().cloned().unwrap_or_default() {
            if m["subject"]
                .as_str()
                .unwrap_or_default()
                .contains("Invoice")
            {
                ids.push(m["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    for id in &ids {
        http.patch(format!("{graph}/users/{ops}/messages/{id}"))
            .bearer_auth(&token)
            .json(&json!({"categories": ["Invoices"]}))
            .send()
            .await?;
        http.post(format!("{graph}/users/{ops}/messages/{id}/move"))
            .bearer_auth(&token)
            .json(&json!({"destinationId": dest}))
            .send()
            .await?;
    }
    let naive = meter.usage(&mark).await?;
    if ids.len() != n {
        notes.push(format!(
            "WARNING: the naive poller found {} of {n} messages",
            ids.len()
        ));
    }
    // A sync that absorbs the naive baseline's moves (delta reports them as removals).
    fns.sync_and_act(&[key_of(&ops)]).await;

    // ---------------------------------------------------------------- large first sync (memory)
    // A fresh mailbox-sync process, then a first sync with `first_sync_n` messages waiting;
    // the backlog takes several invocations (MAX_PAGES_PER_FOLDER pages each).
    deliver_all(&world, &bulk, invoice_mails("b", first_sync_n)).await?;
    fns.sync.restart().await?;
    let bulk_key = key_of(&bulk);
    let mark = meter.mark().await?;
    let mut bulk_invocations = 0;
    for _ in 0..20 {
        fns.sync(std::slice::from_ref(&bulk_key)).await;
        bulk_invocations += 1;
        let done = store.get_mailbox(&bulk_key).await?.is_some_and(|m| {
            m.folders
                .values()
                .all(|f| f.page_link.is_none() && f.delta_link.is_some())
        });
        if done {
            break;
        }
    }
    let bulk_usage = meter.usage(&mark).await?;
    let sync_rss = peak_rss_kb(fns.sync.pid().await);
    let bulk_handed = store
        .get_mailbox(&bulk_key)
        .await?
        .map(|m| m.counters.messages_handed_on)
        .unwrap_or_default();
    if bulk_handed != first_sync_n as u64 {
        notes.push(format!(
            "WARNING: large first sync handed on {bulk_handed} of {first_sync_n} messages"
        ));
    }
    // Its rules jobs are not part of this benchmark.
    fns.sqs
        .purge_queue()
        .queue_url(&fns.rules_queue_url)
        .send()
        .await
        .ok();

    // ---------------------------------------------------------------- idle tick
    // All ten mailboxes idle: one scheduled tick through the real dispatcher warms the never
    // synced ones, the next one is measured.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fns.tick().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = meter.mark().await?;
    let idle_report = fns.tick().await;
    let idle = meter.usage(&mark).await?;
    let idle_mailboxes = chosen.len() as f64;
    let mailbox_item = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name(&world.resources.table_name)
        .key(
            "pk",
            AttributeValue::S(format!("WS#{}", integration.workspace_id.as_str())),
        )
        .key(
            "sk",
            AttributeValue::S(format!(
                "MBX#{}#{}",
                integration.integration_id.as_str(),
                key_of(&ops).mailbox_id.as_str()
            )),
        )
        .send()
        .await?
        .item
        .unwrap_or_default();
    let mailbox_item_bytes = item_size(&mailbox_item);

    // ---------------------------------------------------------------- fan-out
    let mut fan_rows: Vec<String> = Vec::new();
    let now = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let mut created = 0usize;
    for target in [1_000.min(fanout), fanout] {
        let t = Instant::now();
        let fan_err = create_mailboxes(&store, &integration, created..target, now).await;
        created = target;
        let create_time = t.elapsed();
        let queued_before = queue_depth(&fns.sqs, &fns.sync_queue_url).await;
        let mark = meter.mark().await?;
        let report = match fan_err {
            Some(e) => json!({"error": e}),
            None => fns
                .dispatcher
                .invoke(&json!({"source": "aws.scheduler"}))
                .await
                .unwrap_or_else(|e| json!({"error": format!("{e:?}")})),
        };
        let usage = meter.usage(&mark).await?;
        let on_queue = queue_depth(&fns.sqs, &fns.sync_queue_url).await - queued_before;
        let d = usage.aws_of("sync-dispatcher");
        fan_rows.push(format!(
            "| {target} | {:.1}s | {:.2}s | `{report}` | {on_queue} | {} | {} |",
            create_time.as_secs_f64(),
            usage.took.as_secs_f64(),
            d.get("sqs:SendMessageBatch").map(|c| c.calls).unwrap_or(0),
            d.get("dynamodb:Query").map(|c| c.calls).unwrap_or(0),
        ));
    }

    // ------------------------------------------------------------------ report
    let mut md = String::new();
    let per_k = |x: usize| x as f64 * 1000.0 / n as f64;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` (`cargo run -p e2e --bin bench`), {}.\n",
        sh("date -u +%Y-%m-%dT%H:%M:%SZ")
    );
    let profile = if binary_path.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug"
    };
    let _ = writeln!(
        md,
        "Machine: {} CPUs (`nproc`), {} memory, `{}`, {}. Local stack: moto (AWS emulator) + the \
         Microsoft 365 simulator; functions are the real **{profile}** binaries (`{}`) under the \
         Lambda runtime emulator, so absolute times are NOT Lambda times. Counts and ratios come \
         first: Graph requests from the simulator's request log, AWS calls from a counting proxy \
         in front of the emulator (each function's `AWS_ENDPOINT_URL`).\n",
        sh("nproc"),
        sh("free -h | awk '/Mem:/{print $2}'"),
        sh("uname -m"),
        sh("uname -sr"),
        binary_path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );

    let _ = writeln!(md, "## Graph efficiency (categorize + move)\n");
    let _ = writeln!(
        md,
        "{n} new messages, synced by `mailbox-sync` (delta) and acted on by `rule-eval` (`$batch`). \
         *First sync*: a mailbox connected, {n} messages arrive, then its first sync (the rule's \
         folder and category are created on the way). *Steady state*: a mailbox already synced \
         (folder and category exist), {n} new messages. *Naive*: the baseline written in the \
         bench: one inbox list with `$top=50` paging, then PATCH + move per message, no `$batch`, \
         no delta.\n"
    );
    let _ = writeln!(
        md,
        "| | HTTP requests | per 1,000 messages | Graph operations (`$batch` items one by one, not the envelope) | per 1,000 | token requests | wall time |\n|---|---|---|---|---|---|---|"
    );
    for (label, u) in [
        ("product, first sync", &first_usage),
        ("product, steady state", &steady),
        ("naive", &naive),
    ] {
        let _ = writeln!(
            md,
            "| {label} | {} | {:.0} | {} | {:.0} | {} | {:.1}s |",
            u.graph_http,
            per_k(u.graph_http),
            u.graph_ops(),
            per_k(u.graph_ops()),
            u.tokens,
            u.took.as_secs_f64()
        );
    }
    let _ = writeln!(
        md,
        "\nRatio naive / product HTTP requests: **{:.1}x** steady state, **{:.1}x** first sync. \
         (`$batch` items still count against Graph's per-mailbox throttling, so the operations \
         column is the fair one for quotas: {:.2}x and {:.2}x.) The naive baseline's count is one \
         poll only; a real poller also lists the inbox every minute when nothing is new.\n",
        naive.graph_http as f64 / steady.graph_http.max(1) as f64,
        naive.graph_http as f64 / first_usage.graph_http.max(1) as f64,
        naive.graph_ops() as f64 / steady.graph_ops().max(1) as f64,
        naive.graph_ops() as f64 / first_usage.graph_ops().max(1) as f64,
    );
    let _ = writeln!(
        md,
        "AWS calls per message (measured), the same runs:\n\n{AWS_HEADER}"
    );
    for (label, u) in [("first sync", &first_usage), ("steady state", &steady)] {
        for f in ["mailbox-sync", "rule-eval"] {
            let _ = writeln!(
                md,
                "{}",
                aws_row(&format!("{label}: `{f}`"), &u.aws_of(f), n as f64)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nPer message, `mailbox-sync` records the id before handing it on and marks it handed on \
         after SQS accepted it (the exactly-once hand-off); `rule-eval` claims the evaluation and \
         each action and writes the audit record. The SQS event source's ReceiveMessage and \
         DeleteMessageBatch calls are Lambda's, not the functions', and are not in these rows.\n"
    );

    // Idle cost.
    let per_mailbox = |x: u64| x as f64 / idle_mailboxes;
    let idle_all = idle.aws_all();
    let (idle_w, idle_r) = dynamodb_writes_reads(&idle_all);
    let idle_sqs_fn = service_total(&idle_all, "sqs").calls;
    let idle_sm = service_total(&idle_all, "secretsmanager").calls;
    let (w_tick, r_tick) = (per_mailbox(idle_w), per_mailbox(idle_r));
    let wcu_per_write = mailbox_item_bytes.div_ceil(1024).max(1) as f64;
    // The event source receives and deletes once per job of up to ten mailboxes.
    let sqs_tick = per_mailbox(idle_sqs_fn) + 2.0 / 10.0;
    let lambda_req = 1.0 / 10.0 + 1.0 / idle_mailboxes.max(1.0); // a sync invocation per job + the dispatcher's share
    let (mem_gb, dur_s) = (0.256, 0.5);
    let ticks = 1000.0 * TICKS_PER_MONTH;
    let c_w = ticks * w_tick * wcu_per_write * PRICE_DYNAMODB_WRU;
    let c_r = ticks * r_tick * PRICE_DYNAMODB_RRU;
    let c_sqs = ticks * sqs_tick * PRICE_SQS_REQUEST;
    let c_lreq = ticks * lambda_req * PRICE_LAMBDA_REQUEST;
    let c_gbs = ticks * (1.0 / 10.0) * mem_gb * dur_s * PRICE_LAMBDA_GB_SECOND_ARM;
    let _ = writeln!(md, "## Idle cost (per idle mailbox per tick)\n");
    let _ = writeln!(
        md,
        "{idle_mailboxes} idle mailboxes, one scheduled tick through the real `sync-dispatcher` and \
         `mailbox-sync` (the dispatcher's report: `{idle_report}`), all measured and divided by \
         {idle_mailboxes}:\n\n\
         | | per idle mailbox per tick |\n|---|---|\n\
         | Graph requests | {:.2} |\n\
         | token requests | {:.2} |\n\
         | DynamoDB writes | {w_tick:.2} |\n\
         | DynamoDB reads | {r_tick:.2} |\n\
         | Secrets Manager calls | {:.2} |\n\
         | SQS calls by the functions | {:.2} |\n\
         | SQS calls by the event source (Receive + Delete per job of ten, not measured) | 0.20 |\n",
        idle.graph_http as f64 / idle_mailboxes,
        idle.tokens as f64 / idle_mailboxes,
        per_mailbox(idle_sm),
        per_mailbox(idle_sqs_fn),
    );
    let _ = writeln!(md, "The tick's AWS calls:\n\n{AWS_HEADER}");
    for f in ["sync-dispatcher", "mailbox-sync"] {
        let _ = writeln!(
            md,
            "{}",
            aws_row(
                &format!("`{f}`, per mailbox"),
                &idle.aws_of(f),
                idle_mailboxes
            )
        );
    }
    let _ = writeln!(
        md,
        "\nThe tick's Graph requests (the rules queue stays empty):\n\n```\n{}\n```\n",
        idle.graph_lines.join("\n")
    );
    let _ = writeln!(
        md,
        "AWS cost per 1,000 idle mailboxes per month at one-minute sync ({ticks:.0} mailbox-ticks = \
         1,000 x 60 x 24 x 30), us-east-1 list prices written in the bench: DynamoDB on-demand \
         $0.625 per million write request units and $0.125 per million read request units; a \
         mailbox record is {mailbox_item_bytes} bytes (measured), so each write of it costs \
         {wcu_per_write} write unit(s), reads are under 4 KB (1 unit); SQS $0.40 per million \
         requests; Lambda arm64 $0.20 per million requests and $0.0000133334 per GB-second, \
         assumed {mem_gb} GB x {dur_s} s per sync invocation of ten mailboxes.\n"
    );
    let _ = writeln!(
        md,
        "| item | arithmetic | USD / month |\n|---|---|---|\n\
         | DynamoDB writes | {ticks:.0} x {w_tick:.2} x {wcu_per_write} x 0.625e-6 | {c_w:.2} |\n\
         | DynamoDB reads | {ticks:.0} x {r_tick:.2} x 0.125e-6 | {c_r:.2} |\n\
         | SQS | {ticks:.0} x {sqs_tick:.2} x 0.40e-6 | {c_sqs:.2} |\n\
         | Lambda requests | {ticks:.0} x {lambda_req:.2} x 0.20e-6 | {c_lreq:.2} |\n\
         | Lambda compute | {ticks:.0} x 0.1 x {mem_gb} GB x {dur_s} s x 1.33334e-5 | {c_gbs:.2} |\n\
         | **total** | | **{:.2}** |\n",
        c_w + c_r + c_sqs + c_lreq + c_gbs
    );

    let _ = writeln!(
        md,
        "## Rule engine (criterion, `cargo bench -p outlook-core --bench rules -- --quick`)\n\n\
         One thread. `thrpt` is message x rule evaluations per second: each iteration evaluates \
         one HTML message of about 12 KB (its body rendered to text once, as in production) \
         against 10, 100 or 1,000 rules mixing Outlook conditions, regexes and body conditions; \
         `evaluate_without_body` is the same without a body; `validate/500` validates and \
         compiles a full rule set of 500 (`functions/outlook-core/benches/rules.rs`).\n"
    );
    let rules_txt = arg("--rules")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let lines = criterion_figures(&rules_txt);
    if lines.is_empty() {
        let _ = writeln!(md, "Not run (no `--rules` output given).\n");
    } else {
        let _ = writeln!(md, "```\n{}\n```\n", lines.join("\n"));
    }

    let _ = writeln!(md, "## Functions\n");
    let _ = writeln!(
        md,
        "Cold start = `FunctionHarness::start` until the function polls its first event \
         (includes starting the runtime emulator). Binary size = the {profile} binary Lambda runs \
         (`bootstrap`){}.\n\n\
         | function | cold start | binary size |\n|---|---|---|",
        if profile == "release" {
            ", stripped (`[profile.release]`: thin LTO, one codegen unit, `strip = true`)"
        } else {
            " (debug build: not representative; `make bench` measures release)"
        }
    );
    for (bin, d) in &cold {
        let size = binary_path
            .parent()
            .and_then(|dir| std::fs::metadata(dir.join(bin)).ok())
            .map(|m| format!("{:.1} MB", m.len() as f64 / 1_048_576.0))
            .unwrap_or_else(|| "not built".into());
        let _ = writeln!(md, "| {bin} | {} ms | {size} |", d.as_millis());
    }
    let kb = |v: Option<u64>| {
        v.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
            .unwrap_or_else(|| "not available".into())
    };
    let _ = writeln!(
        md,
        "\nPeak RSS (`VmHWM`):\n\n| process | work since its start | peak RSS |\n|---|---|---|\n\
         | `mailbox-sync` | a first sync with {first_sync_n} messages waiting: {bulk_invocations} invocation(s), {} Graph requests, {bulk_handed} messages handed on, {:.1}s | {} |\n\
         | `rule-eval` | everything above up to the steady-state run ({} messages acted on) | {} |\n",
        bulk_usage.graph_http,
        bulk_usage.took.as_secs_f64(),
        kb(sync_rss),
        2 * n + 1,
        kb(rules_rss),
    );
    let _ = writeln!(
        md,
        "The large first sync's AWS calls (per message):\n\n{AWS_HEADER}\n{}\n",
        aws_row(
            "`mailbox-sync`",
            &bulk_usage.aws_of("mailbox-sync"),
            first_sync_n.max(1) as f64
        )
    );

    let _ = writeln!(md, "## Fan-out\n");
    let _ = writeln!(
        md,
        "Due mailbox records created with the store, then one invocation of the real \
         `sync-dispatcher` (harness invoke timeout 120 s; the template gives the function 60 s): \
         ten mailboxes per job, ten jobs per SendMessageBatch, the due index read in pages \
         (calls measured).\n\n\
         | due mailboxes (fan-out records) | creating records | dispatcher invocation | dispatcher report (also counts the bench's ten connected mailboxes, due every second) | new jobs on the sync queue | SendMessageBatch | Query |\n|---|---|---|---|---|---|---|\n{}\n",
        fan_rows.join("\n")
    );
    for note in notes {
        let _ = writeln!(md, "{note}\n");
    }
    std::fs::write(&out_path, &md)?;
    println!("{md}");
    Ok(())
}

async fn create_mailboxes(
    store: &Store,
    integration: &outlook_core::model::Integration,
    range: std::ops::Range<usize>,
    now: OffsetDateTime,
) -> Option<String> {
    let records: Vec<Mailbox> = range
        .map(|i| {
            Mailbox::new(
                integration.workspace_id.clone(),
                integration.integration_id.clone(),
                format!("fan{i}@contoso.com"),
                MailboxKind::Organization,
                &["inbox"],
                now,
            )
        })
        .collect();
    for chunk in records.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for m in chunk {
            let m = m.clone();
            let store = store.clone();
            set.spawn(async move { store.create_mailbox(&m).await });
        }
        while let Some(result) = set.join_next().await {
            if let Ok(Err(e)) = result {
                return Some(format!("creating mailboxes: {e}"));
            }
        }
    }
    None
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> i64 {
    use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages as Depth;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(Depth)
        .send()
        .await
        .ok()
        .and_then(|a| a.attributes().and_then(|m| m.get(&Depth)?.parse().ok()))
        .unwrap_or_default()
}

/// Criterion's figures, without its comparison with the previous run.
fn criterion_figures(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = Vec::new();
    let mut in_change = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if !line.starts_with(' ') {
            in_change = false;
        }
        if trimmed.starts_with("change:") {
            in_change = true;
            continue;
        }
        let skip = in_change
            || trimmed.is_empty()
            || [
                "Compiling",
                "Finished",
                "Running",
                "Benchmarking",
                "Gnuplot",
                "Warning",
                "done",
                "Found",
                "No change",
                "Performance",
                "Change within",
            ]
            .iter()
            .any(|p| trimmed.starts_with(p))
            || trimmed.contains("outliers")
            || trimmed.starts_with(|c: char| c.is_ascii_digit());
        if !skip {
            lines.push(line);
        }
    }
    lines
}
