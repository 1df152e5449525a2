//! The Graph client's mechanics against a scripted local stub: retries, budgets, timeouts,
//! per-mailbox concurrency, headers, sync-state detection, folder conflicts and batch retries.
//! (Behaviour against the Microsoft 365 simulator is covered by the end-to-end tests.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use outlook_core::graph::{
    BatchRequestItem, GraphClient, GraphClientOptions, GraphError, MailboxRef, MessagePatch,
    RetryPolicy,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

#[derive(Clone)]
enum Reply {
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    },
    /// Answers a `$batch` with `status` for every item, in reverse order.
    EchoBatch,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply::Json {
        status,
        headers: vec![],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn raw(status: u16, body: &str) -> Reply {
    Reply::Json {
        status,
        headers: vec![],
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

fn with_header(reply: Reply, name: &'static str, value: &str) -> Reply {
    match reply {
        Reply::Json {
            status,
            mut headers,
            body,
            delay,
        } => {
            headers.push((name, value.to_owned()));
            Reply::Json {
                status,
                headers,
                body,
                delay,
            }
        }
        other => other,
    }
}

fn delayed(reply: Reply, delay: Duration) -> Reply {
    match reply {
        Reply::Json {
            status,
            headers,
            body,
            ..
        } => Reply::Json {
            status,
            headers,
            body,
            delay,
        },
        other => other,
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    prefer: Vec<String>,
    authorization: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Stub {
    script: Mutex<VecDeque<Reply>>,
    /// Used when the script is empty.
    default: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: Mutex<HashMap<String, usize>>,
    max_in_flight: Mutex<HashMap<String, usize>>,
    total_in_flight: AtomicUsize,
    max_total_in_flight: AtomicUsize,
}

impl Stub {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// `users/x` or `me` from a path like `/v1.0/users/x/messages/…`.
fn mailbox_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches("/v1.0/").split('/').collect();
    match parts.first() {
        Some(&"users") => format!("users/{}", parts.get(1).unwrap_or(&"")),
        Some(other) => (*other).to_owned(),
        None => String::new(),
    }
}

async fn handle(State(stub): State<Arc<Stub>>, request: Request) -> Response {
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let prefer = request
        .headers()
        .get_all("prefer")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let authorization = request
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    stub.seen.lock().unwrap().push(Seen {
        method,
        path_and_query: path_and_query.clone(),
        prefer,
        authorization,
        body: body.clone(),
    });

    let mailbox = mailbox_of(&path_and_query);
    {
        let mut in_flight = stub.in_flight.lock().unwrap();
        let n = in_flight.entry(mailbox.clone()).or_default();
        *n += 1;
        let mut max = stub.max_in_flight.lock().unwrap();
        let m = max.entry(mailbox.clone()).or_default();
        *m = (*m).max(*n);
    }
    let total = stub.total_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stub.max_total_in_flight.fetch_max(total, Ordering::SeqCst);

    let next = stub
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| stub.default.lock().unwrap().clone());
    let response = match next.unwrap_or_else(|| reply(200, json!({}))) {
        Reply::Json {
            status,
            headers,
            body,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json");
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.body(Body::from(body)).unwrap()
        }
        Reply::EchoBatch => {
            let responses: Vec<Value> = body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .map(|r| json!({"id": r["id"], "status": 200, "body": {"id": r["id"]}}))
                .collect();
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(json!({ "responses": responses }).to_string()))
                .unwrap()
        }
    };
    stub.in_flight
        .lock()
        .unwrap()
        .entry(mailbox)
        .and_modify(|n| *n -= 1);
    stub.total_in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

struct Harness {
    stub: Arc<Stub>,
    graph: GraphClient,
    base: Url,
}

async fn harness(script: Vec<Reply>) -> Harness {
    harness_with(
        script,
        RetryPolicy {
            max_attempts: 3,
            max_total_wait: Duration::from_secs(2),
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
    )
    .await
}

async fn harness_with(script: Vec<Reply>, retry: RetryPolicy) -> Harness {
    let stub = Arc::new(Stub {
        script: Mutex::new(script.into()),
        ..Default::default()
    });
    let router = Router::new().fallback(handle).with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let base = Url::parse(&format!("http://{addr}/v1.0")).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let graph = GraphClient::with_options(
        http,
        base.clone(),
        GraphClientOptions {
            retry,
            mailbox_concurrency: 4,
        },
    );
    Harness { stub, graph, base }
}

fn token() -> SecretString {
    SecretString::from("test-access-token")
}

fn user() -> MailboxRef {
    MailboxRef::User("adele@contoso.com".into())
}

fn message(id: &str) -> Value {
    json!({"id": id, "subject": "s", "receivedDateTime": "2024-05-01T10:00:00Z", "isRead": false})
}

fn delta_page(next: bool) -> Value {
    let link = if next {
        "@odata.nextLink"
    } else {
        "@odata.deltaLink"
    };
    json!({"value": [message("m1")], link: "http://placeholder/v1.0/users/x/mailFolders('inbox')/messages/delta?$skiptoken=abc"})
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_with_immutable_ids_on_every_attempt() {
    let h = harness(vec![
        with_header(reply(429, json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})), "Retry-After", "0.05"),
        with_header(reply(429, json!({"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}})), "Retry-After", "0.05"),
        reply(200, delta_page(true)),
    ])
    .await;
    let since = time::macros::datetime!(2024-05-01 08:30:15.5 UTC);
    let started = std::time::Instant::now();
    let page = h
        .graph
        .delta_start(
            &token(),
            &user(),
            "inbox",
            &["id", "subject"],
            25,
            Some(since),
        )
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(page.value.len(), 1);
    assert!(page.next_link.is_some());

    let seen = h.stub.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert_eq!(
            s.prefer,
            vec!["IdType=\"ImmutableId\", odata.maxpagesize=25".to_owned()]
        );
        assert_eq!(s.authorization.as_deref(), Some("Bearer test-access-token"));
        assert_eq!(
            s.path_and_query,
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages/delta?$select=id,subject&$filter=receivedDateTime%20ge%202024-05-01T08:30:15Z"
        );
        assert!(!s.path_and_query.contains("$top"));
    }
    let stats = h.graph.stats();
    assert_eq!((stats.requests, stats.retries, stats.throttled), (3, 2, 2));
    assert_eq!(stats.by_kind["delta_start"], 3);
}

#[tokio::test]
async fn throttling_past_the_budget_hands_back_the_wait() {
    let throttled = || {
        with_header(
            reply(429, json!({"error": {"code": "TooManyRequests"}})),
            "Retry-After",
            "0.02",
        )
    };
    let h = harness(vec![throttled(), throttled(), throttled(), throttled()]).await;
    let err = h
        .graph
        .get_message(&token(), &user(), "m1", &["id"])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GraphError::Throttled {
            retry_after: Duration::from_millis(20)
        }
    );
    assert_eq!(h.stub.seen().len(), 3, "max_attempts is 3");

    // A Retry-After longer than the whole budget is handed back at once.
    let h = harness(vec![with_header(
        reply(429, json!({})),
        "Retry-After",
        "10",
    )])
    .await;
    let err = h
        .graph
        .get_message(&token(), &user(), "m1", &["id"])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GraphError::Throttled {
            retry_after: Duration::from_secs(10)
        }
    );
    assert_eq!(h.stub.seen().len(), 1);
}

#[tokio::test]
async fn unavailable_and_malformed_responses_are_retried_for_reads() {
    let h = harness(vec![
        raw(503, "<html>busy</html>"),
        raw(200, "{\"value\": [trunc"),
        reply(200, message("m1")),
    ])
    .await;
    let msg = h
        .graph
        .get_message(&token(), &user(), "m1", &["id", "subject"])
        .await
        .unwrap();
    assert_eq!(msg.id, "m1");
    assert_eq!(h.stub.seen().len(), 3);

    let h = harness(vec![raw(502, ""), raw(502, ""), raw(502, ""), raw(502, "")]).await;
    let err = h
        .graph
        .get_folder(&token(), &user(), "inbox")
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Transient { .. }), "{err:?}");
    assert_eq!(h.stub.seen().len(), 3);
}

#[tokio::test]
async fn timeouts_are_retried_only_where_repeating_is_safe() {
    let slow = || delayed(reply(200, message("m1")), Duration::from_secs(2));
    let h = harness(vec![slow(), reply(200, message("m1"))]).await;
    h.graph
        .get_message(&token(), &user(), "m1", &[])
        .await
        .unwrap();
    assert_eq!(h.stub.seen().len(), 2);

    // A copy that timed out may have happened: not repeated (it would make a second copy).
    let h = harness(vec![slow(), reply(201, message("copy"))]).await;
    let err = h
        .graph
        .copy_message(&token(), &user(), "m1", "archive")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::Transient { reason } if reason.contains("timeout")),
        "{err:?}"
    );
    assert_eq!(h.stub.seen().len(), 1);

    // Same for a forward, and for a copy whose 201 body is unreadable.
    let h = harness(vec![slow()]).await;
    assert!(
        h.graph
            .forward_message(&token(), &user(), "m1", &[], Some("fyi"))
            .await
            .is_err()
    );
    assert_eq!(h.stub.seen().len(), 1);
    let h = harness(vec![raw(201, "{oops"), reply(201, message("copy"))]).await;
    assert!(matches!(
        h.graph
            .copy_message(&token(), &user(), "m1", "archive")
            .await,
        Err(GraphError::Transient { .. })
    ));
    assert_eq!(h.stub.seen().len(), 1);

    // But a 429 or 503 is "not done, come back": safe to repeat even a forward.
    let h = harness(vec![
        with_header(reply(429, json!({})), "Retry-After", "0"),
        raw(202, ""),
    ])
    .await;
    h.graph
        .forward_message(&token(), &user(), "m1", &[], Some("fyi"))
        .await
        .unwrap();
    assert_eq!(h.stub.seen().len(), 2);
}

#[tokio::test]
async fn expired_sync_state_is_detected() {
    let gone = with_header(
        raw(410, ""),
        "Location",
        "http://x/v1.0/me/mailFolders/inbox/messages/delta",
    );
    let h = harness(vec![
        gone,
        reply(400, json!({"error": {"code": "SyncStateNotFound", "message": "The sync state generation is not found."}})),
        reply(400, json!({"error": {"code": "resyncRequired"}})),
    ])
    .await;
    let link = format!(
        "{}/me/mailFolders('inbox')/messages/delta?$deltatoken=abc",
        h.base
    );
    for _ in 0..3 {
        let err = h
            .graph
            .delta_follow(&token(), &MailboxRef::Me, &link, 50)
            .await
            .unwrap_err();
        assert_eq!(err, GraphError::SyncStateExpired);
    }
    let seen = h.stub.seen();
    // Followed exactly as given, with the page size preference.
    assert_eq!(
        seen[0].path_and_query,
        "/v1.0/me/mailFolders('inbox')/messages/delta?$deltatoken=abc"
    );
    assert_eq!(
        seen[0].prefer,
        vec!["IdType=\"ImmutableId\", odata.maxpagesize=50".to_owned()]
    );

    // A link to another host is never sent (it would carry the token there).
    let before = h.stub.seen().len();
    let err = h
        .graph
        .delta_follow(
            &token(),
            &MailboxRef::Me,
            "https://evil.example/v1.0/me/messages/delta?$deltatoken=x",
            50,
        )
        .await;
    assert_eq!(err.unwrap_err(), GraphError::SyncStateExpired);
    assert_eq!(h.stub.seen().len(), before);
}

#[tokio::test]
async fn errors_are_classified_on_status_and_code() {
    let h = harness(vec![
        reply(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})),
        reply(403, json!({"error": {"code": "ErrorAccessDenied", "message": "Access to OData is disabled."}})),
        reply(404, json!({"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}})),
    ])
    .await;
    assert!(matches!(
        h.graph.get_me(&token()).await,
        Err(GraphError::Unauthorized { .. })
    ));
    let forbidden = h
        .graph
        .list_folders(&token(), &user(), None, false)
        .await
        .unwrap_err();
    assert!(forbidden.is_mailbox_outside_app_scope());
    // A draft that was already sent.
    assert_eq!(
        h.graph
            .send_draft(&token(), &user(), "draft-1")
            .await
            .unwrap_err(),
        GraphError::NotFound {
            code: "ErrorItemNotFound".into()
        }
    );
    assert_eq!(h.stub.seen().len(), 3);
}

#[tokio::test]
async fn at_most_four_requests_per_mailbox_at_once() {
    let h = harness(vec![]).await;
    *h.stub.default.lock().unwrap() =
        Some(delayed(reply(200, message("m")), Duration::from_millis(60)));
    let a = MailboxRef::User("a@contoso.com".into());
    let b = MailboxRef::User("b@contoso.com".into());
    let tok = token();
    let calls = (0..10).map(|i| {
        let (graph, mailbox, tok) = (&h.graph, if i % 2 == 0 { &a } else { &b }, &tok);
        async move { graph.get_message(tok, mailbox, "m", &["id"]).await }
    });
    let extra = (0..6).map(|_| h.graph.get_message(&tok, &a, "m", &["id"]));
    let (first, second) = tokio::join!(
        futures::future::join_all(calls),
        futures::future::join_all(extra)
    );
    assert!(first.iter().chain(second.iter()).all(Result::is_ok));
    let max = h.stub.max_in_flight.lock().unwrap().clone();
    assert_eq!(max["users/a@contoso.com"], 4, "{max:?}");
    assert!(max["users/b@contoso.com"] <= 4, "{max:?}");
    // Two mailboxes do not wait for each other.
    assert!(h.stub.max_total_in_flight.load(Ordering::SeqCst) > 4);
}

#[tokio::test]
async fn existing_folders_are_returned_on_conflict() {
    let existing =
        json!({"value": [{"id": "f-clients", "displayName": "Clients", "parentFolderId": "root"}]});
    let h = harness(vec![
        reply(409, json!({"error": {"code": "ErrorFolderExists", "message": "A folder with the specified name already exists."}})),
        reply(200, existing.clone()),
        reply(400, json!({"error": {"code": "errorfolderexists", "message": "exists"}})),
        reply(200, existing),
    ])
    .await;
    let folder = h
        .graph
        .create_folder(&token(), &user(), None, "clients")
        .await
        .unwrap();
    assert_eq!(folder.id, "f-clients");
    let folder = h
        .graph
        .create_folder(&token(), &user(), Some("inbox"), "CLIENTS")
        .await
        .unwrap();
    assert_eq!(folder.id, "f-clients");
    let seen = h.stub.seen();
    assert_eq!(seen[0].body, json!({"displayName": "clients"}));
    assert_eq!(
        seen[1].path_and_query,
        "/v1.0/users/adele@contoso.com/mailFolders?$top=100&includeHiddenFolders=true"
    );
    assert_eq!(
        seen[3].path_and_query,
        "/v1.0/users/adele@contoso.com/mailFolders/inbox/childFolders?$top=100&includeHiddenFolders=true"
    );
}

#[tokio::test]
async fn folder_paths_are_walked_and_created() {
    let h = harness(vec![
        reply(200, json!({"id": "inbox-id", "displayName": "Inbox"})),
        reply(200, json!({"value": [{"id": "clients-id", "displayName": "clients"}], "@odata.nextLink": null})),
        reply(200, json!({"value": []})),
        reply(201, json!({"id": "acme-id", "displayName": "Acme"})),
    ])
    .await;
    let folder = h
        .graph
        .ensure_folder_path(&token(), &MailboxRef::Me, "Inbox/Clients/ Acme /")
        .await
        .unwrap();
    assert_eq!(folder.id, "acme-id");
    let paths: Vec<String> = h
        .stub
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path_and_query))
        .collect();
    assert_eq!(
        paths,
        vec![
            "GET /v1.0/me/mailFolders/inbox",
            "GET /v1.0/me/mailFolders/inbox-id/childFolders?$top=100",
            "GET /v1.0/me/mailFolders/clients-id/childFolders?$top=100",
            "POST /v1.0/me/mailFolders/clients-id/childFolders",
        ]
    );
    assert!(matches!(
        h.graph
            .ensure_folder_path(&token(), &MailboxRef::Me, " / ")
            .await,
        Err(GraphError::BadRequest { .. })
    ));
}

