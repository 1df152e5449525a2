//! Identity chaos, end to end: the REAL `sync-dispatcher`, `mailbox-sync`, `rule-eval` and
//! `oauth-callback` binaries under the Lambda runtime emulator, fed by the SQS event sources,
//! against the AWS emulator and the Microsoft 365 simulator.
//!
//! One organization-wide integration (two shared mailboxes of `contoso.com`) and two personal
//! ones in another Microsoft 365 organization (`northwind.com`: alice with her own and a shared
//! mailbox, bob with his own) receive mail in rounds (two deliveries per round, scheduler ticks
//! after each). At one or two random points of a round (before the mail arrives, between a sync
//! and its rule evaluation, or between two ticks) an identity event hits random targets that are
//! working: a user's password change or revoked consent (personal), MFA enforced for the
//! personal users' organization, the app removed from the organization-wide tenant, or the app's
//! client secret expiring (everything). Microsoft's clock then moves past the access tokens'
//! lifetime, so the event shows at the next token use. One or more rounds later it is repaired
//! at a random point: the user reconnects and the administrator consents again through the REAL
//! callback, or the operator adds a new client secret and puts it in the app-credentials secret
//! (the mailboxes back off for 15 minutes after an app-credential failure; "sync now" stands in
//! for that wait).
//!
//! Checked along the way:
//! - once the break is seen (the first full tick after the event), the integration has the
//!   status and reason a person needs (`needs_reconnect` with `password_changed`,
//!   `mfa_required`, `consent_revoked`; `admin_action_required` with `app_removed_from_tenant`
//!   or `app_credentials_expired`), its mailboxes are paused (app credentials: active, next
//!   try in 15 minutes);
//! - no retry storm: until then at most one token request per mailbox from the sync worker plus
//!   one per mailbox and batch of ten from rule evaluation; afterwards no token or Graph request
//!   for it at all, and the scheduler no longer finds its mailboxes due;
//! - the other integrations keep syncing: their mail is evaluated within the round;
//! - mail that arrives while an integration is broken is not touched; after the repair the
//!   integration is connected, its mailboxes active, and that mail is acted on;
//! - at the end the audit and the simulator's own record (folders, categories, sent mail) show
//!   every delivered message evaluated and acted on exactly once (lost 0, duplicates 0; a
//!   message acknowledged as "skipped" is lost), mail from before the connections never touched,
//!   and both dead-letter queues empty.
//!
//! Short by default (runs in `make test`). Knobs (environment):
//! - `CHAOS_ROUNDS` rounds of mail (default 4); `CHAOS_MESSAGES` messages per mailbox per round
//!   (default 2, in two deliveries); `CHAOS_OUTAGE_ROUNDS` a repair comes one to this many rounds
//!   after its event (default 1);
//! - `SOAK_SEED` the seed (printed; default from the clock);
//! - `CHAOS_EVENTS` a comma-separated subset of `password_changed,mfa_required,consent_revoked,
//!   app_removed,secret_expired` (default all); `CHAOS_POINTS` a subset of
//!   `before_delivery,between_sync_and_rules,between_ticks` (default all).
//!
//! Each run prints its counts: messages, identity events by kind, repairs, token requests (all,
//! and the most in one tick from broken integrations), duplicates and lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e::chaos::{Expected, Rng, Verdict, deliver_mix, env_num, invoice_and_urgent_rules};
use e2e::{Batch, FunctionHarness, SqsEventSource, World};
use outlook_core::api::auth::Caller;
use outlook_core::connect::flows::{StartOptions, start};
use outlook_core::health::Reason;
use outlook_core::ids::WorkspaceId;
use outlook_core::model::{Integration, IntegrationStatus, Mailbox, MailboxStatus};
use outlook_core::rules_exec::EVALUATION_NOTE_KEY;
use outlook_core::services::Services;
use outlook_core::store::{AuditRecord, Store};
use outlook_core::sync::worker::APP_CREDENTIALS_RETRY_SECS;
use serde_json::{Value, json};
use time::OffsetDateTime;

const FORWARD_TO: &str = "urgent-desk@example.org";
/// Past the simulator's access-token lifetime (3600 s): a revoked sign-in shows at the next use.
const TOKEN_LIFETIME_PLUS: u64 = 3700;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    PasswordChanged,
    MfaRequired,
    ConsentRevoked,
    AppRemoved,
    SecretExpired,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::PasswordChanged,
        Kind::MfaRequired,
        Kind::ConsentRevoked,
        Kind::AppRemoved,
        Kind::SecretExpired,
    ];

    /// The simulator's event type.
    fn name(self) -> &'static str {
        match self {
            Kind::PasswordChanged => "password_changed",
            Kind::MfaRequired => "mfa_required",
            Kind::ConsentRevoked => "consent_revoked",
            Kind::AppRemoved => "app_removed",
            Kind::SecretExpired => "secret_expired",
        }
    }

    fn reason(self) -> Reason {
        match self {
            Kind::PasswordChanged => Reason::PasswordChanged,
            Kind::MfaRequired => Reason::MfaRequired,
            Kind::ConsentRevoked => Reason::ConsentRevoked,
            Kind::AppRemoved => Reason::AppRemovedFromTenant,
            Kind::SecretExpired => Reason::AppCredentialsExpired,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    BeforeDelivery,
    /// After the first tick's sync handed the round's mail on, before rule evaluation ran.
    BetweenSyncAndRules,
    BetweenTicks,
}

impl Point {
    const ALL: [Point; 3] = [
        Point::BeforeDelivery,
        Point::BetweenSyncAndRules,
        Point::BetweenTicks,
    ];

    fn name(self) -> &'static str {
        match self {
            Point::BeforeDelivery => "before_delivery",
            Point::BetweenSyncAndRules => "between_sync_and_rules",
            Point::BetweenTicks => "between_ticks",
        }
    }
}

