//! Connecting Outlook end to end: flows are started through the library (as the management API
//! does), the browser's hops go to the simulator, and Microsoft's redirect lands on the REAL
//! `oauth-callback` binary running under the Lambda runtime emulator behind the local HTTP API.

use e2e::{FunctionHarness, World};
use outlook_core::api::auth::Caller;
use outlook_core::connect::flows::{BINDING_COOKIE, StartOptions, StartedFlow, start};
use outlook_core::health::Reason;
use outlook_core::ids::{IntegrationId, WorkspaceId};
use outlook_core::model::{AccountType, IntegrationStatus, MailboxKind, MailboxStatus};
use outlook_core::services::Services;
use secrecy::ExposeSecret;
use serde_json::json;
use time::OffsetDateTime;

struct Ctx {
    world: World,
    services: Services,
    _callback: FunctionHarness,
}

async fn ctx(name: &str) -> Ctx {
    let world = World::new(name).await.expect("world");
    let callback = world
        .start_function("oauth-callback")
        .await
        .expect("callback function");
    let services = world.services().await.expect("services");
    Ctx {
        world,
        services,
        _callback: callback,
    }
}

fn caller(workspace: &str) -> Caller {
    Caller {
        workspace_id: WorkspaceId::parse(workspace).unwrap(),
        subject: "user-1".into(),
    }
}

fn organization(mailboxes: &[&str]) -> StartOptions {
    StartOptions::Organization {
        mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
        tenant: None,
    }
}

fn personal(shared: &[&str]) -> StartOptions {
    StartOptions::Personal {
        shared_mailboxes: shared.iter().map(|m| m.to_string()).collect(),
        login_hint: None,
    }
}

impl Ctx {
    async fn start(&self, workspace: &str, options: StartOptions) -> StartedFlow {
        start(
            &self.services,
            &caller(workspace),
            options,
            None,
            false,
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("start")
    }

    async fn integrations(&self, workspace: &str) -> Vec<outlook_core::model::Integration> {
        self.services
            .store
            .list_integrations(&WorkspaceId::parse(workspace).unwrap())
            .await
            .unwrap()
    }

    async fn mailboxes(&self, workspace: &str) -> Vec<outlook_core::model::Mailbox> {
        self.services
            .store
            .list_mailboxes(&WorkspaceId::parse(workspace).unwrap(), None)
            .await
            .unwrap()
    }

    async fn interactive(&self, body: serde_json::Value) {
        self.world.sim_put("/interactive", &body).await.unwrap();
    }
}

#[tokio::test]
async fn organization_wide_consent_connects_and_reports_each_mailbox() {
    let ctx = ctx("connect-org").await;
    let support = ctx.world.add_user("support", "shared").await.unwrap();
    let finance = ctx.world.add_user("finance", "user").await.unwrap();
    let ceo = ctx.world.add_user("ceo", "user").await.unwrap();
    // The admin scoped the app to support and finance only.
    ctx.world
        .sim_put(
            &format!("/tenants/{}/access-policies", ctx.world.tenant_id),
            &json!({"policies": [{"app_id": ctx.world.client_id, "mailboxes": [support, finance]}]}),
        )
        .await
        .unwrap();
    ctx.interactive(json!({"admin_consent": "approve", "user_consent": "approve", "admin_tenant": ctx.world.tenant_id}))
        .await;

    let flow = ctx
        .start("acme", organization(&[&support, &finance, &ceo]))
        .await;
    assert!(
        flow.url
            .path()
            .ends_with("/organizations/v2.0/adminconsent"),
        "{}",
        flow.url
    );
    let (status, page) = ctx
        .world
        .complete_sign_in(flow.url.as_str(), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("connected for your organization"), "{page}");

    let integrations = ctx.integrations("acme").await;
    assert_eq!(integrations.len(), 1);
    let integration = &integrations[0];
    assert_eq!(integration.account_type, AccountType::Organization);
    assert_eq!(integration.status, IntegrationStatus::Connected);
    assert_eq!(integration.tenant_id, ctx.world.tenant_id);
    // No per-user secret exists for an organization-wide integration.
    let vault_entry = ctx
        .services
        .vault
        .get_refresh_token(&integration.workspace_id, &integration.integration_id)
        .await;
    assert!(vault_entry.unwrap().is_none());

    let mailboxes = ctx.mailboxes("acme").await;
    assert_eq!(mailboxes.len(), 3);
    for mailbox in &mailboxes {
        assert_eq!(mailbox.kind, MailboxKind::Organization);
        if mailbox.address == ceo {
            assert_eq!(mailbox.status, MailboxStatus::Blocked);
            assert_eq!(
                mailbox.status_reason.as_ref().unwrap().code,
                Reason::MailboxOutsideAdminScope
            );
        } else {
            assert_eq!(mailbox.status, MailboxStatus::Active, "{}", mailbox.address);
        }
    }
    assert!(
        page.contains("has not allowed the app to access this mailbox"),
        "{page}"
    );
}

#[tokio::test]
async fn admin_declining_consent_stores_nothing() {
    let ctx = ctx("connect-decline").await;
    let finance = ctx.world.add_user("finance", "user").await.unwrap();
    ctx.interactive(json!({"admin_consent": "decline", "user_consent": "approve", "admin_tenant": ctx.world.tenant_id}))
        .await;
    let flow = ctx.start("acme", organization(&[&finance])).await;
    let (status, page) = ctx
        .world
        .complete_sign_in(flow.url.as_str(), None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("did not grant consent"), "{page}");
    assert!(ctx.integrations("acme").await.is_empty());
    assert!(ctx.mailboxes("acme").await.is_empty());
}

#[tokio::test]
async fn forged_admin_consent_for_a_tenant_that_never_consented_is_refused() {
    let ctx = ctx("connect-forged").await;
    let finance = ctx.world.add_user("finance", "user").await.unwrap();
    // Another organization exists in Microsoft 365 but never consented to the app.
    let other = ctx
        .world
        .sim_post("/tenants", &json!({"domain": "fabrikam.com"}))
        .await
        .unwrap();
    let other_tenant = other["id"].as_str().unwrap();
    let flow = ctx.start("acme", organization(&[&finance])).await;
    let state = flow
        .url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let forged = format!(
        "{}/oauth/callback?admin_consent=True&tenant={other_tenant}&state={state}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        ctx.world.gateway.base_url()
    );
    let (status, page) = ctx.world.callback(&forged, None).await.unwrap();
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("Admin consent could not be confirmed"),
        "{page}"
    );
    assert!(ctx.integrations("acme").await.is_empty());
}

