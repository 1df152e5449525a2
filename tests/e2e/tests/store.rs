//! Data-layer integration tests against the AWS emulator: conditional-write conflicts, lease
//! expiry, the TTL attribute, pagination over many items, single-use states and a vault round trip.
//! Each test provisions its own table/queues/secrets from `infra/template.yaml`.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use e2e::{LocalStack, provision};
use outlook_core::ids::{IntegrationId, WorkspaceId};
use outlook_core::model::{
    AccountType, FolderState, Integration, IntegrationStatus, Mailbox, MailboxCounters,
    MailboxKind, MailboxStatus,
};
use outlook_core::store::{
    ActionClaim, EvaluationClaim, HandoffState, OAuthState, StateError, Store, StoreError,
    StoredRuleSet, SyncOutcome, new_state_value,
};
use outlook_core::vault::{StoredRefreshToken, TokenVault};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

struct Ctx {
    store: Store,
    dynamo: aws_sdk_dynamodb::Client,
    vault: TokenVault,
    table: String,
}

async fn ctx(name: &str) -> Ctx {
    let stack = LocalStack::from_env()
        .await
        .expect("local stack is up (make stack-up)");
    let prefix = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let resources = provision(stack.sdk_config(), &prefix)
        .await
        .expect("provision from template");
    let dynamo = aws_sdk_dynamodb::Client::new(stack.sdk_config());
    let secrets = aws_sdk_secretsmanager::Client::new(stack.sdk_config());
    Ctx {
        store: Store::new(dynamo.clone(), &resources.table_name),
        dynamo,
        vault: TokenVault::new(
            secrets,
            &resources.app_credentials_secret_id,
            &resources.token_secret_prefix,
        ),
        table: resources.table_name,
    }
}

fn ws(name: &str) -> WorkspaceId {
    WorkspaceId::parse(name).unwrap()
}

fn integration(workspace: &str) -> Integration {
    let now = OffsetDateTime::now_utc();
    Integration {
        workspace_id: ws(workspace),
        integration_id: IntegrationId::generate(),
        account_type: AccountType::Organization,
        tenant_id: "7f2b1c1e-0000-4000-8000-000000000001".into(),
        status: IntegrationStatus::Connected,
        status_reason: None,
        user_principal_name: None,
        user_object_id: None,
        display_name: Some("Contoso".into()),
        scopes: vec![],
        credential_generation: 1,
        created_at: now,
        updated_at: now,
        last_successful_sync_at: None,
        version: 0,
    }
}

fn mailbox(integration: &Integration, address: &str, now: OffsetDateTime) -> Mailbox {
    Mailbox::new(
        integration.workspace_id.clone(),
        integration.integration_id.clone(),
        address,
        MailboxKind::Organization,
        &["inbox"],
        now,
    )
}

#[tokio::test]
async fn integration_updates_are_optimistically_versioned() {
    let ctx = ctx("versioning").await;
    let integration = integration("acme");
    ctx.store.create_integration(&integration).await.unwrap();
    assert!(matches!(
        ctx.store.create_integration(&integration).await,
        Err(StoreError::Conflict)
    ));

    let read_a = ctx
        .store
        .get_integration(&integration.workspace_id, &integration.integration_id)
        .await
        .unwrap()
        .unwrap();
    let read_b = read_a.clone();
    let mut changed = read_a.clone();
    changed.status = IntegrationStatus::NeedsReconnect;
    let saved = ctx.store.save_integration(&changed).await.unwrap();
    assert_eq!(saved.version, read_a.version + 1);
    // The second writer read the old version: its write must lose, not overwrite.
    let mut stale = read_b;
    stale.display_name = Some("stale".into());
    assert!(matches!(
        ctx.store.save_integration(&stale).await,
        Err(StoreError::Conflict)
    ));
    let now = ctx
        .store
        .get_integration(&integration.workspace_id, &integration.integration_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.status, IntegrationStatus::NeedsReconnect);
    assert_eq!(now.display_name.as_deref(), Some("Contoso"));
}