#[tokio::test]
async fn listings_follow_next_links() {
    let h = harness(vec![]).await;
    let next = format!("{}/me/outlook/masterCategories?$skiptoken=2", h.base);
    h.stub.script.lock().unwrap().extend([
        reply(200, json!({"value": [{"id": "1", "displayName": "Red", "color": "preset0"}], "@odata.nextLink": next})),
        reply(200, json!({"value": [{"id": "2", "displayName": "Blue", "color": "preset7"}]})),
    ]);
    let categories = h
        .graph
        .list_categories(&token(), &MailboxRef::Me)
        .await
        .unwrap();
    assert_eq!(
        categories
            .iter()
            .map(|c| c.display_name.as_str())
            .collect::<Vec<_>>(),
        vec!["Red", "Blue"]
    );
    assert_eq!(
        h.stub.seen()[1].path_and_query,
        "/v1.0/me/outlook/masterCategories?$skiptoken=2"
    );
}

#[tokio::test]
async fn duplicate_categories_are_treated_as_existing() {
    let h = harness(vec![
        reply(
            409,
            json!({"error": {"code": "ErrorDuplicateObject", "message": "exists"}}),
        ),
        reply(
            200,
            json!({"value": [{"id": "c1", "displayName": "Invoices", "color": "preset3"}]}),
        ),
    ])
    .await;
    let category = h
        .graph
        .create_category(&token(), &user(), "invoices", "preset9")
        .await
        .unwrap();
    assert_eq!(category.id.as_deref(), Some("c1"));
    assert_eq!(
        h.stub.seen()[0].body,
        json!({"displayName": "invoices", "color": "preset9"})
    );
}

