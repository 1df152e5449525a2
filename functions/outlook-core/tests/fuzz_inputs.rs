//! Bad input (reliability suite, issue #8): property-based fuzzing of the two parsers that read
//! untrusted text, the OAuth callback's query (`connect::callback_params::parse_callback`) and
//! the rule JSON (`rules::parse_and_validate`).
//!
//! Every property runs `PROPTEST_CASES` cases (default per property below) and prints what it saw
//! (`cargo test -p outlook-core --test fuzz_inputs -- --nocapture`). Failures are not persisted
//! to files; the minimal failing input is in the panic message.

use std::cell::Cell;
use std::collections::HashMap;

use outlook_core::connect::callback_params::{
    CallbackParams, ParamProblem, aadsts_code, microsoft_error_page, parse_callback,
};
use outlook_core::pages::ResultPage;
use outlook_core::rules::{
    ACTION_NAMES, CONDITION_NAMES, RuleValidationError, ValidRuleSet, limits, parse_and_validate,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

// ----- harness ---------------------------------------------------------------------------------

/// `PROPTEST_CASES` when set, else `default`; no regression files are written.
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Outcome counts of one property, printed when it passes.
#[derive(Default)]
struct Counts {
    cases: Cell<usize>,
    ok: Cell<usize>,
    err: Cell<usize>,
    /// Per-label counters (outcome kinds, mutation kinds...).
    labels: std::cell::RefCell<std::collections::BTreeMap<String, usize>>,
}

impl Counts {
    fn outcome(&self, ok: bool) {
        self.cases.set(self.cases.get() + 1);
        if ok {
            self.ok.set(self.ok.get() + 1);
        } else {
            self.err.set(self.err.get() + 1);
        }
    }

    fn label(&self, label: impl Into<String>) {
        *self.labels.borrow_mut().entry(label.into()).or_default() += 1;
    }

    fn print(&self, property: &str, started: std::time::Instant) {
        let labels: Vec<String> = self
            .labels
            .borrow()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "fuzz {property}: {} inputs, ok={} err={} in {:.2?}{}{}",
            self.cases.get(),
            self.ok.get(),
            self.err.get(),
            started.elapsed(),
            if labels.is_empty() { "" } else { "; " },
            labels.join(" ")
        );
    }
}

/// Runs `test` on `cases` inputs of `strategy`, panics with the minimal failing input.
fn run<S: Strategy>(
    property: &str,
    cases: u32,
    strategy: S,
    counts: &Counts,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{property}: {e}");
    }
    counts.print(property, started);
}

// ----- the OAuth callback query ------------------------------------------------------------------

/// Every parameter name `parse_callback` reads.
const KNOWN: &[&str] = &[
    "state",
    "code",
    "error",
    "error_description",
    "error_uri",
    "admin_consent",
    "tenant",
    "scope",
    "session_state",
    "client_info",
    "error_subcode",
];

/// Its documented size limits, in bytes of the decoded value.
fn limit(name: &str) -> usize {
    match name {
        "code" | "error_description" => 4096,
        "scope" => 2048,
        _ => 256,
    }
}

/// What `parse_callback` must answer, from the decoded pairs (an independent statement of its
/// contract: the first repeated or oversized known parameter is refused; then `state` is
/// required, `error` wins, `admin_consent=true` needs a GUID `tenant`, else `code` is required).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Problem(ParamProblem),
    AdminConsent {
        state: String,
        tenant: String,
    },
    Code {
        state: String,
        code: String,
    },
    Error {
        state: String,
        error: String,
        description: String,
    },
}

fn expected(query: &str) -> Expected {
    let mut values: HashMap<&'static str, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(known) = KNOWN.iter().find(|k| **k == name) else {
            continue;
        };
        if values.contains_key(known) {
            return Expected::Problem(ParamProblem::Repeated(known));
        }
        if value.len() > limit(known) {
            return Expected::Problem(ParamProblem::TooLong(known));
        }
        values.insert(known, value.into_owned());
    }
    let get = |name: &str| values.get(name).filter(|v| !v.is_empty()).cloned();
    let Some(state) = get("state") else {
        return Expected::Problem(ParamProblem::MissingState);
    };
    if let Some(error) = get("error") {
        return Expected::Error {
            state,
            error,
            description: get("error_description").unwrap_or_default(),
        };
    }
    if get("admin_consent").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let Some(tenant) = get("tenant") else {
            return Expected::Problem(ParamProblem::Missing("tenant"));
        };
        // Only the hyphenated form Microsoft sends (not braces, `urn:uuid:` or bare digits).
        if tenant.len() != 36 || uuid::Uuid::try_parse(&tenant).is_err() {
            return Expected::Problem(ParamProblem::InvalidTenant);
        }
        return Expected::AdminConsent {
            state,
            tenant: tenant.to_lowercase(),
        };
    }
    match get("code") {
        Some(code) => Expected::Code { state, code },
        None => Expected::Problem(ParamProblem::Missing("code")),
    }
}

fn actual(result: Result<CallbackParams, ParamProblem>) -> Expected {
    match result {
        Err(problem) => Expected::Problem(problem),
        Ok(CallbackParams::AdminConsent { state, tenant }) => Expected::AdminConsent {
            state: state.expose_secret().to_owned(),
            tenant,
        },
        Ok(CallbackParams::Code { state, code }) => Expected::Code {
            state: state.expose_secret().to_owned(),
            code: code.expose_secret().to_owned(),
        },
        Ok(CallbackParams::Error {
            state,
            error,
            description,
        }) => Expected::Error {
            state: state.expose_secret().to_owned(),
            error,
            description,
        },
    }
}

