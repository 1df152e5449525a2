//! Starting a connection and finishing it in the OAuth callback.
//!
//! Nothing is written before the connection is proven: an organization-wide callback first gets
//! an app-only token for the tenant (the redirect's `tenant` is never trusted on its own), a
//! personal one first redeems the code with the PKCE verifier. Only then are the secret, the
//! integration and its mailboxes stored.

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use url::Url;

use super::callback_params::{CallbackParams, microsoft_error_page, parse_callback};
use super::{delegated_scopes, parse_mailbox_address};
use crate::api::ApiError;
use crate::api::auth::Caller;
use crate::graph::{GraphError, MailboxRef};
use crate::health::{Reason, StatusReason};
use crate::identity::{IdentityFailure, ORGANIZATIONS, PkceCodeVerifier, Prompt, new_pkce};
use crate::ids::IntegrationId;
use crate::model::{
    AccountType, Integration, IntegrationStatus, Mailbox, MailboxKind, MailboxStatus,
};
use crate::pages::ResultPage;
use crate::services::Services;
use crate::store::{ConsumeError, OAuthState, StateError, StoreError, new_state_value};
use crate::tokens::{TokenError, reason_for};
use crate::vault::StoredRefreshToken;

/// How long a started flow may take before its state expires.
pub const STATE_LIFETIME: Duration = Duration::from_secs(600);
/// The cookie that binds a flow started in a browser to that browser.
pub const BINDING_COOKIE: &str = "outlook_connect_binding";
const MAX_MAILBOXES: usize = 500;
const MAX_SHARED_MAILBOXES: usize = 50;
/// Folders watched by default.
pub const DEFAULT_FOLDERS: &[&str] = &["inbox"];

/// What the caller asked to connect.
#[derive(Debug, Clone)]
pub enum StartOptions {
    Organization {
        /// Mailboxes to sync (SMTP addresses / UPNs); the admin's scope decides which are reachable.
        mailboxes: Vec<String>,
        /// The organization's tenant id or domain, if known; otherwise the admin picks it.
        tenant: Option<String>,
    },
    Personal {
        shared_mailboxes: Vec<String>,
        login_hint: Option<String>,
    },
}

/// A started flow: open `url` in a browser before `expires_at`.
#[derive(Debug)]
pub struct StartedFlow {
    pub url: Url,
    pub expires_at: OffsetDateTime,
    /// Set when the flow is bound to a browser: put it in the `BINDING_COOKIE` cookie.
    pub browser_binding: Option<SecretString>,
}