#[tokio::test]
async fn batch_retries_throttled_items_in_a_new_batch() {
    let first = json!({"responses": [
        {"id": "3", "status": 204, "body": null},
        {"id": "2", "status": 429, "headers": {"Retry-After": "0.05"}, "body": {"error": {"code": "TooManyRequests"}}},
        {"id": "1", "status": 200, "body": {"id": "m1"}},
        {"id": "4", "status": 424, "body": {"error": {"code": "FailedDependency"}}},
    ]});
    let second = json!({"responses": [
        {"id": "4", "status": 201, "body": {"id": "moved"}},
        {"id": "2", "status": 200, "body": {"id": "m2"}},
    ]});
    let h = harness(vec![reply(200, first), reply(200, second)]).await;
    let mailbox = user();
    let items = vec![
        BatchRequestItem::get_message("1", &mailbox, "m1", &["id"]),
        BatchRequestItem::patch_message(
            "2",
            &mailbox,
            "m2",
            &MessagePatch {
                is_read: Some(true),
                ..Default::default()
            },
        ),
        BatchRequestItem::delete_message("3", &mailbox, "m3"),
        BatchRequestItem::move_message("4", &mailbox, "m2", "archive").depends_on(&["2"]),
    ];
    let results = h.graph.batch(&token(), &mailbox, items).await.unwrap();
    let statuses: Vec<(String, u16)> = results.iter().map(|r| (r.id.clone(), r.status)).collect();
    assert_eq!(
        statuses,
        vec![
            ("1".into(), 200),
            ("2".into(), 200),
            ("3".into(), 204),
            ("4".into(), 201)
        ]
    );
    assert!(results.iter().all(|r| r.error().is_none()));

    let seen = h.stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path_and_query, "/v1.0/$batch");
    let first_items = seen[0].body["requests"].as_array().unwrap();
    assert_eq!(first_items.len(), 4);
    for item in first_items {
        assert_eq!(item["headers"]["Prefer"], "IdType=\"ImmutableId\"");
        if item.get("body").is_some() {
            assert_eq!(item["headers"]["Content-Type"], "application/json");
        }
    }
    assert_eq!(
        first_items[1]["url"],
        "/users/adele@contoso.com/messages/m2"
    );
    assert_eq!(first_items[1]["body"], json!({"isRead": true}));
    assert_eq!(first_items[3]["dependsOn"], json!(["2"]));
    let retried: Vec<&str> = seen[1].body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(retried, vec!["2", "4"]);
    let stats = h.graph.stats();
    assert_eq!(
        (stats.by_kind["batch"], stats.batch_items, stats.throttled),
        (2, 6, 1)
    );
}

