//! Graph failures, classified on the HTTP status and `error.code` (never on the message, except
//! the documented application-access-policy message as a secondary hint).

use std::time::Duration;

use thiserror::Error;

use super::types::{GraphErrorBody, GraphErrorDetail};

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GraphError {
    /// 401 (`InvalidAuthenticationToken`): the access token expired or was revoked. Get a new
    /// token (the app-token cache: invalidate) and try again once.
    #[error("Microsoft Graph rejected the access token (HTTP 401 {code})")]
    Unauthorized { code: String },
    /// 403: `ErrorAccessDenied` (no permission, or an application access policy / RBAC scope
    /// that leaves this mailbox out: see [`GraphError::is_mailbox_outside_app_scope`]),
    /// `MailboxNotEnabledForRESTAPI`, `ExtensionError`, …
    #[error("Microsoft Graph denied access (HTTP 403 {code}): {message}")]
    Forbidden { code: String, message: String },
    /// 404: the message, folder, draft or mailbox does not exist (any more).
    #[error("not found (HTTP 404 {code})")]
    NotFound { code: String },
    /// 409 (e.g. a duplicate master category, or `ErrorFolderExists`).
    #[error("conflict (HTTP 409 {code}): {message}")]
    Conflict { code: String, message: String },
    /// The delta link is no longer usable: drop it and start a full round (no link).
    #[error("the delta sync state expired or is invalid; a full resync is needed")]
    SyncStateExpired,
    /// Microsoft kept throttling past the retry budget: put the work back and retry after this.
    #[error("throttled by Microsoft Graph; retry after {retry_after:?}")]
    Throttled { retry_after: Duration },
    /// 5xx, timeouts, dropped connections, malformed bodies, past the retry budget: retry later.
    #[error("transient Microsoft Graph failure: {reason}")]
    Transient { reason: String },
    /// 400 (and 405/406/412/413/415/422): the request itself is wrong; retrying will not help.
    #[error("bad request (HTTP 400 {code}): {message}")]
    BadRequest { code: String, message: String },
    #[error("unexpected Microsoft Graph response (HTTP {status} {code}): {message}")]
    Other {
        status: u16,
        code: String,
        message: String,
    },
}

/// Codes that mean "this delta token is gone", compared case-insensitively (Graph documents
/// `syncStateNotFound` and `resyncRequired`; Exchange also sends `SyncStateNotFound`,
/// `SyncStateInvalid`, `ResyncRequired`).
const SYNC_STATE_CODES: &[&str] = &["syncStateNotFound", "syncStateInvalid", "resyncRequired"];

/// The documented body of an application access policy denial (and of `ExtensionError` on
/// subscriptions for such mailboxes).
const ACCESS_POLICY_MESSAGE: &str = "access to odata is disabled";

pub fn is_sync_state_code(code: &str) -> bool {
    let code = code.trim();
    SYNC_STATE_CODES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(code))
}

pub fn is_folder_exists_code(code: &str) -> bool {
    code.trim().eq_ignore_ascii_case("ErrorFolderExists")
}

impl GraphError {
    /// Graph's `error.code`, when the failure came with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Unauthorized { code }
            | GraphError::NotFound { code }
            | GraphError::Forbidden { code, .. }
            | GraphError::Conflict { code, .. }
            | GraphError::BadRequest { code, .. }
            | GraphError::Other { code, .. } => Some(code.as_str()),
            _ => None,
        }
    }

    /// Worth retrying later (the queue's job, this client already spent its budget).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. } | GraphError::Transient { .. }
        )
    }

    /// How long to wait before retrying, when Microsoft said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Throttled { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// App-only access to a mailbox that the tenant's application access policy (or RBAC for
    /// Applications scope) leaves out: 403 `ErrorAccessDenied` "Access to OData is disabled."
    /// The message is the documented secondary hint; a plain `ErrorAccessDenied` can also mean a
    /// missing permission.
    pub fn is_mailbox_outside_app_scope(&self) -> bool {
        match self {
            GraphError::Forbidden { code, message } => {
                let policy_code = code.eq_ignore_ascii_case("ErrorAccessDenied")
                    || code.eq_ignore_ascii_case("ExtensionError");
                policy_code && message.to_ascii_lowercase().contains(ACCESS_POLICY_MESSAGE)
            }
            _ => false,
        }
    }

    /// The user has no Exchange Online mailbox (unlicensed, on-premises, or a guest).
    pub fn is_mailbox_not_enabled(&self) -> bool {
        self.code()
            .is_some_and(|c| c.eq_ignore_ascii_case("MailboxNotEnabledForRESTAPI"))
    }

    pub(crate) fn transient(reason: impl Into<String>) -> Self {
        GraphError::Transient {
            reason: reason.into(),
        }
    }
}