fn hash_binding(value: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

fn parse_addresses(field: &str, values: &[String], max: usize) -> Result<Vec<String>, ApiError> {
    if values.len() > max {
        return Err(ApiError::invalid(format!(
            "{field}: at most {max} mailboxes"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let address =
            parse_mailbox_address(value).map_err(|e| ApiError::invalid(format!("{field}: {e}")))?;
        if !out.contains(&address) {
            out.push(address);
        }
    }
    Ok(out)
}

/// Starts a new connection, or a reconnect of `reconnect` (which must belong to the caller's
/// workspace and be of the same account type).
pub async fn start(
    svc: &Services,
    caller: &Caller,
    options: StartOptions,
    reconnect: Option<&IntegrationId>,
    bind_browser: bool,
    now: OffsetDateTime,
) -> Result<StartedFlow, ApiError> {
    let redirect = svc.config.callback_url().ok_or(ApiError::Unavailable)?;
    let existing = match reconnect {
        Some(id) => Some(
            svc.store
                .get_integration(&caller.workspace_id, id)
                .await?
                .ok_or(ApiError::NotFound("integration"))?,
        ),
        None => None,
    };
    let existing_mailboxes = match &existing {
        Some(integration) => {
            svc.store
                .list_mailboxes(&caller.workspace_id, Some(&integration.integration_id))
                .await?
        }
        None => Vec::new(),
    };
    let state = new_state_value();
    let binding = bind_browser.then(new_state_value);
    let expires_at = now + STATE_LIFETIME;
    let mut record = OAuthState {
        workspace_id: caller.workspace_id.clone(),
        started_by: caller.subject.clone(),
        account_type: AccountType::Organization,
        integration_id: existing.as_ref().map(|i| i.integration_id.clone()),
        pkce_verifier: None,
        shared_mailboxes: Vec::new(),
        mailboxes: Vec::new(),
        browser_binding: binding.as_ref().map(|b| hash_binding(b.expose_secret())),
        expires_at: expires_at.unix_timestamp(),
        created_at: now,
    };
    let url = match options {
        StartOptions::Organization { mailboxes, tenant } => {
            if existing
                .as_ref()
                .is_some_and(|i| i.account_type != AccountType::Organization)
            {
                return Err(ApiError::invalid(
                    "this integration is personal; reconnect it with a personal sign-in",
                ));
            }
            let mut mailboxes = parse_addresses("mailboxes", &mailboxes, MAX_MAILBOXES)?;
            if mailboxes.is_empty() {
                mailboxes = existing_mailboxes
                    .iter()
                    .map(|m| m.address.clone())
                    .collect();
            }
            if mailboxes.is_empty() {
                return Err(ApiError::invalid(
                    "mailboxes: name at least one mailbox to sync",
                ));
            }
            record.mailboxes = mailboxes;
            let tenant = match (&existing, tenant) {
                (Some(integration), _) => integration.tenant_id.clone(),
                (None, Some(tenant)) => validate_tenant_hint(&tenant)?,
                (None, None) => ORGANIZATIONS.to_owned(),
            };
            svc.identity()
                .admin_consent_url(&tenant, &redirect, state.expose_secret())
        }
        StartOptions::Personal {
            shared_mailboxes,
            login_hint,
        } => {
            if existing
                .as_ref()
                .is_some_and(|i| i.account_type != AccountType::Personal)
            {
                return Err(ApiError::invalid(
                    "this integration is organization-wide; reconnect it with admin consent",
                ));
            }
            let mut shared =
                parse_addresses("sharedMailboxes", &shared_mailboxes, MAX_SHARED_MAILBOXES)?;
            if shared.is_empty() {
                shared = existing_mailboxes
                    .iter()
                    .filter(|m| m.kind == MailboxKind::Shared)
                    .map(|m| m.address.clone())
                    .collect();
            }
            let login_hint = match (login_hint, &existing) {
                (Some(hint), _) => Some(
                    parse_mailbox_address(&hint)
                        .map_err(|e| ApiError::invalid(format!("loginHint: {e}")))?,
                ),
                (None, Some(integration)) => integration.user_principal_name.clone(),
                (None, None) => None,
            };
            let (challenge, verifier) = new_pkce();
            record.account_type = AccountType::Personal;
            record.pkce_verifier = Some(SecretString::from(verifier.secret().clone()));
            record.shared_mailboxes = shared;
            let scopes = delegated_scopes(!record.shared_mailboxes.is_empty());
            svc.identity().authorize_url(
                ORGANIZATIONS,
                &redirect,
                &scopes,
                state.expose_secret(),
                &challenge,
                Some(Prompt::SelectAccount),
                login_hint.as_deref(),
            )
        }
    };
    svc.store.put_state(&state, &record).await?;
    tracing::info!(workspace = %caller.workspace_id, account_type = ?record.account_type, reconnect = record.integration_id.is_some(), "connect flow started");
    Ok(StartedFlow {
        url,
        expires_at,
        browser_binding: binding,
    })
}

fn validate_tenant_hint(tenant: &str) -> Result<String, ApiError> {
    let tenant = tenant.trim().to_lowercase();
    let domain_like = tenant.len() <= 253
        && tenant.contains('.')
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if uuid::Uuid::parse_str(&tenant).is_ok() || domain_like {
        Ok(tenant)
    } else {
        Err(ApiError::invalid(
            "tenant: give the organization's tenant id or its domain (contoso.onmicrosoft.com)",
        ))
    }
}

/// Handles Microsoft's redirect. Always answers with a page; never exposes tokens or internals.
pub async fn handle_callback(
    svc: &Services,
    query: &str,
    binding_cookie: Option<&str>,
    now: OffsetDateTime,
) -> ResultPage {
    let params = match parse_callback(query) {
        Ok(params) => params,
        Err(problem) => return problem.page(),
    };
    let state = match &params {
        CallbackParams::AdminConsent { state, .. }
        | CallbackParams::Code { state, .. }
        | CallbackParams::Error { state, .. } => state,
    };
    // Consumed first, whatever Microsoft answered: a state is good for one callback only.
    let record = match svc.store.consume_state(state, now).await {
        Ok(record) => record,
        Err(ConsumeError::State(StateError::UnknownOrUsed)) => {
            return ResultPage::problem(
                400,
                "This sign-in link is not valid any more",
                "The link was already used, or it is not one we issued. Nothing was changed.",
                "Start the connection again from the integrations page.",
            );
        }
        Err(ConsumeError::State(StateError::Expired)) => {
            return ResultPage::problem(
                400,
                "This sign-in link has expired",
                "Connections must be completed within 10 minutes. Nothing was changed.",
                "Start the connection again from the integrations page.",
            );
        }
        Err(ConsumeError::Store(err)) => {
            tracing::error!(error = %err, "could not read the OAuth state");
            return unavailable_page();
        }
    };
    if let Some(expected) = &record.browser_binding
        && binding_cookie.map(hash_binding).as_deref() != Some(expected.as_str())
    {
        tracing::warn!(workspace = %record.workspace_id, "callback from a browser other than the one that started the flow");
        return ResultPage::problem(
            403,
            "This sign-in was started in another browser",
            "For your security, a connection must be finished in the browser that started it. Nothing was changed.",
            "Start the connection again in this browser.",
        );
    }
    let organization = record.account_type == AccountType::Organization;
    let result = match params {
        CallbackParams::Error {
            error, description, ..
        } => {
            tracing::info!(workspace = %record.workspace_id, error = %error, "Microsoft returned an error to the callback");
            return microsoft_error_page(&error, &description, organization);
        }
        CallbackParams::AdminConsent { tenant, .. } if organization => {
            finish_organization(svc, &record, &tenant, now).await
        }
        CallbackParams::Code { code, .. } if !organization => {
            finish_personal(svc, &record, &code, now).await
        }
        _ => {
            return ResultPage::problem(
                400,
                "This sign-in does not match how it was started",
                "Microsoft's answer is for a different kind of connection than the one that was started. Nothing was changed.",
                "Start the connection again from the integrations page.",
            );
        }
    };
    result.unwrap_or_else(|err| {
        tracing::error!(error = %err, workspace = %record.workspace_id, "storing the connection failed");
        unavailable_page()
    })
}

fn unavailable_page() -> ResultPage {
    ResultPage::problem(
        503,
        "We could not finish connecting",
        "A temporary problem on our side stopped the connection. Nothing was half-saved.",
        "Start the connection again in a few minutes.",
    )
}

fn identity_problem(failure: &IdentityFailure, organization: bool) -> ResultPage {
    let reason = reason_for(failure);
    match failure {
        IdentityFailure::AppNotInTenant | IdentityFailure::ConsentRevoked if organization => {
            ResultPage::problem(
                403,
                "Admin consent could not be confirmed",
                "Microsoft 365 did not let the app into this organization, so the consent could not be verified. Nothing was connected.",
                "A Microsoft 365 administrator of the organization must start the organization-wide connection and accept.",
            )
        }
        IdentityFailure::PkceMismatch
        | IdentityFailure::InvalidGrant
        | IdentityFailure::CodeAlreadyRedeemed => ResultPage::problem(
            400,
            "The sign-in could not be verified",
            "Microsoft 365 did not accept the sign-in code for this connection. Nothing was connected.",
            "Start the connection again from the integrations page.",
        ),
        IdentityFailure::NoRefreshToken => ResultPage::problem(
            400,
            "Offline access was not granted",
            "Without offline access the mailbox cannot be synced while you are away. Nothing was connected.",
            "Start the connection again and accept all requested permissions.",
        ),
        IdentityFailure::Transient => ResultPage::problem(
            503,
            "Microsoft 365 did not answer",
            "The sign-in could not be completed because Microsoft 365 was unavailable. Nothing was connected.",
            "Try again in a few minutes.",
        ),
        _ => ResultPage::problem(
            403,
            "The connection was refused",
            reason.message(),
            reason.fix(),
        ),
    }
}

struct Probe {
    address: String,
    kind: MailboxKind,
    outcome: Result<(), Reason>,
}

/// Checks a mailbox is reachable by reading its Inbox folder (the smallest read that needs the
/// same mail permission sync uses).
async fn probe(
    svc: &Services,
    token: &SecretString,
    mailbox: &MailboxRef,
    kind: MailboxKind,
) -> Result<Result<(), Reason>, GraphError> {
    match svc.graph.get_folder(token, mailbox, "inbox").await {
        Ok(_) => Ok(Ok(())),
        Err(err) if err.is_mailbox_not_enabled() => Ok(Err(Reason::MailboxNotEnabled)),
        Err(err @ GraphError::Forbidden { .. }) => Ok(Err(match kind {
            MailboxKind::Shared => Reason::SharedMailboxNotGranted,
            _ if err.is_mailbox_outside_app_scope() => Reason::MailboxOutsideAdminScope,
            _ => Reason::MailboxOutsideAdminScope,
        })),
        Err(GraphError::NotFound { .. }) => Ok(Err(match kind {
            MailboxKind::Shared => Reason::SharedMailboxNotGranted,
            _ => Reason::MailboxNotEnabled,
        })),
        Err(other) => Err(other),
    }
}

async fn finish_organization(
    svc: &Services,
    record: &OAuthState,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<ResultPage, StoreError> {
    // Prove the consent: only a tenant that admits the app issues it a token. A newly issued
    // one: a cached token only shows the tenant admitted the app when it was issued, and Graph
    // refuses it once it expired on Microsoft's clock or the app was removed since.
    let mut token = match fresh_app_token(svc, record, tenant).await {
        Ok(token) => token,
        Err(page) => return Ok(page),
    };
    let mut renewed_token = false;
    let mut probes = Vec::new();
    for address in &record.mailboxes {
        let outcome = loop {
            match probe(
                svc,
                &token,
                &MailboxRef::User(address.clone()),
                MailboxKind::Organization,
            )
            .await
            {
                Ok(outcome) => break outcome,
                // Graph refused the token: get another one once (as sync does); a refused
                // token request then tells why.
                Err(GraphError::Unauthorized { .. }) if !renewed_token => {
                    renewed_token = true;
                    tracing::info!(workspace = %record.workspace_id, tenant, "Graph refused a new app token during the consent check; getting another one");
                    token = match fresh_app_token(svc, record, tenant).await {
                        Ok(token) => token,
                        Err(page) => return Ok(page),
                    };
                }
                Err(err) => {
                    tracing::warn!(error = %err, "mailbox probe failed");
                    return Ok(unavailable_page());
                }
            }
        };
        probes.push(Probe {
            address: address.clone(),
            kind: MailboxKind::Organization,
            outcome,
        });
    }
    // Reconnect the named integration, or the workspace's existing one for this tenant.
    let existing = match &record.integration_id {
        Some(id) => svc.store.get_integration(&record.workspace_id, id).await?,
        None => svc
            .store
            .list_integrations(&record.workspace_id)
            .await?
            .into_iter()
            .find(|i| {
                i.account_type == AccountType::Organization
                    && i.tenant_id == tenant
                    && i.status != IntegrationStatus::Disconnected
            }),
    };
    if let Some(existing) = &existing
        && existing.tenant_id != tenant
    {
        return Ok(ResultPage::problem(
            409,
            "This consent is for a different organization",
            "The administrator consented for another Microsoft 365 organization than the one this connection belongs to. Nothing was changed.",
            "Sign in as an administrator of the original organization, or create a new connection.",
        ));
    }
    let integration = save_integration(svc, record, existing, tenant, None, now).await?;
    let rows = upsert_mailboxes(svc, &integration, &probes, now).await?;
    tracing::info!(workspace = %record.workspace_id, integration = %integration.integration_id, "organization-wide integration connected");
    Ok(success_page(svc, &integration, rows))
}

/// A newly issued app-only token for the tenant (see [`finish_organization`]), or the page that
/// explains why Microsoft refused it.
async fn fresh_app_token(
    svc: &Services,
    record: &OAuthState,
    tenant: &str,
) -> Result<SecretString, ResultPage> {
    match svc.tokens.fresh_app_token(tenant).await {
        Ok(token) => Ok(token),
        Err(TokenError::Identity(failure)) => {
            tracing::warn!(workspace = %record.workspace_id, tenant, failure = %failure, "admin consent callback refused");
            Err(identity_problem(&failure, true))
        }
        Err(other) => {
            tracing::error!(error = %other, "app token failed");
            Err(unavailable_page())
        }
    }
}

async fn finish_personal(
    svc: &Services,
    record: &OAuthState,
    code: &SecretString,
    now: OffsetDateTime,
) -> Result<ResultPage, StoreError> {
    let Some(verifier) = &record.pkce_verifier else {
        return Ok(unavailable_page());
    };
    let scopes = delegated_scopes(!record.shared_mailboxes.is_empty());
    let redirect = match svc.config.callback_url() {
        Some(url) => url,
        None => return Ok(unavailable_page()),
    };
    let tokens = match svc
        .identity()
        .exchange_code(
            code,
            &redirect,
            PkceCodeVerifier::new(verifier.expose_secret().to_owned()),
            &scopes,
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(err) => {
            tracing::warn!(workspace = %record.workspace_id, failure = %err.failure(), "code exchange refused");
            return Ok(identity_problem(&err.failure(), false));
        }
    };
    let Some(claims) = tokens.id_token.clone() else {
        tracing::error!("token response had no ID token");
        return Ok(unavailable_page());
    };
    let (Some(tenant), Some(oid)) = (claims.tid.clone(), claims.oid.clone()) else {
        tracing::error!("ID token without tid/oid");
        return Ok(unavailable_page());
    };
    let me = match svc.graph.get_me(&tokens.access_token).await {
        Ok(me) => me,
        Err(err) => {
            tracing::warn!(error = %err, "reading the signed-in user failed");
            return Ok(unavailable_page());
        }
    };
    let existing = match &record.integration_id {
        Some(id) => svc.store.get_integration(&record.workspace_id, id).await?,
        None => None,
    };
    if let Some(existing) = &existing
        && existing.user_object_id.as_deref() != Some(oid.as_str())
    {
        return Ok(ResultPage::problem(
            409,
            "You signed in with a different account",
            format!(
                "This connection belongs to {}, but you signed in as {}. Nothing was changed.",
                existing
                    .user_principal_name
                    .as_deref()
                    .unwrap_or("another account"),
                me.user_principal_name
                    .as_deref()
                    .unwrap_or("another account")
            ),
            "Reconnect and choose the account the connection belongs to, or create a new connection.",
        ));
    }
    let own_address = me
        .mail
        .clone()
        .or_else(|| me.user_principal_name.clone())
        .or_else(|| claims.preferred_username.clone())
        .unwrap_or_default()
        .to_lowercase();
    let mut probes = Vec::new();
    let own = match probe(svc, &tokens.access_token, &MailboxRef::Me, MailboxKind::Own).await {
        Ok(outcome) => outcome,
        Err(err) => {
            tracing::warn!(error = %err, "own mailbox probe failed");
            return Ok(unavailable_page());
        }
    };
    if let Err(reason) = own {
        return Ok(ResultPage::problem(
            403,
            "Your mailbox cannot be reached",
            reason.message(),
            reason.fix(),
        ));
    }
    probes.push(Probe {
        address: own_address.clone(),
        kind: MailboxKind::Own,
        outcome: Ok(()),
    });
    for address in &record.shared_mailboxes {
        let outcome = match probe(
            svc,
            &tokens.access_token,
            &MailboxRef::User(address.clone()),
            MailboxKind::Shared,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(error = %err, "shared mailbox probe failed");
                return Ok(unavailable_page());
            }
        };
        probes.push(Probe {
            address: address.clone(),
            kind: MailboxKind::Shared,
            outcome,
        });
    }
    let integration_id = existing
        .as_ref()
        .map(|i| i.integration_id.clone())
        .unwrap_or_else(IntegrationId::generate);
    let generation = existing
        .as_ref()
        .map(|i| i.credential_generation + 1)
        .unwrap_or(1);
    let stored = StoredRefreshToken {
        refresh_token: tokens.refresh_token.clone(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        generation,
    };
    if let Err(err) = svc
        .vault
        .put_refresh_token(&record.workspace_id, &integration_id, &stored)
        .await
    {
        tracing::error!(error = %err, "storing the refresh token failed");
        return Ok(unavailable_page());
    }
    let user = PersonalUser {
        integration_id,
        object_id: oid,
        upn: me
            .user_principal_name
            .clone()
            .unwrap_or_else(|| own_address.clone()),
        display_name: me.display_name.clone(),
        scopes: tokens.scopes.clone(),
    };
    let integration = save_integration(svc, record, existing, &tenant, Some(user), now).await?;
    let rows = upsert_mailboxes(svc, &integration, &probes, now).await?;
    tracing::info!(workspace = %record.workspace_id, integration = %integration.integration_id, "personal integration connected");
    Ok(success_page(svc, &integration, rows))
}

struct PersonalUser {
    integration_id: IntegrationId,
    object_id: String,
    upn: String,
    display_name: Option<String>,
    scopes: Vec<String>,
}

/// Creates the integration, or returns an existing one to connected with a new credential
/// generation (a worker holding the old credential can then no longer mark it broken).
async fn save_integration(
    svc: &Services,
    record: &OAuthState,
    existing: Option<Integration>,
    tenant: &str,
    user: Option<PersonalUser>,
    now: OffsetDateTime,
) -> Result<Integration, StoreError> {
    let mut current = existing;
    loop {
        let integration = match current.take() {
            Some(mut integration) => {
                integration.status = IntegrationStatus::Connected;
                integration.status_reason = None;
                integration.credential_generation += 1;
                integration.updated_at = now;
                if let Some(user) = &user {
                    integration.scopes = user.scopes.clone();
                    integration.display_name =
                        user.display_name.clone().or(integration.display_name);
                }
                match svc.store.save_integration(&integration).await {
                    Ok(saved) => saved,
                    Err(StoreError::Conflict) => {
                        current = svc
                            .store
                            .get_integration(&integration.workspace_id, &integration.integration_id)
                            .await?;
                        continue;
                    }
                    Err(other) => return Err(other),
                }
            }
            None => {
                let integration = Integration {
                    workspace_id: record.workspace_id.clone(),
                    integration_id: user
                        .as_ref()
                        .map(|u| u.integration_id.clone())
                        .unwrap_or_else(IntegrationId::generate),
                    account_type: record.account_type,
                    tenant_id: tenant.to_owned(),
                    status: IntegrationStatus::Connected,
                    status_reason: None,
                    user_principal_name: user.as_ref().map(|u| u.upn.clone()),
                    user_object_id: user.as_ref().map(|u| u.object_id.clone()),
                    display_name: user.as_ref().and_then(|u| u.display_name.clone()),
                    scopes: user.as_ref().map(|u| u.scopes.clone()).unwrap_or_default(),
                    credential_generation: 1,
                    created_at: now,
                    updated_at: now,
                    last_successful_sync_at: None,
                    version: 0,
                };
                svc.store.create_integration(&integration).await?;
                integration
            }
        };
        return Ok(integration);
    }
}

/// Creates new mailboxes and updates the status of existing ones, keeping their folders and
/// delta links (a reconnect resumes where sync stopped).
async fn upsert_mailboxes(
    svc: &Services,
    integration: &Integration,
    probes: &[Probe],
    now: OffsetDateTime,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let existing = svc
        .store
        .list_mailboxes(&integration.workspace_id, Some(&integration.integration_id))
        .await?;
    let mut rows = Vec::new();
    for probe in probes {
        let (status, reason) = match probe.outcome {
            Ok(()) => (MailboxStatus::Active, None),
            Err(reason) => (MailboxStatus::Blocked, Some(StatusReason::from(reason))),
        };
        match existing
            .iter()
            .find(|m| m.address.eq_ignore_ascii_case(&probe.address))
        {
            Some(mailbox) => {
                let mut current = mailbox.clone();
                loop {
                    if current.status != MailboxStatus::Active && status == MailboxStatus::Active {
                        current.next_sync_at = now.unix_timestamp();
                    }
                    current.status = status;
                    current.status_reason = reason.clone();
                    match svc.store.save_mailbox(&current).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict) => {
                            match svc.store.get_mailbox(&mailbox.key()).await? {
                                Some(fresh) => current = fresh,
                                None => break,
                            }
                        }
                        Err(other) => return Err(other),
                    }
                }
            }
            None => {
                let mut mailbox = Mailbox::new(
                    integration.workspace_id.clone(),
                    integration.integration_id.clone(),
                    &probe.address,
                    probe.kind,
                    DEFAULT_FOLDERS,
                    now,
                );
                mailbox.status = status;
                mailbox.status_reason = reason.clone();
                svc.store.create_mailbox(&mailbox).await?;
            }
        }
        rows.push(match &reason {
            None => (
                probe.address.clone(),
                "syncing".to_owned(),
                "Reachable; new mail is processed from now on.".to_owned(),
            ),
            Some(reason) => (
                probe.address.clone(),
                "not reachable".to_owned(),
                format!("{} {}", reason.message, reason.fix),
            ),
        });
    }
    Ok(rows)
}

fn success_page(
    svc: &Services,
    integration: &Integration,
    mailboxes: Vec<(String, String, String)>,
) -> ResultPage {
    let (title, message) = match integration.account_type {
        AccountType::Organization => (
            "Outlook is connected for your organization",
            "Admin consent was verified. Mail is synced with the app's own access, so password or MFA changes of any user do not interrupt it.",
        ),
        AccountType::Personal => (
            "Your Outlook mailbox is connected",
            "Your sign-in was verified. If your password changes or your organization adds MFA, you will be asked to reconnect; sync then resumes where it stopped.",
        ),
    };
    ResultPage {
        status: 200,
        success: true,
        title: title.into(),
        message: message.into(),
        fix: None,
        mailboxes,
        link: svc.config.public_base_url.as_ref().map(|base| {
            (
                "See your connections".to_owned(),
                crate::config::join_path(base, "connect").to_string(),
            )
        }),
    }
}