#[tokio::test]
async fn personal_sign_in_stores_the_refresh_token_in_the_vault_and_probes_shared_mailboxes() {
    let ctx = ctx("connect-personal").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    let support = ctx.world.add_user("support", "shared").await.unwrap();
    let board = ctx.world.add_user("board", "shared").await.unwrap();
    ctx.world
        .sim_post(
            &format!("/users/{alice}/shared-access"),
            &json!({"mailbox": support}),
        )
        .await
        .unwrap();
    ctx.interactive(
        json!({"signin_user": alice, "user_consent": "approve", "admin_consent": "approve"}),
    )
    .await;

    let flow = ctx.start("acme", personal(&[&support, &board])).await;
    let params: std::collections::HashMap<_, _> = flow.url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["prompt"], "select_account");
    assert!(
        params["scope"].contains("offline_access")
            && params["scope"].contains("Mail.ReadWrite.Shared")
    );

    let (status, page) = ctx
        .world
        .complete_sign_in(flow.url.as_str(), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{page}");
    let integration = ctx.integrations("acme").await.remove(0);
    assert_eq!(integration.account_type, AccountType::Personal);
    assert_eq!(
        integration.user_principal_name.as_deref(),
        Some(alice.as_str())
    );
    let stored = ctx
        .services
        .vault
        .get_refresh_token(&integration.workspace_id, &integration.integration_id)
        .await
        .unwrap();
    assert!(!stored.unwrap().refresh_token.expose_secret().is_empty());

    let mailboxes = ctx.mailboxes("acme").await;
    let find = |address: &str| mailboxes.iter().find(|m| m.address == address).unwrap();
    assert_eq!(find(&alice).kind, MailboxKind::Own);
    assert_eq!(find(&alice).status, MailboxStatus::Active);
    assert_eq!(find(&support).status, MailboxStatus::Active);
    // Alice was never granted the board mailbox.
    assert_eq!(find(&board).status, MailboxStatus::Blocked);
    assert_eq!(
        find(&board).status_reason.as_ref().unwrap().code,
        Reason::SharedMailboxNotGranted
    );
    // The page never shows a token or code.
    assert!(!page.contains("code="));
}