/// The `error` object of a body, if the body is a Graph error (anything else gives defaults).
pub(crate) fn error_detail(body: &[u8]) -> GraphErrorDetail {
    serde_json::from_slice::<GraphErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_default()
}

/// The error for a final (non-retried) non-2xx response. `delta` says the request was a delta
/// query, where 410 Gone means "resync".
pub fn classify(status: u16, detail: GraphErrorDetail, delta: bool) -> GraphError {
    let GraphErrorDetail { code, message, .. } = detail;
    if (400..500).contains(&status) && is_sync_state_code(&code) {
        return GraphError::SyncStateExpired;
    }
    match status {
        401 => GraphError::Unauthorized { code },
        403 => GraphError::Forbidden { code, message },
        404 => GraphError::NotFound { code },
        409 => GraphError::Conflict { code, message },
        410 if delta => GraphError::SyncStateExpired,
        410 => GraphError::NotFound { code },
        429 => GraphError::Throttled {
            retry_after: Duration::from_secs(1),
        },
        400 | 405 | 406 | 411 | 412 | 413 | 415 | 416 | 422 => {
            GraphError::BadRequest { code, message }
        }
        500..=599 => GraphError::Transient {
            reason: format!("HTTP {status} {code}"),
        },
        _ => GraphError::Other {
            status,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(code: &str, message: &str) -> GraphErrorDetail {
        GraphErrorDetail {
            code: code.into(),
            message: message.into(),
            inner_error: None,
        }
    }

    #[test]
    fn sync_state_codes_in_every_case() {
        for code in [
            "syncStateNotFound",
            "SyncStateNotFound",
            "SYNCSTATENOTFOUND",
            "syncStateInvalid",
            "SyncStateInvalid",
            "resyncRequired",
            "ResyncRequired",
            "resyncrequired",
        ] {
            assert!(is_sync_state_code(code), "{code}");
            for status in [400, 404, 409, 410] {
                assert_eq!(
                    classify(status, detail(code, "x"), true),
                    GraphError::SyncStateExpired,
                    "{code} {status}"
                );
            }
        }
        assert!(!is_sync_state_code("ErrorItemNotFound"));
        assert!(!is_sync_state_code(""));
        // 410 Gone (with Location) on a delta query is a resync whatever the body says.
        assert_eq!(
            classify(410, GraphErrorDetail::default(), true),
            GraphError::SyncStateExpired
        );
        assert_eq!(
            classify(410, GraphErrorDetail::default(), false),
            GraphError::NotFound {
                code: String::new()
            }
        );
        // Not on a 5xx.
        assert!(matches!(
            classify(503, detail("syncStateNotFound", ""), true),
            GraphError::Transient { .. }
        ));
    }

    #[test]
    fn statuses_map_to_variants() {
        assert_eq!(
            classify(
                401,
                detail("InvalidAuthenticationToken", "Access token has expired"),
                false
            ),
            GraphError::Unauthorized {
                code: "InvalidAuthenticationToken".into()
            }
        );
        assert!(matches!(
            classify(404, detail("ErrorItemNotFound", ""), false),
            GraphError::NotFound { .. }
        ));
        assert!(matches!(
            classify(409, detail("ErrorFolderExists", ""), false),
            GraphError::Conflict { .. }
        ));
        assert!(matches!(
            classify(400, detail("ErrorInvalidIdMalformed", ""), false),
            GraphError::BadRequest { .. }
        ));
        assert!(matches!(
            classify(502, detail("", ""), false),
            GraphError::Transient { .. }
        ));
        assert!(matches!(
            classify(418, detail("", ""), false),
            GraphError::Other { status: 418, .. }
        ));
    }

    #[test]
    fn access_policy_denial_is_recognized() {
        let denied = classify(
            403,
            detail("ErrorAccessDenied", "Access to OData is disabled."),
            false,
        );
        assert!(denied.is_mailbox_outside_app_scope());
        let ext = classify(
            403,
            detail(
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access to OData is disabled.]",
            ),
            false,
        );
        assert!(ext.is_mailbox_outside_app_scope());
        let plain = classify(
            403,
            detail(
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            ),
            false,
        );
        assert!(!plain.is_mailbox_outside_app_scope());
        let not_enabled = classify(
            403,
            detail(
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            ),
            false,
        );
        assert!(not_enabled.is_mailbox_not_enabled());
        assert!(!not_enabled.is_mailbox_outside_app_scope());
    }

    #[test]
    fn error_bodies_are_read_leniently() {
        let d = error_detail(br#"{"error":{"code":"TooManyRequests","message":"Please retry again later.","innerError":{"code":"429"}}}"#);
        assert_eq!(d.code, "TooManyRequests");
        assert_eq!(
            error_detail(b"<html>502 Bad Gateway</html>"),
            GraphErrorDetail::default()
        );
        assert_eq!(error_detail(b""), GraphErrorDetail::default());
    }
}
