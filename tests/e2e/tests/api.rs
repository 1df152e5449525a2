//! The management API end to end: the REAL `management-api` binary under the Lambda runtime
//! emulator behind the local HTTP API (routes from `infra/template.yaml`), the AWS emulator, the
//! Microsoft 365 simulator, and the REAL `oauth-callback` binary for the connect flows.

use std::collections::BTreeSet;

use e2e::api_client::{ApiWorld, Keys, claims, now_secs};
use outlook_core::api::routes::{ROUTES, RouteId, RouteKind};
use outlook_core::health::Reason;
use outlook_core::ids::{MailboxId, WorkspaceId};
use outlook_core::store::{AuditAction, AuditRecord, AuditRule};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn rules_v1() -> Value {
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

fn invalid_rules() -> Value {
    json!([
        {"id": "ok", "name": "fine", "order": 1, "actions": [{"markAsRead": {}}]},
        {
            "id": "bad",
            "name": "broken",
            "order": 2,
            "conditions": [{"fromAddresses": ["not an address"]}],
            "actions": [{"moveToFolder": {"path": ""}}]
        }
    ])
}

async fn drain_queue(world: &e2e::World, queue_url: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(world.stack.sdk_config());
    let mut out = Vec::new();
    loop {
        let batch = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the sync queue");
        let messages = batch.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for message in messages {
            out.push(
                serde_json::from_str(message.body.as_deref().unwrap_or("null"))
                    .expect("a JSON sync job"),
            );
        }
    }
}

fn mailbox_by_address<'a>(integration: &'a Value, address: &str) -> &'a Value {
    integration["mailboxes"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["address"] == address))
        .unwrap_or_else(|| panic!("no mailbox {address} in {integration}"))
}

