//! Bad input to the management API (reliability suite, issue #8), end to end: the REAL
//! `management-api` and `oauth-callback` binaries behind the local HTTP API, as in `api.rs`.
//!
//! A seeded generator (`FUZZ_SEED` to replay; the seed is printed) sends malformed JSON,
//! oversized bodies, wrong content types, random bytes and valid JSON of the wrong shape to every
//! endpoint that takes a body, garbage ids in every path parameter, garbage query strings, and
//! garbage to the connect pages and the OAuth callback. Every answer must be a clear 4xx (JSON
//! with the stable error code on `/api`, an HTML page elsewhere): never a 5xx, never a dropped
//! connection. Afterwards the functions still run and the table holds exactly what it held
//! before (same items, same versions: no integration, mailbox, rule set or OAuth state added or
//! changed). Counts per category and status are printed (`-- --nocapture`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use e2e::api_client::{Answer, ApiWorld};
use outlook_core::api::connect_page::SESSION_COOKIE;
use outlook_core::api::routes::{ROUTES, RouteKind};
use outlook_core::api::server::MAX_BODY_BYTES;
use serde_json::{Value, json};

// ----- a small seeded generator (the e2e crate has no `rand`) -----------------------------------

/// SplitMix64: deterministic for a seed, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A short string of ASCII, specials and non-ASCII characters.
    fn text(&mut self, max: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", " ", "-", ".", "@", "/", "\\", "\"", "'", "<", ">", "&", "=", "%", "#",
            "?", "+", ";", ":", "*", "é", "ß", "İ", "😀", "\u{0}", "\u{7}", "\u{202E}", "\u{FEFF}",
            "\n", "\t",
        ];
        let n = self.range(1, max.max(1));
        (0..n).map(|_| *self.pick(PIECES)).collect()
    }
}