fn outcome_label(e: &Expected) -> String {
    match e {
        Expected::Problem(p) => format!("{p:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_owned(),
        Expected::AdminConsent { .. } => "AdminConsent".into(),
        Expected::Code { .. } => "Code".into(),
        Expected::Error { .. } => "Error".into(),
    }
}

/// The names of the HTML tags of a page, in order. Text from a request is escaped, so an echoed
/// value can never add a tag: the tag list of a problem page does not depend on the input.
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| !c.is_whitespace() && *c != '>')
                .collect()
        })
        .collect()
}

fn reference_problem_tags() -> Vec<String> {
    tags(&ResultPage::problem(400, "t", "m", "f").render())
}

/// Checks `parse_callback` on one query against the contract, and the page a person would see.
fn check_callback(query: &str, counts: &Counts) -> Result<(), TestCaseError> {
    let want = expected(query);
    let got = actual(parse_callback(query));
    prop_assert_eq!(&got, &want, "query {:?}", query);
    counts.outcome(!matches!(got, Expected::Problem(_)));
    counts.label(outcome_label(&got));
    let page = match &got {
        Expected::Problem(problem) => {
            let page = problem.page();
            prop_assert_eq!(page.status, 400);
            page
        }
        Expected::Error {
            error, description, ..
        } => {
            let organization = query.len().is_multiple_of(2);
            let page = microsoft_error_page(error, description, organization);
            prop_assert!(
                [401, 403, 502].contains(&page.status),
                "status {}",
                page.status
            );
            page
        }
        _ => return Ok(()),
    };
    prop_assert!(!page.success);
    let html = page.render();
    prop_assert_eq!(
        tags(&html),
        reference_problem_tags(),
        "input added markup: {}",
        html
    );
    prop_assert!(!html.contains("<script"), "{}", html);
    Ok(())
}

/// Percent-encodes every byte (`%xx`), so any byte sequence, NUL and invalid UTF-8 included,
/// reaches the decoder.
fn percent_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// `application/x-www-form-urlencoded` encoding, as Microsoft sends it.
fn form(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

const SPECIAL_VALUES: &[&str] = &[
    "",
    " ",
    "\0",
    "a\0b",
    "&",
    "=",
    "&state=evil",
    "x=y&z",
    "%",
    "%zz",
    "%00",
    "+",
    "True",
    "true",
    "TRUE",
    "false",
    "1",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "AADSTS65004: User declined to consent",
    "AADSTS99999999999999999999: overflow",
    "access_denied",
    "consent_required",
    "interaction_required",
    "\u{FEFF}",
    "\u{202E}reversed",
    "é",
    "😀",
    "\r\n",
    "7f2b1c1e-0000-4000-8000-000000000001",
    "7F2B1C1E-0000-4000-8000-000000000001",
    "{7f2b1c1e-0000-4000-8000-000000000001}",
    "7f2b1c1e000040008000000000000001",
    "7f2b1c1e-0000-4000-8000-00000000000",
    "evil.com",
];

/// A parameter name: mostly real ones, some near misses.
fn param_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(KNOWN).prop_map(str::to_owned),
        1 => select(&[
            "State", "STATE", "state ", " state", "code_verifier", "redirect_uri", "tenant_id",
            "admin_consent ", "", "x", "error[]", "state\0",
        ][..])
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
    .boxed()
}

/// A parameter value: random, special, unicode, or around the size limits.
fn param_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~-]{0,40}",
        2 => select(SPECIAL_VALUES).prop_map(str::to_owned),
        2 => any::<String>().prop_map(|s| s.chars().take(60).collect()),
        1 => any::<u128>().prop_map(|n| {
            let id = uuid::Uuid::from_u128(n);
            if n % 2 == 0 { id.to_string() } else { id.to_string().to_uppercase() }
        }),
        // Around every limit: 256, 2048 and 4096 bytes, one under, at, one over.
        1 => (select(&[255usize, 256, 257, 2047, 2048, 2049, 4095, 4096, 4097, 20_000][..]), select(&["a", "é", "%"][..]))
            .prop_map(|(n, unit)| unit.repeat(n / unit.len())),
    ]
    .boxed()
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// As is: `&` and `=` in it split pairs.
    Raw,
    Form,
    /// Every byte `%xx` (a name `%73%74%61%74%65` decodes to `state`).
    AllPercent,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        1 => Just(Encoding::Raw),
        3 => Just(Encoding::Form),
        1 => Just(Encoding::AllPercent),
    ]
}

fn encode(text: &str, how: Encoding) -> String {
    match how {
        Encoding::Raw => text.to_owned(),
        Encoding::Form => form(text),
        Encoding::AllPercent => percent_all(text.as_bytes()),
    }
}

/// A query of random pairs over the real parameter names: repeated, missing, oversized,
/// differently encoded; sometimes a pair without `=`, empty pairs, or a leading `?`.
fn structured_query() -> impl Strategy<Value = String> {
    let pair = (param_name(), param_value(), encoding(), encoding(), 0u8..10);
    (proptest::collection::vec(pair, 0..12), any::<bool>()).prop_map(|(pairs, leading)| {
        let mut query = String::new();
        if leading {
            query.push('?');
        }
        for (i, (name, value, name_enc, value_enc, shape)) in pairs.into_iter().enumerate() {
            if i > 0 {
                query.push('&');
            }
            match shape {
                0 => query.push_str(&encode(&name, name_enc)),
                1 => query.push('&'),
                _ => {
                    query.push_str(&encode(&name, name_enc));
                    query.push('=');
                    query.push_str(&encode(&value, value_enc));
                }
            }
        }
        query
    })
}