#[tokio::test]
async fn callers_must_present_a_valid_token() {
    let w = ApiWorld::new("api-auth").await.expect("world");
    let path = "/api/integrations";

    let missing = w.call("GET", path, None, None).await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (401, "unauthenticated"),
        "{}",
        missing.text
    );
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(missing.headers["content-type"], "application/json");

    let mut bad_tokens: Vec<(&str, String)> = vec![("garbage", "not-a-jwt".into())];
    bad_tokens.push(("another key", Keys::generate().sign(&claims("acme"))));
    let mut expired = claims("acme");
    expired["exp"] = json!(now_secs() - 3600);
    bad_tokens.push(("expired", w.keys.sign(&expired)));
    let mut audience = claims("acme");
    audience["aud"] = json!("another-api");
    bad_tokens.push(("wrong audience", w.keys.sign(&audience)));
    let mut issuer = claims("acme");
    issuer["iss"] = json!("https://evil.example");
    bad_tokens.push(("wrong issuer", w.keys.sign(&issuer)));
    let mut no_workspace = claims("acme");
    no_workspace.as_object_mut().unwrap().remove("workspace_id");
    bad_tokens.push(("no workspace", w.keys.sign(&no_workspace)));
    let mut bad_workspace = claims("acme");
    bad_workspace["workspace_id"] = json!("acme#globex");
    bad_tokens.push(("malformed workspace", w.keys.sign(&bad_workspace)));
    // Algorithm confusion: an HS256 token keyed with the public key.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("acme"),
        &jsonwebtoken::EncodingKey::from_secret(w.keys.public_pem.as_bytes()),
    )
    .unwrap();
    bad_tokens.push(("HS256 with the public key", hs));
    for (what, token) in &bad_tokens {
        let answer = w.call("GET", path, Some(token), None).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (401, "unauthenticated"),
            "{what}: {}",
            answer.text
        );
        // A refused token never reaches a handler: nothing is created either.
        let answer = w
            .call(
                "POST",
                path,
                Some(token),
                Some(&json!({"accountType": "personal"})),
            )
            .await;
        assert_eq!(answer.status, 401, "{what}");
    }

    let ok = w.call("GET", path, Some(&w.token("acme")), None).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json(), json!({"integrations": []}));
    assert_eq!(ok.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn errors_are_json_with_stable_codes_and_bad_bodies_store_nothing() {
    let w = ApiWorld::new("api-errors").await.expect("world");
    let token = w.token("acme");

    let unknown = w.call("GET", "/api/nothing-here", Some(&token), None).await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "not_found"),
        "{}",
        unknown.text
    );
    assert_eq!(unknown.headers["content-type"], "application/json");
    let unknown = w.call("GET", "/api/nothing-here", None, None).await;
    assert_eq!(unknown.status, 404);

    let wrong = w
        .call("DELETE", "/api/integrations", Some(&token), None)
        .await;
    assert_eq!(
        (wrong.status, wrong.code().as_str()),
        (405, "method_not_allowed"),
        "{}",
        wrong.text
    );
    assert_eq!(wrong.headers["allow"], "GET, POST");

    // 300 KiB: over the limit, refused before anything is parsed or stored.
    let mut huge =
        br#"{"accountType":"organization","mailboxes":["a@contoso.com"],"tenant":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 300 * 1024));
    huge.extend(br#""}"#);
    let too_large = w
        .call_raw("POST", "/api/integrations", Some(&token), Some(huge))
        .await;
    assert_eq!(
        (too_large.status, too_large.code().as_str()),
        (413, "payload_too_large"),
        "{}",
        too_large.text
    );

    let malformed = w
        .call_raw(
            "POST",
            "/api/integrations",
            Some(&token),
            Some(b"{\"accountType\": ".to_vec()),
        )
        .await;
    assert_eq!(
        (malformed.status, malformed.code().as_str()),
        (400, "invalid_json"),
        "{}",
        malformed.text
    );
    assert!(
        malformed.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{}",
        malformed.text
    );

    let empty = w
        .call_raw("POST", "/api/integrations", Some(&token), Some(Vec::new()))
        .await;
    assert_eq!(
        (empty.status, empty.code().as_str()),
        (400, "invalid_json"),
        "{}",
        empty.text
    );

    let unknown_field = w
        .call(
            "POST",
            "/api/integrations",
            Some(&token),
            Some(&json!({"accountType": "personal", "sharedMailbox": []})),
        )
        .await;
    assert_eq!(
        (unknown_field.status, unknown_field.code().as_str()),
        (400, "invalid_request"),
        "{}",
        unknown_field.text
    );
    assert!(
        unknown_field.text.contains("sharedMailbox"),
        "{}",
        unknown_field.text
    );

    let bad_address = w
        .call(
            "POST",
            "/api/integrations",
            Some(&token),
            Some(&json!({"accountType": "organization", "mailboxes": ["nobody"]})),
        )
        .await;
    assert_eq!(
        (bad_address.status, bad_address.code().as_str()),
        (400, "invalid_request"),
        "{}",
        bad_address.text
    );
    let no_mailboxes = w
        .call(
            "POST",
            "/api/integrations",
            Some(&token),
            Some(&json!({"accountType": "organization", "mailboxes": []})),
        )
        .await;
    assert_eq!(no_mailboxes.status, 400, "{}", no_mailboxes.text);

    // Nothing was stored by any of them: no integration, no OAuth state.
    assert!(w.integration_ids(&token).await.is_empty());
    let dynamo = aws_sdk_dynamodb::Client::new(w.world.stack.sdk_config());
    let items = dynamo
        .scan()
        .table_name(&w.world.resources.table_name)
        .send()
        .await
        .unwrap();
    assert_eq!(items.count, 0, "{:?}", items.items);

    // Ids that cannot exist are not found, like ids of other workspaces.
    let nonsense = w
        .call("GET", "/api/integrations/not-an-id", Some(&token), None)
        .await;
    assert_eq!(
        (nonsense.status, nonsense.code().as_str()),
        (404, "not_found")
    );
}

