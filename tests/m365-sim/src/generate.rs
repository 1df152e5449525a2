//! Seeded generator of realistic mail: invoices, support requests, newsletters, VIP senders,
//! meeting requests, automatic replies, non-delivery reports and internal chatter.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::OffsetDateTime;

use crate::control::DeliverSpec;

const VENDORS: &[(&str, &str)] = &[
    ("Northwind Traders Billing", "billing@northwindtraders.com"),
    ("Fabrikam Accounts Receivable", "ar@fabrikam.com"),
    ("Tailspin Toys Invoicing", "invoices@tailspintoys.com"),
    ("Litware Finance", "finance@litwareinc.com"),
];
const CUSTOMERS: &[(&str, &str)] = &[
    ("Maria Garcia", "maria.garcia@adventure-works.com"),
    ("Kenji Watanabe", "kenji.w@wideworldimporters.com"),
    ("Priya Natarajan", "priya@proseware.com"),
    ("Tomasz Nowak", "t.nowak@lucernepublishing.com"),
    ("Aisha Bello", "aisha.bello@margiestravel.com"),
];
const VIPS: &[(&str, &str)] = &[
    (
        "Elena Rossi (CEO, Contoso Pharma)",
        "elena.rossi@contosopharma.com",
    ),
    ("James Whitaker", "jwhitaker@woodgrovebank.com"),
];
const NEWSLETTERS: &[(&str, &str, &str)] = &[
    (
        "The Weekly Cloud Digest",
        "digest@cloudweekly.news",
        "Your weekly digest: 12 stories on serverless",
    ),
    (
        "Product Hunt Daily",
        "hello@producthunt-mail.example",
        "Today's top launches",
    ),
    (
        "Contoso Marketing",
        "news@contoso-marketing.com",
        "Spring offers: 20% off annual plans",
    ),
    (
        "LinkedIn",
        "messages-noreply@linkedin.example",
        "You appeared in 9 searches this week",
    ),
];
const SUPPORT_TOPICS: &[&str] = &[
    "Cannot log in after password reset",
    "Export to CSV fails with error 500",
    "Billing address change",
    "Feature request: dark mode",
    "Integration stopped syncing",
    "Urgent: production outage",
];
const INTERNAL: &[&str] = &[
    "Lunch on Thursday?",
    "Q3 planning notes",
    "Re: Design review feedback",
    "Reminder: expense reports due Friday",
    "Team offsite agenda",
];

fn pick<'a, T>(rng: &mut StdRng, v: &'a [T]) -> &'a T {
    v.choose(rng).expect("non-empty")
}

/// Generates `count` messages for a mailbox owned by `owner` (address) in `domain`.
pub fn generate(
    seed: u64,
    count: usize,
    owner_name: &str,
    owner: &str,
    domain: &str,
    now: OffsetDateTime,
) -> Vec<DeliverSpec> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let age_secs: i64 = rng.random_range(60..30 * 24 * 3600);
        let received = now - time::Duration::seconds(age_secs);
        let roll: u32 = rng.random_range(0..100);
        let mut s = DeliverSpec {
            to: Some(json!([{"name": owner_name, "address": owner}])),
            received: Some(crate::util::fmt_time(received)),
            is_read: Some(rng.random_bool(0.4)),
            ..Default::default()
        };
        match roll {
            0..=19 => {
                let (n, a) = *pick(&mut rng, VENDORS);
                let inv = rng.random_range(10000..99999);
                let amount = rng.random_range(120..25000) as f64 + 0.5;
                s.from = Some(json!({"name": n, "address": a}));
                s.subject = Some(format!(
                    "Invoice INV-{inv} from {}",
                    n.split(' ').next().unwrap_or(n)
                ));
                s.body_html = Some(format!(
                    "<html><body><p>Dear customer,</p><p>Please find attached invoice <b>INV-{inv}</b> for <b>${amount:.2}</b>, due in 30 days.</p><p>Payment reference: PO-{}</p><p>Kind regards,<br>{n}</p></body></html>",
                    rng.random_range(1000..9999)
                ));
                s.has_attachments = Some(true);
                s.size = Some(rng.random_range(80_000..900_000));
            }
            20..=39 => {
                let (n, a) = *pick(&mut rng, CUSTOMERS);
                let topic = *pick(&mut rng, SUPPORT_TOPICS);
                let ticket = rng.random_range(1000..9999);
                s.from = Some(json!({"name": n, "address": a}));
                s.subject = Some(format!("[Ticket #{ticket}] {topic}"));
                s.body_text = Some(format!(
                    "Hello support team,\n\n{topic}. This started this morning and affects our whole team. Could you please take a look?\n\nThanks,\n{n}"
                ));
                if topic.starts_with("Urgent") {
                    s.importance = Some("high".into());
                }
            }
            40..=59 => {
                let (n, a, subj) = *pick(&mut rng, NEWSLETTERS);
                s.from = Some(json!({"name": n, "address": a}));
                s.subject = Some(subj.to_string());
                s.body_html = Some(format!(
                    "<html><body><h1>{subj}</h1><p>Read this week's highlights.</p><p><a href=\"https://example.com/unsubscribe\">Unsubscribe</a></p></body></html>"
                ));
                s.headers = Some(json!({
                    "List-Unsubscribe": format!("<mailto:unsubscribe@{}>", a.split('@').nth(1).unwrap_or("example.com")),
                    "Precedence": "bulk",
                }));
                s.inference = Some("other".into());
            }
            60..=69 => {
                let (n, a) = *pick(&mut rng, VIPS);
                s.from = Some(json!({"name": n, "address": a}));
                s.subject = Some(
                    (*pick(
                        &mut rng,
                        &[
                            "Contract renewal - need your input today",
                            "Re: Partnership proposal",
                            "Board meeting follow-up",
                        ],
                    ))
                    .to_string(),
                );
                s.body_text = Some(format!(
                    "Hi,\n\nCan we discuss this before end of day?\n\nBest,\n{n}"
                ));
                s.importance = Some("high".into());
            }
            70..=77 => {
                let colleague = format!("colleague{}@{domain}", rng.random_range(1..20));
                s.from = Some(json!({"name": "Colleague", "address": colleague}));
                let topic = *pick(
                    &mut rng,
                    &[
                        "Project sync",
                        "Quarterly review",
                        "1:1",
                        "Customer onboarding call",
                    ],
                );
                s.subject = Some(format!("Invitation: {topic}"));
                s.body_text = Some("You have been invited to a meeting.".into());
                s.kind = Some("meeting_request".into());
            }
            78..=83 => {
                let (n, a) = *pick(&mut rng, CUSTOMERS);
                s.from = Some(json!({"name": n, "address": a}));
                s.subject = Some("Automatic reply: Your request".into());
                s.body_text = Some(format!("I am out of the office until next Monday.\n\n{n}"));
                s.kind = Some("automatic_reply".into());
            }
            84..=87 => {
                s.kind = Some("ndr".into());
                s.subject = Some("Undeliverable: Quarterly report".into());
                s.body_html = Some("<html><body><p>Delivery has failed to these recipients or groups:</p><p>nobody@unknown-domain.example</p></body></html>".into());
            }
            _ => {
                let colleague = format!("colleague{}@{domain}", rng.random_range(1..20));
                s.from =
                    Some(json!({"name": format!("Colleague {}", i % 20), "address": colleague}));
                s.subject = Some((*pick(&mut rng, INTERNAL)).to_string());
                s.body_text = Some("See you there.".into());
            }
        }
        out.push(s);
    }
    out
}
