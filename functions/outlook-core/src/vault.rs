//! Secrets Manager: the app's own credentials and one refresh-token secret per personal
//! integration (never in DynamoDB, never in logs: values stay in `SecretString`).

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{IntegrationId, WorkspaceId};

#[derive(Debug, Error)]
pub enum VaultError {
    #[error("secret {0} does not exist")]
    NotFound(String),
    #[error("secret {name} is malformed: {reason}")]
    Malformed { name: String, reason: String },
    #[error("Secrets Manager request failed: {0}")]
    Aws(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn aws_err<E>(name: &str, err: SdkError<E>) -> VaultError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code() == Some("ResourceNotFoundException") {
        VaultError::NotFound(name.to_owned())
    } else {
        VaultError::Aws(Box::new(err))
    }
}

/// A personal integration's refresh token and what it was granted.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredRefreshToken {
    #[serde(serialize_with = "expose", deserialize_with = "secret")]
    pub refresh_token: SecretString,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The integration's credential generation this token belongs to.
    #[serde(default)]
    pub generation: u64,
}

impl std::fmt::Debug for StoredRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRefreshToken")
            .field("refresh_token", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .field("generation", &self.generation)
            .finish()
    }
}

fn expose<S: serde::Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose_secret())
}

fn secret<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
    Ok(SecretString::from(String::deserialize(deserializer)?))
}

#[derive(Clone, Debug)]
pub struct TokenVault {
    client: Client,
    app_secret_id: String,
    prefix: String,
}

impl TokenVault {
    pub fn new(
        client: Client,
        app_secret_id: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            client,
            app_secret_id: app_secret_id.into(),
            prefix: prefix.into(),
        }
    }

    /// The secret name of an integration's refresh token; IAM grants the functions this prefix only.
    pub fn secret_name(&self, ws: &WorkspaceId, int: &IntegrationId) -> String {
        format!("{}{ws}/{int}", self.prefix)
    }

    /// The raw JSON of the app's credentials secret (parsed by `identity::AppCredentials`).
    pub async fn app_credentials_json(&self) -> Result<SecretString, VaultError> {
        self.get_string(&self.app_secret_id).await
    }

    pub async fn get_refresh_token(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
    ) -> Result<Option<StoredRefreshToken>, VaultError> {
        let name = self.secret_name(ws, int);
        let raw = match self.get_string(&name).await {
            Ok(raw) => raw,
            Err(VaultError::NotFound(_)) => return Ok(None),
            Err(other) => return Err(other),
        };
        serde_json::from_str(raw.expose_secret())
            .map(Some)
            // serde's message names the field, never the value.
            .map_err(|e| VaultError::Malformed {
                name,
                reason: e.to_string(),
            })
    }

    /// Stores (creating or replacing) an integration's refresh token.
    pub async fn put_refresh_token(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
        token: &StoredRefreshToken,
    ) -> Result<(), VaultError> {
        let name = self.secret_name(ws, int);
        let value = serde_json::to_string(token).map_err(|e| VaultError::Malformed {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        match self
            .client
            .put_secret_value()
            .secret_id(&name)
            .secret_string(&value)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match aws_err(&name, err) {
                VaultError::NotFound(_) => {
                    self.client
                        .create_secret()
                        .name(&name)
                        .description("Refresh token of a personal Outlook integration")
                        .secret_string(value)
                        .tags(
                            aws_sdk_secretsmanager::types::Tag::builder()
                                .key("workspace")
                                .value(ws.as_str())
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| aws_err(&name, e))?;
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    /// Deletes an integration's refresh token immediately (disconnect).
    pub async fn delete_refresh_token(
        &self,
        ws: &WorkspaceId,
        int: &IntegrationId,
    ) -> Result<(), VaultError> {
        let name = self.secret_name(ws, int);
        match self
            .client
            .delete_secret()
            .secret_id(&name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match aws_err(&name, err) {
                VaultError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn get_string(&self, name: &str) -> Result<SecretString, VaultError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| aws_err(name, e))?;
        out.secret_string
            .map(SecretString::from)
            .ok_or_else(|| VaultError::Malformed {
                name: name.to_owned(),
                reason: "no string value".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_token_debug_is_redacted() {
        let token = StoredRefreshToken {
            refresh_token: SecretString::from("0.AAAA-very-secret"),
            scopes: vec!["Mail.ReadWrite".into()],
            generation: 3,
        };
        let debug = format!("{token:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        let json = serde_json::to_string(&token).unwrap();
        let back: StoredRefreshToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back.refresh_token.expose_secret(), "0.AAAA-very-secret");
    }
}