/// An admin-consent redirect with a random `tenant` (GUIDs in every notation, near misses,
/// random and special values) and random `admin_consent`, in random order and encodings.
fn admin_consent_query() -> impl Strategy<Value = String> {
    let tenant = prop_oneof![
        param_value(),
        any::<u128>().prop_map(|n| {
            let id = uuid::Uuid::from_u128(n);
            match n % 5 {
                0 => id.simple().to_string(),
                1 => id.braced().to_string(),
                2 => id.urn().to_string(),
                3 => id.hyphenated().to_string()[1..].to_owned(),
                _ => format!("{id}x"),
            }
        }),
    ];
    (
        select(&["True", "true", "TRUE", "tRuE", "1", "", "yes"][..]),
        tenant,
        nonempty_value(256),
        encoding(),
        any::<Index>(),
    )
        .prop_map(|(consent, tenant, state, how, rotate)| {
            let mut pairs = [
                format!("admin_consent={}", encode(consent, how)),
                format!("tenant={}", encode(&tenant, how)),
                format!("state={}", form(&state)),
                "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default".to_owned(),
            ];
            let shift = rotate.index(pairs.len());
            pairs.rotate_left(shift);
            pairs.join("&")
        })
}

/// A well-formed redirect of one of the three kinds, with extra parameters, in random order.
#[derive(Debug, Clone)]
struct Redirect {
    query: String,
    want: Expected,
}

fn nonempty_value(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{1,40}",
        any::<String>().prop_map(|s| s.chars().take(40).collect::<String>()),
        select(SPECIAL_VALUES).prop_map(str::to_owned),
        (1..=max).prop_map(|n| "c".repeat(n)),
    ]
    .prop_filter("non-empty and within the limit", move |s| {
        !s.is_empty() && s.len() <= max
    })
    .boxed()
}

fn well_formed_redirect() -> impl Strategy<Value = Redirect> {
    let extras = proptest::collection::vec(
        (
            select(&["scope", "session_state", "client_info", "unrelated", "foo"][..]),
            "[A-Za-z0-9 ./:-]{0,40}",
        ),
        0..4,
    );
    let kind = prop_oneof![
        (nonempty_value(4096)).prop_map(|code| (vec![("code", code.clone())], Some(code), None)),
        (
            any::<u128>(),
            select(&["True", "true", "TRUE"][..]),
            any::<bool>()
        )
            .prop_map(|(n, consent, upper)| {
                let id = uuid::Uuid::from_u128(n).to_string();
                let sent = if upper { id.to_uppercase() } else { id.clone() };
                (
                    vec![("admin_consent", consent.to_owned()), ("tenant", sent)],
                    None,
                    Some(id),
                )
            }),
        (
            nonempty_value(256),
            proptest::option::of(nonempty_value(4096)),
            any::<bool>()
        )
            .prop_map(|(error, description, admin)| {
                let mut pairs = vec![("error", error)];
                if let Some(d) = description {
                    pairs.push(("error_description", d));
                }
                if admin {
                    pairs.push(("admin_consent", "True".into()));
                }
                (pairs, None, None)
            }),
    ];
    (nonempty_value(256), kind, extras, any::<Index>()).prop_map(
        |(state, (mut pairs, code, tenant), extras, rotate)| {
            pairs.push(("state", state.clone()));
            let mut seen: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
            for (name, value) in extras {
                if !seen.contains(&name) {
                    seen.push(name);
                    pairs.push((name, value));
                }
            }
            let shift = rotate.index(pairs.len());
            pairs.rotate_left(shift);
            let want = if let Some(error) = pairs.iter().find(|(n, _)| *n == "error") {
                Expected::Error {
                    state: state.clone(),
                    error: error.1.clone(),
                    description: pairs
                        .iter()
                        .find(|(n, _)| *n == "error_description")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                }
            } else if let Some(tenant) = tenant {
                Expected::AdminConsent {
                    state: state.clone(),
                    tenant,
                }
            } else {
                Expected::Code {
                    state: state.clone(),
                    code: code.expect("a code redirect"),
                }
            };
            let query = pairs
                .iter()
                .map(|(n, v)| format!("{n}={}", form(v)))
                .collect::<Vec<_>>()
                .join("&");
            Redirect { query, want }
        },
    )
}

#[test]
fn callback_query_arbitrary_strings() {
    let counts = Counts::default();
    run(
        "callback: arbitrary strings",
        512,
        prop_oneof![
            any::<String>(),
            "[a-z_=&%+0-9A-F\u{0}<>;#?]{0,200}",
            "(state|code|error|tenant|admin_consent)=[^&]{0,20}(&(state|code|error|tenant|admin_consent)=[^&]{0,20}){0,4}",
        ],
        &counts,
        |query| check_callback(&query, &counts),
    );
}

#[test]
fn callback_query_arbitrary_bytes_percent_encoded() {
    let counts = Counts::default();
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(any::<u8>(), 0..300),
        0u8..3,
    )
        .prop_map(|(a, b, shape)| match shape {
            // The whole query is one blob of encoded bytes.
            0 => percent_all(&a),
            // Real names, values of arbitrary bytes (NUL, invalid UTF-8...).
            1 => format!("state={}&code={}", percent_all(&a), percent_all(&b)),
            _ => format!(
                "admin_consent=True&tenant={}&state={}",
                percent_all(&b),
                percent_all(&a)
            ),
        });
    run(
        "callback: arbitrary bytes, percent-encoded",
        512,
        strategy,
        &counts,
        |query| check_callback(&query, &counts),
    );
}

#[test]
fn callback_query_structured_mixes_of_real_parameters() {
    let counts = Counts::default();
    run(
        "callback: structured parameter mixes",
        512,
        prop_oneof![3 => structured_query(), 1 => admin_consent_query()],
        &counts,
        |query| check_callback(&query, &counts),
    );
}

#[test]
fn callback_well_formed_redirects_round_trip() {
    let counts = Counts::default();
    run(
        "callback: well-formed redirects",
        512,
        well_formed_redirect(),
        &counts,
        |redirect| {
            let got = actual(parse_callback(&redirect.query));
            prop_assert_eq!(&got, &redirect.want, "query {:?}", redirect.query);
            // The contract's statement agrees with the generator's.
            prop_assert_eq!(&expected(&redirect.query), &redirect.want);
            check_callback(&redirect.query, &counts)
        },
    );
}

