//! The management API: authenticated JSON endpoints for integrations, mailboxes, rules, dry runs,
//! audit and "sync now", plus the connect page. Errors are JSON with a stable code.

pub mod auth;
pub mod connect_page;
pub mod dto;
pub mod handlers;
pub mod http;
pub mod routes;
pub mod server;

use serde::Serialize;
use thiserror::Error;

/// An error as the API returns it: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        details: Vec<FieldError>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body is too large (limit {0} bytes)")]
    TooLarge(usize),
    #[error("a dependency failed; try again")]
    Unavailable,
    /// A rule set with problems: every problem, each naming the rule and the field.
    #[error("the rule set has {} problem(s); nothing was saved", .0.len())]
    InvalidRules(Vec<crate::rules::RuleValidationError>),
    /// Optimistic concurrency: the client's version is not the stored one.
    #[error(
        "the rule set was changed meanwhile: its version is now {current}; read it again and reapply your change"
    )]
    VersionConflict { current: u64 },
}

/// One validation problem, naming the field (and rule) it is about.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    /// Field errors (`Invalid`) or rule validation errors (`InvalidRules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
    #[serde(rename = "currentVersion", skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code: "invalid_request",
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthenticated => 401,
            ApiError::NotFound(_) => 404,
            ApiError::Invalid { .. } => 400,
            ApiError::Conflict(_) => 409,
            ApiError::MethodNotAllowed => 405,
            ApiError::TooLarge(_) => 413,
            ApiError::Unavailable => 503,
            ApiError::InvalidRules(_) => 400,
            ApiError::VersionConflict { .. } => 409,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::NotFound(_) => "not_found",
            ApiError::Invalid { code, .. } => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Unavailable => "unavailable",
            ApiError::InvalidRules(_) => "invalid_rules",
            ApiError::VersionConflict { .. } => "version_conflict",
        }
    }

    pub fn body(&self) -> String {
        let details = match self {
            ApiError::Invalid { details, .. } if !details.is_empty() => {
                serde_json::to_value(details).ok()
            }
            ApiError::InvalidRules(errors) => serde_json::to_value(errors).ok(),
            _ => None,
        };
        let current_version = match self {
            ApiError::VersionConflict { current } => Some(*current),
            _ => None,
        };
        let error = ErrorDetail {
            code: self.code(),
            message: self.to_string(),
            details,
            current_version,
        };
        serde_json::to_string(&ErrorBody { error }).expect("error bodies serialize")
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::NotFound => ApiError::NotFound("record"),
            crate::store::StoreError::Conflict => {
                ApiError::Conflict("the record changed concurrently; retry".into())
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_stable_codes_and_json_bodies() {
        let err = ApiError::Invalid {
            code: "invalid_rules",
            message: "2 problems".into(),
            details: vec![FieldError {
                field: "rules[0].actions".into(),
                message: "empty".into(),
            }],
        };
        assert_eq!(err.status(), 400);
        let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(body["error"]["code"], "invalid_rules");
        assert_eq!(body["error"]["details"][0]["field"], "rules[0].actions");
        let body: serde_json::Value =
            serde_json::from_str(&ApiError::Unauthenticated.body()).unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
        assert!(body["error"].get("details").is_none());
    }
}
