//! JSON batching, throttling (budget and concurrency) and every injectable fault kind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn batch(t: &T, at: &str, body: Value) -> (u16, Value) {
    let r = t
        .http
        .post(format!("{}/$batch", t.graph()))
        .bearer_auth(at)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn by_id<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no response {id}"))
}

#[tokio::test]
async fn batch_basics() {
    let t = T::new().await;
    let at = t.app_token().await;
    let m = t.deliver(ALICE, json!({"subject": "b"})).await;
    let id = m["id"].as_str().unwrap();
    let (s, v) = batch(&t, &at, json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/users/{ALICE}/mailFolders/inbox")},
        {"id": "2", "method": "GET", "url": format!("users/{ALICE}/messages/{id}?$select=subject")},
        {"id": "3", "method": "PATCH", "url": format!("/users/{ALICE}/messages/{id}"), "body": {"categories": ["X"]}, "headers": {"Content-Type": "application/json"}},
        {"id": "4", "method": "GET", "url": "/users/nobody@contoso.onmicrosoft.com/messages"},
    ]})).await;
    assert_eq!(s, 200);
    assert_eq!(v["responses"].as_array().unwrap().len(), 4);
    assert_eq!(by_id(&v, "1")["status"], 200);
    assert_eq!(by_id(&v, "2")["body"]["subject"], "b");
    assert_eq!(by_id(&v, "3")["status"], 200);
    assert_eq!(by_id(&v, "4")["status"], 404);
    assert_eq!(by_id(&v, "4")["body"]["error"]["code"], "ErrorInvalidUser");
    assert!(by_id(&v, "1")["headers"].is_object());
    let view = t
        .ctl(
            "GET",
            &format!("/mailboxes/{ALICE}/messages/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(view["categories"], json!(["X"]));
    // Items are logged individually.
    let log = t.requests().await;
    assert_eq!(log.iter().filter(|l| l["batched"] == true).count(), 4);
    assert!(
        log.iter()
            .any(|l| l["path"] == "/v1.0/$batch" && l["batched"] == false)
    );
    // Whole-batch validation errors.
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/me"}))
        .collect();
    assert_eq!(batch(&t, &at, json!({"requests": many})).await.0, 400);
    let (s, v) = batch(
        &t,
        &at,
        json!({"requests": [
        {"id": "1", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["code"].is_string());
    let (s, _) = batch(&t, &at, json!({"requests": [
        {"id": "1", "method": "PATCH", "url": format!("/users/{ALICE}/messages/{id}"), "body": {"isRead": true}}]})).await;
    assert_eq!(s, 400, "Content-Type is required with a body");
    assert_eq!(batch(&t, &at, json!({"nope": 1})).await.0, 400);
}

#[tokio::test]
async fn batch_depends_on_and_failed_dependency() {
    let t = T::new().await;
    let at = t.app_token().await;
    let m = t.deliver(ALICE, json!({"subject": "dep"})).await;
    let id = m["id"].as_str().unwrap();
    let (s, v) = batch(&t, &at, json!({"requests": [
        {"id": "1", "method": "POST", "url": format!("/users/{ALICE}/mailFolders"), "body": {"displayName": "Processed"}, "headers": {"Content-Type": "application/json"}},
        {"id": "2", "dependsOn": ["1"], "method": "POST", "url": format!("/users/{ALICE}/messages/{id}/move"), "body": {"destinationId": "archive"}, "headers": {"Content-Type": "application/json"}},
        {"id": "3", "dependsOn": ["2"], "method": "GET", "url": format!("/users/{ALICE}/messages/{id}")},
        {"id": "4", "dependsOn": ["3"], "method": "GET", "url": format!("/users/{ALICE}/mailFolders/inbox")},
    ]})).await;
    assert_eq!(s, 200);
    assert_eq!(by_id(&v, "1")["status"], 201);
    assert_eq!(by_id(&v, "2")["status"], 201);
    assert_eq!(
        by_id(&v, "3")["status"],
        404,
        "the old REST id is gone after the move"
    );
    assert_eq!(by_id(&v, "4")["status"], 424);
    assert_eq!(by_id(&v, "4")["body"]["error"]["code"], "FailedDependency");
}

#[tokio::test]
async fn batch_items_are_throttled_individually() {
    let t = T::new().await;
    let at = t.app_token().await;
    t.ctl("POST", "/faults", json!({"kind": "throttle", "count": 1, "path_contains": "/mailFolders/drafts", "retry_after": "7"})).await;
    let reqs: Vec<Value> = ["inbox", "drafts", "archive"].iter().enumerate()
        .map(|(i, f)| json!({"id": (i + 1).to_string(), "method": "GET", "url": format!("/users/{ALICE}/mailFolders/{f}")}))
        .collect();
    let (s, v) = batch(&t, &at, json!({"requests": reqs})).await;
    assert_eq!(s, 200);
    let d = by_id(&v, "2");
    assert_eq!(d["status"], 429);
    assert_eq!(d["headers"]["Retry-After"], "7");
    assert_eq!(d["body"]["error"]["code"], "TooManyRequests");
    assert_eq!(by_id(&v, "1")["status"], 200);
    assert_eq!(by_id(&v, "3")["status"], 200);
}

#[tokio::test]
async fn request_budget_per_app_per_mailbox() {
    let t = T::new().await;
    let at = t.app_token().await;
    t.ctl(
        "PUT",
        "/throttling",
        json!({"requests_per_window": 3, "window_secs": 600}),
    )
    .await;
    let p = format!("/users/{ALICE}/mailFolders/inbox");
    for _ in 0..3 {
        assert_eq!(t.get(&at, &p).await.0, 200);
    }
    let (s, h, v) = t.g(&at, "GET", &p, None, &[]).await;
    assert_eq!(s, 429);
    assert_eq!(code_of(&v), "TooManyRequests");
    let ra: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(ra > 0 && ra <= 600);
    // Other mailbox: unaffected.
    assert_eq!(
        t.get(&at, &format!("/users/{BOB}/mailFolders/inbox"))
            .await
            .0,
        200
    );
    // Window passes.
    t.ctl("POST", "/clock/advance", json!({"secs": 601})).await;
    let at = t.app_token().await;
    assert_eq!(t.get(&at, &p).await.0, 200);
    // Off switch.
    t.ctl(
        "PUT",
        "/throttling",
        json!({"enabled": false, "requests_per_window": 1}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(t.get(&at, &p).await.0, 200);
    }
}

#[tokio::test]
async fn concurrency_limit() {
    let t = T::new().await;
    let at = t.app_token().await;
    t.ctl(
        "PUT",
        "/throttling",
        json!({"concurrency": 2, "concurrency_retry_after": "0.5"}),
    )
    .await;
    t.ctl("PUT", "/settings", json!({"graph_latency_ms": 1000}))
        .await;
    let p = format!("/users/{ALICE}/mailFolders/inbox");
    let (a, b, c, d, e) = tokio::join!(
        t.g(&at, "GET", &p, None, &[]),
        t.g(&at, "GET", &p, None, &[]),
        t.g(&at, "GET", &p, None, &[]),
        t.g(&at, "GET", &p, None, &[]),
        t.g(&at, "GET", &p, None, &[]),
    );
    let mut ok = 0;
    let mut throttled = 0;
    for (s, h, v) in [a, b, c, d, e] {
        if s == 429 {
            throttled += 1;
            assert_eq!(code_of(&v), "ApplicationThrottled");
            assert_eq!(
                v["error"]["message"],
                "Application is over its MailboxConcurrency limit."
            );
            assert_eq!(h["retry-after"], "0.5");
        } else {
            assert_eq!(s, 200);
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(throttled, 3);
    // Sequential requests are fine again.
    assert_eq!(t.g(&at, "GET", &p, None, &[]).await.0, 200);
}

#[tokio::test]
async fn fault_kinds() {
    let t = T::new().await;
    let at = t.app_token().await;
    let p = format!("/users/{ALICE}/mailFolders/inbox");
    // 429 with a fractional Retry-After and a custom code.
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "throttle", "count": 1, "retry_after": "2.128"}),
    )
    .await;
    let (s, h, v) = t.g(&at, "GET", &p, None, &[]).await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "2.128");
    assert_eq!(code_of(&v), "TooManyRequests");
    assert_eq!(v["error"]["innerError"]["status"], "429");
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "throttle", "count": 1, "code": "ApplicationThrottled"}),
    )
    .await;
    assert_eq!(
        code_of(&t.g(&at, "GET", &p, None, &[]).await.2),
        "ApplicationThrottled"
    );
    // 503 with and without Retry-After.
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "unavailable", "count": 1, "retry_after": "5"}),
    )
    .await;
    let (s, h, _) = t.g(&at, "GET", &p, None, &[]).await;
    assert_eq!(s, 503);
    assert_eq!(h["retry-after"], "5");
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "unavailable", "count": 1}),
    )
    .await;
    let (s, h, _) = t.g(&at, "GET", &p, None, &[]).await;
    assert_eq!(s, 503);
    assert!(h.get("retry-after").is_none());
    // 504.
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "gateway_timeout", "count": 1}),
    )
    .await;
    assert_eq!(t.g(&at, "GET", &p, None, &[]).await.0, 504);
    // Slow response.
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "delay", "count": 1, "delay_ms": 300}),
    )
    .await;
    let start = Instant::now();
    assert_eq!(t.g(&at, "GET", &p, None, &[]).await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    // Dropped connection: no response at all.
    t.ctl("POST", "/faults", json!({"kind": "drop", "count": 1}))
        .await;
    let r = t
        .http
        .get(format!("{}{p}", t.graph()))
        .bearer_auth(&at)
        .send()
        .await;
    assert!(r.is_err(), "connection should be closed without a response");
    assert_eq!(t.g(&at, "GET", &p, None, &[]).await.0, 200);
    // Malformed JSON page.
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "malformed", "count": 1, "path_contains": "/messages"}),
    )
    .await;
    let r = t
        .http
        .get(format!("{}/users/{ALICE}/messages", t.graph()))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    // Filters: mailbox and method.
    t.ctl(
        "POST",
        "/faults",
        json!({"kind": "gateway_timeout", "count": 5, "mailbox": BOB, "method": "GET"}),
    )
    .await;
    assert_eq!(t.g(&at, "GET", &p, None, &[]).await.0, 200);
    assert_eq!(
        t.g(
            &at,
            "GET",
            &format!("/users/{BOB}/mailFolders/inbox"),
            None,
            &[]
        )
        .await
        .0,
        504
    );
    let faults = t.ctl("GET", "/faults", Value::Null).await;
    let last = faults["rules"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["fired"], 1);
    assert_eq!(last["count"], 4);
    t.ctl("DELETE", "/faults", Value::Null).await;
    assert_eq!(
        t.g(
            &at,
            "GET",
            &format!("/users/{BOB}/mailFolders/inbox"),
            None,
            &[]
        )
        .await
        .0,
        200
    );
    let log = t.requests().await;
    for k in [
        "throttle",
        "unavailable",
        "gateway_timeout",
        "delay",
        "drop",
        "malformed",
    ] {
        assert!(log.iter().any(|l| l["fault"] == k), "fault {k} logged");
    }
}

async fn rate_sequence(seed: u64) -> Vec<u16> {
    let t = T::new().await;
    let at = t.app_token().await;
    t.ctl(
        "PUT",
        "/faults",
        json!({"seed": seed, "rules": [{"kind": "unavailable", "rate": 0.3}]}),
    )
    .await;
    let mut out = vec![];
    for _ in 0..30 {
        out.push(
            t.g(
                &at,
                "GET",
                &format!("/users/{ALICE}/mailFolders/inbox"),
                None,
                &[],
            )
            .await
            .0
            .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn rate_faults_are_deterministic() {
    let a = rate_sequence(9).await;
    let b = rate_sequence(9).await;
    assert_eq!(a, b);
    let n = a.iter().filter(|s| **s == 503).count();
    assert!(n > 0 && n < 30, "{a:?}");
}