#[test]
fn aadsts_codes_are_read_only_from_the_prefix() {
    let counts = Counts::default();
    let strategy = prop_oneof![
        any::<String>(),
        "[ \t]{0,2}AADSTS[0-9]{0,15}[:a-z ]{0,10}",
        (any::<u64>(), "[ ]{0,2}").prop_map(|(n, pad)| format!("{pad}AADSTS{n}: x")),
    ];
    run(
        "callback: AADSTS codes",
        512,
        strategy,
        &counts,
        |description| {
            let code = aadsts_code(&description);
            counts.outcome(code.is_some());
            if let Some(code) = code {
                let rest = description.trim_start().strip_prefix("AADSTS");
                prop_assert!(rest.is_some(), "{:?}", description);
                let digits: String = rest
                    .unwrap_or_default()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                prop_assert_eq!(digits.parse::<u32>().ok(), Some(code));
            }
            Ok(())
        },
    );
}

// ----- rule JSON ---------------------------------------------------------------------------------

/// Every JSON key the rule format knows, so random objects reach deep into the parser.
fn rule_keys() -> Vec<&'static str> {
    let mut keys = vec![
        "version",
        "rules",
        "id",
        "name",
        "order",
        "enabled",
        "conditions",
        "exceptions",
        "actions",
        "stopProcessing",
        "domain",
        "includeSubdomains",
        "field",
        "pattern",
        "caseSensitive",
        "header",
        "minimumSize",
        "maximumSize",
        "categories",
        "color",
        "path",
        "importance",
        "status",
        "recipients",
        "comment",
    ];
    keys.extend(CONDITION_NAMES);
    keys.extend(ACTION_NAMES);
    keys
}

const RULE_STRINGS: &[&str] = &[
    "",
    " ",
    "\0",
    "\u{7}",
    "invoice",
    "a@x.com",
    "alice@fabrikam.com",
    "not an address",
    "acme.com",
    "*.acme.com",
    "Finance/Invoices",
    "inbox",
    "outbox/x",
    "a//b",
    "msgfolderroot",
    "preset4",
    "preset25",
    "none",
    "high",
    "flagged",
    "subject",
    "header",
    "X-Mailer",
    "(",
    "[a-",
    "\\",
    "a{99999999}",
    "Red;Blue",
    "<script>alert(1)</script>",
    "ß",
    "İ",
    "\u{202E}",
    "r1",
];

fn json_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(RULE_STRINGS).prop_map(str::to_owned),
        2 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
        1 => (1usize..5_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

fn json_number() -> BoxedStrategy<Value> {
    prop_oneof![
        (0u64..100).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
    ]
    .boxed()
}

fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(rule_keys()).prop_map(str::to_owned),
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
    .boxed()
}

/// Arbitrary JSON, biased to the rule format's keys and values.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((json_key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
    .boxed()
}

/// One rule-shaped object: each field absent, valid-looking, or arbitrary.
fn rule_like() -> BoxedStrategy<Value> {
    let field = |good: BoxedStrategy<Value>| {
        prop_oneof![
            1 => Just(None),
            3 => good.prop_map(Some),
            1 => json_value().prop_map(Some),
        ]
    };
    (
        field("[a-z0-9]{1,8}".prop_map(Value::from).boxed()),
        field("[A-Za-z ]{1,12}".prop_map(Value::from).boxed()),
        field((0u32..100).prop_map(Value::from).boxed()),
        field(any::<bool>().prop_map(Value::from).boxed()),
        field(valid_condition_list()),
        field(valid_condition_list()),
        field(valid_actions().prop_map(|(a, _)| Value::Array(a)).boxed()),
        field(any::<bool>().prop_map(Value::from).boxed()),
        proptest::option::of((json_key(), json_value())),
    )
        .prop_map(
            |(id, name, order, enabled, conditions, exceptions, actions, stop, extra)| {
                let mut rule = serde_json::Map::new();
                for (key, value) in [
                    ("id", id),
                    ("name", name),
                    ("order", order),
                    ("enabled", enabled),
                    ("conditions", conditions),
                    ("exceptions", exceptions),
                    ("actions", actions),
                    ("stopProcessing", stop),
                ] {
                    if let Some(value) = value {
                        rule.insert(key.into(), value);
                    }
                }
                if let Some((key, value)) = extra {
                    rule.insert(key, value);
                }
                Value::Object(rule)
            },
        )
        .boxed()
}

// Valid rule sets.

const WORDS: &[&str] = &["invoice", "Rechnung", "urgent", "ß", "İstanbul", "report"];
const EMAILS: &[&str] = &[
    "alice@fabrikam.com",
    "Bob@Contoso.com",
    "ops@mail.fabrikam.com",
    "ap@example.com",
];
const DOMAINS: &[&str] = &["acme.com", "mail.fabrikam.com", "example.org"];
const CATEGORIES: &[&str] = &["Red", "Invoices", "Ärger", "Paid", "Blue category"];
const FOLDERS: &[&str] = &[
    "Finance/Invoices",
    "inbox/Reports",
    "Archive/2025",
    "archive",
    "Clients/Ärger",
    "msgfolderroot/Inbox",
];
const PATTERNS: &[&str] = &[r"^INV-\d+", "(?i)urgent", "a|b", r"\bfoo\b", "[0-9]{2,4}"];
const BOOL_CONDITIONS: &[&str] = &[
    "sentToMe",
    "sentOnlyToMe",
    "sentCcMe",
    "sentToOrCcMe",
    "notSentToMe",
    "hasAttachments",
    "isAutomaticReply",
    "isNonDeliveryReport",
    "isReadReceipt",
    "isMeetingRequest",
    "isMeetingResponse",
    "isAutomaticForward",
    "isEncrypted",
    "isSigned",
    "isVoicemail",
    "isApprovalRequest",
    "isPermissionControlled",
];
const TEXT_CONDITIONS: &[&str] = &[
    "senderContains",
    "recipientContains",
    "subjectContains",
    "bodyContains",
    "bodyOrSubjectContains",
    "headerContains",
];