#[tokio::test]
async fn user_declining_or_admin_only_policy_explains_what_to_do() {
    let ctx = ctx("connect-user-decline").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    ctx.interactive(
        json!({"signin_user": alice, "user_consent": "decline", "admin_consent": "approve"}),
    )
    .await;
    let flow = ctx.start("acme", personal(&[])).await;
    let (status, page) = ctx
        .world
        .complete_sign_in(flow.url.as_str(), None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("You declined the permissions"), "{page}");

    // The tenant now lets only admins consent to mail scopes.
    ctx.world
        .sim_post(
            "/events",
            &json!({"type": "admin_consent_only_for_mail", "tenant": ctx.world.tenant_id}),
        )
        .await
        .unwrap();
    ctx.interactive(
        json!({"signin_user": alice, "user_consent": "approve", "admin_consent": "approve"}),
    )
    .await;
    let flow = ctx.start("acme", personal(&[])).await;
    let (status, page) = ctx
        .world
        .complete_sign_in(flow.url.as_str(), None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("requires an administrator to approve"),
        "{page}"
    );
    assert!(page.contains("organization-wide"), "{page}");
    assert!(ctx.integrations("acme").await.is_empty());
}

#[tokio::test]
async fn states_are_single_use_expiring_and_bound() {
    let ctx = ctx("connect-states").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    ctx.interactive(
        json!({"signin_user": alice, "user_consent": "approve", "admin_consent": "approve"}),
    )
    .await;

    // Replay: the same redirect twice.
    let flow = ctx.start("acme", personal(&[])).await;
    let to_microsoft = ctx
        .world
        .http()
        .get(flow.url.as_str())
        .send()
        .await
        .unwrap();
    let redirect = to_microsoft.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let (first, _) = ctx.world.callback(&redirect, None).await.unwrap();
    assert_eq!(first, 200);
    let (second, page) = ctx.world.callback(&redirect, None).await.unwrap();
    assert_eq!(second, 400);
    assert!(page.contains("already used"), "{page}");

    // Unknown, tampered and missing states.
    let base = format!("{}/oauth/callback", ctx.world.gateway.base_url());
    for query in [
        "?code=abc&state=not-a-state",
        "?code=abc",
        "?state=a&state=b&code=c",
        "",
    ] {
        let (status, page) = ctx
            .world
            .callback(&format!("{base}{query}"), None)
            .await
            .unwrap();
        assert_eq!(status, 400, "{query}: {page}");
    }

    // Expired: a state older than its lifetime.
    let old = OffsetDateTime::now_utc() - time::Duration::minutes(11);
    let expired = start(
        &ctx.services,
        &caller("acme"),
        personal(&[]),
        None,
        false,
        old,
    )
    .await
    .unwrap();
    let (status, page) = ctx
        .world
        .complete_sign_in(expired.url.as_str(), None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("expired"), "{page}");

    // Bound to the browser that started it: another browser (another workspace's session) is refused.
    let bound = start(
        &ctx.services,
        &caller("acme"),
        personal(&[]),
        None,
        true,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let cookie = format!("{BINDING_COOKIE}=someone-elses-binding");
    let (status, page) = ctx
        .world
        .complete_sign_in(bound.url.as_str(), Some(&cookie))
        .await
        .unwrap();
    assert_eq!(status, 403, "{page}");
    let bound = start(
        &ctx.services,
        &caller("acme"),
        personal(&[]),
        None,
        true,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let cookie = format!(
        "{BINDING_COOKIE}={}",
        bound.browser_binding.as_ref().unwrap().expose_secret()
    );
    let (status, page) = ctx
        .world
        .complete_sign_in(bound.url.as_str(), Some(&cookie))
        .await
        .unwrap();
    assert_eq!(status, 200, "{page}");
}

#[tokio::test]
async fn a_reconnect_of_another_workspaces_integration_is_not_found() {
    let ctx = ctx("connect-cross").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    ctx.interactive(
        json!({"signin_user": alice, "user_consent": "approve", "admin_consent": "approve"}),
    )
    .await;
    let flow = ctx.start("acme", personal(&[])).await;
    assert_eq!(
        ctx.world
            .complete_sign_in(flow.url.as_str(), None)
            .await
            .unwrap()
            .0,
        200
    );
    let theirs = ctx.integrations("acme").await.remove(0).integration_id;
    let attempt = start(
        &ctx.services,
        &caller("globex"),
        personal(&[]),
        Some(&theirs),
        false,
        OffsetDateTime::now_utc(),
    )
    .await;
    assert!(
        matches!(attempt, Err(outlook_core::api::ApiError::NotFound(_))),
        "{attempt:?}"
    );
    let unknown = IntegrationId::generate();
    let attempt = start(
        &ctx.services,
        &caller("acme"),
        personal(&[]),
        Some(&unknown),
        false,
        OffsetDateTime::now_utc(),
    )
    .await;
    assert!(matches!(
        attempt,
        Err(outlook_core::api::ApiError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_code_redeemed_with_another_flows_pkce_verifier_is_refused() {
    let ctx = ctx("connect-pkce").await;
    let alice = ctx.world.add_user("alice", "user").await.unwrap();
    ctx.interactive(
        json!({"signin_user": alice, "user_consent": "approve", "admin_consent": "approve"}),
    )
    .await;
    let first = ctx.start("acme", personal(&[])).await;
    let second = ctx.start("acme", personal(&[])).await;
    // The code of the first flow arrives with the state (and so the verifier) of the second.
    let redirect = ctx
        .world
        .http()
        .get(first.url.as_str())
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let state = second
        .url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut swapped = location.clone();
    swapped
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let (status, page) = ctx.world.callback(swapped.as_str(), None).await.unwrap();
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("could not be verified"), "{page}");
    assert!(ctx.integrations("acme").await.is_empty());
}

#[tokio::test]
async fn admin_consent_again_through_the_same_running_callback_is_proven_with_a_new_token() {
    let ctx = ctx("connect-org-again").await;
    let support = ctx.world.add_user("support", "shared").await.unwrap();
    ctx.interactive(json!({"admin_consent": "approve", "user_consent": "approve", "admin_tenant": ctx.world.tenant_id}))
        .await;
    // Each consent goes through the same running callback; each must be proven with a token
    // Microsoft issues for it, whatever the callback fetched before.
    let consent = |when: &'static str| {
        let ctx = &ctx;
        let support = support.clone();
        async move {
            let seq = ctx.world.last_request_seq().await.unwrap();
            let flow = ctx.start("acme", organization(&[&support])).await;
            let (status, page) = ctx
                .world
                .complete_sign_in(flow.url.as_str(), None)
                .await
                .unwrap();
            assert_eq!(status, 200, "{when}: {page}");
            assert!(
                page.contains("connected for your organization"),
                "{when}: {page}"
            );
            let tokens = ctx.world.requests_since(seq, "token").await.unwrap();
            assert!(
                tokens
                    .iter()
                    .any(|t| t["grant_type"] == "client_credentials" && t["status"] == 200),
                "{when}: consent proven with a newly issued token: {tokens:?}"
            );
        }
    };
    consent("first consent").await;

    // An hour later on Microsoft's clock the token the callback got before has expired there.
    ctx.world
        .sim_post("/clock/advance", &json!({"secs": 3700}))
        .await
        .unwrap();
    consent("an hour later").await;

    // The administrator removes the app from the organization, then consents again: tokens
    // issued before the removal are dead.
    ctx.world
        .sim_post(
            "/events",
            &json!({"type": "app_removed", "tenant": ctx.world.tenant_id, "app": ctx.world.client_id}),
        )
        .await
        .unwrap();
    consent("after the app was removed and consented again").await;

    let integrations = ctx.integrations("acme").await;
    assert_eq!(integrations.len(), 1, "reconnected, not duplicated");
    assert_eq!(integrations[0].status, IntegrationStatus::Connected);
    let mailboxes = ctx.mailboxes("acme").await;
    assert_eq!(mailboxes.len(), 1);
    assert_eq!(mailboxes[0].status, MailboxStatus::Active);
}