fn seed() -> u64 {
    match std::env::var("FUZZ_SEED") {
        Ok(v) => {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|_| panic!("FUZZ_SEED={v} is not a number"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(8),
    }
}

// ----- the world -------------------------------------------------------------------------------

/// The ids of what exists: one organization-wide integration with one mailbox, and an
/// integration-wide rule set at version 1.
struct Ids {
    integration: String,
    mailbox: String,
    support: String,
}

async fn connected_world(name: &str) -> (ApiWorld, String, Ids) {
    let w = ApiWorld::new(name).await.expect("world");
    let token = w.token("acme");
    let support = w.world.add_user("support", "shared").await.expect("user");
    let integration = w
        .connect_organization(&token, &[support.as_str()])
        .await
        .expect("connect");
    let shown = w
        .call(
            "GET",
            &format!("/api/integrations/{integration}"),
            Some(&token),
            None,
        )
        .await;
    let mailbox = shown.json()["mailboxes"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no mailbox: {}", shown.text))
        .to_owned();
    let saved = w
        .call(
            "PUT",
            &format!("/api/integrations/{integration}/rules/all"),
            Some(&token),
            Some(&json!({"expectedVersion": 0, "rules": valid_rules()})),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    (
        w,
        token,
        Ids {
            integration,
            mailbox,
            support,
        },
    )
}

fn valid_rules() -> Value {
    json!([
        {
            "id": "invoices",
            "name": "Invoices",
            "order": 1,
            "conditions": [{"subjectContains": ["invoice"]}],
            "actions": [{"assignCategories": {"categories": ["Invoices"]}}, {"moveToFolder": {"path": "Inbox/Invoices"}}]
        }
    ])
}

/// Every item of the world's table (one table per world), keyed by `pk`/`sk`, attributes sorted.
async fn snapshot(w: &ApiWorld) -> BTreeMap<(String, String), String> {
    let dynamo = aws_sdk_dynamodb::Client::new(w.world.stack.sdk_config());
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let page = dynamo
            .scan()
            .table_name(&w.world.resources.table_name)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan the table");
        for item in page.items.unwrap_or_default() {
            let key = |name: &str| match item.get(name) {
                Some(AttributeValue::S(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            let whole = AttributeValue::M(item.clone());
            out.insert((key("pk"), key("sk")), canonical(&whole).to_string());
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return out,
        }
    }
}

/// An attribute value as JSON with maps and sets in a fixed order (the SDK's maps are hash maps).
fn canonical(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::B(b) => json!({ "B": format!("{:?}", b.as_ref()) }),
        AttributeValue::L(items) => json!({ "L": items.iter().map(canonical).collect::<Vec<_>>() }),
        AttributeValue::M(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            json!({ "M": out })
        }
        AttributeValue::Ss(set) | AttributeValue::Ns(set) => {
            let mut set = set.clone();
            set.sort();
            json!({ "SET": set })
        }
        other => json!({ "OTHER": format!("{other:?}") }),
    }
}

fn describe(items: &BTreeMap<(String, String), String>) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (pk, sk) in items.keys() {
        let kind = if pk.starts_with("WS#") {
            format!("WS/{}", sk.split('#').next().unwrap_or_default())
        } else {
            pk.split('#').next().unwrap_or_default().to_owned()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    format!("{} items {kinds:?}", items.len())
}

// ----- requests --------------------------------------------------------------------------------

/// One request to send, with what is acceptable as its answer.
struct Probe {
    category: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    cookie: Option<String>,
    /// Sends the caller's bearer token.
    auth: bool,
    body: Vec<u8>,
    expect: Expect,
}

/// What the answer must be.
#[derive(Debug, Clone)]
enum Expect {
    /// A JSON error with one of these statuses and codes.
    JsonError(&'static [u16], &'static [&'static str]),
    /// `POST /api/rules/validate` with bad rules: 200 and `valid: false` with errors.
    InvalidRulesReport,
    /// A JSON answer with one of these statuses (a 2xx only for reads).
    Json(&'static [u16]),
    /// An HTML page with one of these statuses.
    Html(&'static [u16]),
    /// One of these statuses, whatever the body (the platform's own refusals).
    Status(&'static [u16]),
}

const MALFORMED: Expect = Expect::JsonError(&[400], &["invalid_json"]);
const MALFORMED_OR_SHAPE: Expect = Expect::JsonError(&[400], &["invalid_json", "invalid_request"]);
const WRONG_SHAPE: Expect = Expect::JsonError(&[400], &["invalid_request", "invalid_json"]);
const BAD_RULES: Expect = Expect::JsonError(&[400], &["invalid_rules"]);
const ANY_REFUSAL: Expect = Expect::JsonError(
    &[400, 404, 409, 413],
    &[
        "invalid_json",
        "invalid_request",
        "invalid_rules",
        "not_found",
        "version_conflict",
        "payload_too_large",
    ],
);
const TOO_LARGE: Expect = Expect::JsonError(&[413], &["payload_too_large"]);
const NOT_FOUND: Expect = Expect::JsonError(&[404, 405], &["not_found", "method_not_allowed"]);

/// What came back: an answer, or the transport error.
type Outcome = Result<Answer, String>;

async fn send(w: &ApiWorld, token: &str, probe: &Probe) -> Outcome {
    let method = reqwest::Method::from_bytes(probe.method.as_bytes()).expect("method");
    let mut request = w
        .world
        .http()
        .request(method, format!("{}{}", w.base(), probe.path))
        .timeout(Duration::from_secs(60));
    if probe.auth {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = probe.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(cookie) = &probe.cookie {
        request = request.header("cookie", cookie);
    }
    if !probe.body.is_empty() {
        request = request.body(probe.body.clone());
    }
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e:?}"))?;
    Ok(Answer {
        status,
        headers,
        text,
    })
}

const KNOWN_CODES: &[&str] = &[
    "unauthenticated",
    "not_found",
    "invalid_request",
    "invalid_json",
    "invalid_rules",
    "conflict",
    "method_not_allowed",
    "payload_too_large",
    "version_conflict",
];

fn content_type(answer: &Answer) -> &str {
    answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `Ok` when the answer is acceptable for the probe.
fn judge(probe: &Probe, outcome: &Outcome) -> Result<(), String> {
    let answer = outcome
        .as_ref()
        .map_err(|e| format!("no answer (dropped connection?): {e}"))?;
    if answer.status >= 500 {
        return Err(format!(
            "server error {}: {}",
            answer.status,
            clip(&answer.text)
        ));
    }
    let json_error = |statuses: &[u16], codes: &[&str]| -> Result<(), String> {
        if !statuses.contains(&answer.status) {
            return Err(format!(
                "status {} (expected {statuses:?}): {}",
                answer.status,
                clip(&answer.text)
            ));
        }
        if content_type(answer) != "application/json" {
            return Err(format!("content-type {:?}", content_type(answer)));
        }
        let body: Value = serde_json::from_str(&answer.text)
            .map_err(|e| format!("body is not JSON ({e}): {}", clip(&answer.text)))?;
        let code = body["error"]["code"].as_str().unwrap_or_default();
        if !KNOWN_CODES.contains(&code) || !codes.contains(&code) {
            return Err(format!(
                "error code {code:?} (expected {codes:?}): {}",
                clip(&answer.text)
            ));
        }
        if body["error"]["message"].as_str().is_none_or(str::is_empty) {
            return Err(format!("no message: {}", clip(&answer.text)));
        }
        if code == "invalid_rules" {
            let details = body["error"]["details"].as_array();
            let named = details.is_some_and(|d| {
                !d.is_empty()
                    && d.iter()
                        .all(|e| e["field"].is_string() && e["code"].as_str().is_some())
            });
            if !named {
                return Err(format!(
                    "rule errors without details: {}",
                    clip(&answer.text)
                ));
            }
        }
        Ok(())
    };
    match &probe.expect {
        Expect::JsonError(statuses, codes) => json_error(statuses, codes),
        Expect::InvalidRulesReport => {
            if answer.status != 200 {
                return json_error(&[400], &["invalid_json", "invalid_request"]);
            }
            let body = answer.json();
            let errors = body["errors"].as_array();
            if body["valid"] != json!(false) || errors.is_none_or(Vec::is_empty) {
                return Err(format!("bad rules reported valid: {}", clip(&answer.text)));
            }
            Ok(())
        }
        Expect::Json(statuses) => {
            if !statuses.contains(&answer.status) {
                return Err(format!(
                    "status {} (expected {statuses:?}): {}",
                    answer.status,
                    clip(&answer.text)
                ));
            }
            if answer.status >= 400 {
                return json_error(statuses, KNOWN_CODES);
            }
            serde_json::from_str::<Value>(&answer.text)
                .map(|_| ())
                .map_err(|e| format!("body is not JSON ({e})"))
        }
        Expect::Html(statuses) => {
            if !statuses.contains(&answer.status) {
                return Err(format!(
                    "status {} (expected {statuses:?}): {}",
                    answer.status,
                    clip(&answer.text)
                ));
            }
            if !content_type(answer).starts_with("text/html") {
                return Err(format!("content-type {:?}", content_type(answer)));
            }
            if answer.text.contains("<script") {
                return Err("the page has a script (echoed input?)".into());
            }
            Ok(())
        }
        Expect::Status(statuses) => {
            if statuses.contains(&answer.status) {
                Ok(())
            } else {
                Err(format!(
                    "status {} (expected {statuses:?}): {}",
                    answer.status,
                    clip(&answer.text)
                ))
            }
        }
    }
}

fn clip(text: &str) -> String {
    let clipped: String = text.chars().take(300).collect();
    if clipped.len() < text.len() {
        format!("{clipped}…")
    } else {
        clipped
    }
}

fn show_body(body: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
    format!(
        "{} bytes {:?}{}",
        body.len(),
        shown,
        if body.len() > 160 { "…" } else { "" }
    )
}

// ----- the endpoints that take a body ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    StartConnection,
    Reconnect,
    UpdateMailboxes,
    SetFolders,
    ReplaceRulesAll,
    ReplaceRulesMailbox,
    ValidateRules,
    DryRun,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint::StartConnection,
    Endpoint::Reconnect,
    Endpoint::UpdateMailboxes,
    Endpoint::SetFolders,
    Endpoint::ReplaceRulesAll,
    Endpoint::ReplaceRulesMailbox,
    Endpoint::ValidateRules,
    Endpoint::DryRun,
];

impl Endpoint {
    fn method(self) -> &'static str {
        match self {
            Endpoint::StartConnection
            | Endpoint::Reconnect
            | Endpoint::ValidateRules
            | Endpoint::DryRun => "POST",
            Endpoint::UpdateMailboxes => "PATCH",
            Endpoint::SetFolders | Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                "PUT"
            }
        }
    }

    /// The route's path template (as in `api::routes::ROUTES`).
    fn template(self) -> &'static str {
        match self {
            Endpoint::StartConnection => "/api/integrations",
            Endpoint::Reconnect => "/api/integrations/{integrationId}/reconnect",
            Endpoint::UpdateMailboxes => "/api/integrations/{integrationId}/mailboxes",
            Endpoint::SetFolders => {
                "/api/integrations/{integrationId}/mailboxes/{mailboxId}/folders"
            }
            Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                "/api/integrations/{integrationId}/rules/{scope}"
            }
            Endpoint::ValidateRules => "/api/rules/validate",
            Endpoint::DryRun => "/api/integrations/{integrationId}/mailboxes/{mailboxId}/dry-run",
        }
    }

    fn path(self, ids: &Ids) -> String {
        let scope = if self == Endpoint::ReplaceRulesMailbox {
            ids.mailbox.as_str()
        } else {
            "all"
        };
        self.template()
            .replace("{integrationId}", &ids.integration)
            .replace("{mailboxId}", &ids.mailbox)
            .replace("{scope}", scope)
    }

    /// A body of the right shape. Never sent as is (it would act); the base of the bad ones.
    fn good_body(self, ids: &Ids) -> Value {
        match self {
            Endpoint::StartConnection => {
                json!({"accountType": "organization", "mailboxes": [ids.support]})
            }
            Endpoint::Reconnect => json!({"mailboxes": [ids.support]}),
            Endpoint::UpdateMailboxes => json!({"add": ["finance@contoso.com"], "remove": []}),
            Endpoint::SetFolders => json!({"folders": ["inbox", "archive"]}),
            Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                json!({"expectedVersion": 1, "rules": valid_rules()})
            }
            Endpoint::ValidateRules => json!({"rules": valid_rules()}),
            Endpoint::DryRun => json!({"limit": 5, "folder": "inbox", "rules": valid_rules()}),
        }
    }

    /// The fields the endpoint knows (anything else is an unknown field).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::StartConnection => &[
                "accountType",
                "mailboxes",
                "tenant",
                "sharedMailboxes",
                "loginHint",
            ],
            Endpoint::Reconnect => &["mailboxes", "sharedMailboxes", "loginHint"],
            Endpoint::UpdateMailboxes => &["add", "remove"],
            Endpoint::SetFolders => &["folders"],
            Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                &["expectedVersion", "rules"]
            }
            Endpoint::ValidateRules => &["version", "rules"],
            Endpoint::DryRun => &["rules", "folder", "limit"],
        }
    }

    fn takes_rules(self) -> bool {
        matches!(
            self,
            Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox | Endpoint::DryRun
        )
    }
}

const BAD_ADDRESSES: &[&str] = &[
    "",
    "   ",
    "nobody",
    "a@",
    "@contoso.com",
    "a@@contoso.com",
    "<script>alert(1)</script>@contoso.com",
    "a\u{0}b@contoso.com",
    "a b@contoso.com",
    "a@contoso..com",
    "\"\"@",
];

const BAD_FOLDERS: &[&str] = &[
    "",
    "   ",
    "x",
    "not a folder!",
    "inbox/../x",
    "\u{0}",
    "<script>",
    "Posteingang",
    "a b c d e f g h i j",
];

const BAD_NUMBERS: &[&str] = &[
    "-1",
    "1.5",
    "\"1\"",
    "null",
    "true",
    "[]",
    "{}",
    "1e400",
    "18446744073709551616",
    "-0.0",
    "NaN",
];

/// Rule lists that must be refused, each for a reason named in the answer.
fn bad_rule_lists(rng: &mut Rng) -> Value {
    let deep = (0..rng.range(9, 40)).fold(
        json!({"subjectContains": ["x"]}),
        |c, _| json!({ "not": c }),
    );
    let choices = [
        json!([{"id": "a"}]),
        json!([{"id": "x", "name": "n", "order": 1, "actions": [{"markAsRead": {}}]},
               {"id": "x", "name": "n", "order": 2, "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "conditions": [{"regex": {"field": "subject", "pattern": "("}}], "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "a\u{0}b", "order": 1, "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "conditions": [deep], "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "conditions": [{"nope": 1}], "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "conditions": [{"subjectContains": ["a"], "bodyContains": ["b"]}], "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "n", "order": -1, "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "actions": [{"moveToFolder": {"path": ""}}, {"delete": {}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "actions": [{"forwardTo": {"recipients": ["nope"]}}]}]),
        json!([{"id": "r", "name": "n", "order": 1, "actions": []}]),
        json!([{"id": "r/../x", "name": "n", "order": 1, "actions": [{"markAsRead": {}}]}]),
        json!([{"id": "r", "name": "x".repeat(20_000), "order": 1, "actions": [{"markAsRead": {}}]}]),
        json!([1, "two", null, []]),
        json!("not a list"),
        json!(42),
        json!({"id": "r"}),
        json!(null),
        Value::Array(
            (0..501)
                .map(|i| json!({"id": format!("r{i}"), "name": "n", "order": 1, "actions": [{"markAsRead": {}}]}))
                .collect(),
        ),
        json!([{"id": rng.text(30), "name": rng.text(30), "order": rng.next() % 10, "conditions": [{"regex": {"field": "header", "pattern": rng.text(10), "header": rng.text(10)}}], "actions": [{"assignCategories": {"categories": [rng.text(8)], "color": rng.text(6)}}, {"delete": {}}, {"moveToFolder": {"path": rng.text(12)}}]}]),
    ];
    rng.pick(&choices).clone()
}

/// Valid JSON that does not fit the endpoint, and what the answer must be.
fn wrong_shape(rng: &mut Rng, endpoint: Endpoint, ids: &Ids) -> (Vec<u8>, Expect) {
    let good = endpoint.good_body(ids);
    let raw = |text: String| text.into_bytes();
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body.to_string().into_bytes()
    };
    let roll = rng.below(12);
    match roll {
        // Not an object at all. (Not a list: serde reads a list as the fields in order, which
        // `bad_inputs_found_by_fuzzing_are_refused` covers.)
        0 => {
            let top = [
                json!("a string"),
                json!(1),
                json!(true),
                json!(null),
                json!(-5.5),
                json!(""),
            ];
            (raw(rng.pick(&top).to_string()), WRONG_SHAPE)
        }
        // An unknown field.
        1 => {
            let mut key = rng.text(12);
            while endpoint.fields().contains(&key.as_str()) {
                key.push('x');
            }
            (with(&key, json!(rng.text(5))), WRONG_SHAPE)
        }
        // A known field of the wrong type.
        2 => {
            let field = *rng.pick(endpoint.fields());
            let value = if ["version", "expectedVersion", "limit"].contains(&field) {
                rng.pick(&[json!("12"), json!({"a": 1}), json!(true), json!([12])])
                    .clone()
            } else {
                rng.pick(&[json!(12), json!({"a": 1}), json!(true), json!([{"x": 1}])])
                    .clone()
            };
            let expect = if field == "rules" {
                // `rules` is any JSON, then validated: a wrong type is a rule problem.
                if endpoint == Endpoint::ValidateRules {
                    Expect::InvalidRulesReport
                } else {
                    BAD_RULES
                }
            } else {
                WRONG_SHAPE
            };
            (with(field, value), expect)
        }
        // A number field out of range or of the wrong kind (raw JSON text).
        3 => {
            let (field, fallback) = match endpoint {
                Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                    ("expectedVersion", None)
                }
                Endpoint::DryRun => ("limit", Some(["0", "51", "4294967296"])),
                Endpoint::ValidateRules => ("version", None),
                _ => ("mailboxes", None),
            };
            let mut choices: Vec<&str> = BAD_NUMBERS.to_vec();
            choices.retain(|n| !(field == "mailboxes" && (*n == "[]")));
            if let Some(more) = fallback {
                choices.extend(more);
            }
            let number = *rng.pick(&choices);
            let mut body = good.clone();
            body[field] = json!("\u{1}");
            let text = body.to_string().replace("\"\\u0001\"", number);
            let expect = if number == "null" && matches!(field, "version" | "limit") {
                // `null` is "not given" for optional fields: only the rest can be wrong, and
                // it is not; skip by making another field bad.
                return (with("unknownField", json!(1)), WRONG_SHAPE);
            } else {
                MALFORMED_OR_SHAPE
            };
            (raw(text), expect)
        }
        // A required field missing.
        4 => {
            let mut body = good.clone();
            let required: &[&str] = match endpoint {
                Endpoint::StartConnection => &["accountType", "mailboxes"],
                Endpoint::SetFolders => &["folders"],
                Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                    &["expectedVersion", "rules"]
                }
                Endpoint::ValidateRules => &["rules"],
                // Every field is optional: make one bad instead.
                _ => return (with("add", json!("x@contoso.com")), WRONG_SHAPE),
            };
            body.as_object_mut()
                .expect("object")
                .remove(*rng.pick(required));
            (raw(body.to_string()), WRONG_SHAPE)
        }
        // Addresses, folders, enums with invalid values.
        5..=7 => {
            let bad_address = if rng.below(3) == 0 {
                rng.text(30).replace('@', "")
            } else {
                (*rng.pick(BAD_ADDRESSES)).to_owned()
            };
            match endpoint {
                Endpoint::StartConnection => {
                    let bodies = [
                        json!({"accountType": "organization", "mailboxes": [bad_address]}),
                        json!({"accountType": "organization", "mailboxes": []}),
                        json!({"accountType": rng.text(10), "mailboxes": [ids.support]}),
                        json!({"accountType": "personal", "loginHint": bad_address}),
                        json!({"accountType": "personal", "sharedMailboxes": [bad_address]}),
                        json!({"accountType": "personal", "mailboxes": [ids.support]}),
                        json!({"accountType": "organization", "mailboxes": [ids.support], "tenant": rng.text(20).replace('.', "")}),
                        json!({"accountType": "organization", "mailboxes": (0..501).map(|i| format!("u{i}@contoso.com")).collect::<Vec<_>>()}),
                    ];
                    (raw(rng.pick(&bodies).to_string()), WRONG_SHAPE)
                }
                Endpoint::Reconnect => {
                    let bodies = [
                        json!({"mailboxes": [bad_address]}),
                        json!({"sharedMailboxes": [ids.support]}),
                        json!({"loginHint": ids.support}),
                    ];
                    (raw(rng.pick(&bodies).to_string()), WRONG_SHAPE)
                }
                Endpoint::UpdateMailboxes => {
                    let bodies = [
                        json!({"add": [bad_address]}),
                        json!({"remove": [bad_address]}),
                        json!({"add": [ids.support], "remove": [ids.support]}),
                    ];
                    (raw(rng.pick(&bodies).to_string()), WRONG_SHAPE)
                }
                Endpoint::SetFolders => {
                    let bodies = [
                        json!({"folders": []}),
                        json!({"folders": [rng.pick(BAD_FOLDERS)]}),
                        json!({"folders": ["inbox", rng.text(20)]}),
                        json!({"folders": (0..21).map(|i| format!("AAMkAGI2TG93AAA{i:04}")).collect::<Vec<_>>()}),
                        json!({"folders": ["a".repeat(600)]}),
                    ];
                    let body = rng.pick(&bodies).clone();
                    // A random text can be a well-formed folder id (16+ id characters): that is
                    // valid input, so only the lists above that cannot be are sent.
                    let ok_by_chance = body["folders"].as_array().is_some_and(|f| {
                        f.iter().all(|v| {
                            v.as_str().is_some_and(|s| {
                                outlook_core::api::handlers::parse_folder(s).is_ok()
                            })
                        }) && (1..=20).contains(&f.len())
                    });
                    if ok_by_chance {
                        (raw(json!({"folders": []}).to_string()), WRONG_SHAPE)
                    } else {
                        (raw(body.to_string()), WRONG_SHAPE)
                    }
                }
                Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => (
                    raw(json!({"expectedVersion": 1, "rules": bad_rule_lists(rng)}).to_string()),
                    BAD_RULES,
                ),
                Endpoint::ValidateRules => (
                    raw(json!({"rules": bad_rule_lists(rng)}).to_string()),
                    Expect::InvalidRulesReport,
                ),
                Endpoint::DryRun => {
                    let bodies = [
                        json!({"limit": 0}),
                        json!({"limit": 51}),
                        json!({"folder": rng.pick(BAD_FOLDERS)}),
                        json!({"folder": 5}),
                        json!({"rules": bad_rule_lists(rng), "limit": 1}),
                    ];
                    let body = rng.pick(&bodies).clone();
                    let expect = if body.get("rules").is_some() {
                        BAD_RULES
                    } else {
                        WRONG_SHAPE
                    };
                    (raw(body.to_string()), expect)
                }
            }
        }
        // Stale or future versions of a rule set: a conflict, nothing saved.
        8 if matches!(
            endpoint,
            Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox
        ) =>
        {
            let expected = if endpoint == Endpoint::ReplaceRulesAll {
                *rng.pick(&[0u64, 2, 7, 1_000_000])
            } else {
                *rng.pick(&[1u64, 2, 99])
            };
            (
                raw(json!({"expectedVersion": expected, "rules": valid_rules()}).to_string()),
                Expect::JsonError(&[409], &["version_conflict"]),
            )
        }
        // Duplicate keys.
        9 => {
            let present: Vec<String> = good.as_object().expect("object").keys().cloned().collect();
            let field = rng.pick(&present).clone();
            let text = good.to_string();
            let text = format!("{{\"{field}\": 1, {}", &text[1..]);
            (raw(text), WRONG_SHAPE)
        }
        // Huge arrays and strings (within the size limit).
        10 => {
            let big = "x".repeat(rng.range(10_000, 200_000));
            let field = *rng.pick(endpoint.fields());
            let body = if field == "rules" || (endpoint.takes_rules() && rng.below(2) == 0) {
                let mut body = good.clone();
                body["rules"][0]["name"] = json!(big);
                let expect = if endpoint == Endpoint::ValidateRules {
                    Expect::InvalidRulesReport
                } else {
                    BAD_RULES
                };
                return (raw(body.to_string()), expect);
            } else if ["mailboxes", "add", "remove", "sharedMailboxes", "folders"].contains(&field)
            {
                with(field, json!(vec![big; 1]))
            } else {
                // Scalars of the wrong type are echoed in serde's message (see the regression
                // test); the local harness loses some large answers, so keep these small.
                with(field, json!(&big[..rng.range(1_000, 4_000)]))
            };
            (body, ANY_REFUSAL)
        }
        // NUL and control characters inside values (valid JSON escapes).
        _ => {
            let nul = format!("{}\u{0}{}", rng.text(5), rng.text(5));
            let body = match endpoint {
                Endpoint::StartConnection => {
                    json!({"accountType": "organization", "mailboxes": [format!("a{nul}@contoso.com")]})
                }
                Endpoint::Reconnect => json!({"mailboxes": [format!("{nul}@contoso.com")]}),
                Endpoint::UpdateMailboxes => json!({"add": [format!("{nul}@contoso.com")]}),
                Endpoint::SetFolders => json!({"folders": [nul]}),
                Endpoint::ReplaceRulesAll | Endpoint::ReplaceRulesMailbox => {
                    let mut body = good.clone();
                    body["rules"][0]["name"] = json!(nul);
                    return (raw(body.to_string()), BAD_RULES);
                }
                Endpoint::ValidateRules => {
                    let mut body = good.clone();
                    body["rules"][0]["id"] = json!(nul);
                    return (raw(body.to_string()), Expect::InvalidRulesReport);
                }
                Endpoint::DryRun => json!({"folder": nul}),
            };
            (raw(body.to_string()), WRONG_SHAPE)
        }
    }
}

/// Bytes that are not JSON (or not UTF-8), derived from the endpoint's good body.
fn malformed(rng: &mut Rng, endpoint: Endpoint, ids: &Ids) -> (Vec<u8>, Expect) {
    let text = endpoint.good_body(ids).to_string();
    let at = |rng: &mut Rng, text: &str| {
        let mut k = rng.range(1, text.len() - 1);
        while !text.is_char_boundary(k) {
            k -= 1;
        }
        k.max(1)
    };
    match rng.below(11) {
        // Truncated (a strict prefix of an object is never complete JSON).
        0 | 1 => {
            let k = at(rng, &text);
            (text.as_bytes()[..k].to_vec(), MALFORMED)
        }
        // Trailing garbage.
        2 => {
            let tail = *rng.pick(&["x", "}", ",", " {}", "\u{0}", "/*c*/", "]", "\"", " null"]);
            (format!("{text}{tail}").into_bytes(), MALFORMED)
        }
        // JavaScript, not JSON.
        3 => {
            let variants = [
                text.replace('"', "'"),
                format!("{},}}", &text[..text.len() - 1]),
                format!("/* c */{text}"),
                format!("{{\"{}\": NaN}}", endpoint.fields()[0]),
                format!("{{\"{}\": -Infinity}}", endpoint.fields()[0]),
                format!("{{x: 1, {}", &text[1..]),
                format!("\u{FEFF}{text}"),
                text.replacen(':', "=", 1),
            ];
            (rng.pick(&variants).clone().into_bytes(), MALFORMED)
        }
        // A raw control character (NUL, newline) inside a string.
        4 => {
            let quote = text.find('"').expect("a key") + 1;
            let ctl = *rng.pick(&["\u{0}", "\n", "\u{1f}", "\t"]);
            (
                format!("{}{ctl}{}", &text[..quote], &text[quote..]).into_bytes(),
                MALFORMED,
            )
        }
        // Invalid UTF-8 between tokens.
        5 => {
            let choices: [&[u8]; 4] = [
                &[0xFF],
                &[0xC0, 0x80],
                &[0xED, 0xA0, 0x80],
                &[0xF8, 0x88, 0x80, 0x80, 0x80],
            ];
            let bad = *rng.pick(&choices);
            let mut bytes = b"{".to_vec();
            bytes.extend_from_slice(bad);
            bytes.extend_from_slice(&text.as_bytes()[1..]);
            (bytes, MALFORMED_OR_SHAPE)
        }
        // Invalid UTF-8 inside the first key (lossy decoding anywhere would make it unknown).
        6 => {
            let quote = text.find('"').expect("a key") + 2;
            let mut bytes = text.as_bytes()[..quote].to_vec();
            let choices: [&[u8]; 3] = [&[0xFF], &[0xC3], &[0xE2, 0x82]];
            let chosen = choices[rng.below(choices.len())];
            bytes.extend_from_slice(chosen);
            bytes.extend_from_slice(&text.as_bytes()[quote..]);
            (bytes, MALFORMED_OR_SHAPE)
        }
        // Huge nesting: beyond any parser's recursion limit.
        7 => {
            // Under the size limit, so the parser (not the limit) refuses it.
            let depth = rng.range(200, 30_000);
            let (open, close) = *rng.pick(&[("[", "]"), ("{\"a\":", "}")]);
            let body = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            // A struct reads a list as its fields in order, and an object's first key is
            // unknown: either may be refused for its shape before the depth counts.
            (body.into_bytes(), MALFORMED_OR_SHAPE)
        }
        // Deep nesting inside a field.
        8 => {
            let depth = rng.range(130, 5_000);
            let field = *rng.pick(endpoint.fields());
            let body = format!(
                "{{\"{field}\": {}0{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            // A field that is not a list may be refused for its type before the depth counts.
            (body.into_bytes(), MALFORMED_OR_SHAPE)
        }
        // Raw NUL bytes and random binary in place of a value.
        9 => {
            let mut bytes = text.as_bytes()[..at(rng, &text)].to_vec();
            let n = rng.range(1, 64);
            bytes.extend(
                rng.bytes(n)
                    .into_iter()
                    .map(|b| if b == b'"' { 0 } else { b }),
            );
            bytes.push(0);
            (bytes, MALFORMED_OR_SHAPE)
        }
        // Only whitespace (an empty body is "no options" where the body is optional).
        _ => {
            if matches!(endpoint, Endpoint::Reconnect | Endpoint::DryRun) {
                (b"\0".to_vec(), MALFORMED)
            } else {
                let ws = *rng.pick(&["", " ", "\n\t ", "\r\n"]);
                (ws.as_bytes().to_vec(), MALFORMED)
            }
        }
    }
}

/// Random bytes: never whitespace only, never starting an object or array.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(1, 4096);
    let mut bytes = rng.bytes(n);
    if matches!(bytes[0], b'{' | b'[') || bytes[0].is_ascii_whitespace() {
        bytes[0] = b'#';
    }
    bytes
}

/// An id for a path parameter that names nothing: random text, injections, look-alikes.
fn garbage_id(rng: &mut Rng) -> String {
    let fixed = [
        "int_0123456789abcdef",
        "mbx_0123456789abcdef",
        "int_",
        "INT_0123456789ABCDEF",
        "' OR '1'='1",
        "WS#acme",
        "INT#x",
        "{integrationId}",
        "%00",
        "%zz",
        "%",
        "null",
        "undefined",
        "-1",
        "ALL",
        "All",
        "**",
        "%2E%2E%2Fetc",
        "..%2F..%2F",
        "%F0%9F%98%80",
        "%C3",
    ];
    let id = match rng.below(4) {
        0 => (*rng.pick(&fixed)).to_owned(),
        1 => "x".repeat(rng.range(100, 2_000)),
        2 => format!("{}_{}", rng.pick(&["int", "mbx", "ws"]), rng.text(20)),
        _ => rng.text(40),
    };
    // Percent-encode what would change the URL's structure (a raw `%xx` from the fixed list is
    // left as is: it tests the decoder).
    // Only dots would be a `.`/`..` segment, which the client resolves away.
    let id = if id.chars().all(|c| c == '.') {
        format!("x{id}")
    } else {
        id
    };
    let mut out = String::new();
    for c in id.chars() {
        if c.is_ascii_alphanumeric() || "-_~%'{}*".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                write!(out, "%{b:02X}").expect("write");
            }
        }
    }
    out
}

/// A query string of garbage.
fn garbage_query(rng: &mut Rng) -> String {
    let mut query = String::new();
    for i in 0..rng.range(1, 6) {
        if i > 0 {
            query.push('&');
        }
        let name = rng.pick(&[
            "limit", "token", "x", "", "limit[]", "%00", "cursor", "scope",
        ]);
        query.push_str(name);
        if rng.below(5) > 0 {
            query.push('=');
            for b in rng.text(20).bytes() {
                write!(query, "%{b:02X}").expect("write");
            }
        }
    }
    query
}

// ----- the test --------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    sent: BTreeMap<&'static str, usize>,
    time: BTreeMap<&'static str, Duration>,
    /// Non-UTF-8 bodies sent as `application/octet-stream` (see [`BINARY_TYPES`]).
    binary: usize,
    statuses: BTreeMap<u16, usize>,
    failures: Vec<String>,
}

