//! Graph mail: users, folders, messages, actions, categories, permissions, access scoping.

mod common;

use common::*;
use serde_json::{Value, json};

async fn seed_inbox(t: &T, n: usize) -> Vec<Value> {
    let mut msgs = vec![];
    for i in 0..n {
        msgs.push(json!({
            "from": {"name": format!("Sender {i}"), "address": format!("s{i}@example.com")},
            "subject": format!("Message {i}"),
            "body_html": format!("<html><body><p>Hello {i}</p></body></html>"),
            "received": format!("2024-05-01T10:{:02}:00Z", i),
            "headers": {"X-Custom": format!("v{i}")},
        }));
    }
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

#[tokio::test]
async fn users_and_me() {
    let t = T::new().await;
    let at = t.app_token().await;
    let (s, v) = t.get(&at, &format!("/users/{ALICE}")).await;
    assert_eq!(s, 200);
    for k in ["id", "displayName", "mail", "userPrincipalName"] {
        assert!(v[k].is_string(), "{k}");
    }
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        t.get(&at, &format!("/users/{id}")).await.1["userPrincipalName"],
        ALICE
    );
    // /me is for delegated tokens only.
    let (s, v) = t.get(&at, "/me").await;
    assert_eq!(s, 400, "{v}");
    // /me needs User.Read.
    let d = t.delegated(ALICE, "Mail.ReadWrite").await;
    let (s, v) = t.get(d["access_token"].as_str().unwrap(), "/me").await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "Authorization_RequestDenied");
    let d = t.delegated(ALICE, "User.Read").await;
    let (s, v) = t.get(d["access_token"].as_str().unwrap(), "/me").await;
    assert_eq!(s, 200);
    assert_eq!(v["id"], id);
    // Unknown user, user without mailbox.
    let (s, v) = t
        .get(&at, "/users/ghost@contoso.onmicrosoft.com/messages")
        .await;
    assert_eq!(s, 404);
    assert_eq!(code_of(&v), "ErrorInvalidUser");
    let (s, v) = t.get(&at, &format!("/users/{NOMAIL}/messages")).await;
    assert_eq!(s, 404);
    assert_eq!(code_of(&v), "MailboxNotEnabledForRESTAPI");
    assert_eq!(t.get(&at, &format!("/users/{NOMAIL}")).await.0, 200);
}