/// The OpenAPI document and the router's table list the same routes, and the real binary
/// behind the template's routes serves every documented one (an unauthenticated call reaches
/// the function and is refused by it, not by the router or the HTTP API).
#[tokio::test]
async fn the_openapi_document_matches_the_served_routes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../functions/management-api/openapi.yaml"
    );
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "put", "post", "delete", "patch"].contains(&method) {
                documented.insert((method.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(
        documented, routed,
        "openapi.yaml and api::routes::ROUTES differ"
    );

    let w = ApiWorld::new("api-openapi").await.expect("world");
    for route in ROUTES {
        let path = route
            .path
            .replace("{integrationId}", "int_0123456789abcdef")
            .replace("{mailboxId}", "mbx_0123456789abcdef")
            .replace("{scope}", "all");
        let answer = w.call(route.method, &path, None, None).await;
        let expected = match (route.kind, route.id) {
            (RouteKind::Json, _) => 401,
            (_, RouteId::Root) => 303,
            (_, _) => 401,
        };
        assert_eq!(
            answer.status, expected,
            "{} {}: {}",
            route.method, route.path, answer.text
        );
        if route.kind == RouteKind::Json {
            assert_eq!(
                answer.code(),
                "unauthenticated",
                "{} {}",
                route.method,
                route.path
            );
        } else if expected == 401 {
            assert!(
                answer.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{}",
                route.path
            );
        }
    }
}

#[tokio::test]
async fn an_organization_wide_connection_is_started_shown_changed_synced_and_disconnected() {
    let w = ApiWorld::new("api-org").await.expect("world");
    let token = w.token("acme");
    let support = w.world.add_user("support", "shared").await.unwrap();
    let finance = w.world.add_user("finance", "user").await.unwrap();
    let ceo = w.world.add_user("ceo", "user").await.unwrap();
    // The administrator scoped the app to support and finance.
    w.world
        .sim_put(
            &format!("/tenants/{}/access-policies", w.world.tenant_id),
            &json!({"policies": [{"app_id": w.world.client_id, "mailboxes": [support, finance]}]}),
        )
        .await
        .unwrap();

    // Start: the URL is Microsoft's admin consent, valid for 10 minutes.
    w.approve(None).await.unwrap();
    let started = w
        .call(
            "POST",
            "/api/integrations",
            Some(&token),
            Some(&json!({"accountType": "organization", "mailboxes": [support, finance]})),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let url = started.json()["url"].as_str().unwrap().to_owned();
    assert!(url.contains("/v2.0/adminconsent"), "{url}");
    let expires = OffsetDateTime::parse(
        started.json()["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expires > OffsetDateTime::now_utc() + time::Duration::minutes(9));
    let (status, page) = w.world.complete_sign_in(&url, None).await.unwrap();
    assert_eq!(status, 200, "{page}");

    let ids = w.integration_ids(&token).await;
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    let shown = w
        .call(
            "GET",
            &format!("/api/integrations/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let integration = shown.json();
    assert_eq!(integration["accountType"], "organization");
    assert_eq!(integration["state"], "connected");
    assert_eq!(integration["stateLabel"], "Connected");
    assert_eq!(integration["reason"], Value::Null);
    assert_eq!(integration["tenantId"], w.world.tenant_id);
    assert_eq!(integration["mailboxes"].as_array().unwrap().len(), 2);
    for address in [&support, &finance] {
        let mailbox = mailbox_by_address(&integration, address);
        assert_eq!(mailbox["state"], "syncing", "{mailbox}");
        assert_eq!(mailbox["kind"], "organization");
        assert_eq!(mailbox["folders"][0]["folder"], "inbox");
    }

    // Choose mailboxes: add the CEO (outside the admin's scope), drop finance.
    let changed = w
        .call(
            "PATCH",
            &format!("/api/integrations/{id}/mailboxes"),
            Some(&token),
            Some(&json!({"add": [ceo], "remove": [finance]})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let integration = changed.json();
    assert_eq!(
        integration["mailboxes"].as_array().unwrap().len(),
        2,
        "{integration}"
    );
    let blocked = mailbox_by_address(&integration, &ceo);
    assert_eq!(blocked["state"], "blocked");
    assert_eq!(blocked["reason"]["code"], "mailbox_outside_admin_scope");
    assert_eq!(
        blocked["reason"]["message"],
        Reason::MailboxOutsideAdminScope.message()
    );
    assert_eq!(
        blocked["reason"]["fix"],
        Reason::MailboxOutsideAdminScope.fix()
    );
    let support_mailbox = mailbox_by_address(&integration, &support).clone();
    let support_id = support_mailbox["id"].as_str().unwrap().to_owned();
    let bad = w
        .call(
            "PATCH",
            &format!("/api/integrations/{id}/mailboxes"),
            Some(&token),
            Some(&json!({"add": ["x@y.com", "nope"]})),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json()["error"]["details"][0]["field"], "add[1]");

    // Watched folders: inbox keeps its position, archive starts now.
    let inbox_since = support_mailbox["folders"][0]["watchingSince"].clone();
    let folders_path = format!("/api/integrations/{id}/mailboxes/{support_id}/folders");
    let set = w
        .call(
            "PUT",
            &folders_path,
            Some(&token),
            Some(&json!({"folders": ["inbox", "Archive"]})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let folders = set.json()["folders"].as_array().unwrap().clone();
    let find = |name: &str| {
        folders
            .iter()
            .find(|f| f["folder"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {folders:?}"))
    };
    assert_eq!(find("inbox")["watchingSince"], inbox_since);
    let archive_since = OffsetDateTime::parse(
        find("archive")["watchingSince"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        (OffsetDateTime::now_utc() - archive_since)
            .whole_seconds()
            .abs()
            < 120
    );
    for bad in [
        json!({"folders": []}),
        json!({"folders": ["Not a folder"]}),
        json!({"folders": ["AAMkAGI2TG93AAAAAAAAAAAAAAA="]}),
    ] {
        let answer = w.call("PUT", &folders_path, Some(&token), Some(&bad)).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (400, "invalid_request"),
            "{bad}: {}",
            answer.text
        );
    }
    let shown = w
        .call(
            "GET",
            &format!("/api/integrations/{id}/mailboxes/{support_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        shown.json()["folders"].as_array().unwrap().len(),
        2,
        "{}",
        shown.text
    );

    // Sync now: one forced job per active mailbox (the blocked CEO mailbox is not synced).
    let sync = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/sync"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(sync.status, 202, "{}", sync.text);
    assert_eq!(sync.json()["enqueued"], 1);
    let jobs = drain_queue(&w.world, &w.world.resources.sync_queue_url).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["force"], true);
    assert_eq!(jobs[0]["mailbox"]["mailbox_id"], support_id.as_str());
    assert_eq!(jobs[0]["mailbox"]["workspace_id"], "acme");

    // Reconnect gives a new admin consent URL for the same tenant.
    let reconnect = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/reconnect"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(reconnect.status, 200, "{}", reconnect.text);
    let url = reconnect.json()["url"].as_str().unwrap().to_owned();
    assert!(
        url.contains(&format!("/{}/v2.0/adminconsent", w.world.tenant_id)),
        "{url}"
    );
    let wrong = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/reconnect"),
            Some(&token),
            Some(&json!({"sharedMailboxes": [support]})),
        )
        .await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);

    // Disconnect (twice: idempotent); sync stops.
    for _ in 0..2 {
        let gone = w
            .call(
                "POST",
                &format!("/api/integrations/{id}/disconnect"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(gone.status, 200, "{}", gone.text);
        let integration = gone.json();
        assert_eq!(integration["state"], "disconnected");
        assert!(
            integration["mailboxes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["state"] != "syncing"),
            "{integration}"
        );
        assert_eq!(
            mailbox_by_address(&integration, &support)["state"],
            "paused"
        );
    }
    let sync = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/sync"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (sync.status, sync.code().as_str()),
        (409, "conflict"),
        "{}",
        sync.text
    );
    assert!(
        drain_queue(&w.world, &w.world.resources.sync_queue_url)
            .await
            .is_empty()
    );
    // No mailbox is due any more.
    let store = w.world.store();
    assert!(
        store
            .due_mailboxes(OffsetDateTime::now_utc() + time::Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_personal_connection_is_shown_and_disconnect_deletes_its_refresh_token() {
    let w = ApiWorld::new("api-personal").await.expect("world");
    let token = w.token("acme");
    let alice = w.world.add_user("alice", "user").await.unwrap();
    let team = w.world.add_user("team", "shared").await.unwrap();
    w.world
        .sim_post(
            &format!("/users/{alice}/shared-access"),
            &json!({"mailbox": team}),
        )
        .await
        .unwrap();

    let id = w
        .connect_personal(&token, &alice, &[&team])
        .await
        .expect("personal connection");
    let integration = w
        .call(
            "GET",
            &format!("/api/integrations/{id}"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(integration["accountType"], "personal");
    assert_eq!(integration["state"], "connected");
    assert_eq!(integration["userPrincipalName"], alice.as_str());
    assert_eq!(mailbox_by_address(&integration, &alice)["kind"], "own");
    assert_eq!(mailbox_by_address(&integration, &team)["kind"], "shared");
    assert_eq!(mailbox_by_address(&integration, &team)["state"], "syncing");

    let services = w.world.services().await.unwrap();
    let ws = WorkspaceId::parse("acme").unwrap();
    let int = outlook_core::ids::IntegrationId::parse(id.clone()).unwrap();
    assert!(
        services
            .vault
            .get_refresh_token(&ws, &int)
            .await
            .unwrap()
            .is_some()
    );

    // A personal integration's mailboxes come from the sign-in.
    let add = w
        .call(
            "PATCH",
            &format!("/api/integrations/{id}/mailboxes"),
            Some(&token),
            Some(&json!({"add": ["other@contoso.com"]})),
        )
        .await;
    assert_eq!(add.status, 400, "{}", add.text);
    let own = w
        .call(
            "PATCH",
            &format!("/api/integrations/{id}/mailboxes"),
            Some(&token),
            Some(&json!({"remove": [alice]})),
        )
        .await;
    assert_eq!(own.status, 400, "{}", own.text);
    let drop_team = w
        .call(
            "PATCH",
            &format!("/api/integrations/{id}/mailboxes"),
            Some(&token),
            Some(&json!({"remove": [team]})),
        )
        .await;
    assert_eq!(drop_team.status, 200, "{}", drop_team.text);
    assert_eq!(drop_team.json()["mailboxes"].as_array().unwrap().len(), 1);

    let gone = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/disconnect"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.json()["state"], "disconnected");
    assert!(
        services
            .vault
            .get_refresh_token(&ws, &int)
            .await
            .unwrap()
            .is_none(),
        "the refresh token secret must be gone"
    );
    let again = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/disconnect"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);

    // Reconnect: a new sign-in, sync resumes.
    let reconnect = w
        .call(
            "POST",
            &format!("/api/integrations/{id}/reconnect"),
            Some(&token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(reconnect.status, 200, "{}", reconnect.text);
    let url = reconnect.json()["url"].as_str().unwrap().to_owned();
    assert!(url.contains("/oauth2/v2.0/authorize"), "{url}");
    let (status, page) = w.world.complete_sign_in(&url, None).await.unwrap();
    assert_eq!(status, 200, "{page}");
    let integration = w
        .call(
            "GET",
            &format!("/api/integrations/{id}"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(integration["state"], "connected", "{integration}");
    assert_eq!(mailbox_by_address(&integration, &alice)["state"], "syncing");
    assert!(
        services
            .vault
            .get_refresh_token(&ws, &int)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(w.integration_ids(&token).await.len(), 1);
}

#[tokio::test]
async fn rules_are_replaced_whole_validated_versioned_and_dry_run_against_recent_mail() {
    let w = ApiWorld::new("api-rules").await.expect("world");
    let token = w.token("acme");
    let alice = w.world.add_user("alice", "user").await.unwrap();
    let id = w
        .connect_organization(&token, &[&alice])
        .await
        .expect("connection");
    let integration = w
        .call(
            "GET",
            &format!("/api/integrations/{id}"),
            Some(&token),
            None,
        )
        .await
        .json();
    let mailbox_id = mailbox_by_address(&integration, &alice)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rules_path = format!("/api/integrations/{id}/rules");

    // Nothing yet: the integration-wide scope at version 0.
    let list = w.call("GET", &rules_path, Some(&token), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.json()["ruleSets"],
        json!([{"scope": "*", "version": 0, "rules": [], "updatedAt": null, "updatedBy": null}])
    );
    let all = w
        .call("GET", &format!("{rules_path}/all"), Some(&token), None)
        .await;
    assert_eq!(all.json()["version"], 0);

    // Invalid rules: every problem, naming rule and field; nothing saved.
    let invalid = w
        .call(
            "PUT",
            &format!("{rules_path}/all"),
            Some(&token),
            Some(&json!({"expectedVersion": 0, "rules": invalid_rules()})),
        )
        .await;
    assert_eq!(
        (invalid.status, invalid.code().as_str()),
        (400, "invalid_rules"),
        "{}",
        invalid.text
    );
    let details = invalid.json()["error"]["details"]
        .as_array()
        .unwrap()
        .clone();
    assert!(details.len() >= 2, "{details:?}");
    assert!(
        details
            .iter()
            .all(|d| d["ruleId"] == "bad" && d["ruleIndex"] == 1),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d["field"]
            .as_str()
            .unwrap()
            .starts_with("conditions[0].fromAddresses")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d["field"]
            .as_str()
            .unwrap()
            .starts_with("actions[0].moveToFolder")),
        "{details:?}"
    );
    assert_eq!(
        w.call("GET", &format!("{rules_path}/all"), Some(&token), None)
            .await
            .json()["version"],
        0
    );

    // Replace with the version read; a stale version is a conflict.
    let put = w
        .call(
            "PUT",
            &format!("{rules_path}/all"),
            Some(&token),
            Some(&json!({"expectedVersion": 0, "rules": rules_v1()})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.json()["version"], 1);
    assert_eq!(put.json()["rules"][0]["id"], "invoices");
    assert_eq!(put.json()["updatedBy"], "user-of-acme");
    let stale = w
        .call(
            "PUT",
            &format!("{rules_path}/%2A"),
            Some(&token),
            Some(&json!({"expectedVersion": 0, "rules": []})),
        )
        .await;
    assert_eq!(
        (stale.status, stale.code().as_str()),
        (409, "version_conflict"),
        "{}",
        stale.text
    );
    assert_eq!(stale.json()["error"]["currentVersion"], 1);
    let mut v2 = rules_v1();
    v2.as_array_mut().unwrap().push(json!({
        "id": "newsletters", "name": "Newsletters", "order": 2,
        "conditions": [{"subjectContains": ["newsletter"]}], "actions": [{"markAsRead": {}}]
    }));
    let put = w
        .call(
            "PUT",
            &format!("{rules_path}/all"),
            Some(&token),
            Some(&json!({"expectedVersion": 1, "rules": v2})),
        )
        .await;
    assert_eq!(put.json()["version"], 2, "{}", put.text);

    // A mailbox scope; an unknown mailbox is not found.
    let own = w
        .call(
            "PUT",
            &format!("{rules_path}/{mailbox_id}"),
            Some(&token),
            Some(&json!({"expectedVersion": 0, "rules": [{"id": "vip", "name": "VIP", "order": 1, "conditions": [{"fromAddresses": ["ceo@contoso.com"]}], "actions": [{"flag": {"status": "flagged"}}]}]})),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json()["scope"], mailbox_id.as_str());
    let unknown = w
        .call(
            "PUT",
            &format!("{rules_path}/{}", MailboxId::generate()),
            Some(&token),
            Some(&json!({"expectedVersion": 0, "rules": []})),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let list = w.call("GET", &rules_path, Some(&token), None).await.json();
    assert_eq!(list["ruleSets"].as_array().unwrap().len(), 2, "{list}");

    // Validate: all problems, nothing stored.
    let valid = w
        .call(
            "POST",
            "/api/rules/validate",
            Some(&token),
            Some(&json!({"rules": rules_v1()})),
        )
        .await;
    assert_eq!(valid.status, 200, "{}", valid.text);
    assert_eq!(valid.json(), json!({"valid": true, "errors": []}));
    let invalid = w
        .call(
            "POST",
            "/api/rules/validate",
            Some(&token),
            Some(&json!({"rules": invalid_rules()})),
        )
        .await;
    assert_eq!(invalid.status, 200);
    assert_eq!(invalid.json()["valid"], false);
    let errors = invalid.json()["errors"].as_array().unwrap().clone();
    assert!(
        errors.len() >= 2
            && errors
                .iter()
                .all(|e| e["ruleId"] == "bad" && e["field"].is_string() && e["code"].is_string()),
        "{errors:?}"
    );
    let malformed = w
        .call_raw(
            "POST",
            "/api/rules/validate",
            Some(&token),
            Some(b"{\"rules\": [".to_vec()),
        )
        .await;
    assert_eq!(
        (malformed.status, malformed.code().as_str()),
        (400, "invalid_json")
    );

    // Dry run over the mailbox's newest mail: nothing is changed or recorded.
    w.world
        .sim_post(
            &format!("/mailboxes/{alice}/messages"),
            &json!({"messages": [
                {"from": "billing@acme.example", "to": alice, "subject": "Invoice 42 for March", "body_text": "Please pay."},
                {"from": "news@shop.example", "to": alice, "subject": "Weekly newsletter", "body_text": "Offers."},
                {"from": "bob@contoso.com", "to": alice, "subject": "Lunch?", "body_text": "At noon."}
            ]}),
        )
        .await
        .unwrap();
    let dry_path = format!("/api/integrations/{id}/mailboxes/{mailbox_id}/dry-run");
    let dry = w.call("POST", &dry_path, Some(&token), None).await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    let result = dry.json();
    assert_eq!(result["source"], "stored");
    assert_eq!(result["folder"], "inbox");
    let messages = result["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 3, "{result}");
    let by_subject = |s: &str| {
        messages
            .iter()
            .find(|m| m["subject"].as_str().unwrap().contains(s))
            .cloned()
            .unwrap()
    };
    let invoice = by_subject("Invoice");
    assert_eq!(invoice["matched"][0]["ruleId"], "invoices", "{invoice}");
    assert!(
        invoice["actions"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("inbox/invoices")),
        "{invoice}"
    );
    assert_eq!(invoice["from"], "billing@acme.example");
    assert_eq!(
        by_subject("newsletter")["matched"][0]["ruleId"],
        "newsletters"
    );
    assert_eq!(by_subject("Lunch")["matched"], json!([]));

    let with_rules = w
        .call(
            "POST",
            &dry_path,
            Some(&token),
            Some(&json!({"rules": [{"id": "lunch", "name": "Lunch", "order": 1, "conditions": [{"fromAddresses": ["bob@contoso.com"]}], "actions": [{"delete": {}}]}], "limit": 2})),
        )
        .await;
    assert_eq!(with_rules.status, 200, "{}", with_rules.text);
    let result = with_rules.json();
    assert_eq!(result["source"], "request");
    assert_eq!(result["messages"].as_array().unwrap().len(), 2);
    let bad_rules = w
        .call(
            "POST",
            &dry_path,
            Some(&token),
            Some(&json!({"rules": invalid_rules()})),
        )
        .await;
    assert_eq!(
        (bad_rules.status, bad_rules.code().as_str()),
        (400, "invalid_rules")
    );
    let bad_limit = w
        .call(
            "POST",
            &dry_path,
            Some(&token),
            Some(&json!({"limit": 500})),
        )
        .await;
    assert_eq!(bad_limit.status, 400);

    // Acting on nothing: the messages are untouched in the Inbox, no audit record exists.
    let mail = w
        .world
        .sim_get(&format!("/mailboxes/{alice}/messages"))
        .await
        .unwrap();
    for message in mail["messages"].as_array().unwrap() {
        assert_eq!(message["folder_path"], "Inbox", "{message}");
        assert_eq!(message["categories"], json!([]), "{message}");
        assert_eq!(message["is_read"], false, "{message}");
    }
    let audit = w
        .call(
            "GET",
            &format!("/api/integrations/{id}/mailboxes/{mailbox_id}/audit"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(audit.json()["records"], json!([]), "{}", audit.text);
}

#[tokio::test]
async fn audit_is_listed_and_no_workspace_reaches_another_workspaces_records() {
    let w = ApiWorld::new("api-isolation").await.expect("world");
    let acme = w.token("acme");
    let globex = w.token("globex");
    let alice = w.world.add_user("alice", "user").await.unwrap();
    let id = w
        .connect_organization(&acme, &[&alice])
        .await
        .expect("connection");
    let integration = w
        .call("GET", &format!("/api/integrations/{id}"), Some(&acme), None)
        .await
        .json();
    let mailbox_id = mailbox_by_address(&integration, &alice)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = w
        .call(
            "PUT",
            &format!("/api/integrations/{id}/rules/all"),
            Some(&acme),
            Some(&json!({"expectedVersion": 0, "rules": rules_v1()})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);

    // An audit record written the way rule evaluation writes it.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let record = AuditRecord {
        workspace_id: WorkspaceId::parse("acme").unwrap(),
        mailbox_id: MailboxId::parse(mailbox_id.clone()).unwrap(),
        message_id: "AAMkImmutable1".into(),
        subject: "Invoice 7".into(),
        from: Some("billing@acme.example".into()),
        received_at: now - time::Duration::minutes(2),
        evaluated_at: now,
        rules_version: 1,
        matched_rules: vec![AuditRule {
            rule_id: "invoices".into(),
            name: "Invoices".into(),
        }],
        actions: vec![AuditAction {
            action_key: "move".into(),
            description: "move to \"Inbox/Invoices\"".into(),
            status: "applied".into(),
            error: None,
        }],
    };
    w.world.store().put_audit(&record).await.unwrap();
    let audit_path = format!("/api/integrations/{id}/mailboxes/{mailbox_id}/audit");
    let audit = w.call("GET", &audit_path, Some(&acme), None).await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    let records = audit.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["messageId"], "AAMkImmutable1");
    assert_eq!(records[0]["subject"], "Invoice 7");
    assert_eq!(
        records[0]["matchedRules"],
        json!([{"ruleId": "invoices", "name": "Invoices"}])
    );
    assert_eq!(records[0]["actions"][0]["status"], "applied");
    assert_eq!(records[0]["rulesVersion"], 1);
    let bad_limit = w
        .call("GET", &format!("{audit_path}?limit=0"), Some(&acme), None)
        .await;
    assert_eq!(bad_limit.status, 400);

    // Globex sees nothing of acme's, and every endpoint that takes an id answers 404.
    let list = w
        .call("GET", "/api/integrations", Some(&globex), None)
        .await;
    assert_eq!(list.json(), json!({"integrations": []}));
    let mut covered = 0;
    for route in ROUTES
        .iter()
        .filter(|r| r.kind == RouteKind::Json && r.path.contains("{integrationId}"))
    {
        let path = route
            .path
            .replace("{integrationId}", &id)
            .replace("{mailboxId}", &mailbox_id)
            .replace("{scope}", "all");
        let body = match route.id {
            RouteId::UpdateMailboxes => Some(json!({"add": ["intruder@contoso.com"]})),
            RouteId::SetFolders => Some(json!({"folders": ["inbox", "archive"]})),
            RouteId::ReplaceRuleSet => Some(json!({"expectedVersion": 1, "rules": []})),
            RouteId::ReconnectIntegration | RouteId::DryRun => Some(json!({})),
            _ => None,
        };
        let answer = w
            .call(route.method, &path, Some(&globex), body.as_ref())
            .await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (404, "not_found"),
            "{} {path}: {}",
            route.method,
            answer.text
        );
        // Also with the mailbox-scoped rules path.
        if route.id == RouteId::GetRuleSet || route.id == RouteId::ReplaceRuleSet {
            let path = route
                .path
                .replace("{integrationId}", &id)
                .replace("{scope}", &mailbox_id);
            let answer = w
                .call(route.method, &path, Some(&globex), body.as_ref())
                .await;
            assert_eq!(answer.status, 404, "{} {path}", route.method);
        }
        covered += 1;
    }
    assert_eq!(
        covered,
        ROUTES
            .iter()
            .filter(|r| r.kind == RouteKind::Json && r.path.contains("{integrationId}"))
            .count()
    );
    assert!(covered >= 12);

    // Nothing of acme's changed.
    let integration = w
        .call("GET", &format!("/api/integrations/{id}"), Some(&acme), None)
        .await
        .json();
    assert_eq!(integration["state"], "connected");
    assert_eq!(integration["mailboxes"].as_array().unwrap().len(), 1);
    assert_eq!(
        integration["mailboxes"][0]["folders"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let rules = w
        .call(
            "GET",
            &format!("/api/integrations/{id}/rules/all"),
            Some(&acme),
            None,
        )
        .await
        .json();
    assert_eq!(rules["version"], 1);
    assert!(
        drain_queue(&w.world, &w.world.resources.sync_queue_url)
            .await
            .is_empty()
    );
    let audit = w.call("GET", &audit_path, Some(&acme), None).await;
    assert_eq!(audit.json()["records"].as_array().unwrap().len(), 1);
    // Globex's own view stays empty.
    assert!(w.integration_ids(&globex).await.is_empty());
}