/// Content types cargo-lambda's emulator passes as binary (base64): it answers a non-UTF-8 body
/// of any other type with its own 500 without invoking the function.
const BINARY_TYPES: &[&str] = &["application/octet-stream", "image/png"];

async fn run(w: &ApiWorld, token: &str, mut probe: Probe, tally: &mut Tally) {
    if std::str::from_utf8(&probe.body).is_err()
        && !probe
            .content_type
            .is_some_and(|t| BINARY_TYPES.contains(&t))
    {
        probe.content_type = Some("application/octet-stream");
        tally.binary += 1;
    }
    let started = Instant::now();
    let outcome = send(w, token, &probe).await;
    let took = started.elapsed();
    if took > Duration::from_secs(2) {
        println!(
            "bad input: slow answer ({took:.1?}): {} {} {}",
            probe.method,
            clip(&probe.path),
            show_body(&probe.body)
        );
    }
    *tally.time.entry(probe.category).or_default() += took;
    *tally.sent.entry(probe.category).or_default() += 1;
    if let Ok(answer) = &outcome {
        *tally.statuses.entry(answer.status).or_default() += 1;
    }
    if let Err(problem) = judge(&probe, &outcome) {
        tally.failures.push(format!(
            "[{}] {} {} (content-type {:?}, body {}): {problem}",
            probe.category,
            probe.method,
            clip(&probe.path),
            probe.content_type,
            show_body(&probe.body)
        ));
    }
}

