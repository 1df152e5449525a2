//! Management-API callers: a bearer JWT (RS256) from the platform's identity provider, checked
//! against the configured issuer, audience and public key. The `workspace_id` claim confines the
//! caller to one workspace; every handler takes the workspace from here, never from the request.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use super::ApiError;
use crate::config::ApiJwtConfig;
use crate::ids::WorkspaceId;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub workspace_id: WorkspaceId,
    /// The token's subject: who started a flow, for the audit of OAuth states.
    pub subject: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    workspace_id: String,
}

/// Verifies bearer tokens; built once per cold start.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(config: &ApiJwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    /// Reads `Authorization: Bearer <jwt>`; any problem is a 401 without details.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
            tracing::info!(reason = %err, "rejected an API token");
            ApiError::Unauthenticated
        })?;
        let workspace_id =
            WorkspaceId::parse(data.claims.workspace_id).map_err(|_| ApiError::Unauthenticated)?;
        Ok(Caller {
            workspace_id,
            subject: data.claims.sub,
        })
    }
}
