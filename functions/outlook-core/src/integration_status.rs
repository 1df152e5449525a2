//! Recording that an integration stopped working, by whichever function notices first (the
//! sync worker or rule evaluation), so the other one stops asking Microsoft (no retry storm)
//! and the person who can fix it sees why.

use time::OffsetDateTime;

use crate::health::{Reason, StatusReason};
use crate::model::{AccountType, Integration, IntegrationStatus};
use crate::store::{Store, StoreError};

/// Marks `integration` as needing a reconnect (personal sign-in refused) or an administrator
/// (app credentials, consent, tenant). A personal integration that needs a new sign-in, and one
/// whose app was removed or tenant is gone, leave the schedule until repaired. Nothing is
/// written when the integration was reconnected meanwhile (a newer credential generation) or
/// disconnected.
pub async fn record_broken(
    store: &Store,
    integration: &Integration,
    reason: Reason,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let status = if reason.needs_reconnect() && integration.account_type == AccountType::Personal {
        IntegrationStatus::NeedsReconnect
    } else {
        IntegrationStatus::AdminActionRequired
    };
    let mut current = integration.clone();
    loop {
        // Only if the credential we failed with is still the current one: a reconnect that
        // happened meanwhile must not be undone.
        if current.credential_generation != integration.credential_generation
            || current.status == IntegrationStatus::Disconnected
        {
            return Ok(());
        }
        current.status = status;
        current.status_reason = Some(StatusReason::from(reason));
        current.updated_at = now;
        match store.save_integration(&current).await {
            Ok(_) => break,
            Err(StoreError::Conflict) => match store
                .get_integration(&integration.workspace_id, &integration.integration_id)
                .await?
            {
                Some(fresh) => current = fresh,
                None => return Ok(()),
            },
            Err(other) => return Err(other),
        }
    }
    tracing::warn!(reason = reason.code(), integration = %integration.integration_id, "integration needs attention");
    let pause = status == IntegrationStatus::NeedsReconnect
        || reason == Reason::AppRemovedFromTenant
        || reason == Reason::TenantNotFound;
    if pause {
        store
            .set_integration_mailboxes_paused(
                &integration.workspace_id,
                &integration.integration_id,
                true,
                now,
            )
            .await?;
    }
    Ok(())
}