fn api(
    category: &'static str,
    endpoint: Endpoint,
    ids: &Ids,
    body: Vec<u8>,
    expect: Expect,
) -> Probe {
    Probe {
        category,
        method: endpoint.method(),
        path: endpoint.path(ids),
        content_type: Some("application/json"),
        cookie: None,
        auth: true,
        body,
        expect,
    }
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_stores_nothing() {
    let started = Instant::now();
    let seed = seed();
    println!("bad input: FUZZ_SEED={seed} (set it to replay this run)");
    let mut rng = Rng(seed);
    let (w, token, ids) = connected_world("api-bad-input").await;
    let setup = started.elapsed();
    let before = snapshot(&w).await;
    let rules_before = w
        .call(
            "GET",
            &format!("/api/integrations/{}/rules/all", ids.integration),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(rules_before["version"], 1, "{rules_before}");
    let mut tally = Tally::default();

    for &endpoint in ENDPOINTS {
        // Malformed JSON.
        for _ in 0..6 {
            let (body, expect) = malformed(&mut rng, endpoint, &ids);
            run(
                &w,
                &token,
                api("malformed json", endpoint, &ids, body, expect),
                &mut tally,
            )
            .await;
        }
        // Valid JSON of the wrong shape.
        for _ in 0..10 {
            let (body, expect) = wrong_shape(&mut rng, endpoint, &ids);
            run(
                &w,
                &token,
                api("wrong shape", endpoint, &ids, body, expect),
                &mut tally,
            )
            .await;
        }
        // Random bytes.
        for _ in 0..3 {
            let body = random_bytes(&mut rng);
            run(
                &w,
                &token,
                api("random bytes", endpoint, &ids, body, MALFORMED_OR_SHAPE),
                &mut tally,
            )
            .await;
        }
        // Wrong or missing content type on bad bodies: the answer does not change.
        for _ in 0..3 {
            let (body, expect) = if rng.below(2) == 0 {
                malformed(&mut rng, endpoint, &ids)
            } else {
                wrong_shape(&mut rng, endpoint, &ids)
            };
            let mut probe = api("content type", endpoint, &ids, body, expect);
            probe.content_type = *rng.pick(&[
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("multipart/form-data; boundary=x"),
                Some("application/octet-stream"),
                Some("application/json; charset=utf-16"),
                Some("image/png"),
                Some("application/xml"),
            ]);
            run(&w, &token, probe, &mut tally).await;
        }
        // Oversized: the good body padded just over the limit and far over it.
        let good = endpoint.good_body(&ids).to_string();
        for size in [
            MAX_BODY_BYTES + 1,
            MAX_BODY_BYTES + rng.range(2, 4096),
            2 * 1024 * 1024,
        ] {
            let mut body = good.as_bytes()[..good.len() - 1].to_vec();
            body.resize(size - 1, b' ');
            body.push(b'}');
            run(
                &w,
                &token,
                api("oversized", endpoint, &ids, body, TOO_LARGE),
                &mut tally,
            )
            .await;
        }
        // Exactly at the limit is read (and refused for what it is: here, not JSON).
        let mut body = good.as_bytes()[..good.len() - 1].to_vec();
        body.resize(MAX_BODY_BYTES, b'x');
        run(
            &w,
            &token,
            api("oversized", endpoint, &ids, body, MALFORMED),
            &mut tally,
        )
        .await;
    }
    // Far over what the platform accepts: refused there or by the function, never acted on.
    let mut body = br#"{"accountType":"organization","mailboxes":[""#.to_vec();
    body.resize(9 * 1024 * 1024, b'a');
    body.extend_from_slice(br#""]}"#);
    let probe = Probe {
        expect: Expect::Status(&[413]),
        ..api(
            "oversized",
            Endpoint::StartConnection,
            &ids,
            body,
            TOO_LARGE,
        )
    };
    run(&w, &token, probe, &mut tally).await;
    // Without a token, an oversized body is refused before it is read.
    let probe = Probe {
        auth: false,
        expect: Expect::JsonError(&[401], &["unauthenticated"]),
        ..api(
            "oversized",
            Endpoint::ValidateRules,
            &ids,
            vec![b' '; MAX_BODY_BYTES + 10],
            TOO_LARGE,
        )
    };
    run(&w, &token, probe, &mut tally).await;

    // Garbage in every path parameter of every JSON route (the others real), with a good body
    // where the route takes one: only the id is wrong.
    for route in ROUTES.iter().filter(|r| r.kind == RouteKind::Json) {
        let params: Vec<&str> = ["{integrationId}", "{mailboxId}", "{scope}"]
            .into_iter()
            .filter(|p| route.path.contains(p))
            .collect();
        for param in &params {
            for _ in 0..3 {
                let mut id = garbage_id(&mut rng);
                if *param == "{scope}" && ["all", "%2A", "*"].contains(&id.as_str()) {
                    id = "x".into();
                }
                // The other parameters real, this one last (a garbage id may look like a
                // template parameter, `{integrationId}`).
                let mut path = route.path.to_owned();
                for (other, real) in [
                    ("{integrationId}", ids.integration.as_str()),
                    ("{mailboxId}", ids.mailbox.as_str()),
                    ("{scope}", "all"),
                ] {
                    if other != *param {
                        path = path.replace(other, real);
                    }
                }
                let path = path.replace(param, &id);
                let endpoint = ENDPOINTS
                    .iter()
                    .find(|e| e.method() == route.method && e.template() == route.path);
                let body = endpoint
                    .map(|e| e.good_body(&ids).to_string().into_bytes())
                    .unwrap_or_default();
                run(
                    &w,
                    &token,
                    Probe {
                        category: "garbage path id",
                        method: route.method,
                        path,
                        content_type: Some("application/json"),
                        cookie: None,
                        auth: true,
                        body,
                        expect: NOT_FOUND,
                    },
                    &mut tally,
                )
                .await;
            }
        }
    }

    // Garbage query strings: the audit's `limit` is checked, other queries are ignored.
    let audit = format!(
        "/api/integrations/{}/mailboxes/{}/audit",
        ids.integration, ids.mailbox
    );
    let limits = [
        "0",
        "-1",
        "201",
        "abc",
        "",
        "1e2",
        "0x10",
        " 5",
        "5 ",
        "+5",
        "99999999999999999999999",
        "\0",
        "😀",
        "1.0",
        "NaN",
        "50",
        "1",
        "200",
        "５",
    ];
    for _ in 0..20 {
        let value = *rng.pick(&limits);
        let limit: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let fine = value.parse::<usize>().is_ok_and(|n| (1..=200).contains(&n));
        let expect = if fine {
            Expect::Json(&[200])
        } else {
            Expect::JsonError(&[400], &["invalid_request"])
        };
        run(
            &w,
            &token,
            Probe {
                category: "garbage query",
                method: "GET",
                path: format!("{audit}?limit={limit}"),
                content_type: None,
                cookie: None,
                auth: true,
                body: Vec::new(),
                expect,
            },
            &mut tally,
        )
        .await;
    }
    let reads = [
        "/api/integrations".to_owned(),
        format!("/api/integrations/{}", ids.integration),
        format!("/api/integrations/{}/rules", ids.integration),
        format!("/api/integrations/{}/rules/all", ids.integration),
        format!(
            "/api/integrations/{}/mailboxes/{}",
            ids.integration, ids.mailbox
        ),
        audit.clone(),
    ];
    for _ in 0..20 {
        let path = format!("{}?{}", rng.pick(&reads), garbage_query(&mut rng));
        run(
            &w,
            &token,
            Probe {
                category: "garbage query",
                method: "GET",
                path,
                content_type: None,
                cookie: None,
                auth: true,
                body: Vec::new(),
                expect: Expect::Json(&[200, 400]),
            },
            &mut tally,
        )
        .await;
    }

    // The connect pages: garbage forms with a valid session but no CSRF token, oversized forms,
    // and garbage page tokens.
    let session = Some(format!("{SESSION_COOKIE}={token}"));
    for _ in 0..8 {
        let path = if rng.below(2) == 0 {
            "/connect/start".to_owned()
        } else {
            format!("/connect/integrations/{}/reconnect", ids.integration)
        };
        let (body, expect) = match rng.below(3) {
            0 => (random_bytes(&mut rng), Expect::Html(&[403])),
            1 => (
                format!(
                    "accountType=organization&mailboxes={}&csrf={}",
                    ids.support,
                    garbage_query(&mut rng)
                )
                .into_bytes(),
                Expect::Html(&[403]),
            ),
            _ => (
                vec![b'a'; MAX_BODY_BYTES + rng.range(1, 100_000)],
                Expect::Html(&[413]),
            ),
        };
        run(
            &w,
            &token,
            Probe {
                category: "connect page",
                method: "POST",
                path,
                content_type: Some("application/x-www-form-urlencoded"),
                cookie: session.clone(),
                auth: false,
                body,
                expect,
            },
            &mut tally,
        )
        .await;
    }
    for _ in 0..4 {
        run(
            &w,
            &token,
            Probe {
                category: "connect page",
                method: "GET",
                path: format!("/connect?token={}", garbage_id(&mut rng)),
                content_type: None,
                cookie: None,
                auth: false,
                body: Vec::new(),
                expect: Expect::Html(&[401]),
            },
            &mut tally,
        )
        .await;
    }

    // The OAuth callback: garbage queries never connect anything.
    for _ in 0..20 {
        let query = match rng.below(4) {
            0 => garbage_query(&mut rng),
            1 => format!(
                "state={}&code={}",
                garbage_id(&mut rng),
                garbage_id(&mut rng)
            ),
            2 => format!(
                "state={}&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                garbage_id(&mut rng)
            ),
            _ => format!(
                "admin_consent=True&tenant={}&state={}",
                rng.pick(&[
                    "7f2b1c1e-0000-4000-8000-000000000001",
                    "evil.com",
                    "%7B7f2b1c1e-0000-4000-8000-000000000001%7D",
                    ""
                ]),
                garbage_id(&mut rng)
            ),
        };
        run(
            &w,
            &token,
            Probe {
                category: "oauth callback",
                method: "GET",
                path: format!("/oauth/callback?{query}"),
                content_type: None,
                cookie: None,
                auth: false,
                body: Vec::new(),
                expect: Expect::Html(&[400]),
            },
            &mut tally,
        )
        .await;
    }

    // Nothing was stored, nothing broke.
    let after = snapshot(&w).await;
    let rules_after = w
        .call(
            "GET",
            &format!("/api/integrations/{}/rules/all", ids.integration),
            Some(&token),
            None,
        )
        .await
        .json();
    let api_running = w.api.is_running().await;
    let callback_running = w.callback.is_running().await;
    let panics: Vec<String> = w
        .api
        .logs()
        .lines()
        .chain(w.callback.logs().lines())
        .filter(|l| l.contains("panicked"))
        .map(clip)
        .collect();

    let total: usize = tally.sent.values().sum();
    println!(
        "bad input: {total} requests in {:.1?} (setup {:.1?}); per category {:?}",
        started.elapsed() - setup,
        setup,
        tally.sent
    );
    println!(
        "bad input: statuses {:?}; non-UTF-8 bodies sent as application/octet-stream: {}",
        tally.statuses, tally.binary
    );
    println!("bad input: time per category {:?}", tally.time);
    println!(
        "bad input: stored before {}; after {}",
        describe(&before),
        describe(&after)
    );
    println!(
        "bad input: rules version before {} after {}; management-api running: {api_running}; oauth-callback running: {callback_running}; panics logged: {}",
        rules_before["version"],
        rules_after["version"],
        panics.len()
    );

    let mut problems = tally.failures;
    if before != after {
        let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        let changed: Vec<String> = after
            .iter()
            .filter_map(|(k, v)| {
                let b = before.get(k)?;
                (b != v).then(|| format!("{k:?}:\n  before {b}\n  after  {v}"))
            })
            .collect();
        problems.push(format!(
            "the table changed: added {added:?}, removed {removed:?}, changed {changed:?}"
        ));
    }
    if rules_after != rules_before {
        problems.push(format!("the rule set changed: {rules_after}"));
    }
    if !api_running || !callback_running {
        problems.push(format!(
            "a function died: management-api {api_running}, oauth-callback {callback_running}"
        ));
    }
    if !panics.is_empty() {
        problems.push(format!("panics in the function logs: {panics:?}"));
    }
    assert!(
        problems.is_empty(),
        "FUZZ_SEED={seed}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Inputs the fuzzing above found mishandled, kept as fixed cases. Each must be a clear 4xx
/// with nothing stored, like any other bad input.
#[tokio::test]
async fn bad_inputs_found_by_fuzzing_are_refused() {
    let (w, token, ids) = connected_world("api-bad-input-found").await;
    let before = snapshot(&w).await;
    let long_address = format!("{}é{}@contoso.com", "a".repeat(39), "b".repeat(300));
    let marker = format!("ECHO-{}", "m".repeat(1_000));
    let cases: Vec<(&'static str, &'static str, String, Value, Expect)> = vec![
        // `expected_version + 1` overflows (a panic in debug builds; wraps to 0 in release).
        (
            "expectedVersion u64::MAX",
            "PUT",
            Endpoint::ReplaceRulesAll.path(&ids),
            json!({"expectedVersion": u64::MAX, "rules": valid_rules()}),
            Expect::JsonError(&[400, 409], &["invalid_request", "version_conflict"]),
        ),
        // `parse_mailbox_address` cuts a too-long address at byte 40, inside a character.
        (
            "long address with a multi-byte character at byte 40 (start)",
            "POST",
            Endpoint::StartConnection.path(&ids),
            json!({"accountType": "organization", "mailboxes": [long_address]}),
            WRONG_SHAPE,
        ),
        (
            "long address with a multi-byte character at byte 40 (login hint)",
            "POST",
            Endpoint::StartConnection.path(&ids),
            json!({"accountType": "personal", "loginHint": long_address}),
            WRONG_SHAPE,
        ),
        (
            "long address with a multi-byte character at byte 40 (add mailbox)",
            "PATCH",
            Endpoint::UpdateMailboxes.path(&ids),
            json!({"add": [long_address]}),
            WRONG_SHAPE,
        ),
        // A JSON array is read as the request object's fields in order (serde's sequence
        // form): `[]` is an empty reconnect request, which starts a flow and stores a state.
        (
            "an array instead of the reconnect object",
            "POST",
            Endpoint::Reconnect.path(&ids),
            json!([]),
            WRONG_SHAPE,
        ),
        (
            "an array instead of the folders object",
            "PUT",
            Endpoint::SetFolders.path(&ids),
            json!([["inbox"]]),
            WRONG_SHAPE,
        ),
    ];
    let mut failures = Vec::new();
    let send_one =
        async |what: &str, method: &'static str, path: String, body: Vec<u8>, expect: Expect| {
            let probe = Probe {
                category: "found",
                method,
                path,
                content_type: Some("application/json"),
                cookie: None,
                auth: true,
                body,
                expect,
            };
            let outcome = send(&w, &token, &probe).await;
            let shown = outcome
                .as_ref()
                .map(|a| format!("{} {}", a.status, clip(&a.text)))
                .unwrap_or_else(|e| e.clone());
            println!("bad input found: {what}: {shown}");
            judge(&probe, &outcome)
                .map_err(|e| format!("{what}: {e}"))
                .err()
        };
    for (what, method, path, body, expect) in cases {
        let bytes = body.to_string().into_bytes();
        failures.extend(send_one(what, method, path, bytes, expect).await);
    }
    // Error messages name the field, never echo the value (`handlers::parse_body`'s contract):
    // serde's "invalid type: string", "unknown variant" and "unknown field" messages do.
    let echoes = [
        (
            "echo: a string where a number goes",
            Endpoint::ValidateRules,
            json!({"version": marker, "rules": []}).to_string(),
        ),
        (
            "echo: an unknown account type",
            Endpoint::StartConnection,
            json!({"accountType": marker, "mailboxes": []}).to_string(),
        ),
        (
            "echo: an unknown field",
            Endpoint::ValidateRules,
            format!("{{\"{marker}\": 1, \"rules\": []}}"),
        ),
    ];
    for (what, endpoint, body) in echoes {
        let probe = api("found", endpoint, &ids, body.into_bytes(), WRONG_SHAPE);
        let outcome = send(&w, &token, &probe).await;
        let echoed = outcome.as_ref().is_ok_and(|a| a.text.contains(&marker));
        println!(
            "bad input found: {what}: {}",
            outcome
                .as_ref()
                .map(|a| format!(
                    "{} ({} bytes, value echoed: {echoed})",
                    a.status,
                    a.text.len()
                ))
                .unwrap_or_else(|e| e.clone())
        );
        failures.extend(
            judge(&probe, &outcome)
                .map_err(|e| format!("{what}: {e}"))
                .err(),
        );
        if echoed {
            failures.push(format!("{what}: the message echoes the submitted value"));
        }
    }
    let after = snapshot(&w).await;
    if before != after {
        let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k)
            .collect();
        failures.push(format!(
            "the table changed: added {added:?}, changed {changed:?}"
        ));
    }
    if !w.api.is_running().await {
        failures.push("management-api died".into());
    }
    let panics: Vec<String> = w
        .api
        .logs()
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(clip)
        .collect();
    if !panics.is_empty() {
        failures.push(format!("panics in the function log: {panics:?}"));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