/// Parses a comma-separated subset of `all` (by name) from `var`; all of them when unset.
fn subset<T: Copy>(var: &str, all: &[T], name: fn(T) -> &'static str) -> Vec<T> {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            for w in &wanted {
                assert!(
                    all.iter().any(|t| name(*t) == *w),
                    "{var}: unknown value {w}"
                );
            }
            all.iter()
                .copied()
                .filter(|t| wanted.contains(&name(*t)))
                .collect()
        }
        _ => all.to_vec(),
    }
}

/// One integration of the world.
struct Conn {
    label: &'static str,
    workspace: String,
    integration: Integration,
    /// Personal: who signs in, and the shared mailboxes named at sign-in.
    user: Option<String>,
    shared: Vec<String>,
    /// Mailbox addresses (lowercase), the integration's mailboxes in the same order.
    addresses: Vec<String>,
    mailboxes: Vec<Mailbox>,
    /// The outage it is in, if any (index into `Chaos::outages`).
    outage: Option<usize>,
}

impl Conn {
    fn personal(&self) -> bool {
        self.user.is_some()
    }
}

/// One identity event and its repair.
struct Outage {
    kind: Kind,
    conns: Vec<usize>,
    round: usize,
    point: Point,
    /// `Chaos::delivered.len()` when the event happened: later mail must wait for the repair.
    delivered_mark: usize,
    /// Ticks started before the event; the first full tick after it is `ticks_before + 1`.
    ticks_before: usize,
    /// Full ticks since the event. After the first, the break must be seen and quiet.
    full_ticks: usize,
    /// Requests until the break was seen (sync worker and rule evaluation).
    detect_tokens: usize,
    detect_graph: usize,
    repair_round: usize,
    repair_point: Point,
    repaired: bool,
}

#[derive(Debug, Clone)]
struct Delivered {
    conn: usize,
    mailbox: String,
    id: String,
    invoice: bool,
    urgent: bool,
    round: usize,
}

#[derive(Default)]
struct Stats {
    events: BTreeMap<&'static str, usize>,
    repairs: usize,
    ticks: usize,
    token_requests: usize,
    graph_requests: usize,
    /// Token requests from broken integrations in the current tick, and the most in one tick.
    tick_broken_tokens: usize,
    max_broken_tokens_per_tick: usize,
    broken_tokens: usize,
    broken_graph: usize,
    cold_starts: usize,
}

struct Chaos {
    world: World,
    services: Services,
    store: Store,
    dispatcher: FunctionHarness,
    sync: FunctionHarness,
    rules: FunctionHarness,
    callback: FunctionHarness,
    sync_source: SqsEventSource,
    rules_source: SqsEventSource,
    rng: Rng,
    conns: Vec<Conn>,
    outages: Vec<Outage>,
    delivered: Vec<Delivered>,
    history: Vec<Delivered>,
    problems: Vec<String>,
    stats: Stats,
    /// Simulator request log position already accounted for.
    seen_seq: u64,
    /// When the last sync drain ended (mailboxes are due one second after their sync).
    last_sync_end: Instant,
    tenant_b: String,
    round: usize,
    serial: usize,
    deadline: Instant,
    kinds: Vec<Kind>,
    /// Where this round's events happen (one or two of `CHAOS_POINTS`).
    event_points: Vec<Point>,
    max_outage_rounds: u64,
    client_id: String,
    /// Messages per mailbox in one delivery, at most.
    per_delivery: usize,
}

fn caller(workspace: &str) -> Caller {
    Caller {
        workspace_id: WorkspaceId::parse(workspace).unwrap(),
        subject: "identity-chaos".into(),
    }
}

fn short(v: &Value) -> String {
    format!(
        "{} {} {}{} -> {} {}",
        v["kind"].as_str().unwrap_or_default(),
        v["method"].as_str().unwrap_or_default(),
        v["path"].as_str().unwrap_or_default(),
        v["grant_type"]
            .as_str()
            .map(|g| format!(" ({g}, user {})", v["user"].as_str().unwrap_or("-")))
            .unwrap_or_default(),
        v["status"],
        v["error_code"].as_str().unwrap_or_default()
    )
}

impl Chaos {
    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    async fn integration(&self, c: usize) -> Integration {
        let conn = &self.conns[c];
        self.store
            .get_integration(
                &conn.integration.workspace_id,
                &conn.integration.integration_id,
            )
            .await
            .unwrap()
            .unwrap()
    }

    async fn mailboxes(&self, c: usize) -> Vec<Mailbox> {
        let conn = &self.conns[c];
        self.store
            .list_mailboxes(
                &conn.integration.workspace_id,
                Some(&conn.integration.integration_id),
            )
            .await
            .unwrap()
    }

