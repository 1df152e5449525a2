//! Delta queries per folder: paging, rounds, removals, $top trap, changeType, immutable ids,
//! expired tokens.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn deliver_n(t: &T, n: usize, prefix: &str) -> Vec<Value> {
    let msgs: Vec<Value> = (0..n)
        .map(|i| json!({"subject": format!("{prefix} {i}"), "received": format!("2024-06-01T08:{:02}:00Z", i)}))
        .collect();
    t.ctl(
        "POST",
        &format!("/mailboxes/{ALICE}/messages"),
        json!({"messages": msgs}),
    )
    .await["messages"]
        .as_array()
        .unwrap()
        .clone()
}

/// Follows a round to its deltaLink; returns (items, deltaLink, pages).
async fn round(t: &T, at: &str, start: &str, prefer: &[&str]) -> (Vec<Value>, String, usize) {
    let mut url = start.to_string();
    let mut items = vec![];
    let mut pages = 0;
    loop {
        let (s, h, v) = t.g(at, "GET", &url, None, prefer).await;
        assert_eq!(s, 200, "{url}: {v}");
        pages += 1;
        assert_eq!(
            v["@odata.context"],
            format!("{}/$metadata#Collection(message)", t.graph())
        );
        if prefer.iter().any(|p| p.contains("maxpagesize")) {
            assert!(
                h["preference-applied"]
                    .to_str()
                    .unwrap()
                    .contains("odata.maxpagesize")
            );
        }
        items.extend(v["value"].as_array().unwrap().iter().cloned());
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(
                n.starts_with(&t.graph()),
                "absolute link on the simulator: {n}"
            );
            assert!(n.contains("$skiptoken="));
            url = n.to_string();
        } else {
            let d = v["@odata.deltaLink"]
                .as_str()
                .expect("deltaLink")
                .to_string();
            assert!(d.contains("$deltatoken="));
            return (items, d, pages);
        }
    }
}

