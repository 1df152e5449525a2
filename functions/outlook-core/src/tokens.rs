//! Access tokens for Graph, per integration, cached across warm invocations.
//!
//! Organization-wide: one app-only token per Microsoft tenant (`AppTokenCache`), never one token
//! request per mailbox. Personal: the refresh-token grant; the rotated refresh token is stored
//! back, and the secret is read only when a new access token is needed.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::health::Reason;
use crate::identity::{AppTokenCache, IdentityClient, IdentityError, IdentityFailure};
use crate::ids::IntegrationId;
use crate::model::{AccountType, Integration};
use crate::vault::{StoredRefreshToken, TokenVault, VaultError};

/// A cached token is renewed when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("Microsoft refused the token request: {0}")]
    Identity(IdentityFailure),
    #[error("the integration has no stored sign-in")]
    NoRefreshToken,
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<IdentityError> for TokenError {
    fn from(err: IdentityError) -> Self {
        TokenError::Identity(err.failure())
    }
}

struct CachedToken {
    access_token: SecretString,
    expires_at: OffsetDateTime,
    generation: u64,
}

pub struct TokenProvider {
    identity: IdentityClient,
    vault: TokenVault,
    app_tokens: AppTokenCache,
    delegated: Mutex<HashMap<IntegrationId, CachedToken>>,
}

impl TokenProvider {
    pub fn new(identity: IdentityClient, vault: TokenVault) -> Self {
        let app_tokens = AppTokenCache::new(identity.clone());
        Self {
            identity,
            vault,
            app_tokens,
            delegated: Mutex::new(HashMap::new()),
        }
    }

    pub fn identity(&self) -> &IdentityClient {
        &self.identity
    }

    /// A valid Graph access token for the integration.
    pub async fn access_token(
        &self,
        integration: &Integration,
    ) -> Result<SecretString, TokenError> {
        match integration.account_type {
            AccountType::Organization => Ok(self.app_tokens.token(&integration.tenant_id).await?),
            AccountType::Personal => self.delegated_token(integration).await,
        }
    }

    /// An app-only token for a tenant (cached).
    pub async fn app_token(&self, tenant_id: &str) -> Result<SecretString, TokenError> {
        Ok(self.app_tokens.token(tenant_id).await?)
    }

    /// An app-only token for a tenant issued just now (it replaces the cached one): how admin
    /// consent is proven. A cached token only shows the tenant admitted the app when it was issued.
    pub async fn fresh_app_token(&self, tenant_id: &str) -> Result<SecretString, TokenError> {
        Ok(self
            .app_tokens
            .fresh_app_token(tenant_id)
            .await?
            .access_token)
    }

    /// Drops a cached token Graph refused (401), so the next call gets a new one.
    pub async fn invalidate(&self, integration: &Integration) {
        match integration.account_type {
            AccountType::Organization => self.app_tokens.invalidate(&integration.tenant_id).await,
            AccountType::Personal => {
                self.delegated
                    .lock()
                    .await
                    .remove(&integration.integration_id);
            }
        }
    }

    async fn delegated_token(&self, integration: &Integration) -> Result<SecretString, TokenError> {
        // Held across the refresh: two mailboxes of one integration make one token request.
        let mut cache = self.delegated.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(cached) = cache.get(&integration.integration_id)
            && cached.generation == integration.credential_generation
            && cached.expires_at - now > RENEW_BEFORE
        {
            return Ok(cached.access_token.clone());
        }
        let stored = self
            .vault
            .get_refresh_token(&integration.workspace_id, &integration.integration_id)
            .await?
            .ok_or(TokenError::NoRefreshToken)?;
        let scopes: Vec<&str> = stored.scopes.iter().map(String::as_str).collect();
        let tokens = self
            .identity
            .refresh(&stored.refresh_token, &scopes)
            .await?;
        // Microsoft rotates the refresh token on every use; keep the newest one.
        let rotated = StoredRefreshToken {
            refresh_token: tokens.refresh_token.clone(),
            scopes: stored.scopes.clone(),
            generation: stored.generation,
        };
        self.vault
            .put_refresh_token(
                &integration.workspace_id,
                &integration.integration_id,
                &rotated,
            )
            .await?;
        cache.insert(
            integration.integration_id.clone(),
            CachedToken {
                access_token: tokens.access_token.clone(),
                expires_at: tokens.expires_at,
                generation: integration.credential_generation,
            },
        );
        Ok(tokens.access_token)
    }
}

/// The status reason a person sees for an identity failure.
pub fn reason_for(failure: &IdentityFailure) -> Reason {
    match failure {
        IdentityFailure::PasswordChanged => Reason::PasswordChanged,
        IdentityFailure::MfaRequired => Reason::MfaRequired,
        IdentityFailure::RefreshTokenExpired => Reason::RefreshTokenExpired,
        IdentityFailure::ConsentRevoked | IdentityFailure::UserDeclined => Reason::ConsentRevoked,
        IdentityFailure::AdminApprovalRequired => Reason::AdminApprovalRequired,
        IdentityFailure::AccountDisabled => Reason::AccountDisabled,
        IdentityFailure::AppSecretExpired => Reason::AppCredentialsExpired,
        IdentityFailure::AppCredentialsInvalid => Reason::AppCredentialsInvalid,
        IdentityFailure::AppNotInTenant => Reason::AppRemovedFromTenant,
        IdentityFailure::TenantNotFound => Reason::TenantNotFound,
        IdentityFailure::ConditionalAccessBlocked => Reason::ConditionalAccessBlocked,
        IdentityFailure::Transient => Reason::MicrosoftUnavailable,
        // A refresh token Microsoft rejects for any other reason cannot be used again.
        _ => Reason::RefreshTokenExpired,
    }
}