fn some_of(values: &'static [&'static str], max: usize) -> BoxedStrategy<Vec<&'static str>> {
    proptest::collection::vec(select(values), 1..=max).boxed()
}

fn valid_condition() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        (select(TEXT_CONDITIONS), some_of(WORDS, 3)).prop_map(|(n, w)| json!({ n: w })),
        (
            select(&["fromAddresses", "sentToAddresses"][..]),
            some_of(EMAILS, 3)
        )
            .prop_map(|(n, a)| json!({ n: a })),
        (select(BOOL_CONDITIONS), any::<bool>()).prop_map(|(n, b)| json!({ n: b })),
        select(&["low", "normal", "high"][..]).prop_map(|v| json!({"importance": v})),
        select(&["normal", "personal", "private", "confidential"][..])
            .prop_map(|v| json!({"sensitivity": v})),
        select(&["notFlagged", "flagged", "complete"][..]).prop_map(|v| json!({"flagStatus": v})),
        (0u64..100_000, 0u64..100_000, 0u8..3).prop_map(|(a, b, which)| {
            let (min, max) = (a.min(b), a.max(b));
            match which {
                0 => json!({"withinSizeRange": {"minimumSize": min}}),
                1 => json!({"withinSizeRange": {"maximumSize": max}}),
                _ => json!({"withinSizeRange": {"minimumSize": min, "maximumSize": max}}),
            }
        }),
        some_of(CATEGORIES, 3).prop_map(|c| json!({ "categories": c })),
        (select(DOMAINS), any::<bool>())
            .prop_map(|(d, s)| json!({"senderDomain": {"domain": d, "includeSubdomains": s}})),
        (
            select(&["subject", "body", "bodyOrSubject", "sender", "recipients"][..]),
            select(PATTERNS),
            any::<bool>()
        )
            .prop_map(
                |(f, p, cs)| json!({"regex": {"field": f, "pattern": p, "caseSensitive": cs}})
            ),
        (
            select(PATTERNS),
            proptest::option::of(select(&["X-Mailer", "Received"][..]))
        )
            .prop_map(|(p, h)| match h {
                Some(h) => json!({"regex": {"field": "header", "pattern": p, "header": h}}),
                None => json!({"regex": {"field": "header", "pattern": p}}),
            }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({ "all": v })),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({ "any": v })),
            inner.prop_map(|c| json!({ "not": c })),
        ]
    })
    .boxed()
}

/// `conditions`/`exceptions`: absent (`None`), null, one object, or a list.
fn valid_condition_list() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        valid_condition(),
        proptest::collection::vec(valid_condition(), 0..4).prop_map(Value::Array),
    ]
    .boxed()
}

/// Actions that validate together, and whether the rule must stop processing (no actions).
fn valid_actions() -> BoxedStrategy<(Vec<Value>, bool)> {
    (
        proptest::option::of((
            some_of(CATEGORIES, 3),
            proptest::option::of(prop_oneof![
                Just("none".to_owned()),
                (0u8..=24).prop_map(|n| format!("preset{n}"))
            ]),
        )),
        0u8..3,
        select(FOLDERS),
        proptest::sample::subsequence(FOLDERS, 0..=2),
        any::<bool>(),
        proptest::option::of(select(&["low", "normal", "high"][..])),
        proptest::option::of(select(&["notFlagged", "flagged", "complete"][..])),
        proptest::option::of((some_of(EMAILS, 3), proptest::option::of("[A-Za-z ]{0,30}"))),
    )
        .prop_map(
            |(categorize, move_or_delete, move_to, copies, read, importance, flag, forward)| {
                let mut actions = Vec::new();
                if let Some((categories, color)) = categorize {
                    actions.push(match color {
                        Some(color) => {
                            json!({"assignCategories": {"categories": categories, "color": color}})
                        }
                        None => json!({"assignCategories": {"categories": categories}}),
                    });
                }
                match move_or_delete {
                    0 => actions.push(json!({"moveToFolder": {"path": move_to}})),
                    1 => actions.push(json!({"delete": {}})),
                    _ => {}
                }
                for path in copies {
                    actions.push(json!({"copyToFolder": {"path": path}}));
                }
                if read {
                    actions.push(json!({"markAsRead": {}}));
                }
                if let Some(importance) = importance {
                    actions.push(json!({"markImportance": {"importance": importance}}));
                }
                if let Some(status) = flag {
                    actions.push(json!({"flag": {"status": status}}));
                }
                if let Some((recipients, comment)) = forward {
                    actions.push(match comment {
                        Some(c) => json!({"forwardTo": {"recipients": recipients, "comment": c}}),
                        None => json!({"forwardTo": {"recipients": recipients}}),
                    });
                }
                let stop = actions.is_empty();
                (actions, stop)
            },
        )
        // Order does not matter to validity.
        .prop_flat_map(|(actions, stop)| (Just(actions).prop_shuffle(), Just(stop)))
        .boxed()
}

fn valid_rule(index: usize) -> BoxedStrategy<Value> {
    (
        "[A-Za-z0-9_.:-]{1,20}",
        "[A-Za-zÄé][A-Za-z0-9 Ääéßİ]{0,40}",
        any::<u32>(),
        proptest::option::of(proptest::option::of(any::<bool>())),
        proptest::option::of(valid_condition_list()),
        proptest::option::of(valid_condition_list()),
        valid_actions(),
        any::<bool>(),
    )
        .prop_map(
            move |(
                id,
                name,
                order,
                enabled,
                conditions,
                exceptions,
                (actions, stop),
                more_stop,
            )| {
                let mut rule = json!({
                    "id": format!("{id}-{index}"),
                    "name": name,
                    "order": order,
                    "actions": actions,
                });
                match enabled {
                    Some(Some(b)) => rule["enabled"] = json!(b),
                    Some(None) => rule["enabled"] = Value::Null,
                    None => {}
                }
                if let Some(c) = conditions {
                    rule["conditions"] = c;
                }
                if let Some(e) = exceptions {
                    rule["exceptions"] = e;
                }
                if stop || more_stop {
                    rule["stopProcessing"] = json!(true);
                }
                rule
            },
        )
        .boxed()
}