fn subjects(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["subject"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn paging_and_rounds() {
    let t = T::new().await;
    let at = t.app_token().await;
    deliver_n(&t, 5, "First").await;
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta?$select=subject,isRead,sender",
        t.graph()
    );
    let (items, delta, pages) = round(&t, &at, &start, &["odata.maxpagesize=2"]).await;
    assert_eq!(items.len(), 5);
    assert_eq!(pages, 3);
    for i in &items {
        assert_eq!(i["@odata.type"], "#microsoft.graph.message");
        assert!(i["@odata.etag"].is_string());
        let mut keys: Vec<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                "@odata.etag",
                "@odata.type",
                "id",
                "isRead",
                "sender",
                "subject"
            ]
        );
    }
    // Nothing changed: an empty round with a new deltaLink.
    let (items, delta2, _) = round(&t, &at, &delta, &["odata.maxpagesize=2"]).await;
    assert!(items.is_empty());
    // Changes: a new message, an update, a move out, a move in, a delete.
    let list = t
        .ctl(
            "GET",
            &format!("/mailboxes/{ALICE}/messages?folder=inbox"),
            Value::Null,
        )
        .await;
    let ids: Vec<(String, String)> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap().to_string(),
                m["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let id_of = |s: &str| ids.iter().find(|(x, _)| x == s).unwrap().1.clone();
    t.deliver(ALICE, json!({"subject": "New one"})).await;
    t.g(
        &at,
        "PATCH",
        &format!("/users/{ALICE}/messages/{}", id_of("First 0")),
        Some(json!({"isRead": true})),
        &[],
    )
    .await;
    let moved_out = id_of("First 1");
    t.ctl(
        "POST",
        &format!("/mailboxes/{ALICE}/messages/{moved_out}/move"),
        json!({"folder": "archive"}),
    )
    .await;
    let arch = t
        .deliver(
            ALICE,
            json!({"subject": "From archive", "folder": "archive"}),
        )
        .await;
    t.g(
        &at,
        "POST",
        &format!(
            "/users/{ALICE}/messages/{}/move",
            arch["id"].as_str().unwrap()
        ),
        Some(json!({"destinationId": "inbox"})),
        &[],
    )
    .await;
    let deleted = id_of("First 2");
    t.ctl(
        "DELETE",
        &format!("/mailboxes/{ALICE}/messages/{deleted}?hard=true"),
        Value::Null,
    )
    .await;
    let (items, _, _) = round(&t, &at, &delta2, &[]).await;
    let mut subj = subjects(&items);
    subj.sort();
    assert_eq!(subj, vec!["First 0", "From archive", "New one"]);
    let updated = items.iter().find(|i| i["subject"] == "First 0").unwrap();
    assert_eq!(updated["isRead"], true);
    let removed: Vec<&Value> = items
        .iter()
        .filter(|i| i.get("@removed").is_some())
        .collect();
    assert_eq!(removed.len(), 2);
    let removed_ids: Vec<&str> = removed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(removed_ids.contains(&moved_out.as_str()) && removed_ids.contains(&deleted.as_str()));
    for r in removed {
        assert_eq!(r["@removed"]["reason"], "deleted");
        assert_eq!(r["@odata.type"], "#microsoft.graph.message");
    }
    // The moved message appears as new in the archive folder's own delta.
    let (items, _, _) = round(
        &t,
        &at,
        &format!(
            "{}/users/{ALICE}/mailFolders/archive/messages/delta",
            t.graph()
        ),
        &[],
    )
    .await;
    assert_eq!(subjects(&items), vec!["First 1"]);
    // The delta link can be replayed (it is a cursor, not consumed).
    let (s, _, _) = t.g(&at, "GET", &delta2, None, &[]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn default_page_size_and_skiptoken_replay() {
    let t = T::new().await;
    let at = t.app_token().await;
    deliver_n(&t, 15, "M").await;
    let start = format!(
        "{}/me/../users/{ALICE}/mailFolders/inbox/messages/delta",
        t.graph()
    )
    .replace("/me/..", "");
    let (_, h, v) = t.g(&at, "GET", &start, None, &[]).await;
    assert!(h.get("preference-applied").is_none());
    assert_eq!(v["value"].as_array().unwrap().len(), 10);
    let next = v["@odata.nextLink"].as_str().unwrap().to_string();
    let (_, _, a) = t.g(&at, "GET", &next, None, &[]).await;
    let (_, _, b) = t.g(&at, "GET", &next, None, &[]).await;
    assert_eq!(a["value"].as_array().unwrap().len(), 5);
    assert_eq!(a["value"], b["value"]);
    assert!(a["@odata.deltaLink"].is_string());
}

#[tokio::test]
async fn top_caps_the_whole_round() {
    let t = T::new().await;
    let at = t.app_token().await;
    deliver_n(&t, 5, "T").await;
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta?$top=3",
        t.graph()
    );
    let mut url = start;
    let mut sizes = vec![];
    let delta;
    loop {
        let (_, _, v) = t.g(&at, "GET", &url, None, &["odata.maxpagesize=2"]).await;
        sizes.push(v["value"].as_array().unwrap().len());
        if let Some(n) = v["@odata.nextLink"].as_str() {
            url = n.to_string();
        } else {
            delta = v["@odata.deltaLink"].as_str().unwrap().to_string();
            break;
        }
    }
    assert_eq!(
        sizes,
        vec![2, 1, 0],
        "the cap ends with an empty page plus a deltaLink"
    );
    // The two messages cut off are never seen in later rounds.
    let (items, _, _) = round(&t, &at, &delta, &[]).await;
    assert!(items.is_empty());
}

#[tokio::test]
async fn filter_change_type_and_immutable_ids() {
    let t = T::new().await;
    let at = t.app_token().await;
    deliver_n(&t, 6, "F").await;
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta?$filter=receivedDateTime ge 2024-06-01T08:03:00Z",
        t.graph()
    );
    let (items, _, _) = round(&t, &at, &start, &[]).await;
    assert_eq!(items.len(), 3);
    let (s, _, v) = t
        .g(
            &at,
            "GET",
            &format!(
                "{}/users/{ALICE}/mailFolders/inbox/messages/delta?$filter=isRead eq true",
                t.graph()
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "ErrorInvalidUrlQueryFilter");
    // changeType=created: updates and deletions are left out of later rounds.
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta?changeType=created&$select=subject",
        t.graph()
    );
    let prefer = ["IdType=\"ImmutableId\"", "odata.maxpagesize=4"];
    let (items, delta, _) = round(&t, &at, &start, &prefer).await;
    assert_eq!(items.len(), 6);
    let list = t
        .ctl(
            "GET",
            &format!("/mailboxes/{ALICE}/messages?folder=inbox"),
            Value::Null,
        )
        .await;
    let msgs = list["messages"].as_array().unwrap();
    let imm: Vec<&str> = msgs
        .iter()
        .map(|m| m["immutable_id"].as_str().unwrap())
        .collect();
    for i in &items {
        assert!(
            imm.contains(&i["id"].as_str().unwrap()),
            "immutable ids in delta"
        );
    }
    t.g(
        &at,
        "PATCH",
        &format!("/users/{ALICE}/messages/{}", imm[0]),
        Some(json!({"isRead": true})),
        &[],
    )
    .await;
    t.deliver(ALICE, json!({"subject": "created later"})).await;
    let (items, _, _) = round(&t, &at, &delta, &prefer).await;
    assert_eq!(subjects(&items), vec!["created later"]);
    // Removal reported with the immutable id when asked for.
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta",
        t.graph()
    );
    let (_, delta, _) = round(&t, &at, &start, &prefer).await;
    t.g(
        &at,
        "POST",
        &format!("/users/{ALICE}/messages/{}/move", imm[1]),
        Some(json!({"destinationId": "archive"})),
        &[],
    )
    .await;
    let (items, _, _) = round(&t, &at, &delta, &prefer).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], imm[1]);
    assert!(items[0]["@removed"].is_object());
}

