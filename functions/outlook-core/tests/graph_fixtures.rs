//! Our Graph types against Microsoft's documented examples (`../shared/graph-fixtures`).
//!
//! Every fixture file is listed here with what it must do: parse as one of our types, fail a
//! typed parse at named placeholder fields (and parse once exactly those are replaced), or have
//! no type of ours (with the reason). A fixture that is added later fails the test until it is
//! listed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use outlook_core::graph::{
    BatchRequest, BatchResponse, Collection, DeltaPage, GraphErrorBody, GraphErrorDetail,
    GraphMessage, MailFolder, MessagePatch, OutlookCategory, match_responses, parse_retry_after,
    plan_batches,
};
use outlook_core::message::MessageKind;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/graph-fixtures");
    assert!(
        dir.join("INDEX.md").is_file(),
        "Graph fixtures not found at {} (expected the `shared` directory beside the repository root)",
        dir.display()
    );
    dir
}

fn load(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// Our types a fixture body can be checked against.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Message,
    MessageCollection,
    MessageDelta,
    Folder,
    FolderCollection,
    FolderDelta,
    Category,
    CategoryCollection,
    ErrorBody,
    ErrorDetail,
    BatchRequest,
    BatchResponse,
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(value.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Ty {
    fn parse(self, value: &Value) -> Result<(), String> {
        match self {
            Ty::Message => typed::<GraphMessage>(value),
            Ty::MessageCollection => typed::<Collection<GraphMessage>>(value),
            Ty::MessageDelta => typed::<DeltaPage<GraphMessage>>(value),
            Ty::Folder => typed::<MailFolder>(value),
            Ty::FolderCollection => typed::<Collection<MailFolder>>(value),
            Ty::FolderDelta => typed::<DeltaPage<MailFolder>>(value),
            Ty::Category => typed::<OutlookCategory>(value),
            Ty::CategoryCollection => typed::<Collection<OutlookCategory>>(value),
            Ty::ErrorBody => typed::<GraphErrorBody>(value),
            Ty::ErrorDetail => typed::<GraphErrorDetail>(value),
            Ty::BatchRequest => typed::<BatchRequest>(value),
            Ty::BatchResponse => typed::<BatchResponse>(value),
        }
    }
}

/// A field of each item (each element of `value`, or the body itself) and what makes it valid.
#[derive(Debug, Clone, Copy)]
struct Fix {
    /// Dotted path inside the item, e.g. `body.contentType`.
    field: &'static str,
    /// Why the documented value fails.
    why: &'static str,
    /// A valid value of the field's type.
    valid: fn() -> Value,
}

const PLACEHOLDER_DATE: &str = "placeholder \"datetime-value\" is not an RFC 3339 date";
const PLACEHOLDER_BODY_TYPE: &str =
    "placeholder body content type (\"\" / \"contentType-value\") is neither text nor html";
const NO_ID: &str = "the doc example is truncated and omits `id`, which Graph always returns";

fn a_date() -> Value {
    json!("2016-10-19T10:37:00Z")
}
fn an_id() -> Value {
    json!("AAMkADhMGAAA=")
}
fn html() -> Value {
    json!("html")
}
fn a_bool() -> Value {
    json!(true)
}

const RECEIVED: Fix = Fix {
    field: "receivedDateTime",
    why: PLACEHOLDER_DATE,
    valid: a_date,
};
const SENT: Fix = Fix {
    field: "sentDateTime",
    why: PLACEHOLDER_DATE,
    valid: a_date,
};
const BODY_TYPE: Fix = Fix {
    field: "body.contentType",
    why: PLACEHOLDER_BODY_TYPE,
    valid: html,
};
const ID: Fix = Fix {
    field: "id",
    why: NO_ID,
    valid: an_id,
};

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `response_body` parses as the type.
    Response(Ty),
    /// `request_body` parses as the type (the doc shows no response).
    Request(Ty),
    /// Both bodies parse.
    Both { request: Ty, response: Ty },
    /// `response_body` fails as documented, and parses once exactly these fields are fixed.
    ResponseFails(Ty, &'static [Fix]),
    /// The documented response has no body (202/204 actions).
    NoBody,
    /// Nothing of ours reads this shape.
    NotOurs(&'static str),
}

const WEBHOOKS: &str =
    "change notifications and subscriptions are not part of the Graph mail client";
const RULES: &str = "Outlook inbox rules are not managed through Graph by this integration";

const FIXTURES: &[(&str, Expect)] = &[
    (
        "change-notification.notification.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "change-notification.notification.2.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    ("errors.format.1.json", Expect::Response(Ty::ErrorBody)),
    ("errors.format.2.json", Expect::Response(Ty::ErrorDetail)),
    ("errors.response.1.json", Expect::Response(Ty::ErrorBody)),
    ("errors.response.2.json", Expect::Response(Ty::ErrorBody)),
    (
        "eventmessage-update.response.1.json",
        Expect::ResponseFails(Ty::Message, &[RECEIVED, SENT, BODY_TYPE, ID]),
    ),
    (
        "json-batching.request.1.json",
        Expect::Request(Ty::BatchRequest),
    ),
    (
        "json-batching.request.2.json",
        Expect::Request(Ty::BatchRequest),
    ),
    (
        "json-batching.response.1.json",
        Expect::Both {
            request: Ty::BatchRequest,
            response: Ty::BatchResponse,
        },
    ),
    (
        "json-batching.response.2.json",
        Expect::Both {
            request: Ty::BatchRequest,
            response: Ty::BatchResponse,
        },
    ),
    (
        "lifecycle-notification.notification.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "lifecycle-notification.notification.2.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "lifecycle-notification.notification.3.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "mailfolder-delta.response.1.json",
        Expect::ResponseFails(Ty::FolderDelta, &[ID]),
    ),
    (
        "mailfolder-get.response.1.json",
        Expect::Response(Ty::Folder),
    ),
    (
        "mailfolder-get.response.2.json",
        Expect::Response(Ty::Folder),
    ),
    // Placeholder strings ("id-value") and numbers (99) are of the right JSON types.
    (
        "mailfolder-list-childfolders.response.1.json",
        Expect::Response(Ty::FolderCollection),
    ),
    (
        "mailfolder-list-childfolders.response.2.json",
        Expect::Response(Ty::FolderCollection),
    ),
    (
        "mailfolder-list-messagerules.response.1.json",
        Expect::NotOurs(RULES),
    ),
    (
        "mailfolder-list-messages.response.1.json",
        Expect::ResponseFails(Ty::MessageCollection, &[ID]),
    ),
    (
        "mailfolder-post-childfolders.response.1.json",
        Expect::Response(Ty::Folder),
    ),
    (
        "mailfolder-post-messagerules.response.1.json",
        Expect::NotOurs(RULES),
    ),
    (
        "message-copy.response.1.json",
        Expect::ResponseFails(Ty::Message, &[RECEIVED, SENT, BODY_TYPE, ID]),
    ),
    (
        "message-createforward.response.1.json",
        Expect::ResponseFails(Ty::Message, &[RECEIVED, SENT, BODY_TYPE, ID]),
    ),
    (
        "message-createforward.response.2.json",
        Expect::Response(Ty::Message),
    ),
    (
        "message-createforward.response.3.json",
        Expect::Response(Ty::ErrorBody),
    ),
    (
        "message-delta.response.1.json",
        Expect::ResponseFails(Ty::MessageDelta, &[RECEIVED, SENT, BODY_TYPE, ID]),
    ),
    (
        "message-delta.response.2.json",
        Expect::Response(Ty::MessageDelta),
    ),
    (
        "message-delta.response.3.json",
        Expect::Response(Ty::MessageDelta),
    ),
    (
        "message-delta.response.4.json",
        Expect::Response(Ty::MessageDelta),
    ),
    (
        "message-delta.response.5.json",
        Expect::ResponseFails(
            Ty::MessageDelta,
            &[Fix {
                field: "isRead",
                why: "known doc error: isRead is the string \"true\"; Graph sends a boolean, and a boolean is what we accept",
                valid: a_bool,
            }],
        ),
    ),
    (
        "message-delta.response.6.json",
        Expect::Response(Ty::MessageDelta),
    ),
    (
        "message-delta.response.7.json",
        Expect::Response(Ty::MessageDelta),
    ),
    (
        "message-delta.response.8.json",
        Expect::Response(Ty::MessageDelta),
    ),
    ("message-forward.response.1.json", Expect::NoBody),
    ("message-forward.response.2.json", Expect::NoBody),
    (
        "message-forward.response.3.json",
        Expect::Response(Ty::ErrorBody),
    ),
    ("message-get.response.1.json", Expect::Response(Ty::Message)),
    ("message-get.response.2.json", Expect::Response(Ty::Message)),
    ("message-get.response.3.json", Expect::Response(Ty::Message)),
    (
        "message-get.response.4.json",
        Expect::NotOurs("raw MIME ($value) is not read by this client"),
    ),
    (
        "message-move.response.1.json",
        Expect::Response(Ty::Message),
    ),
    (
        "message-update.response.1.json",
        Expect::ResponseFails(Ty::Message, &[RECEIVED, SENT, BODY_TYPE, ID]),
    ),
    (
        "outlookuser-list-mastercategories.response.1.json",
        Expect::Response(Ty::CategoryCollection),
    ),
    (
        "outlookuser-post-mastercategories.response.1.json",
        Expect::Response(Ty::Category),
    ),
    (
        "subscription-delete.request.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-post-subscriptions.request.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-post-subscriptions.request.2.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-post-subscriptions.response.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-reauthorize.request.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-update.request.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-update.request.2.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "subscription-validation.request.1.json",
        Expect::NotOurs(WEBHOOKS),
    ),
    (
        "throttling.response.1.json",
        Expect::Response(Ty::ErrorBody),
    ),
    (
        "user-list-mailfolders.response.1.json",
        Expect::Response(Ty::FolderCollection),
    ),
    (
        "user-list-mailfolders.response.2.json",
        Expect::Response(Ty::FolderCollection),
    ),
    (
        "user-list-messages.response.1.json",
        Expect::Response(Ty::MessageCollection),
    ),
];

/// Applies `fixes` to the body's items: each element of `value`, or the body itself.
fn apply(body: &Value, fixes: &[Fix]) -> Value {
    let mut body = body.clone();
    let fix_item = |item: &mut Value| {
        for fix in fixes {
            let mut target = &mut *item;
            let mut parts = fix.field.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    target[part] = (fix.valid)();
                } else {
                    target = &mut target[part];
                }
            }
        }
    };
    match body.get_mut("value").and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut().for_each(fix_item),
        None => fix_item(&mut body),
    }
    body
}

#[test]
fn every_fixture_is_listed() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = FIXTURES.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(listed.len(), FIXTURES.len(), "a fixture is listed twice");
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        unlisted.is_empty(),
        "fixtures not listed in this test: {unlisted:?}"
    );
    assert!(
        missing.is_empty(),
        "listed fixtures missing on disk: {missing:?}"
    );
}