/// A valid rule set document of 0 to 6 rules.
fn valid_document() -> BoxedStrategy<Value> {
    (0usize..=6, any::<u32>())
        .prop_flat_map(|(n, version)| {
            let rules: Vec<BoxedStrategy<Value>> = (0..n).map(valid_rule).collect();
            (rules, Just(version))
        })
        .prop_map(|(rules, version)| json!({"version": version, "rules": rules}))
        .boxed()
}

/// The documented examples (README, module docs, the brief).
const EXAMPLES: &[&str] = &[
    r#"{"version":1,"rules":[{"id":"r1","name":"Invoices","order":1,"enabled":true,"conditions":{"all":[{"subjectContains":["invoice"]},{"senderDomain":{"domain":"acme.com"}}]},"exceptions":null,"actions":[{"assignCategories":{"categories":["Invoices"]}},{"moveToFolder":{"path":"Finance/Invoices"}}],"stopProcessing":false}]}"#,
    r#"{"version": 4, "rules": [{"id": "invoices", "name": "Invoices from Acme", "order": 10, "enabled": true,
        "conditions": [{"subjectContains": ["invoice", "rechnung"]}, {"senderDomain": {"domain": "acme.com", "includeSubdomains": true}}],
        "exceptions": [{"categories": ["Paid"]}],
        "actions": [{"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
                    {"forwardTo": {"recipients": ["ap@example.com"], "comment": "For booking"}},
                    {"moveToFolder": {"path": "Finance/Invoices"}}],
        "stopProcessing": true}]}"#,
    r#"{"version": 0, "rules": []}"#,
];

/// The invariants every answer of `parse_and_validate` keeps: an `Err` has at least one error,
/// each naming the rule it is about (index, and id when the rule has a readable one) and/or the
/// field; only a document that is not a JSON object at all gets one nameless error.
fn check_rules_answer(
    doc: &str,
    answer: &Result<ValidRuleSet, Vec<RuleValidationError>>,
) -> Result<(), TestCaseError> {
    let errors = match answer {
        Ok(valid) => {
            // What would be stored reads back as the same rule set.
            match parse_and_validate(&valid.to_json()) {
                Ok(again) => prop_assert_eq!(again.rule_set(), valid.rule_set()),
                Err(errors) => {
                    prop_assert!(false, "stored form does not re-validate: {:?}", errors)
                }
            }
            return Ok(());
        }
        Err(errors) => errors,
    };
    prop_assert!(!errors.is_empty(), "Err without errors for {}", doc);
    let parsed: Option<Value> = serde_json::from_str(doc).ok();
    let rules = parsed
        .as_ref()
        .and_then(|v| v.get("rules"))
        .and_then(Value::as_array);
    for e in errors {
        prop_assert!(!e.to_string().is_empty());
        prop_assert!(!e.code().is_empty());
        let wire = serde_json::to_value(e).expect("errors serialize");
        prop_assert_eq!(wire["code"].as_str(), Some(e.code()));
        prop_assert_eq!(wire["field"].as_str(), Some(e.field.as_str()));
        prop_assert!(e.rule_id.is_none() || e.rule_index.is_some(), "{:?}", e);
        match e.rule_index {
            Some(i) => {
                let rule = rules.and_then(|r| r.get(i));
                prop_assert!(rule.is_some(), "rule index {} out of range: {:?}", i, e);
                let id = rule
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.chars()
                            .take(limits::MAX_RULE_ID_CHARS)
                            .collect::<String>()
                    });
                prop_assert_eq!(&e.rule_id, &id, "{:?}", e);
            }
            None if e.field.is_empty() => {
                // Nameless: the document itself is not a JSON object, or has a key "" (named by
                // its kind, `unknown field ```).
                let document_level = e.code() == "invalidJson"
                    && errors.len() == 1
                    && !matches!(parsed, Some(Value::Object(_)));
                let empty_key = e.code() == "unknownField";
                prop_assert!(document_level || empty_key, "nameless error {:?}", e);
            }
            None => {}
        }
    }
    Ok(())
}

/// Parses twice (determinism) and checks the invariants; counts the outcome.
fn check_rules(doc: &str, counts: &Counts) -> Result<(), TestCaseError> {
    let first = parse_and_validate(doc);
    let second = parse_and_validate(doc);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(a.rule_set(), b.rule_set());
            prop_assert_eq!(a.to_json(), b.to_json());
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, b, "errors differ between runs"),
        _ => prop_assert!(false, "Ok once, Err once for {}", doc),
    }
    check_rules_answer(doc, &first)?;
    counts.outcome(first.is_ok());
    if let Err(errors) = &first {
        for e in errors.iter().take(3) {
            counts.label(e.code());
        }
    }
    Ok(())
}

#[test]
fn rules_arbitrary_strings() {
    let counts = Counts::default();
    let strategy = prop_oneof![
        any::<String>(),
        "[\\[\\]{}\",:0-9a-z \\\\]{0,200}",
        // Truncated and spliced examples.
        (select(EXAMPLES), any::<Index>(), any::<String>()).prop_map(|(doc, at, tail)| {
            let mut cut = at.index(doc.len() + 1);
            while !doc.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{}", &doc[..cut], tail)
        }),
        // The examples wrapped in JSON whitespace (valid).
        (select(EXAMPLES), "[ \t\r\n]{0,4}", "[ \t\r\n]{0,4}")
            .prop_map(|(doc, before, after)| format!("{before}{doc}{after}")),
    ];
    run("rules: arbitrary strings", 512, strategy, &counts, |doc| {
        check_rules(&doc, &counts)
    });
}