#[tokio::test]
async fn expired_tokens_gone_and_bad_request_variants() {
    let t = T::new().await;
    let at = t.app_token().await;
    deliver_n(&t, 3, "E").await;
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta?$select=subject",
        t.graph()
    );
    let (_, delta, _) = round(&t, &at, &start, &[]).await;
    // 410 Gone with a Location holding a fresh empty-token URL.
    t.ctl(
        "POST",
        &format!("/mailboxes/{ALICE}/delta/expire"),
        json!({}),
    )
    .await;
    let (s, h, v) = t.g(&at, "GET", &delta, None, &[]).await;
    assert_eq!(s, StatusCode::GONE);
    assert!(v["error"]["code"].is_string());
    let loc = h["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&t.graph()) && loc.contains("$deltatoken="),
        "{loc}"
    );
    let (items, delta, _) = round(&t, &at, &loc, &[]).await;
    assert_eq!(items.len(), 3, "full resync");
    // 400 syncStateNotFound (and other casings).
    for code in [
        "syncStateNotFound",
        "SyncStateNotFound",
        "resyncRequired",
        "SyncStateInvalid",
    ] {
        let (_, d, _) = round(&t, &at, &start, &[]).await;
        t.ctl(
            "POST",
            "/delta/expire",
            json!({"status": 400, "code": code}),
        )
        .await;
        let (s, _, v) = t.g(&at, "GET", &d, None, &[]).await;
        assert_eq!(s, 400);
        assert_eq!(code_of(&v), code);
    }
    let (s, _, _) = t.g(&at, "GET", &delta, None, &[]).await;
    assert_eq!(s, 400);
    // A garbage token.
    let (s, _, v) = t
        .g(
            &at,
            "GET",
            &format!(
                "{}/users/{ALICE}/mailFolders/inbox/messages/delta?$deltatoken=garbage",
                t.graph()
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "syncStateNotFound");
    // Another mailbox's token is not accepted, and only this mailbox's tokens expire.
    let (_, bob_delta, _) = round(
        &t,
        &at,
        &format!("{}/users/{BOB}/mailFolders/inbox/messages/delta", t.graph()),
        &[],
    )
    .await;
    let (_, alice_delta, _) = round(&t, &at, &start, &[]).await;
    t.ctl(
        "POST",
        &format!("/mailboxes/{BOB}/delta/expire"),
        json!({"status": 410}),
    )
    .await;
    assert_eq!(
        t.g(&at, "GET", &bob_delta, None, &[]).await.0,
        StatusCode::GONE
    );
    assert_eq!(t.g(&at, "GET", &alice_delta, None, &[]).await.0, 200);
}

#[tokio::test]
async fn delegated_me_delta() {
    let t = T::new().await;
    deliver_n(&t, 3, "D").await;
    let d = t.delegated(ALICE, "Mail.Read").await;
    let at = d["access_token"].as_str().unwrap();
    let (items, delta, _) = round(
        &t,
        at,
        &format!("{}/me/mailFolders/inbox/messages/delta", t.graph()),
        &[],
    )
    .await;
    assert_eq!(items.len(), 3);
    assert!(delta.contains("/me/mailFolders('"));
}

#[tokio::test]
async fn token_cache_eviction() {
    let t = T::new().await;
    let at = t.app_token().await;
    deliver_n(&t, 2, "C").await;
    t.ctl("PUT", "/settings", json!({"max_delta_tokens": 3}))
        .await;
    let start = format!(
        "{}/users/{ALICE}/mailFolders/inbox/messages/delta",
        t.graph()
    );
    let (_, old, _) = round(&t, &at, &start, &[]).await;
    for _ in 0..3 {
        round(&t, &at, &start, &[]).await;
    }
    let (s, _, v) = t.g(&at, "GET", &old, None, &[]).await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "syncStateNotFound");
}