#[tokio::test]
async fn folders_list_get_create() {
    let t = T::new().await;
    let at = t.app_token().await;
    let base = format!("/users/{ALICE}/mailFolders");
    let (s, v) = t.get(&at, &base).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Inbox")
            && names.contains(&"Sent Items")
            && names.contains(&"Deleted Items")
    );
    assert!(!names.contains(&"Conversation Action Settings"));
    assert!(v.get("@odata.nextLink").is_none());
    let (_, v) = t
        .get(&at, &format!("{base}?includeHiddenFolders=true"))
        .await;
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["isHidden"] == true)
    );
    // Well-known names, including the mailFolders('inbox') form.
    for wk in [
        "inbox",
        "archive",
        "deleteditems",
        "junkemail",
        "drafts",
        "sentitems",
        "outbox",
        "msgfolderroot",
    ] {
        let (s, v) = t.get(&at, &format!("{base}/{wk}")).await;
        assert_eq!(s, 200, "{wk} {v}");
    }
    let (s, inbox) = t
        .get(&at, &format!("/users/{ALICE}/mailFolders('Inbox')"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(inbox["displayName"], "Inbox");
    // Create top-level and child folders; duplicates (any case) are 409 ErrorFolderExists.
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &base,
            Some(json!({"displayName": "Invoices"})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let inv = v["id"].as_str().unwrap().to_string();
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &base,
            Some(json!({"displayName": "invoices"})),
            &[],
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(code_of(&v), "ErrorFolderExists");
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &format!("{base}/{inv}/childFolders"),
            Some(json!({"displayName": "2024", "isHidden": true})),
            &[],
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["parentFolderId"], inv);
    assert_eq!(v["isHidden"], true);
    let (s, v) = t.get(&at, &format!("{base}/{inv}/childFolders")).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        0,
        "hidden child is not listed"
    );
    let (_, v) = t
        .get(
            &at,
            &format!("{base}/{inv}/childFolders?includeHiddenFolders=true"),
        )
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (s, v) = t.get(&at, &format!("{base}/{inv}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["childFolderCount"], 1);
    // Ten visible top-level folders now: default page size 10, then a nextLink.
    t.g(
        &at,
        "POST",
        &base,
        Some(json!({"displayName": "Receipts"})),
        &[],
    )
    .await;
    let (_, v) = t.get(&at, &base).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 10);
    let next = v["@odata.nextLink"].as_str().expect("nextLink").to_string();
    assert!(next.starts_with(&t.graph()));
    let (_, v) = t.get(&at, &next).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (s, v) = t.get(&at, &format!("{base}/nope")).await;
    assert_eq!(s, 404);
    assert_eq!(code_of(&v), "ErrorItemNotFound");
    // The control API shows folder paths.
    let f = t
        .ctl("GET", &format!("/mailboxes/{ALICE}/folders"), Value::Null)
        .await;
    assert!(
        f["folders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["path"] == "Invoices/2024")
    );
}

#[tokio::test]
async fn list_get_select_filter_paging() {
    let t = T::new().await;
    let at = t.app_token().await;
    seed_inbox(&t, 15).await;
    let (s, v) = t
        .get(
            &at,
            &format!(
                "/users/{ALICE}/mailFolders/inbox/messages?$top=5&$select=subject,receivedDateTime"
            ),
        )
        .await;
    assert_eq!(s, 200);
    let items = v["value"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["subject"], "Message 14", "newest first");
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    let mut keys: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["@odata.etag", "id", "receivedDateTime", "subject"]
    );
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .contains("messages(subject,receivedDateTime)")
    );
    // Follow the nextLinks.
    let mut seen = 5;
    let mut next = v["@odata.nextLink"].as_str().map(str::to_string);
    while let Some(n) = next {
        let (_, v) = t.get(&at, &n).await;
        seen += v["value"].as_array().unwrap().len();
        next = v["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 15);
    // Default page size 10 on /messages.
    let (_, v) = t.get(&at, &format!("/users/{ALICE}/messages")).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 10);
    // $filter and $orderby.
    let (_, v) = t.get(&at, &format!("/users/{ALICE}/mailFolders/inbox/messages?$filter=receivedDateTime ge 2024-05-01T10:10:00Z&$orderby=receivedDateTime asc&$top=50")).await;
    let subj: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subj,
        vec![
            "Message 10",
            "Message 11",
            "Message 12",
            "Message 13",
            "Message 14"
        ]
    );
    let (_, v) = t.get(&at, &format!("/users/{ALICE}/mailFolders/inbox/messages?$filter=receivedDateTime gt 2024-05-01T10:13:00Z")).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (s, v) = t
        .get(
            &at,
            &format!("/users/{ALICE}/messages?$filter=startswith(subject,'x')"),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "ErrorInvalidUrlQueryFilter");
    // Unknown $select property.
    let (s, v) = t
        .get(
            &at,
            &format!("/users/{ALICE}/messages?$select=subject,nope"),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "RequestBroker--ParseUri");
    // Get one: full shape, headers only when selected, size via the extended property.
    let (_, v) = t.get(&at, &format!("/users/{ALICE}/messages?$top=1")).await;
    let id = v["value"][0]["id"].as_str().unwrap().to_string();
    let (s, m) = t.get(&at, &format!("/users/{ALICE}/messages/{id}")).await;
    assert_eq!(s, 200);
    assert!(m.get("internetMessageHeaders").is_none());
    for k in [
        "id",
        "createdDateTime",
        "receivedDateTime",
        "subject",
        "bodyPreview",
        "body",
        "from",
        "sender",
        "toRecipients",
        "flag",
        "categories",
        "parentFolderId",
        "conversationId",
        "isRead",
        "isDraft",
        "webLink",
        "inferenceClassification",
        "@odata.etag",
    ] {
        assert!(m.get(k).is_some(), "missing {k}");
    }
    assert_eq!(m["bodyPreview"], "Hello 14");
    let (_, m) = t
        .get(
            &at,
            &format!("/users/{ALICE}/messages/{id}?$select=internetMessageHeaders"),
        )
        .await;
    assert!(
        m["internetMessageHeaders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "X-Custom" && h["value"] == "v14")
    );
    let (_, m) = t.get(&at, &format!("/users/{ALICE}/messages/{id}?$select=subject&$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')")).await;
    let p = &m["singleValueExtendedProperties"][0];
    assert_eq!(p["id"], "Integer 0xe08");
    assert!(p["value"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    // Text body preference.
    let (_, h, m) = t
        .g(
            &at,
            "GET",
            &format!("/users/{ALICE}/messages/{id}"),
            None,
            &["outlook.body-content-type=\"text\""],
        )
        .await;
    assert_eq!(m["body"]["contentType"], "text");
    assert!(
        h["preference-applied"]
            .to_str()
            .unwrap()
            .contains("outlook.body-content-type")
    );
}

#[tokio::test]
async fn patch_message() {
    let t = T::new().await;
    let at = t.app_token().await;
    let m = t
        .deliver(
            ALICE,
            json!({"subject": "Invoice 1", "from": "Billing <billing@example.com>"}),
        )
        .await;
    let id = m["id"].as_str().unwrap();
    let path = format!("/users/{ALICE}/messages/{id}");
    let (s, _, v) = t
        .g(&at, "PATCH", &path, Some(json!({
            "categories": ["Finance", "Red category"], "isRead": true, "flag": {"flagStatus": "flagged"},
            "importance": "high", "inferenceClassification": "other"
        })), &[])
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["categories"], json!(["Finance", "Red category"]));
    assert_eq!(v["flag"]["flagStatus"], "flagged");
    let view = t
        .ctl(
            "GET",
            &format!("/mailboxes/{ALICE}/messages/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(view["is_read"], true);
    assert_eq!(view["importance"], "high");
    assert_eq!(view["flag_status"], "flagged");
    assert_eq!(view["inference_classification"], "other");
    assert_eq!(view["folder_path"], "Inbox");
    // Not writable on a received message / unknown / bad value.
    let (s, _, v) = t
        .g(&at, "PATCH", &path, Some(json!({"subject": "x"})), &[])
        .await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "ErrorInvalidPropertyUpdateSentMessage");
    let (s, _, _) = t
        .g(
            &at,
            "PATCH",
            &path,
            Some(json!({"receivedDateTime": "2020-01-01T00:00:00Z"})),
            &[],
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, v) = t
        .g(&at, "PATCH", &path, Some(json!({"nope": 1})), &[])
        .await;
    assert_eq!(s, 400);
    assert_eq!(code_of(&v), "RequestBodyRead");
    let (s, _, _) = t
        .g(&at, "PATCH", &path, Some(json!({"isRead": "yes"})), &[])
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = t.g(&at, "PATCH", &path, Some(json!({"flag": {"flagStatus": "flagged", "dueDateTime": {"dateTime": "2024-01-01T00:00:00", "timeZone": "UTC"}}})), &[]).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn move_copy_delete_and_ids() {
    let t = T::new().await;
    let at = t.app_token().await;
    let m = t.deliver(ALICE, json!({"subject": "Move me"})).await;
    let rest = m["id"].as_str().unwrap().to_string();
    let imm = m["immutable_id"].as_str().unwrap().to_string();
    assert_ne!(rest, imm);
    let u = format!("/users/{ALICE}");
    // Immutable ids only when asked for.
    let (_, v) = t.get(&at, &format!("{u}/messages/{rest}")).await;
    assert_eq!(v["id"], rest.as_str());
    let (_, h, v) = t
        .g(
            &at,
            "GET",
            &format!("{u}/messages/{rest}"),
            None,
            &["IdType=\"ImmutableId\""],
        )
        .await;
    assert_eq!(v["id"], imm.as_str());
    assert!(
        h["preference-applied"]
            .to_str()
            .unwrap()
            .contains("ImmutableId")
    );
    // Move to a well-known folder: 201, new REST id, old one is gone, immutable id still works.
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &format!("{u}/messages/{rest}/move"),
            Some(json!({"destinationId": "archive"})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["@odata.type"], "#microsoft.graph.message");
    let new_rest = v["id"].as_str().unwrap().to_string();
    assert_ne!(new_rest, rest);
    let (s, v) = t.get(&at, &format!("{u}/messages/{rest}")).await;
    assert_eq!(s, 404);
    assert_eq!(code_of(&v), "ErrorItemNotFound");
    let (s, v) = t.get(&at, &format!("{u}/messages/{imm}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["id"], new_rest.as_str());
    // Move with the immutable preference returns the immutable id.
    let (_, folders) = t.get(&at, &format!("{u}/mailFolders/inbox")).await;
    let inbox = folders["id"].as_str().unwrap();
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &format!("{u}/messages/{imm}/move"),
            Some(json!({"destinationId": inbox})),
            &["IdType=\"ImmutableId\""],
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["id"], imm.as_str());
    assert_eq!(v["parentFolderId"], inbox);
    // Copy: a new message.
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &format!("{u}/messages/{imm}/copy"),
            Some(json!({"destinationId": "junkemail"})),
            &[],
        )
        .await;
    assert_eq!(s, 201);
    let copy = v["id"].as_str().unwrap().to_string();
    assert_ne!(copy, new_rest);
    let (s, _, _) = t
        .g(
            &at,
            "POST",
            &format!("{u}/messages/{imm}/move"),
            Some(json!({"destinationId": "nosuchfolder"})),
            &[],
        )
        .await;
    assert_eq!(s, 404);
    // Delete moves to Deleted Items; deleting there removes it.
    let (s, _, _) = t
        .g(&at, "DELETE", &format!("{u}/messages/{copy}"), None, &[])
        .await;
    assert_eq!(s, 204);
    let (_, v) = t
        .get(&at, &format!("{u}/mailFolders/deleteditems/messages"))
        .await;
    let arr = v["value"].as_array().unwrap();
    assert_eq!(arr.len(), 1);
    let did = arr[0]["id"].as_str().unwrap().to_string();
    let (s, _, _) = t
        .g(&at, "DELETE", &format!("{u}/messages/{did}"), None, &[])
        .await;
    assert_eq!(s, 204);
    assert_eq!(t.get(&at, &format!("{u}/messages/{did}")).await.0, 404);
    // Combined Prefer headers.
    let (_, h, v) = t
        .g(
            &at,
            "GET",
            &format!("{u}/messages"),
            None,
            &["IdType=\"ImmutableId\", odata.maxpagesize=50"],
        )
        .await;
    assert_eq!(v["value"][0]["id"], imm.as_str());
    assert!(h.contains_key("preference-applied"));
}

#[tokio::test]
async fn forward_create_forward_send() {
    let t = T::new().await;
    let m = t.deliver(ALICE, json!({"subject": "Quote", "from": "Vendor <v@vendor.com>", "body_text": "Price is 10"})).await;
    let id = m["id"].as_str().unwrap().to_string();
    let u = format!("/users/{ALICE}");
    // Delegated token with Mail.ReadWrite only: forward is 403.
    let d = t.delegated(ALICE, "Mail.ReadWrite").await;
    let rw = d["access_token"].as_str().unwrap().to_string();
    let fwd = json!({"comment": "FYI", "toRecipients": [{"emailAddress": {"name": "Boss", "address": "boss@example.com"}}]});
    let (s, _, v) = t
        .g(
            &rw,
            "POST",
            &format!("{u}/messages/{id}/forward"),
            Some(fwd.clone()),
            &[],
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "ErrorAccessDenied");
    assert_eq!(
        v["error"]["message"],
        "Access is denied. Check credentials and try again."
    );
    // App token (Mail.Send): 202, no body; recorded; a copy lands in Sent Items.
    let at = t.app_token().await;
    let r = t
        .http
        .post(format!("{}{u}/messages/{id}/forward", t.graph()))
        .bearer_auth(&at)
        .json(&fwd)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.text().await.unwrap().is_empty());
    let sent = t
        .ctl("GET", &format!("/sent?mailbox={ALICE}"), Value::Null)
        .await;
    let rec = &sent["sent"][0];
    assert_eq!(rec["via"], "forward");
    assert_eq!(rec["to"][0]["address"], "boss@example.com");
    assert_eq!(rec["comment"], "FYI");
    assert_eq!(rec["original_immutable_id"], m["immutable_id"]);
    assert_eq!(rec["subject"], "FW: Quote");
    let (_, v) = t
        .get(&at, &format!("{u}/mailFolders/sentitems/messages"))
        .await;
    assert_eq!(v["value"][0]["subject"], "FW: Quote");
    // Body rules.
    let (s, _, _) = t
        .g(
            &at,
            "POST",
            &format!("{u}/messages/{id}/forward"),
            Some(json!({"comment": "x"})),
            &[],
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = t.g(&at, "POST", &format!("{u}/messages/{id}/forward"), Some(json!({"comment": "x", "toRecipients": [{"emailAddress": {"address": "a@b.c"}}], "message": {"toRecipients": [{"emailAddress": {"address": "a@b.c"}}]}})), &[]).await;
    assert_eq!(s, 400);
    // createForward -> draft in Drafts; send -> 202; second send -> 404.
    let (s, _, draft) = t.g(&at, "POST", &format!("{u}/messages/{id}/createForward"), Some(json!({"comment": "see below", "toRecipients": [{"emailAddress": {"address": "x@example.com"}}]})), &[]).await;
    assert_eq!(s, 201, "{draft}");
    assert_eq!(draft["isDraft"], true);
    let (_, drafts) = t.get(&at, &format!("{u}/mailFolders/drafts")).await;
    assert_eq!(draft["parentFolderId"], drafts["id"]);
    let did = draft["id"].as_str().unwrap();
    let (s, _, _) = t
        .g(&at, "POST", &format!("{u}/messages/{did}/send"), None, &[])
        .await;
    assert_eq!(s, 202);
    let (s, _, v) = t
        .g(&at, "POST", &format!("{u}/messages/{did}/send"), None, &[])
        .await;
    assert_eq!(s, 404);
    assert_eq!(code_of(&v), "ErrorItemNotFound");
    let sent = t.ctl("GET", "/sent", Value::Null).await;
    let recs = sent["sent"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["via"], "send");
    assert_eq!(recs[1]["original_message_id"], id.as_str());
    let (_, d) = t
        .get(&at, &format!("{u}/mailFolders/drafts/messages"))
        .await;
    assert_eq!(d["value"].as_array().unwrap().len(), 0);
    // createForward with only Mail.ReadWrite works; sending it needs Mail.Send.
    let (s, _, draft) = t
        .g(
            &rw,
            "POST",
            &format!("{u}/messages/{id}/createForward"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, 201);
    let did = draft["id"].as_str().unwrap();
    let (s, _, _) = t
        .g(&rw, "POST", &format!("{u}/messages/{did}/send"), None, &[])
        .await;
    assert_eq!(s, 403);
    // No recipients yet: 400 with a Send-capable token.
    let (s, _, _) = t
        .g(&at, "POST", &format!("{u}/messages/{did}/send"), None, &[])
        .await;
    assert_eq!(s, 400);
    // Drafts accept subject/recipient updates.
    let (s, _, _) = t.g(&at, "PATCH", &format!("{u}/messages/{did}"), Some(json!({"toRecipients": [{"emailAddress": {"address": "y@example.com"}}], "subject": "FW: changed"})), &[]).await;
    assert_eq!(s, 200);
    let (s, _, _) = t
        .g(&at, "POST", &format!("{u}/messages/{did}/send"), None, &[])
        .await;
    assert_eq!(s, 202);
}

#[tokio::test]
async fn master_categories() {
    let t = T::new().await;
    let at = t.app_token().await;
    let path = format!("/users/{ALICE}/outlook/masterCategories");
    let (s, v) = t.get(&at, &path).await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 6);
    let (s, _, v) = t
        .g(
            &at,
            "POST",
            &path,
            Some(json!({"displayName": "Invoices", "color": "preset9"})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(v["id"].is_string());
    let (s, _, _) = t
        .g(
            &at,
            "POST",
            &path,
            Some(json!({"displayName": "INVOICES", "color": "preset2"})),
            &[],
        )
        .await;
    assert_eq!(s, 409);
    let (s, _, _) = t
        .g(
            &at,
            "POST",
            &path,
            Some(json!({"displayName": "X", "color": "purple"})),
            &[],
        )
        .await;
    assert_eq!(s, 400);
    // MailboxSettings.* is needed (not Mail.*).
    let d = t.delegated(ALICE, "Mail.ReadWrite").await;
    let (s, v) = t
        .get(
            d["access_token"].as_str().unwrap(),
            "/me/outlook/masterCategories",
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "ErrorAccessDenied");
    let cats = t
        .ctl(
            "GET",
            &format!("/mailboxes/{ALICE}/categories"),
            Value::Null,
        )
        .await;
    assert_eq!(cats["categories"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn app_permissions_and_access_policy() {
    let t = T::new().await;
    // An app with only Mail.Read.
    t.ctl("POST", "/apps", json!({"client_id": "reader", "secrets": [{"value": "r"}], "application_permissions": ["Mail.Read"]})).await;
    t.ctl(
        "POST",
        &format!("/tenants/{TENANT_ID}/admin-consent"),
        json!({"client_id": "reader"}),
    )
    .await;
    let (_, v) = t
        .token_form(
            TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "reader"),
                ("client_secret", "r"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    let rt = v["access_token"].as_str().unwrap().to_string();
    let m = t.deliver(ALICE, json!({"subject": "x"})).await;
    let id = m["id"].as_str().unwrap();
    assert_eq!(
        t.get(&rt, &format!("/users/{ALICE}/messages/{id}")).await.0,
        200
    );
    let (s, _, v) = t
        .g(
            &rt,
            "PATCH",
            &format!("/users/{ALICE}/messages/{id}"),
            Some(json!({"isRead": true})),
            &[],
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "ErrorAccessDenied");
    let (s, _, _) = t
        .g(
            &rt,
            "POST",
            &format!("/users/{ALICE}/mailFolders"),
            Some(json!({"displayName": "x"})),
            &[],
        )
        .await;
    assert_eq!(s, 403);
    // Restrict the main app to Alice's mailbox.
    let at = t.app_token().await;
    t.ctl("PUT", &format!("/tenants/{TENANT_ID}/access-policies"), json!({"policies": [{"app_id": CLIENT_ID, "access_right": "RestrictAccess", "mailboxes": [ALICE]}]})).await;
    assert_eq!(t.get(&at, &format!("/users/{ALICE}/messages")).await.0, 200);
    let (s, v) = t.get(&at, &format!("/users/{BOB}/messages")).await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "ErrorAccessDenied");
    assert_eq!(v["error"]["message"], "Access to OData is disabled.");
    // Another app without a policy is unaffected.
    assert_eq!(t.get(&rt, &format!("/users/{BOB}/messages")).await.0, 200);
    // Deny beats restrict.
    t.ctl(
        "PUT",
        &format!("/tenants/{TENANT_ID}/access-policies"),
        json!({"policies": [
            {"app_id": CLIENT_ID, "access_right": "RestrictAccess", "mailboxes": [ALICE, BOB]},
            {"app_id": CLIENT_ID, "access_right": "DenyAccess", "mailboxes": [BOB]},
        ]}),
    )
    .await;
    assert_eq!(t.get(&at, &format!("/users/{BOB}/messages")).await.0, 403);
    assert_eq!(t.get(&at, &format!("/users/{ALICE}/messages")).await.0, 200);
    // Cross-tenant mailbox.
    t.ctl(
        "POST",
        "/tenants",
        json!({"id": "other", "domain": "other.com"}),
    )
    .await;
    t.ctl(
        "POST",
        "/users",
        json!({"tenant": "other", "upn": "zed@other.com"}),
    )
    .await;
    let (s, v) = t.get(&at, "/users/zed@other.com/messages").await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "ErrorAccessDenied");
}

#[tokio::test]
async fn delegated_shared_mailbox_access() {
    let t = T::new().await;
    let m = t
        .deliver(SHARED, json!({"subject": "Shared question"}))
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let path = format!("/users/{SHARED}/mailFolders('Inbox')/messages");
    // Own mailbox scopes only: 403 on the shared mailbox, even when granted.
    t.ctl(
        "POST",
        &format!("/users/{ALICE}/shared-access"),
        json!({"mailbox": SHARED}),
    )
    .await;
    let own = t.delegated(ALICE, "Mail.ReadWrite Mail.Send").await;
    let own = own["access_token"].as_str().unwrap();
    assert_eq!(t.get(own, &path).await.0, 403);
    // .Shared scopes + grant: allowed.
    let sh = t
        .delegated(ALICE, "Mail.ReadWrite.Shared Mail.Send.Shared")
        .await;
    let sh = sh["access_token"].as_str().unwrap().to_string();
    let (s, v) = t.get(&sh, &path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"][0]["subject"], "Shared question");
    let (s, _, _) = t
        .g(
            &sh,
            "PATCH",
            &format!("/users/{SHARED}/messages/{id}"),
            Some(json!({"categories": ["Team"]})),
            &[],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = t
        .g(
            &sh,
            "POST",
            &format!("/users/{SHARED}/messages/{id}/forward"),
            Some(json!({"toRecipients": [{"emailAddress": {"address": "a@example.com"}}]})),
            &[],
        )
        .await;
    assert_eq!(s, 202);
    // .Shared scopes also cover the user's own mailbox.
    assert_eq!(t.get(&sh, "/me/messages").await.0, 200);
    // Bob has the scopes but no grant.
    let bob = t.delegated(BOB, "Mail.ReadWrite.Shared").await;
    let (s, v) = t.get(bob["access_token"].as_str().unwrap(), &path).await;
    assert_eq!(s, 403);
    assert_eq!(code_of(&v), "ErrorAccessDenied");
    // Delegated access to another user's mailbox.
    assert_eq!(t.get(&sh, &format!("/users/{BOB}/messages")).await.0, 403);
}

#[tokio::test]
async fn meeting_messages_and_log() {
    let t = T::new().await;
    let at = t.app_token().await;
    t.deliver(ALICE, json!({"subject": "Sync", "kind": "meeting_request"}))
        .await;
    t.deliver(ALICE, json!({"subject": "Out", "kind": "automatic_reply"}))
        .await;
    t.deliver(
        ALICE,
        json!({"kind": "ndr", "subject": "Undeliverable: hi"}),
    )
    .await;
    let (_, v) = t
        .get(
            &at,
            &format!(
                "/users/{ALICE}/messages?$select=subject,internetMessageHeaders,meetingMessageType"
            ),
        )
        .await;
    let arr = v["value"].as_array().unwrap();
    let meeting = arr.iter().find(|m| m["subject"] == "Sync").unwrap();
    assert_eq!(meeting["@odata.type"], "#microsoft.graph.eventMessage");
    assert_eq!(meeting["meetingMessageType"], "meetingRequest");
    let auto = arr.iter().find(|m| m["subject"] == "Out").unwrap();
    assert!(
        auto["internetMessageHeaders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "Auto-Submitted")
    );
    assert!(auto.get("@odata.type").is_none());
    let ndr = arr
        .iter()
        .find(|m| m["subject"] == "Undeliverable: hi")
        .unwrap();
    assert!(
        ndr["internetMessageHeaders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["value"]
                .as_str()
                .unwrap()
                .contains("report-type=delivery-status"))
    );
    // Request log: method, path, status, mailbox, tenant, app; clearing works.
    let log = t.requests().await;
    let g = log.iter().rfind(|l| l["kind"] == "graph").unwrap();
    assert_eq!(g["method"], "GET");
    assert_eq!(g["status"], 200);
    assert_eq!(g["mailbox"], ALICE);
    assert_eq!(g["tenant"], TENANT_ID);
    assert_eq!(g["app_id"], CLIENT_ID);
    assert_eq!(g["batched"], false);
    assert!(g["path"].as_str().unwrap().starts_with("/v1.0/users/"));
    assert!(
        log.iter()
            .any(|l| l["kind"] == "token" && l["grant_type"] == "client_credentials")
    );
    t.ctl("DELETE", "/requests", Value::Null).await;
    assert!(t.requests().await.is_empty());
    // Generator.
    let r = t
        .ctl(
            "POST",
            &format!("/mailboxes/{BOB}/generate"),
            json!({"count": 200, "seed": 7}),
        )
        .await;
    assert_eq!(r["delivered"], 200);
    let list = t
        .ctl("GET", &format!("/mailboxes/{BOB}/messages"), Value::Null)
        .await;
    let subjects: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.iter().any(|s| s.starts_with("Invoice INV-")));
    assert!(subjects.iter().any(|s| s.starts_with("[Ticket #")));
    // Deterministic by seed.
    let t2 = T::new().await;
    t2.ctl(
        "POST",
        &format!("/mailboxes/{BOB}/generate"),
        json!({"count": 200, "seed": 7}),
    )
    .await;
    let list2 = t2
        .ctl("GET", &format!("/mailboxes/{BOB}/messages"), Value::Null)
        .await;
    let subjects2: Vec<&str> = list2["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    let mut a = subjects.clone();
    let mut b = subjects2.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[tokio::test]
async fn binary_writes_port_file_and_serves() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("m365-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port_file = dir.join("port");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_m365-sim"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            "3",
            "--port-file",
        ])
        .arg(&port_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start binary");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = std::fs::read_to_string(&port_file).unwrap();
    assert_eq!(line.trim(), format!("listening on http://127.0.0.1:{port}"));
    let r = reqwest::get(format!("http://127.0.0.1:{port}/_sim/health"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