#[test]
fn rules_arbitrary_json_values() {
    let counts = Counts::default();
    let strategy = prop_oneof![
        // Any JSON document.
        json_value(),
        // Any `rules` value, any `version`.
        (json_value(), json_value()).prop_map(|(v, r)| json!({"version": v, "rules": r})),
        // A list of arbitrary rules.
        proptest::collection::vec(json_value(), 0..6)
            .prop_map(|rules| json!({"version": 1, "rules": rules})),
        // A list of rule-shaped objects.
        proptest::collection::vec(rule_like(), 0..6)
            .prop_map(|rules| json!({"version": 1, "rules": rules})),
    ];
    run("rules: arbitrary JSON", 512, strategy, &counts, |doc| {
        check_rules(&doc.to_string(), &counts)
    });
}

#[test]
fn rules_valid_documents_stay_valid() {
    let counts = Counts::default();
    run(
        "rules: generated valid documents",
        384,
        valid_document(),
        &counts,
        |doc| {
            let text = doc.to_string();
            let answer = parse_and_validate(&text);
            prop_assert!(
                answer.is_ok(),
                "valid document refused: {:?}\n{}",
                answer.err(),
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
            // Pretty-printed, it is the same document.
            let pretty = serde_json::to_string_pretty(&doc).expect("JSON");
            prop_assert_eq!(
                parse_and_validate(&pretty)
                    .map(|v| v.rule_set().clone())
                    .ok(),
                answer.as_ref().ok().map(|v| v.rule_set().clone())
            );
            check_rules(&text, &counts)
        },
    );
    for example in EXAMPLES {
        assert!(parse_and_validate(example).is_ok(), "{example}");
    }
}

/// How a valid document is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    /// Removes the value at a random place.
    Delete(Index),
    /// Replaces the value at a random place with arbitrary JSON.
    Replace(Index, Value),
    /// Gives the value at a random place another JSON type.
    Retype(Index),
    /// Replaces the value at a random place with a huge string.
    HugeString(Index, usize, bool),
    /// Wraps the value at a random place in `depth` levels of `{"not": ...}` or `[...]`.
    Nest(Index, usize, bool),
    /// Replaces the value at a random place with a number JSON cannot hold or the type refuses.
    HugeNumber(Index, &'static str),
    /// Makes a rule's first condition an invalid regex.
    InvalidRegex(Index, &'static str),
    /// Appends a copy of a rule (same id).
    DuplicateId(Index),
    /// Repeats the rules (with fresh ids) up to `n` rules.
    ManyRules(usize),
    /// Removes a required field of a rule.
    RemoveRequired(Index, &'static str),
}

const HUGE_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "18446744073709551616",
    "4294967296",
    "-1",
    "1.5",
    "-0",
    "1e-400",
    "99999999999999999999999999999999999999",
];

const BAD_REGEXES: &[&str] = &[
    "(",
    "[a-",
    "a{99999999}",
    "(?<",
    "\\",
    "\\p{NoSuchClass}",
    "(?P<n>a)(?P<n>b)",
    "a{1000}{1000}",
    "((((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))))",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Delete),
        3 => (any::<Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        3 => any::<Index>().prop_map(Mutation::Retype),
        2 => (any::<Index>(), 1_000usize..200_000, any::<bool>())
            .prop_map(|(i, n, wide)| Mutation::HugeString(i, n, wide)),
        2 => (any::<Index>(), prop_oneof![1usize..20, 20usize..130, 130usize..300], any::<bool>())
            .prop_map(|(i, d, arrays)| Mutation::Nest(i, d, arrays)),
        2 => (any::<Index>(), select(HUGE_NUMBERS)).prop_map(|(i, n)| Mutation::HugeNumber(i, n)),
        2 => (any::<Index>(), select(BAD_REGEXES)).prop_map(|(i, r)| Mutation::InvalidRegex(i, r)),
        1 => any::<Index>().prop_map(Mutation::DuplicateId),
        1 => prop_oneof![1usize..=500, 501usize..3_000].prop_map(Mutation::ManyRules),
        2 => (any::<Index>(), select(&["id", "name", "order", "actions"][..]))
            .prop_map(|(i, f)| Mutation::RemoveRequired(i, f)),
    ]
}

/// JSON pointers of every value in `doc` (the root excluded).
fn pointers(doc: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    walk(v, p, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    walk(v, p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, String::new(), &mut out);
    out
}

fn retype(value: &Value) -> Value {
    match value {
        Value::Null => json!({}),
        Value::Bool(b) => json!(b.to_string()),
        Value::Number(n) => json!(n.to_string()),
        Value::String(s) => s.parse::<f64>().map_or(json!(s.len()), |n| json!(n)),
        Value::Array(items) => Value::Object(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v.clone()))
                .collect(),
        ),
        Value::Object(map) => Value::Array(map.values().cloned().collect()),
    }
}

/// A placeholder replaced by raw number text after serialization.
const RAW: &str = "\u{1}raw-number\u{1}";