#[tokio::test]
async fn workspaces_cannot_see_each_others_records() {
    let ctx = ctx("isolation").await;
    let a = integration("tenant-a");
    let b = integration("tenant-b");
    ctx.store.create_integration(&a).await.unwrap();
    ctx.store.create_integration(&b).await.unwrap();
    let now = OffsetDateTime::now_utc();
    ctx.store
        .create_mailbox(&mailbox(&a, "a@contoso.com", now))
        .await
        .unwrap();
    assert_eq!(
        ctx.store
            .list_integrations(&ws("tenant-a"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        ctx.store
            .get_integration(&ws("tenant-b"), &a.integration_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ctx.store
            .list_mailboxes(&ws("tenant-b"), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ctx.store
            .list_mailboxes(&ws("tenant-b"), Some(&a.integration_id))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_second_worker_backs_off_until_the_lease_expires() {
    let ctx = ctx("lease").await;
    let integration = integration("acme");
    let now = OffsetDateTime::now_utc();
    let mbx = mailbox(&integration, "ops@contoso.com", now);
    ctx.store.create_mailbox(&mbx).await.unwrap();
    let key = mbx.key();
    let lease = Duration::from_secs(60);

    let first = ctx
        .store
        .take_lease(&key, "worker-1", now, lease, false)
        .await
        .unwrap();
    assert!(first.is_some());
    assert!(
        ctx.store
            .take_lease(&key, "worker-2", now, lease, false)
            .await
            .unwrap()
            .is_none()
    );
    // Only the holder may checkpoint.
    let state = FolderState {
        folder: "inbox".into(),
        delta_link: Some("https://g/delta?$deltatoken=1".into()),
        ..Default::default()
    };
    assert!(matches!(
        ctx.store
            .checkpoint_folder(&key, "worker-2", &state, 0)
            .await,
        Err(StoreError::Conflict)
    ));
    ctx.store
        .checkpoint_folder(&key, "worker-1", &state, 3)
        .await
        .unwrap();

    // After the lease runs out (worker-1 crashed), worker-2 takes over and sees the checkpoint.
    let later = now + time::Duration::seconds(61);
    let taken = ctx
        .store
        .take_lease(&key, "worker-2", later, lease, false)
        .await
        .unwrap()
        .expect("lease expired");
    assert_eq!(
        taken.folders["inbox"].delta_link.as_deref(),
        Some("https://g/delta?$deltatoken=1")
    );
    assert_eq!(taken.counters.messages_handed_on, 3);
    // The crashed worker can no longer release or checkpoint. The release carries the last
    // checkpoint of a completed round (folder state and its handed-on count).
    let completed = FolderState {
        folder: "inbox".into(),
        delta_link: Some("https://g/delta?$deltatoken=2".into()),
        ..Default::default()
    };
    let outcome = SyncOutcome {
        finished_at: later,
        next_sync_at: later.unix_timestamp() + 60,
        success: true,
        counters: MailboxCounters {
            messages_handed_on: 2,
            ..Default::default()
        },
        last_error: None,
        throttled_until: None,
        completed_folders: vec![completed],
    };
    assert!(matches!(
        ctx.store.release_lease(&key, "worker-1", &outcome).await,
        Err(StoreError::Conflict)
    ));
    ctx.store
        .release_lease(&key, "worker-2", &outcome)
        .await
        .unwrap();
    let released = ctx.store.get_mailbox(&key).await.unwrap().unwrap();
    assert!(released.lease_owner.is_none());
    assert_eq!(released.counters.syncs, 1);
    assert_eq!(
        released.folders["inbox"].delta_link.as_deref(),
        Some("https://g/delta?$deltatoken=2")
    );
    assert_eq!(released.counters.messages_handed_on, 5);
    assert!(released.last_successful_sync_at.is_some());
    // Not due again until next_sync_at.
    assert!(
        ctx.store
            .take_lease(&key, "worker-3", later, lease, false)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ctx.store
            .take_lease(&key, "worker-3", later, lease, true)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn due_index_pages_over_many_mailboxes_and_skips_paused_ones() {
    let ctx = ctx("due").await;
    let integration = integration("acme");
    let now = OffsetDateTime::now_utc();
    let total = 250;
    let mut later_ids = Vec::new();
    for i in 0..total {
        let mut mbx = mailbox(&integration, &format!("user{i}@contoso.com"), now);
        if i % 5 == 0 {
            mbx.next_sync_at = now.unix_timestamp() + 3600;
            later_ids.push(mbx.mailbox_id.clone());
        }
        if i % 7 == 0 {
            mbx.status = MailboxStatus::Blocked;
        }
        ctx.store.create_mailbox(&mbx).await.unwrap();
    }
    let expected = (0..total).filter(|i| i % 5 != 0 && i % 7 != 0).count();
    let due = ctx.store.due_mailboxes(now).await.unwrap();
    assert_eq!(due.len(), expected);
    assert!(due.iter().all(|k| !later_ids.contains(&k.mailbox_id)));
    // Listing a workspace pages through every mailbox.
    assert_eq!(
        ctx.store
            .list_mailboxes(&integration.workspace_id, None)
            .await
            .unwrap()
            .len(),
        total
    );

    ctx.store
        .set_integration_mailboxes_paused(
            &integration.workspace_id,
            &integration.integration_id,
            true,
            now,
        )
        .await
        .unwrap();
    assert!(ctx.store.due_mailboxes(now).await.unwrap().is_empty());
    ctx.store
        .set_integration_mailboxes_paused(
            &integration.workspace_id,
            &integration.integration_id,
            false,
            now,
        )
        .await
        .unwrap();
    // Resumed mailboxes are due immediately, blocked ones stay out.
    let resumed = ctx.store.due_mailboxes(now).await.unwrap().len();
    assert_eq!(resumed, (0..total).filter(|i| i % 7 != 0).count());
}

#[tokio::test]
async fn oauth_states_are_single_use_expiring_and_carry_a_ttl() {
    let ctx = ctx("states").await;
    let now = OffsetDateTime::now_utc();
    let record = |expires_at| OAuthState {
        workspace_id: ws("acme"),
        started_by: "user-1".into(),
        account_type: AccountType::Personal,
        integration_id: None,
        pkce_verifier: Some("verifier-value".to_string().into()),
        shared_mailboxes: vec![],
        mailboxes: vec![],
        browser_binding: None,
        expires_at,
        created_at: now,
    };
    let state = new_state_value();
    ctx.store
        .put_state(&state, &record(now.unix_timestamp() + 600))
        .await
        .unwrap();

    // The table holds a hash of the state, with the TTL attribute set.
    let scan = ctx
        .dynamo
        .scan()
        .table_name(&ctx.table)
        .send()
        .await
        .unwrap();
    let item = &scan.items.unwrap()[0];
    assert!(!item["pk"].as_s().unwrap().contains(state.expose_secret()));
    assert!(matches!(item.get("expires_at"), Some(AttributeValue::N(_))));

    let consumed = ctx.store.consume_state(&state, now).await.unwrap();
    assert_eq!(
        consumed.pkce_verifier.unwrap().expose_secret(),
        "verifier-value"
    );
    let replay = ctx.store.consume_state(&state, now).await.unwrap_err();
    assert!(matches!(
        replay,
        outlook_core::store::ConsumeError::State(StateError::UnknownOrUsed)
    ));

    let expired = new_state_value();
    ctx.store
        .put_state(&expired, &record(now.unix_timestamp() - 1))
        .await
        .unwrap();
    let err = ctx.store.consume_state(&expired, now).await.unwrap_err();
    assert!(matches!(
        err,
        outlook_core::store::ConsumeError::State(StateError::Expired)
    ));
    let unknown = ctx
        .store
        .consume_state(&new_state_value(), now)
        .await
        .unwrap_err();
    assert!(matches!(
        unknown,
        outlook_core::store::ConsumeError::State(StateError::UnknownOrUsed)
    ));
}

#[tokio::test]
async fn concurrent_consumers_of_one_state_get_it_once() {
    let ctx = ctx("states-race").await;
    let now = OffsetDateTime::now_utc();
    let state = new_state_value();
    let record = OAuthState {
        workspace_id: ws("acme"),
        started_by: "user-1".into(),
        account_type: AccountType::Organization,
        integration_id: None,
        pkce_verifier: None,
        shared_mailboxes: vec![],
        mailboxes: vec!["a@contoso.com".into()],
        browser_binding: None,
        expires_at: now.unix_timestamp() + 600,
        created_at: now,
    };
    ctx.store.put_state(&state, &record).await.unwrap();
    let attempts =
        futures::future::join_all((0..8).map(|_| ctx.store.consume_state(&state, now))).await;
    assert_eq!(attempts.iter().filter(|r| r.is_ok()).count(), 1);
}

#[tokio::test]
async fn message_handoff_and_actions_are_claimed_once() {
    let ctx = ctx("claims").await;
    let integration = integration("acme");
    let now = OffsetDateTime::now_utc();
    let mbx = mailbox(&integration, "ops@contoso.com", now);
    let ws = &integration.workspace_id;

    assert_eq!(
        ctx.store
            .begin_handoff(ws, &mbx.mailbox_id, "AAMk1", now)
            .await
            .unwrap(),
        HandoffState::New
    );
    // A crash before marking: the next sync hands it on again.
    assert_eq!(
        ctx.store
            .begin_handoff(ws, &mbx.mailbox_id, "AAMk1", now)
            .await
            .unwrap(),
        HandoffState::Pending
    );
    ctx.store
        .mark_handed_on(&mbx.mailbox_id, &["AAMk1".to_string()], now)
        .await
        .unwrap();
    assert_eq!(
        ctx.store
            .begin_handoff(ws, &mbx.mailbox_id, "AAMk1", now)
            .await
            .unwrap(),
        HandoffState::HandedOn
    );

    let lease = Duration::from_secs(30);
    let claim = ctx
        .store
        .claim_evaluation(&mbx.mailbox_id, "AAMk1", "eval-1", now, lease)
        .await
        .unwrap();
    assert_eq!(claim, EvaluationClaim::Claimed);
    let other = ctx
        .store
        .claim_evaluation(&mbx.mailbox_id, "AAMk1", "eval-2", now, lease)
        .await
        .unwrap();
    assert_eq!(other, EvaluationClaim::HeldByOther);

    let key = "forward:abc";
    let first = ctx
        .store
        .claim_action(&mbx.mailbox_id, "AAMk1", key, "eval-1", now, lease)
        .await
        .unwrap();
    assert!(matches!(first, ActionClaim::Claimed(ref r) if r.draft_id.is_none()));
    ctx.store
        .set_action_draft(&mbx.mailbox_id, "AAMk1", key, "eval-1", "draft-1")
        .await
        .unwrap();
    assert_eq!(
        ctx.store
            .claim_action(&mbx.mailbox_id, "AAMk1", key, "eval-2", now, lease)
            .await
            .unwrap(),
        ActionClaim::HeldByOther
    );
    // eval-1 dies; after the lease eval-2 resumes with the same draft id.
    let later = now + time::Duration::seconds(31);
    match ctx
        .store
        .claim_action(&mbx.mailbox_id, "AAMk1", key, "eval-2", later, lease)
        .await
        .unwrap()
    {
        ActionClaim::Claimed(record) => assert_eq!(record.draft_id.as_deref(), Some("draft-1")),
        other => panic!("expected a takeover, got {other:?}"),
    }
    assert!(
        ctx.store
            .finish_action(&mbx.mailbox_id, "AAMk1", key, "eval-1", Ok(()), later)
            .await
            .is_err()
    );
    ctx.store
        .finish_action(&mbx.mailbox_id, "AAMk1", key, "eval-2", Ok(()), later)
        .await
        .unwrap();
    assert!(matches!(
        ctx.store
            .claim_action(&mbx.mailbox_id, "AAMk1", key, "eval-3", later, lease)
            .await
            .unwrap(),
        ActionClaim::Finished(_)
    ));

    let claim = ctx
        .store
        .claim_evaluation(&mbx.mailbox_id, "AAMk1", "eval-2", later, lease)
        .await
        .unwrap();
    assert_eq!(claim, EvaluationClaim::Claimed);
    ctx.store
        .complete_evaluation(&mbx.mailbox_id, "AAMk1", "eval-2", later)
        .await
        .unwrap();
    assert_eq!(
        ctx.store
            .claim_evaluation(&mbx.mailbox_id, "AAMk1", "eval-3", later, lease)
            .await
            .unwrap(),
        EvaluationClaim::AlreadyEvaluated
    );
}

#[tokio::test]
async fn rule_sets_are_versioned() {
    let ctx = ctx("rulesets").await;
    let integration = integration("acme");
    let record = |version| StoredRuleSet {
        workspace_id: integration.workspace_id.clone(),
        integration_id: integration.integration_id.clone(),
        scope: "*".into(),
        version,
        document: format!("{{\"version\":{version}}}"),
        updated_at: OffsetDateTime::now_utc(),
        updated_by: None,
    };
    ctx.store.put_ruleset(&record(1)).await.unwrap();
    assert!(matches!(
        ctx.store.put_ruleset(&record(1)).await,
        Err(StoreError::Conflict)
    ));
    ctx.store.put_ruleset(&record(2)).await.unwrap();
    assert!(matches!(
        ctx.store.put_ruleset(&record(2)).await,
        Err(StoreError::Conflict)
    ));
    let stored = ctx
        .store
        .get_ruleset(&integration.workspace_id, &integration.integration_id, "*")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
}

#[tokio::test]
async fn vault_round_trips_refresh_tokens() {
    let ctx = ctx("vault").await;
    let workspace = ws("acme");
    let int = IntegrationId::generate();
    assert!(
        ctx.vault
            .get_refresh_token(&workspace, &int)
            .await
            .unwrap()
            .is_none()
    );
    for (value, generation) in [("rt-one", 1), ("rt-two", 2)] {
        let token = StoredRefreshToken {
            refresh_token: value.to_string().into(),
            scopes: vec!["Mail.ReadWrite".into()],
            generation,
        };
        ctx.vault
            .put_refresh_token(&workspace, &int, &token)
            .await
            .unwrap();
        let back = ctx
            .vault
            .get_refresh_token(&workspace, &int)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.refresh_token.expose_secret(), value);
        assert_eq!(back.generation, generation);
    }
    ctx.vault
        .delete_refresh_token(&workspace, &int)
        .await
        .unwrap();
    assert!(
        ctx.vault
            .get_refresh_token(&workspace, &int)
            .await
            .unwrap()
            .is_none()
    );
    ctx.vault
        .delete_refresh_token(&workspace, &int)
        .await
        .unwrap();
    // The app credentials secret declared in the template exists.
    assert!(ctx.vault.app_credentials_json().await.is_ok());
}
