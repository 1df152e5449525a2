//! App-only tokens per tenant, kept across warm invocations and fetched once for all the
//! mailboxes of a tenant that need one at the same time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::client::{AppToken, IdentityClient};
use super::error::IdentityError;

/// A cached token is renewed when less than this is left.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Slot {
    token: Option<AppToken>,
    /// The last failed fetch: callers that were already waiting get it instead of asking again.
    failure: Option<(Instant, IdentityError)>,
}

pub struct AppTokenCache {
    identity: IdentityClient,
    renew_before: Duration,
    tenants: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
}

impl std::fmt::Debug for AppTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokenCache")
            .field("renew_before", &self.renew_before)
            .finish_non_exhaustive()
    }
}

impl AppTokenCache {
    pub fn new(identity: IdentityClient) -> Self {
        Self::with_renew_before(identity, RENEW_BEFORE)
    }

    pub fn with_renew_before(identity: IdentityClient, renew_before: Duration) -> Self {
        Self {
            identity,
            renew_before,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// A Graph access token for `tenant_id` with more than `renew_before` left.
    pub async fn token(&self, tenant_id: &str) -> Result<SecretString, IdentityError> {
        self.app_token(tenant_id).await.map(|t| t.access_token)
    }

    /// Like [`AppTokenCache::token`], with its expiry.
    pub async fn app_token(&self, tenant_id: &str) -> Result<AppToken, IdentityError> {
        let asked_at = Instant::now();
        let slot = self.slot(tenant_id).await;
        // Held across the fetch: concurrent callers for this tenant wait here, then reuse the
        // result (single flight). Other tenants are not blocked.
        let mut slot = slot.lock().await;
        if let Some(token) = &slot.token
            && token.expires_at - OffsetDateTime::now_utc() > self.renew_before
        {
            return Ok(token.clone());
        }
        if let Some((failed_at, error)) = &slot.failure
            && *failed_at >= asked_at
        {
            return Err(error.clone());
        }
        self.fetch(&mut slot, tenant_id).await
    }

    /// A token Microsoft issued just now, never the cached one; it replaces the cached one.
    /// A cached token only proves the tenant admitted the app when it was issued: proving that
    /// it still does (admin consent) needs a new one.
    pub async fn fresh_app_token(&self, tenant_id: &str) -> Result<AppToken, IdentityError> {
        let slot = self.slot(tenant_id).await;
        let mut slot = slot.lock().await;
        self.fetch(&mut slot, tenant_id).await
    }

    async fn fetch(&self, slot: &mut Slot, tenant_id: &str) -> Result<AppToken, IdentityError> {
        match self.identity.app_token(tenant_id).await {
            Ok(token) => {
                slot.token = Some(token.clone());
                slot.failure = None;
                Ok(token)
            }
            Err(error) => {
                slot.token = None;
                slot.failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// Forgets the tenant's token (Graph refused it with 401): the next call fetches a new one.
    pub async fn invalidate(&self, tenant_id: &str) {
        let slot = self.slot(tenant_id).await;
        slot.lock().await.token = None;
    }

    async fn slot(&self, tenant_id: &str) -> Arc<Mutex<Slot>> {
        let mut tenants = self.tenants.lock().await;
        tenants
            .entry(tenant_id.trim().to_ascii_lowercase())
            .or_default()
            .clone()
    }
}