    /// Which integration a simulator request belongs to, if it can tell.
    fn attribute(&self, request: &Value) -> Option<usize> {
        let find_address = |address: &str| {
            let address = address.to_lowercase().replace("%40", "@");
            self.conns
                .iter()
                .position(|c| c.addresses.contains(&address))
        };
        match request["kind"].as_str() {
            Some("token") => match request["grant_type"].as_str() {
                Some("client_credentials") => self.conns.iter().position(|c| !c.personal()),
                Some("refresh_token") => match request["user"].as_str() {
                    Some(user) => find_address(user),
                    // Refused before the refresh token was read (the client secret): only
                    // possible for a broken integration.
                    None => self
                        .conns
                        .iter()
                        .position(|c| c.personal() && c.outage.is_some()),
                },
                _ => None,
            },
            Some("graph") => {
                if let Some(mailbox) = request["mailbox"].as_str() {
                    return find_address(mailbox);
                }
                let path = request["path"].as_str().unwrap_or_default();
                let mut segments = path.split('/').filter(|s| !s.is_empty());
                let _version = segments.next();
                match (segments.next(), segments.next()) {
                    (Some("users"), Some(user)) => find_address(user),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Counts the simulator's requests since the last call and charges those of broken
    /// integrations to their outage: until the break is seen they are counted, afterwards any
    /// request is a retry storm.
    async fn account(&mut self) {
        let upto = self.world.last_request_seq().await.unwrap();
        if upto <= self.seen_seq {
            return;
        }
        let mut requests = self
            .world
            .requests_since(self.seen_seq, "token")
            .await
            .unwrap();
        requests.extend(
            self.world
                .requests_since(self.seen_seq, "graph")
                .await
                .unwrap(),
        );
        requests.retain(|r| r["seq"].as_u64().is_some_and(|s| s <= upto));
        self.seen_seq = upto;
        for request in &requests {
            let token = request["kind"] == "token";
            if token {
                self.stats.token_requests += 1;
            } else {
                self.stats.graph_requests += 1;
            }
            let Some(c) = self.attribute(request) else {
                continue;
            };
            let Some(o) = self.conns[c].outage else {
                continue;
            };
            if token {
                self.stats.broken_tokens += 1;
                self.stats.tick_broken_tokens += 1;
            } else {
                self.stats.broken_graph += 1;
            }
            let outage = &mut self.outages[o];
            if outage.full_ticks == 0 {
                if token {
                    outage.detect_tokens += 1;
                } else {
                    outage.detect_graph += 1;
                }
            } else {
                self.problems.push(format!(
                    "round {}: {} of the broken {} integration after its break was seen ({} tick(s) after {}): {}",
                    self.round,
                    if token { "token request" } else { "Graph request" },
                    self.conns[c].label,
                    outage.full_ticks,
                    outage.kind.name(),
                    short(request)
                ));
            }
        }
    }

    /// Runs one function on its queue until nothing is left; failed batches are made visible
    /// again once the leases of their attempts have run out (2 s), as the visibility timeout
    /// would.
    async fn drain(&mut self, sync: bool) {
        let mut pending: Vec<Batch> = Vec::new();
        loop {
            if Instant::now() > self.deadline {
                self.problems.push(format!(
                    "round {}: deadline passed while draining",
                    self.round
                ));
                return;
            }
            let (source, function) = if sync {
                (&self.sync_source, &self.sync)
            } else {
                (&self.rules_source, &self.rules)
            };
            let batch = source.poll_once(function).await.expect("poll");
            if !batch.failed.is_empty() {
                pending.push(batch.clone());
            }
            if !batch.is_empty() {
                continue;
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2200)).await;
                for batch in pending.drain(..) {
                    source.retry_now(&batch).await.ok();
                }
                continue;
            }
            // Nothing visible and nothing waiting: every function ran to completion, so the
            // queue is empty.
            break;
        }
        if sync {
            self.last_sync_end = Instant::now();
        }
    }

    /// The scheduler's tick: every mailbox synced a second ago is due again
    /// (`SYNC_INTERVAL_SECONDS=1`), broken ones are not.
    async fn dispatch_and_sync(&mut self) {
        self.stats.ticks += 1;
        let due_at = self.last_sync_end + Duration::from_millis(1100);
        let now = Instant::now();
        if due_at > now {
            tokio::time::sleep(due_at - now).await;
        }
        // Due: every mailbox of a working integration, none of one whose break a full tick has
        // seen (paused, or backing off for 15 minutes). A break not yet seen by a tick may
        // already be recorded by rule evaluation (it met the refusal first): due or not.
        let mailboxes = |seen: bool| -> usize {
            self.conns
                .iter()
                .filter(|c| match c.outage {
                    None => !seen,
                    Some(o) => seen && self.outages[o].full_ticks == 0,
                })
                .map(|c| c.mailboxes.len())
                .sum()
        };
        let (least, most) = (mailboxes(false), mailboxes(false) + mailboxes(true));
        let report = self
            .dispatcher
            .invoke(&json!({"source": "aws.scheduler"}))
            .await
            .expect("dispatcher");
        let due = report["due"].as_u64().unwrap_or(u64::MAX) as usize;
        if !(least..=most).contains(&due) {
            self.problems.push(format!(
                "round {}: the scheduler found {} mailboxes due, expected {least} to {most} (broken: {})",
                self.round,
                report["due"],
                self.conns
                    .iter()
                    .filter(|c| c.outage.is_some())
                    .map(|c| c.label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.drain(true).await;
    }

    /// End of a tick: accounting, and for each outage whose first full tick this was, the
    /// status check.
    async fn end_tick(&mut self) {
        self.account().await;
        self.stats.max_broken_tokens_per_tick = self
            .stats
            .max_broken_tokens_per_tick
            .max(self.stats.tick_broken_tokens);
        self.stats.tick_broken_tokens = 0;
        let tick = self.stats.ticks;
        for o in 0..self.outages.len() {
            if self.outages[o].repaired || tick <= self.outages[o].ticks_before {
                continue;
            }
            self.outages[o].full_ticks += 1;
            if self.outages[o].full_ticks == 1 {
                self.check_broken(o).await;
            }
        }
    }

    async fn full_tick(&mut self, round_point: Option<Point>) {
        self.dispatch_and_sync().await;
        if let Some(point) = round_point {
            self.at(point).await;
        }
        self.drain(false).await;
        self.end_tick().await;
    }

    /// The break is seen: the right status and reason, mailboxes paused (or backing off), and
    /// few requests on the way.
    async fn check_broken(&mut self, o: usize) {
        let kind = self.outages[o].kind;
        let conns = self.outages[o].conns.clone();
        let mailbox_count: usize = conns.iter().map(|&c| self.conns[c].addresses.len()).sum();
        // One token request per mailbox from the sync worker, and from rule evaluation (which
        // holds a delivery's mail when the break comes between them) one per mailbox per batch
        // of ten.
        let token_bound = mailbox_count * (1 + self.per_delivery.div_ceil(10));
        let outage = &self.outages[o];
        if outage.detect_tokens > token_bound {
            self.problems.push(format!(
                "round {}: {} made {} token requests until its break was seen (at most {token_bound})",
                self.round,
                kind.name(),
                outage.detect_tokens
            ));
        }
        // Each of those meets Graph at most a few times first (a cached token refused).
        let graph_bound = 4 * token_bound;
        if outage.detect_graph > graph_bound {
            self.problems.push(format!(
                "round {}: {} made {} Graph requests until its break was seen (at most {graph_bound})",
                self.round,
                kind.name(),
                outage.detect_graph
            ));
        }
        let now = Self::now().unix_timestamp();
        for c in conns {
            let label = self.conns[c].label;
            let current = self.integration(c).await;
            let expected = if kind == Kind::SecretExpired || kind == Kind::AppRemoved {
                IntegrationStatus::AdminActionRequired
            } else {
                IntegrationStatus::NeedsReconnect
            };
            let reason = current.status_reason.as_ref().map(|r| r.code);
            if current.status != expected || reason != Some(kind.reason()) {
                self.problems.push(format!(
                    "round {}: after {} the {label} integration is {:?} ({:?}), expected {expected:?} ({:?})",
                    self.round,
                    kind.name(),
                    current.status,
                    reason,
                    kind.reason()
                ));
            }
            for mailbox in self.mailboxes(c).await {
                let ok = if kind == Kind::SecretExpired {
                    // Not paused: retried rarely, by itself, once the operator fixed it.
                    mailbox.status == MailboxStatus::Active
                        && mailbox.next_sync_at >= now + APP_CREDENTIALS_RETRY_SECS - 120
                } else {
                    mailbox.status == MailboxStatus::Paused
                };
                if !ok {
                    self.problems.push(format!(
                        "round {}: after {} mailbox {} of {label} is {:?}, next sync in {} s",
                        self.round,
                        kind.name(),
                        mailbox.address,
                        mailbox.status,
                        mailbox.next_sync_at - now
                    ));
                }
            }
        }
    }

    /// What happens at `point` of the current round: repairs due, then the round's event.
    async fn at(&mut self, point: Point) {
        let due: Vec<usize> = (0..self.outages.len())
            .filter(|&o| {
                let outage = &self.outages[o];
                !outage.repaired
                    && outage.repair_round == self.round
                    && outage.repair_point == point
            })
            .collect();
        for o in due {
            self.repair(o).await;
        }
        if self.event_points.contains(&point) {
            self.fire(point).await;
        }
    }

    /// Fires a random identity event at targets that are all working (so each integration is in
    /// at most one outage); kinds not fired yet go first.
    async fn fire(&mut self, point: Point) {
        let personal: Vec<usize> = (0..self.conns.len())
            .filter(|&c| self.conns[c].personal())
            .collect();
        let org = (0..self.conns.len())
            .find(|&c| !self.conns[c].personal())
            .unwrap();
        let healthy: Vec<bool> = self.conns.iter().map(|c| c.outage.is_none()).collect();
        let healthy_personal: Vec<usize> =
            personal.iter().copied().filter(|&c| healthy[c]).collect();
        let mut options: Vec<(Kind, Vec<usize>)> = Vec::new();
        for kind in self.kinds.clone() {
            let targets = match kind {
                Kind::PasswordChanged | Kind::ConsentRevoked if !healthy_personal.is_empty() => {
                    vec![self.rng.pick(&healthy_personal)]
                }
                Kind::MfaRequired if healthy_personal.len() == personal.len() => personal.clone(),
                Kind::AppRemoved if healthy[org] => vec![org],
                Kind::SecretExpired if healthy.iter().all(|h| *h) => {
                    (0..self.conns.len()).collect()
                }
                _ => continue,
            };
            options.push((kind, targets));
        }
        let fired = |k: &Kind| self.stats.events.contains_key(k.name());
        let unfired: Vec<&'static str> = self
            .kinds
            .iter()
            .filter(|k| !fired(k))
            .map(|k| k.name())
            .collect();
        let fresh: Vec<(Kind, Vec<usize>)> =
            options.iter().filter(|(k, _)| !fired(k)).cloned().collect();
        let (kind, targets) = if !fresh.is_empty() {
            // Half the time, kinds that need more integrations working go first while they can
            // (the secret needs all of them, MFA both personal ones), so a short run sees most
            // kinds.
            let most = if self.rng.below(2) == 0 {
                fresh.iter().map(|(_, t)| t.len()).max().unwrap()
            } else {
                fresh[self.rng.below(fresh.len() as u64) as usize].1.len()
            };
            let widest: Vec<&(Kind, Vec<usize>)> =
                fresh.iter().filter(|(_, t)| t.len() == most).collect();
            widest[self.rng.below(widest.len() as u64) as usize].clone()
        } else if unfired.is_empty() && !options.is_empty() {
            options[self.rng.below(options.len() as u64) as usize].clone()
        } else {
            // A kind not seen yet waits for its targets to be repaired.
            eprintln!(
                "round {}: no identity event ({} waits for repairs)",
                self.round,
                unfired.join(", ")
            );
            return;
        };
        // Requests so far are not this outage's.
        self.account().await;
        let user = |c: usize| self.conns[c].user.clone().unwrap_or_default();
        let body = match kind {
            Kind::PasswordChanged => json!({"type": kind.name(), "user": user(targets[0])}),
            Kind::ConsentRevoked => {
                json!({"type": kind.name(), "user": user(targets[0]), "app": self.client_id})
            }
            Kind::MfaRequired => json!({"type": kind.name(), "tenant": self.tenant_b}),
            Kind::AppRemoved => {
                json!({"type": kind.name(), "tenant": self.world.tenant_id, "app": self.client_id})
            }
            Kind::SecretExpired => json!({"type": kind.name(), "app": self.client_id}),
        };
        self.world.sim_post("/events", &body).await.unwrap();
        // The event shows at the next token use: move Microsoft's clock past the access tokens.
        self.world
            .sim_post("/clock/advance", &json!({"secs": TOKEN_LIFETIME_PLUS}))
            .await
            .unwrap();
        // Every function keeps its sandbox and cached tokens across the jump, the callback too:
        // a consent through it must not trust a token cached before the event.
        let repair_round = self.round + 1 + self.rng.below(self.max_outage_rounds) as usize;
        let repair_point = self.rng.pick(&Point::ALL);
        let o = self.outages.len();
        self.outages.push(Outage {
            kind,
            conns: targets.clone(),
            round: self.round,
            point,
            delivered_mark: self.delivered.len(),
            ticks_before: self.stats.ticks,
            full_ticks: 0,
            detect_tokens: 0,
            detect_graph: 0,
            repair_round,
            repair_point,
            repaired: false,
        });
        for &c in &targets {
            self.conns[c].outage = Some(o);
        }
        *self.stats.events.entry(kind.name()).or_default() += 1;
        eprintln!(
            "round {}: {} at {} for {}; repair in round {repair_round} at {}",
            self.round,
            kind.name(),
            point.name(),
            targets
                .iter()
                .map(|&c| self.conns[c].label)
                .collect::<Vec<_>>()
                .join("+"),
            repair_point.name()
        );
    }

    /// Repairs an outage the way a person would, then checks the integrations are connected.
    async fn repair(&mut self, o: usize) {
        // Requests until now are charged to the outage; the repair's own (code exchange,
        // mailbox probes) are not.
        self.account().await;
        let kind = self.outages[o].kind;
        let conns = self.outages[o].conns.clone();
        eprintln!(
            "round {}: repairing {} (from round {} at {}; {} token / {} Graph requests until seen)",
            self.round,
            kind.name(),
            self.outages[o].round,
            self.outages[o].point.name(),
            self.outages[o].detect_tokens,
            self.outages[o].detect_graph
        );
        match kind {
            Kind::PasswordChanged | Kind::MfaRequired | Kind::ConsentRevoked => {
                for &c in &conns {
                    self.reconnect_personal(c).await;
                }
            }
            Kind::AppRemoved => self.consent_again(conns[0]).await,
            Kind::SecretExpired => {}
        }
        self.seen_seq = self.world.last_request_seq().await.unwrap();
        self.outages[o].repaired = true;
        for &c in &conns {
            self.conns[c].outage = None;
        }
        self.stats.repairs += 1;
        if kind == Kind::SecretExpired {
            self.rotate_secret(&conns).await;
            self.seen_seq = self.world.last_request_seq().await.unwrap();
        }
        for &c in &conns {
            self.check_connected(c, &format!("after repairing {}", kind.name()))
                .await;
        }
    }

    async fn check_connected(&mut self, c: usize, when: &str) -> bool {
        let label = self.conns[c].label;
        let current = self.integration(c).await;
        let mut ok = true;
        if current.status != IntegrationStatus::Connected {
            ok = false;
            self.problems.push(format!(
                "round {}: {when} the {label} integration is {:?} ({:?})",
                self.round,
                current.status,
                current.status_reason.map(|r| r.code)
            ));
        }
        for mailbox in self.mailboxes(c).await {
            if mailbox.status != MailboxStatus::Active {
                ok = false;
                self.problems.push(format!(
                    "round {}: {when} mailbox {} of {label} is {:?} ({:?})",
                    self.round,
                    mailbox.address,
                    mailbox.status,
                    mailbox.status_reason.map(|r| r.code)
                ));
            }
        }
        ok
    }

    /// The user signs in again for the same integration: the start URL from the library (as the
    /// management API returns it), Microsoft's redirect to the REAL `oauth-callback` binary.
    async fn reconnect_personal(&mut self, c: usize) {
        let conn = &self.conns[c];
        let interactive = json!({"signin_user": conn.user.clone().unwrap(), "user_consent": "approve", "admin_consent": "approve"});
        let options = StartOptions::Personal {
            shared_mailboxes: conn.shared.clone(),
            login_hint: None,
        };
        let what = format!("reconnecting {}", conn.label);
        self.reconnect(c, interactive, options, &what).await;
    }

    /// The administrator grants admin consent again (the REAL `oauth-callback` binary).
    async fn consent_again(&mut self, c: usize) {
        let interactive = json!({"admin_consent": "approve", "user_consent": "approve", "admin_tenant": self.world.tenant_id});
        let options = StartOptions::Organization {
            mailboxes: self.conns[c].addresses.clone(),
            tenant: None,
        };
        self.reconnect(c, interactive, options, "admin consent again")
            .await;
    }

    /// Starts a reconnect of connection `c` as the management API does and completes it in
    /// the simulator with `interactive` answers; a page other than 200 is a problem.
    async fn reconnect(&mut self, c: usize, interactive: Value, options: StartOptions, what: &str) {
        self.world
            .sim_put("/interactive", &interactive)
            .await
            .unwrap();
        let conn = &self.conns[c];
        let flow = start(
            &self.services,
            &caller(&conn.workspace),
            options,
            Some(&conn.integration.integration_id),
            false,
            Self::now(),
        )
        .await
        .expect("start a reconnect");
        let (status, page) = self
            .world
            .complete_sign_in(flow.url.as_str(), None)
            .await
            .unwrap();
        if status != 200 {
            self.problems.push(format!(
                "round {}: {what} failed ({status}): {}",
                self.round,
                page.chars().take(400).collect::<String>()
            ));
        }
    }

    /// The operator adds a new client secret to the app and puts it in the app-credentials
    /// secret. The mailboxes wait 15 minutes before their next try, so "sync now" stands in for
    /// that wait. The running (warm) functions must then work with the new secret.
    async fn rotate_secret(&mut self, conns: &[usize]) {
        let secret = format!("sim~{}", uuid::Uuid::new_v4().simple());
        self.world
            .sim_post(
                &format!("/apps/{}/secrets", self.client_id),
                &json!({"value": secret}),
            )
            .await
            .unwrap();
        aws_sdk_secretsmanager::Client::new(self.world.stack.sdk_config())
            .put_secret_value()
            .secret_id(&self.world.resources.app_credentials_secret_id)
            .secret_string(json!({"client_secret": secret}).to_string())
            .send()
            .await
            .unwrap();
        self.services = self.world.services().await.unwrap();
        self.sync_now(conns).await;
        self.drain(true).await;
        let mut stale = Vec::new();
        for &c in conns {
            let current = self.integration(c).await;
            if current.status != IntegrationStatus::Connected {
                stale.push(format!(
                    "{} {:?} ({:?})",
                    self.conns[c].label,
                    current.status,
                    current.status_reason.map(|r| r.code)
                ));
            }
        }
        if !stale.is_empty() {
            self.problems.push(format!(
                "round {}: after the operator put the new client secret, the running mailbox-sync still fails: {}",
                self.round,
                stale.join(", ")
            ));
            // Carry on as after a cold start of every function, to check everything else.
            self.stats.cold_starts += 1;
            for function in [&self.sync, &self.rules, &self.callback] {
                function.restart().await.expect("cold start");
            }
            self.sync_now(conns).await;
            self.drain(true).await;
        }
    }

    /// "Sync now" for every mailbox of `conns`.
    async fn sync_now(&self, conns: &[usize]) {
        let keys = conns
            .iter()
            .flat_map(|&c| self.conns[c].mailboxes.iter())
            .map(Mailbox::key);
        self.world.enqueue_sync(keys).await.unwrap();
    }

    /// `count` messages to every mailbox: invoices (categorize + move), urgent (forward), both,
    /// or neither.
    async fn deliver(&mut self, count: usize) {
        for c in 0..self.conns.len() {
            for address in self.conns[c].addresses.clone() {
                let expected = deliver_mix(&self.world, &address, self.serial, count)
                    .await
                    .unwrap();
                self.serial += count;
                for e in expected {
                    self.delivered.push(Delivered {
                        conn: c,
                        mailbox: address.clone(),
                        id: e.id,
                        invoice: e.invoice,
                        urgent: e.urgent,
                        round: self.round,
                    });
                }
            }
        }
    }

    /// Audit records by message id, over every mailbox.
    async fn audits(&self) -> HashMap<String, Vec<AuditRecord>> {
        let mut out: HashMap<String, Vec<AuditRecord>> = HashMap::new();
        for conn in &self.conns {
            for mailbox in &conn.mailboxes {
                for record in self
                    .store
                    .list_audit(&conn.integration.workspace_id, &mailbox.mailbox_id, 100_000)
                    .await
                    .unwrap()
                {
                    out.entry(record.message_id.clone())
                        .or_default()
                        .push(record);
                }
            }
        }
        out
    }

    /// End of a round: working integrations are connected and caught up (everything delivered
    /// to them evaluated); broken ones have not touched mail that came after their break.
    async fn check_round(&mut self, reported: &mut HashSet<String>) {
        let audits = self.audits().await;
        for i in 0..self.delivered.len() {
            let d = &self.delivered[i];
            if reported.contains(&d.id) {
                continue;
            }
            let conn = &self.conns[d.conn];
            let problem = match conn.outage {
                None if !audits.contains_key(&d.id) => Some(format!(
                    "round {}: message {} to {} ({}, round {}) not evaluated by the end of the round",
                    self.round, d.id, d.mailbox, conn.label, d.round
                )),
                Some(o) if i >= self.outages[o].delivered_mark && audits.contains_key(&d.id) => {
                    Some(format!(
                        "round {}: message {} to {} evaluated while {} is broken ({})",
                        self.round,
                        d.id,
                        d.mailbox,
                        conn.label,
                        self.outages[o].kind.name()
                    ))
                }
                _ => None,
            };
            if let Some(problem) = problem {
                reported.insert(d.id.clone());
                self.problems.push(problem);
            }
        }
        for c in 0..self.conns.len() {
            if self.conns[c].outage.is_none() {
                self.check_connected(c, "at the end of the round").await;
            }
        }
    }
}

#[tokio::test]
async fn identity_events_at_random_times_keep_statuses_right_and_reconnect_resumes() {
    let started = Instant::now();
    let rounds = env_num("CHAOS_ROUNDS", 4.0) as usize;
    let per_round = (env_num("CHAOS_MESSAGES", 2.0) as usize).max(1);
    let max_outage_rounds = (env_num("CHAOS_OUTAGE_ROUNDS", 1.0) as u64).max(1);
    let kinds = subset("CHAOS_EVENTS", &Kind::ALL, Kind::name);
    let points = subset("CHAOS_POINTS", &Point::ALL, Point::name);
    let seed = e2e::chaos::seed();
    eprintln!(
        "identity chaos: seed {seed}, {rounds} rounds of {per_round} per mailbox, events {:?}, points {:?}",
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        points.iter().map(|p| p.name()).collect::<Vec<_>>()
    );

    let world = World::new("identity-chaos").await.expect("world");
    let services = world.services().await.expect("services");
    let store = world.store();
    // The organization-wide integration's organization (the world's tenant) ...
    let mut team = Vec::new();
    for n in 0..2 {
        team.push(world.add_user(&format!("team{n}"), "shared").await.unwrap());
    }
    // ... and the personal users' organization.
    let tenant_b = world
        .sim_post("/tenants", &json!({"domain": "northwind.com"}))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut northwind = Vec::new();
    for (local, kind) in [("alice", "user"), ("support", "shared"), ("bob", "user")] {
        let upn = format!("{local}@northwind.com");
        world
            .sim_post(
                "/users",
                &json!({"tenant": tenant_b, "upn": upn, "kind": kind, "mailbox": true}),
            )
            .await
            .unwrap();
        northwind.push(upn);
    }
    let (alice, support, bob) = (
        northwind[0].clone(),
        northwind[1].clone(),
        northwind[2].clone(),
    );
    world
        .sim_post(
            &format!("/users/{alice}/shared-access"),
            &json!({"mailbox": support}),
        )
        .await
        .unwrap();

    // Mail from before the connections: never acted on.
    let mut history = Vec::new();
    for address in team.iter().chain(&northwind) {
        let ids = world
            .deliver(
                address,
                vec![
                    json!({"from": "Old <old@example.com>", "subject": "Urgent invoice from before", "body_text": "old"}),
                ],
            )
            .await
            .unwrap();
        history.push(Delivered {
            conn: usize::MAX,
            mailbox: address.clone(),
            id: ids[0].clone(),
            invoice: false,
            urgent: false,
            round: 0,
        });
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let team_refs: Vec<&str> = team.iter().map(String::as_str).collect();
    let org = world
        .connect_organization(&services, "chaos-org", &team_refs)
        .await
        .expect("connect organization-wide");
    let alice_int = world
        .connect_personal(&services, "chaos-alice", &alice, &[&support], None)
        .await
        .expect("connect alice");
    let bob_int = world
        .connect_personal(&services, "chaos-bob", &bob, &[], None)
        .await
        .expect("connect bob");
    let mut conns = Vec::new();
    for (label, workspace, integration, user, shared) in [
        ("org", "chaos-org", org, None, vec![]),
        (
            "alice",
            "chaos-alice",
            alice_int,
            Some(alice.clone()),
            vec![support.clone()],
        ),
        ("bob", "chaos-bob", bob_int, Some(bob.clone()), vec![]),
    ] {
        world
            .put_rules(&integration, &invoice_and_urgent_rules(FORWARD_TO))
            .await
            .unwrap();
        let mailboxes = store
            .list_mailboxes(&integration.workspace_id, Some(&integration.integration_id))
            .await
            .unwrap();
        for mailbox in &mailboxes {
            assert_eq!(mailbox.status, MailboxStatus::Active, "{}", mailbox.address);
        }
        conns.push(Conn {
            label,
            workspace: workspace.into(),
            integration,
            user,
            shared,
            addresses: mailboxes.iter().map(|m| m.address.to_lowercase()).collect(),
            mailboxes,
            outage: None,
        });
    }
    assert_eq!(
        conns.iter().map(|c| c.mailboxes.len()).collect::<Vec<_>>(),
        [2, 2, 1]
    );

    let dispatcher = world.start_function("sync-dispatcher").await.unwrap();
    let sync = world
        .start_function_with(
            "mailbox-sync",
            &[("SYNC_LEASE_SECONDS", "2"), ("SYNC_INTERVAL_SECONDS", "1")],
        )
        .await
        .unwrap();
    let rules_fn = world
        .start_function_with("rule-eval", &[("RULE_EVAL_CLAIM_LEASE_SECS", "2")])
        .await
        .unwrap();
    let callback = world.start_function("oauth-callback").await.unwrap();
    let sdk = world.stack.sdk_config().clone();
    let sync_source = SqsEventSource::for_function(&sdk, &world.resources, "mailbox-sync").unwrap();
    let rules_source = SqsEventSource::for_function(&sdk, &world.resources, "rule-eval").unwrap();
    let seen_seq = world.last_request_seq().await.unwrap();
    let client_id = world.client_id.clone();
    let mut chaos = Chaos {
        world,
        services,
        store,
        dispatcher,
        sync,
        rules: rules_fn,
        callback,
        sync_source,
        rules_source,
        rng: Rng(seed),
        conns,
        outages: Vec::new(),
        delivered: Vec::new(),
        history,
        problems: Vec::new(),
        stats: Stats::default(),
        seen_seq,
        last_sync_end: Instant::now(),
        tenant_b,
        round: 0,
        serial: 0,
        deadline: Instant::now() + Duration::from_secs(120 + 40 * rounds as u64),
        kinds,
        event_points: Vec::new(),
        max_outage_rounds,
        client_id,
        per_delivery: per_round.div_ceil(2),
    };

    // First sync through the scheduled dispatcher: every mailbox starts from "now".
    chaos.full_tick(None).await;

    let mut reported = HashSet::new();
    for round in 0..rounds {
        chaos.round = round;
        // One event, sometimes a second one elsewhere in the round.
        chaos.event_points.clear();
        if !points.is_empty() {
            let first = chaos.rng.pick(&points);
            chaos.event_points.push(first);
            let second = chaos.rng.pick(&points);
            if second != first && chaos.rng.below(2) == 0 {
                chaos.event_points.push(second);
            }
        }
        chaos.at(Point::BeforeDelivery).await;
        chaos.deliver(per_round.div_ceil(2)).await;
        chaos.full_tick(Some(Point::BetweenSyncAndRules)).await;
        chaos.at(Point::BetweenTicks).await;
        if per_round / 2 > 0 {
            chaos.deliver(per_round / 2).await;
        }
        chaos.full_tick(None).await;
        // One more when a break was just seen: it must stay quiet.
        if chaos
            .outages
            .iter()
            .any(|o| !o.repaired && o.full_ticks == 1)
        {
            chaos.full_tick(None).await;
        }
        chaos.check_round(&mut reported).await;
        eprintln!(
            "round {round}: {:.1}s, delivered {}, broken: {}",
            started.elapsed().as_secs_f64(),
            chaos.delivered.len(),
            chaos
                .conns
                .iter()
                .filter(|c| c.outage.is_some())
                .map(|c| c.label)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Repair what is still broken, then catch up.
    chaos.round = rounds;
    chaos.event_points.clear();
    for o in 0..chaos.outages.len() {
        if !chaos.outages[o].repaired {
            chaos.repair(o).await;
        }
    }
    let wanted: HashSet<String> = chaos.delivered.iter().map(|d| d.id.clone()).collect();
    let mut audits = HashMap::new();
    for _ in 0..4 {
        chaos.full_tick(None).await;
        audits = chaos.audits().await;
        if wanted.iter().all(|id| audits.contains_key(id)) || Instant::now() > chaos.deadline {
            break;
        }
    }

    // Check against the audit and the simulator's own record.
    let mut lost = Vec::new();
    let mut duplicates = Vec::new();
    for d in &chaos.delivered {
        let records = audits.get(&d.id).map(Vec::as_slice).unwrap_or_default();
        match records {
            [] => lost.push(format!(
                "{} to {} (round {}) not evaluated",
                d.id, d.mailbox, d.round
            )),
            [record] => {
                if let Some(note) = record
                    .actions
                    .iter()
                    .find(|a| a.action_key == EVALUATION_NOTE_KEY && a.status == "skipped")
                {
                    lost.push(format!(
                        "{} to {} (round {}) skipped, never evaluated: {}",
                        d.id,
                        d.mailbox,
                        d.round,
                        note.error.as_deref().unwrap_or_default()
                    ));
                }
            }
            more => duplicates.push(format!("{} evaluated {} times", d.id, more.len())),
        }
    }
    for h in &chaos.history {
        if audits.contains_key(&h.id) {
            duplicates.push(format!(
                "{} in {} from before the connection was evaluated",
                h.id, h.mailbox
            ));
        }
    }
    let all_ids: HashSet<&str> = chaos
        .delivered
        .iter()
        .chain(&chaos.history)
        .map(|d| d.id.as_str())
        .collect();
    for id in audits.keys() {
        if !all_ids.contains(id.as_str()) {
            duplicates.push(format!("audit record for a message never delivered: {id}"));
        }
    }
    let addresses: Vec<String> = chaos
        .conns
        .iter()
        .flat_map(|c| c.addresses.clone())
        .collect();
    let expected: Vec<Expected> = chaos
        .delivered
        .iter()
        .chain(&chaos.history)
        .map(|d| Expected {
            mailbox: d.mailbox.to_lowercase(),
            id: d.id.clone(),
            invoice: d.invoice,
            urgent: d.urgent,
            acted_on: d.conn != usize::MAX,
        })
        .collect();
    let mut verdict = Verdict { lost, duplicates };
    verdict
        .check_simulator(&chaos.world, &addresses, &expected)
        .await
        .unwrap();
    let Verdict {
        mut lost,
        duplicates,
    } = verdict;
    for c in 0..chaos.conns.len() {
        chaos.check_connected(c, "at the end").await;
    }
    lost.sort();
    lost.dedup();
    let stats = &chaos.stats;
    println!(
        "identity chaos: seed {seed}, messages {}, identity events {} {:?}, repairs {}, ticks {}, token requests {} (from broken integrations {}, at most {} in one tick), Graph requests {} (broken {}), cold starts {}, problems {}, duplicates {}, lost {} ({:.1}s)",
        chaos.delivered.len(),
        stats.events.values().sum::<usize>(),
        stats.events,
        stats.repairs,
        stats.ticks,
        stats.token_requests,
        stats.broken_tokens,
        stats.max_broken_tokens_per_tick,
        stats.graph_requests,
        stats.broken_graph,
        stats.cold_starts,
        chaos.problems.len(),
        duplicates.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        chaos.problems.is_empty() && duplicates.is_empty() && lost.is_empty(),
        "seed {seed}\nproblems: {:#?}\nduplicates: {duplicates:#?}\nlost: {lost:#?}",
        chaos.problems
    );
}
