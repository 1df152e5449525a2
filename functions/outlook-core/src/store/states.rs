//! Single-use, expiring OAuth `state` records, bound to the workspace and caller that started
//! the flow. The key is a SHA-256 of the state value, so a table read never yields a usable one.

use aws_sdk_dynamodb::types::ReturnValue;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use super::{Store, StoreError, dynamo_err, from_item, s, to_item};
use crate::ids::{IntegrationId, WorkspaceId};
use crate::model::AccountType;

/// What a sign-in or admin-consent flow was started for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthState {
    pub workspace_id: WorkspaceId,
    /// Who started the flow (the API caller's subject).
    pub started_by: String,
    pub account_type: AccountType,
    /// Set when the flow reconnects an existing integration.
    #[serde(default)]
    pub integration_id: Option<IntegrationId>,
    /// PKCE verifier of a personal sign-in (never leaves the server).
    #[serde(default, with = "secret_opt")]
    pub pkce_verifier: Option<SecretString>,
    /// Shared mailboxes the user asked for (personal).
    #[serde(default)]
    pub shared_mailboxes: Vec<String>,
    /// Mailboxes the admin chose to sync (organization-wide).
    #[serde(default)]
    pub mailboxes: Vec<String>,
    /// SHA-256 (base64url) of a browser-binding nonce, when the flow was started from a browser.
    #[serde(default)]
    pub browser_binding: Option<String>,
    /// Unix seconds; also the table's TTL attribute.
    pub expires_at: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

mod secret_opt {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(secret.expose_secret()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(SecretString::from))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    /// Unknown, already used, or tampered with: the three look the same on purpose.
    #[error("this sign-in link is unknown or was already used")]
    UnknownOrUsed,
    #[error("this sign-in link has expired")]
    Expired,
}

/// Hash of a state value, base64url; the record's key.
pub fn state_key(state: &SecretString) -> String {
    let digest = Sha256::digest(state.expose_secret().as_bytes());
    format!(
        "STATE#{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// A fresh random state value (256 bits).
pub fn new_state_value() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Store {
    /// Stores a state record; the caller puts `state` in the authorize URL.
    pub async fn put_state(
        &self,
        state: &SecretString,
        record: &OAuthState,
    ) -> Result<(), StoreError> {
        let mut item = to_item(record)?;
        item.insert("pk".into(), s(state_key(state)));
        item.insert("sk".into(), s("STATE"));
        item.insert("entity".into(), s("oauth_state"));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    /// Consumes a state exactly once: the delete is atomic, so of two concurrent callbacks with
    /// the same state only one receives the record. An expired record is deleted too.
    pub async fn consume_state(
        &self,
        state: &SecretString,
        now: OffsetDateTime,
    ) -> Result<OAuthState, ConsumeError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(state_key(state)))
            .key("sk", s("STATE"))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| ConsumeError::Store(dynamo_err(e)))?;
        let Some(item) = out.attributes.filter(|a| !a.is_empty()) else {
            return Err(ConsumeError::State(StateError::UnknownOrUsed));
        };
        let record: OAuthState = from_item(item).map_err(ConsumeError::Store)?;
        if record.expires_at <= now.unix_timestamp() {
            return Err(ConsumeError::State(StateError::Expired));
        }
        Ok(record)
    }
}

#[derive(Debug, Error)]
pub enum ConsumeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Store(StoreError),
}