/// What a mutation must cause, beyond the generic invariants.
enum Must {
    Anything,
    /// `Err` with an error of this code (at this rule index, when given).
    Fail(&'static str, Option<usize>),
    Pass,
}

/// Applies `mutation` to the valid `doc`; returns the document text and what it must cause.
fn mutate(mut doc: Value, mutation: &Mutation) -> (String, Must, &'static str) {
    let paths = pointers(&doc);
    let rules_len = doc["rules"].as_array().map_or(0, Vec::len);
    let pick = |i: &Index| -> Option<String> {
        (!paths.is_empty()).then(|| paths[i.index(paths.len())].clone())
    };
    match mutation {
        Mutation::Delete(i) => {
            if let Some(p) = pick(i) {
                let (parent, last) = p.rsplit_once('/').expect("a pointer");
                let last = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(n) = last.parse::<usize>() {
                            items.remove(n);
                        }
                    }
                    _ => {}
                }
            }
            (doc.to_string(), Must::Anything, "delete")
        }
        Mutation::Replace(i, value) => {
            if let Some(target) = pick(i).and_then(|p| doc.pointer_mut(&p)) {
                *target = value.clone();
            }
            (doc.to_string(), Must::Anything, "replace")
        }
        Mutation::Retype(i) => {
            if let Some(target) = pick(i).and_then(|p| doc.pointer_mut(&p)) {
                *target = retype(target);
            }
            (doc.to_string(), Must::Anything, "retype")
        }
        Mutation::HugeString(i, n, wide) => {
            let huge = if *wide {
                "é".repeat(*n)
            } else {
                "x".repeat(*n)
            };
            if let Some(target) = pick(i).and_then(|p| doc.pointer_mut(&p)) {
                *target = Value::String(huge);
            }
            (doc.to_string(), Must::Anything, "huge string")
        }
        Mutation::Nest(i, depth, arrays) => {
            if let Some(target) = pick(i).and_then(|p| doc.pointer_mut(&p)) {
                let mut value = target.take();
                for _ in 0..*depth {
                    value = if *arrays {
                        json!([value])
                    } else {
                        json!({ "not": value })
                    };
                }
                *target = value;
            }
            (doc.to_string(), Must::Anything, "deep nesting")
        }
        Mutation::HugeNumber(i, raw) => {
            if let Some(target) = pick(i).and_then(|p| doc.pointer_mut(&p)) {
                *target = Value::String(RAW.into());
            }
            let text = doc
                .to_string()
                .replace(&Value::String(RAW.into()).to_string(), raw);
            (text, Must::Anything, "huge number")
        }
        Mutation::InvalidRegex(i, pattern) => {
            if rules_len == 0 {
                return (doc.to_string(), Must::Pass, "invalid regex (no rule)");
            }
            let at = i.index(rules_len);
            doc["rules"][at]["conditions"] =
                json!([{"regex": {"field": "subject", "pattern": pattern}}]);
            (
                doc.to_string(),
                Must::Fail("invalidRegex", Some(at)),
                "invalid regex",
            )
        }
        Mutation::DuplicateId(i) => {
            if rules_len == 0 {
                return (doc.to_string(), Must::Pass, "duplicate id (no rule)");
            }
            let copy = doc["rules"][i.index(rules_len)].clone();
            doc["rules"].as_array_mut().expect("rules").push(copy);
            (
                doc.to_string(),
                Must::Fail("duplicateRuleId", Some(rules_len)),
                "duplicate id",
            )
        }
        Mutation::ManyRules(n) => {
            // The document's own rules, then simple ones (cheap to validate) with fresh ids.
            let rules = doc["rules"].as_array_mut().expect("rules");
            for k in rules.len()..*n {
                rules.push(json!({"id": format!("many-{k}"), "name": "Rule", "order": k, "actions": [{"markAsRead": {}}]}));
            }
            if *n > limits::MAX_RULES {
                (
                    doc.to_string(),
                    Must::Fail("tooManyRules", None),
                    "too many rules",
                )
            } else {
                (doc.to_string(), Must::Pass, "many rules (within limit)")
            }
        }
        Mutation::RemoveRequired(i, field) => {
            if rules_len == 0 {
                return (doc.to_string(), Must::Pass, "remove required (no rule)");
            }
            let at = i.index(rules_len);
            doc["rules"][at]
                .as_object_mut()
                .expect("a rule")
                .remove(*field);
            (
                doc.to_string(),
                Must::Fail("missingField", Some(at)),
                "remove required",
            )
        }
    }
}

#[test]
fn rules_mutations_of_valid_documents() {
    let counts = Counts::default();
    let base = prop_oneof![
        3 => valid_document(),
        1 => select(EXAMPLES).prop_map(|d| serde_json::from_str::<Value>(d).expect("example")),
    ];
    run(
        "rules: mutated valid documents",
        384,
        (base, mutation()),
        &counts,
        |(doc, mutation)| {
            prop_assert!(
                parse_and_validate(&doc.to_string()).is_ok(),
                "the base is valid"
            );
            let (text, must, label) = mutate(doc, &mutation);
            counts.label(label);
            let answer = parse_and_validate(&text);
            match must {
                Must::Anything => {}
                Must::Pass => prop_assert!(answer.is_ok(), "{:?}", answer.as_ref().err()),
                Must::Fail(code, index) => {
                    let errors = answer.as_ref().err();
                    prop_assert!(
                        errors.is_some_and(|errors| errors.iter().any(
                            |e| e.code() == code && (index.is_none() || e.rule_index == index)
                        )),
                        "expected {} at {:?}, got {:?}",
                        code,
                        index,
                        errors.map(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
                    );
                }
            }
            check_rules(&text, &counts)
        },
    );
}

/// Sanity check of the strategies themselves: they produce what they claim (a strategy that
/// only ever produced errors would make the properties above vacuous).
#[test]
fn fuzz_generators_reach_every_outcome() {
    let mut runner = TestRunner::new(config(256));
    let mut seen = std::collections::BTreeSet::new();
    let strategy = prop_oneof![
        structured_query(),
        admin_consent_query(),
        well_formed_redirect().prop_map(|r| r.query)
    ];
    for _ in 0..2_000 {
        let query = strategy.new_tree(&mut runner).expect("a query").current();
        seen.insert(outcome_label(&actual(parse_callback(&query))));
    }
    println!("fuzz generators: callback outcomes seen {seen:?}");
    for outcome in [
        "AdminConsent",
        "Code",
        "Error",
        "MissingState",
        "Repeated",
        "TooLong",
        "Missing",
        "InvalidTenant",
    ] {
        assert!(
            seen.contains(outcome),
            "{outcome} never generated: {seen:?}"
        );
    }
}
