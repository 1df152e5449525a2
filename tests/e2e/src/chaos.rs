//! Shared by the reliability suites (`tests/reliability.rs`, `tests/identity_chaos.rs`): the
//! seeded generator, their environment knobs, the rules they install, and the end check of every
//! delivered message against the simulator's own record.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::World;

/// A number from the environment (a suite's knob), or `default`.
pub fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SOAK_SEED`, or one from the clock; suites print it so a run can be replayed.
pub fn seed() -> u64 {
    std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

/// A small xorshift generator: what happens when varies per run, and the seed is printed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Invoices are categorized and moved to `Finance/Invoices`; urgent mail is forwarded to
/// `forward_to`. What the end check expects.
pub fn invoice_and_urgent_rules(forward_to: &str) -> Value {
    json!({"version": 1, "rules": [
        {
            "id": "invoices", "name": "Invoices", "order": 10,
            "conditions": [{"subjectContains": ["invoice"]}],
            "actions": [
                {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
                {"moveToFolder": {"path": "Finance/Invoices"}}
            ]
        },
        {
            "id": "urgent", "name": "Urgent", "order": 20,
            "conditions": [{"subjectContains": ["urgent"]}],
            "actions": [{"forwardTo": {"recipients": [forward_to], "comment": "Urgent"}}]
        }
    ]})
}

/// A delivered message and what [`invoice_and_urgent_rules`] must have done with it.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Lower-case address.
    pub mailbox: String,
    pub id: String,
    pub invoice: bool,
    pub urgent: bool,
    /// False for mail from before the connection: it must stay untouched.
    pub acted_on: bool,
}

/// Delivers `count` messages to `address`, numbered from `serial + 1`: in turn an invoice
/// (categorize + move), urgent mail (forward), an urgent invoice (both), and mail no rule
/// matches. Returns what each must end as.
pub async fn deliver_mix(
    world: &World,
    address: &str,
    serial: usize,
    count: usize,
) -> anyhow::Result<Vec<Expected>> {
    let mut batch = Vec::new();
    let mut kinds = Vec::new();
    for serial in serial + 1..=serial + count {
        let (subject, invoice, urgent) = match serial % 4 {
            0 => (format!("Invoice {serial}"), true, false),
            1 => (format!("URGENT: server {serial} down"), false, true),
            2 => (format!("Urgent invoice {serial}"), true, true),
            _ => (format!("Lunch {serial}?"), false, false),
        };
        batch.push(json!({"from": "Someone <someone@example.com>", "subject": subject, "body_text": "hello"}));
        kinds.push((invoice, urgent));
    }
    let ids = world.deliver(address, batch).await?;
    anyhow::ensure!(ids.len() == count, "delivered {} of {count}", ids.len());
    Ok(ids
        .into_iter()
        .zip(kinds)
        .map(|(id, (invoice, urgent))| Expected {
            mailbox: address.to_lowercase(),
            id,
            invoice,
            urgent,
            acted_on: true,
        })
        .collect())
}

/// What the end check found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub lost: Vec<String>,
    pub duplicates: Vec<String>,
}

impl Verdict {
    /// Compares the simulator's record of `addresses` (folder, categories, sent mail) with what
    /// should have happened to `expected`, and checks both dead-letter queues are empty.
    pub async fn check_simulator(
        &mut self,
        world: &World,
        addresses: &[String],
        expected: &[Expected],
    ) -> anyhow::Result<()> {
        let mut sent_count: HashMap<String, usize> = HashMap::new();
        for address in addresses {
            let messages = world
                .sim_get(&format!("/mailboxes/{address}/messages"))
                .await?;
            let by_id: HashMap<&str, &Value> = messages["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| Some((m["immutable_id"].as_str()?, m)))
                .collect();
            for d in expected.iter().filter(|d| &d.mailbox == address) {
                let Some(m) = by_id.get(d.id.as_str()) else {
                    self.lost.push(format!("{} missing from {address}", d.id));
                    continue;
                };
                let invoices = m["categories"]
                    .as_array()
                    .map(|c| c.iter().filter(|c| *c == "Invoices").count())
                    .unwrap_or(0);
                let folder = m["folder_path"].as_str().unwrap_or_default();
                if d.invoice && d.acted_on {
                    if folder != "Finance/Invoices" {
                        self.lost
                            .push(format!("{} in {folder}, not Finance/Invoices", d.id));
                    }
                    match invoices {
                        1 => {}
                        0 => self.lost.push(format!("{} not categorized", d.id)),
                        n => self
                            .duplicates
                            .push(format!("{} has the category {n} times", d.id)),
                    }
                } else if folder != "Inbox" || invoices != 0 {
                    let why = if d.acted_on {
                        "without a matching rule"
                    } else {
                        "from before the connection"
                    };
                    self.duplicates
                        .push(format!("{} acted on {why}: {m}", d.id));
                }
            }
            let sent = world.sim_get(&format!("/sent?mailbox={address}")).await?;
            for s in sent["sent"].as_array().into_iter().flatten() {
                if let Some(original) = s["original_immutable_id"].as_str() {
                    *sent_count.entry(original.to_owned()).or_default() += 1;
                }
            }
        }
        for d in expected {
            let n = sent_count.get(&d.id).copied().unwrap_or(0);
            match (d.urgent && d.acted_on, n) {
                (true, 1) | (false, 0) => {}
                (true, 0) => self.lost.push(format!("{} not forwarded", d.id)),
                (_, n) => self
                    .duplicates
                    .push(format!("{} forwarded {n} times", d.id)),
            }
        }
        let sqs = aws_sdk_sqs::Client::new(world.stack.sdk_config());
        for dlq in [
            &world.resources.sync_dlq_url,
            &world.resources.rules_dlq_url,
        ] {
            use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages as Depth;
            let out = sqs
                .get_queue_attributes()
                .queue_url(dlq)
                .attribute_names(Depth)
                .send()
                .await?;
            let n = out
                .attributes()
                .and_then(|a| a.get(&Depth))
                .cloned()
                .unwrap_or_default();
            if n != "0" {
                self.lost
                    .push(format!("{n} jobs in dead-letter queue {dlq}"));
            }
        }
        Ok(())
    }
}