#[test]
fn fixtures_parse_or_fail_as_listed() {
    let mut problems = Vec::new();
    for (name, expect) in FIXTURES {
        let fixture = load(name);
        let request = &fixture["request_body"];
        let response = &fixture["response_body"];
        let mut check = |what: &str, ty: Ty, body: &Value| {
            if let Err(e) = ty.parse(body) {
                problems.push(format!("{name}: {what} does not parse as {ty:?}: {e}"));
            }
        };
        match *expect {
            Expect::Response(ty) => check("response_body", ty, response),
            Expect::Request(ty) => check("request_body", ty, request),
            Expect::Both {
                request: rq,
                response: rs,
            } => {
                check("request_body", rq, request);
                check("response_body", rs, response);
            }
            Expect::NoBody => {
                if !response.is_null() {
                    problems.push(format!("{name}: expected no response body"));
                }
            }
            Expect::NotOurs(reason) => assert!(!reason.is_empty()),
            Expect::ResponseFails(ty, fixes) => {
                if ty.parse(response).is_ok() {
                    problems.push(format!("{name}: expected the documented placeholders to fail a typed parse as {ty:?}"));
                }
                if let Err(e) = ty.parse(&apply(response, fixes)) {
                    problems.push(format!(
                        "{name}: still fails as {ty:?} with {:?} fixed: {e}",
                        fixes.iter().map(|f| f.field).collect::<Vec<_>>()
                    ));
                }
                // Each named field is needed: fixing all the others still fails.
                for (i, fix) in fixes.iter().enumerate() {
                    let others: Vec<Fix> = fixes
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, f)| *f)
                        .collect();
                    if ty.parse(&apply(response, &others)).is_ok() {
                        problems.push(format!(
                            "{name}: field {} is named ({}) but parses as documented",
                            fix.field, fix.why
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn response_of<T: DeserializeOwned>(name: &str) -> T {
    serde_json::from_value(load(name)["response_body"].clone()).unwrap()
}

#[test]
fn delta_rounds_carry_their_links_and_tombstones() {
    let page: DeltaPage<GraphMessage> = response_of("message-delta.response.2.json");
    assert_eq!(page.value.len(), 2);
    assert!(page.next_link.as_deref().unwrap().contains("$skiptoken="));
    assert!(page.delta_link.is_none());
    assert_eq!(
        page.value[0].odata_type.as_deref(),
        Some("#microsoft.graph.message")
    );
    assert_eq!(
        page.value[0]
            .sender
            .as_ref()
            .unwrap()
            .email_address
            .address
            .as_deref(),
        Some("danas@contoso.onmicrosoft.com")
    );

    let last: DeltaPage<GraphMessage> = response_of("message-delta.response.4.json");
    assert!(last.next_link.is_none());
    assert!(last.delta_link.as_deref().unwrap().contains("$deltatoken="));

    // Round 2 with the doc's `"isRead": "true"` corrected: a tombstone and an update.
    let mut round2 = load("message-delta.response.5.json")["response_body"].clone();
    round2["value"][1]["isRead"] = json!(true);
    let round2: DeltaPage<GraphMessage> = serde_json::from_value(round2).unwrap();
    assert!(round2.value[0].is_removed());
    assert_eq!(
        round2.value[0].removed.as_ref().unwrap().reason.as_deref(),
        Some("deleted")
    );
    assert!(!round2.value[1].is_removed());

    // A deltaLink may carry a $skiptoken: links are opaque.
    let next_round: DeltaPage<GraphMessage> = response_of("message-delta.response.8.json");
    assert!(
        next_round
            .delta_link
            .as_deref()
            .unwrap()
            .contains("$skiptoken=")
    );
}

#[test]
fn documented_messages_convert_for_rules() {
    let get: GraphMessage = response_of("message-get.response.1.json");
    let mail = get.into_mail_message("AAMkADcbAAAAAAEJAAA=").unwrap();
    assert_eq!(mail.subject, "9/9/2018: concert");
    assert_eq!(
        mail.from.as_ref().unwrap().address,
        "adelev@contoso.OnMicrosoft.com"
    );
    assert_eq!(mail.to.len(), 1);
    assert!(mail.is_read);
    assert!(mail.kinds.is_empty());
    assert_eq!(
        mail.body.as_ref().unwrap().content_type,
        outlook_core::message::BodyType::Html
    );

    // The moved message is a bounce from Exchange's system mailbox.
    let moved: GraphMessage = response_of("message-move.response.1.json");
    let mail = moved.into_mail_message("deleteditems").unwrap();
    assert_eq!(mail.kinds, vec![MessageKind::NonDeliveryReport]);

    // A bare `multipart/report` does not say which report it is.
    let headers: GraphMessage = response_of("message-get.response.2.json");
    assert_eq!(headers.internet_message_headers.len(), 4);

    let draft: GraphMessage = response_of("message-createforward.response.2.json");
    assert_eq!(draft.is_draft, Some(true));
}

#[test]
fn folders_and_categories() {
    let search: MailFolder = response_of("mailfolder-get.response.2.json");
    assert!(search.is_search_folder());
    let inbox: MailFolder = response_of("mailfolder-get.response.1.json");
    assert!(!inbox.is_search_folder());
    assert_eq!(
        (
            inbox.total_item_count,
            inbox.unread_item_count,
            inbox.child_folder_count
        ),
        (Some(60), Some(59), Some(2))
    );
    let hidden: Collection<MailFolder> =
        response_of("mailfolder-list-childfolders.response.2.json");
    assert_eq!(
        hidden
            .value
            .iter()
            .filter(|f| f.is_hidden == Some(true))
            .count(),
        1
    );
    let top: Collection<MailFolder> = response_of("user-list-mailfolders.response.1.json");
    assert_eq!(top.value.len(), 9);
    assert_eq!(top.value.iter().filter(|f| f.is_search_folder()).count(), 1);

    let categories: Collection<OutlookCategory> =
        response_of("outlookuser-list-mastercategories.response.1.json");
    assert_eq!(categories.value[0].display_name, "Red category");
    assert_eq!(categories.value[0].color.as_deref(), Some("preset0"));
    let created: OutlookCategory = response_of("outlookuser-post-mastercategories.response.1.json");
    assert_eq!(created.display_name, "Project expenses");
}

#[test]
fn error_bodies_and_throttling() {
    let old: GraphErrorBody = response_of("errors.response.1.json");
    let new: GraphErrorBody = response_of("errors.response.2.json");
    assert_eq!(old.error.code, "invalidRange");
    assert_eq!(
        old.error.inner_error.unwrap().request_id.as_deref(),
        Some("request-id")
    );
    assert_eq!(
        new.error.inner_error.unwrap().request_id.as_deref(),
        Some("request-id")
    );
    let mime: GraphErrorBody = response_of("message-forward.response.3.json");
    assert_eq!(mime.error.code, "ErrorMimeContentInvalidBase64String");

    let throttling = load("throttling.response.1.json");
    let body: GraphErrorBody = serde_json::from_value(throttling["response_body"].clone()).unwrap();
    assert_eq!(body.error.code, "TooManyRequests");
    assert_eq!(throttling["status"], 429);
    let retry_after = throttling["response_headers"]["Retry-After"]
        .as_str()
        .unwrap();
    assert_eq!(
        parse_retry_after(retry_after, SystemTime::now()),
        Some(Duration::from_millis(2128))
    );
}

#[test]
fn documented_batches_plan_and_match() {
    for name in [
        "json-batching.request.1.json",
        "json-batching.request.2.json",
    ] {
        let request: BatchRequest =
            serde_json::from_value(load(name)["request_body"].clone()).unwrap();
        // Fully sequential (dependsOn chains): one batch.
        assert_eq!(
            plan_batches(&request.requests).unwrap(),
            vec![vec![0, 1, 2, 3]],
            "{name}"
        );
    }
    let fixture = load("json-batching.response.1.json");
    let request: BatchRequest = serde_json::from_value(fixture["request_body"].clone()).unwrap();
    assert_eq!(
        request.requests[3]
            .headers
            .get("Content-Type")
            .map(String::as_str),
        Some("application/json")
    );
    let response: BatchResponse = serde_json::from_value(fixture["response_body"].clone()).unwrap();
    let ids: Vec<&str> = request.requests.iter().map(|r| r.id.as_str()).collect();
    let matched = match_responses(&ids, response.responses);
    let statuses: Vec<u16> = matched.iter().map(|r| r.as_ref().unwrap().status).collect();
    assert_eq!(statuses, vec![302, 200, 401, 204]);
    assert!(matched[3].as_ref().unwrap().body.is_none());
    assert!(
        matched[0]
            .as_ref()
            .unwrap()
            .header("Location")
            .unwrap()
            .starts_with("https://")
    );

    let fixture = load("json-batching.response.2.json");
    let response: BatchResponse = serde_json::from_value(fixture["response_body"].clone()).unwrap();
    let denied = response.responses.iter().find(|r| r.id == "3").unwrap();
    assert_eq!(
        denied.error_detail().unwrap().code,
        "Authorization_RequestDenied"
    );
    assert!(matches!(
        denied.error(),
        Some(outlook_core::graph::GraphError::Forbidden { .. })
    ));
    assert_eq!(denied.header("content-type"), Some("application/json"));
}

#[test]
fn our_patch_matches_the_documented_isread_request() {
    let documented = load("eventmessage-update.response.1.json")["request_body"].clone();
    let ours = serde_json::to_value(MessagePatch {
        is_read: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ours, documented);
}