#[tokio::test]
async fn batch_items_still_throttled_after_the_budget_keep_their_response() {
    let throttled = |ids: &[&str]| {
        let responses: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "status": 429, "headers": {"retry-after": "0.01"}}))
            .collect();
        reply(200, json!({ "responses": responses }))
    };
    let h = harness(vec![
        throttled(&["1"]),
        throttled(&["1"]),
        throttled(&["1"]),
    ])
    .await;
    let results = h
        .graph
        .batch(
            &token(),
            &MailboxRef::Me,
            vec![BatchRequestItem::delete_message("1", &MailboxRef::Me, "m")],
        )
        .await
        .unwrap();
    assert_eq!(
        results[0].error(),
        Some(GraphError::Throttled {
            retry_after: Duration::from_millis(10)
        })
    );
    assert_eq!(h.stub.seen().len(), 3);
}

#[tokio::test]
async fn large_batches_are_split_and_matched_by_id() {
    let h = harness(vec![Reply::EchoBatch, Reply::EchoBatch, Reply::EchoBatch]).await;
    let items: Vec<_> = (0..45)
        .map(|i| {
            BatchRequestItem::get_message(format!("r{i}"), &MailboxRef::Me, &format!("m{i}"), &[])
        })
        .collect();
    let results = h
        .graph
        .batch(&token(), &MailboxRef::Me, items)
        .await
        .unwrap();
    assert_eq!(results.len(), 45);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.id, format!("r{i}"));
        assert_eq!(r.json::<Value>().unwrap()["id"], format!("r{i}"));
    }
    let sizes: Vec<usize> = h
        .stub
        .seen()
        .iter()
        .map(|s| s.body["requests"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![20, 20, 5]);

    let dup = vec![
        BatchRequestItem::new("x", "GET", "/me"),
        BatchRequestItem::new("x", "GET", "/me"),
    ];
    assert!(matches!(
        h.graph.batch(&token(), &MailboxRef::Me, dup).await,
        Err(GraphError::BadRequest { .. })
    ));
}
