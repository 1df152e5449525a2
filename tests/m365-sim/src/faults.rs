//! Injectable faults (seeded, deterministic) and Outlook-style throttling per app per mailbox.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Sim;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with Retry-After and a `TooManyRequests` (or `code`) body.
    Throttle,
    /// 503 with an optional Retry-After.
    Unavailable,
    /// 504 Gateway Timeout.
    GatewayTimeout,
    /// Waits `delay_ms` and then serves the request normally.
    Delay,
    /// Closes the connection without any response.
    Drop,
    /// 200 with a truncated (malformed) JSON body.
    Malformed,
}

impl FaultKind {
    /// The snake_case name used in the control API and the request log.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::Unavailable => "unavailable",
            FaultKind::GatewayTimeout => "gateway_timeout",
            FaultKind::Delay => "delay",
            FaultKind::Drop => "drop",
            FaultKind::Malformed => "malformed",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(default)]
    pub id: String,
    pub kind: FaultKind,
    /// Probability in [0,1] that a matching request gets the fault.
    #[serde(default)]
    pub rate: Option<f64>,
    /// How many matching requests get the fault (then the rule is spent). With `rate` too, both apply.
    #[serde(default)]
    pub count: Option<u32>,
    /// Mailbox id or UPN (exact, case-insensitive).
    #[serde(default)]
    pub mailbox: Option<String>,
    /// Substring of the request path (after the host, e.g. `/messages/delta`, `/oauth2/v2.0/token`).
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    /// `graph` (default), `identity` or `any`.
    #[serde(default)]
    pub target: Option<String>,
    /// Retry-After header value (429 default "1"; 503 none unless set). Fractional allowed.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Error code in the body (429 default `TooManyRequests`; e.g. `ApplicationThrottled`).
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Whether batch sub-requests can get this fault (default true; drop/malformed never apply
    /// to sub-requests).
    #[serde(default)]
    pub in_batch: Option<bool>,
    #[serde(default)]
    pub fired: u64,
}

pub struct FaultCtx<'a> {
    pub target: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub mailbox_ids: &'a [String],
    pub batched: bool,
}

pub struct Faults {
    pub rules: Vec<FaultRule>,
    pub rng: StdRng,
    next_id: u64,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Self {
            rules: vec![],
            rng: StdRng::seed_from_u64(seed),
            next_id: 1,
        }
    }

    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub fn add(&mut self, mut r: FaultRule) -> String {
        if r.id.is_empty() {
            r.id = format!("fault-{}", self.next_id);
            self.next_id += 1;
        }
        let id = r.id.clone();
        self.rules.push(r);
        id
    }

    /// Picks the first matching rule that fires for this request.
    pub fn pick(&mut self, ctx: &FaultCtx<'_>) -> Option<FaultRule> {
        for r in self.rules.iter_mut() {
            let target = r.target.as_deref().unwrap_or("graph");
            if target != "any" && target != ctx.target {
                continue;
            }
            if ctx.batched
                && (r.in_batch == Some(false)
                    || matches!(r.kind, FaultKind::Drop | FaultKind::Malformed))
            {
                continue;
            }
            if let Some(m) = &r.method
                && !m.eq_ignore_ascii_case(ctx.method)
            {
                continue;
            }
            if let Some(p) = &r.path_contains
                && !ctx
                    .path
                    .to_ascii_lowercase()
                    .contains(&p.to_ascii_lowercase())
            {
                continue;
            }
            if let Some(mb) = &r.mailbox
                && !ctx.mailbox_ids.iter().any(|x| x.eq_ignore_ascii_case(mb))
            {
                continue;
            }
            if r.count == Some(0) {
                continue;
            }
            if let Some(rate) = r.rate {
                let roll: f64 = self.rng.random();
                if roll >= rate {
                    continue;
                }
            }
            if let Some(c) = r.count.as_mut() {
                *c -= 1;
            }
            r.fired += 1;
            return Some(r.clone());
        }
        None
    }
}

/// Decrements the in-flight counter of an (app, mailbox) pair when the request ends.
pub struct InflightGuard {
    sim: Arc<Sim>,
    key: (String, String),
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut w = self.sim.world();
        if let Some(u) = w.usage.get_mut(&self.key) {
            u.inflight = u.inflight.saturating_sub(1);
        }
    }
}

pub enum Throttled {
    /// Over the request budget: Retry-After seconds.
    Budget(u64),
    /// Over the concurrency limit: Retry-After value.
    Concurrency(String),
}

/// Checks and records one request of `app` on `mailbox`.
pub fn admit(sim: &Arc<Sim>, app: &str, mailbox: &str) -> Result<Option<InflightGuard>, Throttled> {
    let mut w = sim.world();
    if !w.throttle.enabled {
        return Ok(None);
    }
    let now: OffsetDateTime = w.now();
    let cfg = w.throttle.clone();
    let key = (app.to_string(), mailbox.to_string());
    let u = w.usage.entry(key.clone()).or_default();
    let window = time::Duration::seconds(cfg.window_secs as i64);
    while u.times.front().is_some_and(|t| *t + window <= now) {
        u.times.pop_front();
    }
    if u.inflight >= cfg.concurrency {
        return Err(Throttled::Concurrency(cfg.concurrency_retry_after.clone()));
    }
    if u.times.len() as u64 >= cfg.requests_per_window as u64 {
        let oldest = *u.times.front().expect("non-empty");
        let wait = (oldest + window - now).whole_seconds().max(1) as u64;
        return Err(Throttled::Budget(wait));
    }
    u.times.push_back(now);
    u.inflight += 1;
    drop(w);
    Ok(Some(InflightGuard {
        sim: sim.clone(),
        key,
    }))
}
