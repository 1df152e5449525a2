//! Entra ID token errors, classified on `error_codes` and `suberror` first and `error` last
//! (`invalid_grant` alone can mean a password change, MFA, consent revocation, or a bad code).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use super::credentials::CredentialsError;

/// Microsoft's token-endpoint error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EntraErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_codes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub error_codes: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

impl fmt::Display for EntraErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.error, self.error_codes)
    }
}

impl oauth2::ErrorResponse for EntraErrorBody {}

/// `error_codes` are numbers; strings of digits are tolerated, anything else skipped.
fn lenient_codes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u32>, D::Error> {
    let raw = Option::<Vec<serde_json::Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(raw
        .iter()
        .filter_map(|v| match v {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect())
}

/// Why a token request failed, in terms of what someone has to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityFailure {
    /// 50173, 50132, 50133, 50055; suberror `user_password_expired`.
    PasswordChanged,
    /// 50076, 50079, 50078, 50074; suberror `basic_action` with `interaction_required`/`invalid_grant`.
    MfaRequired,
    /// 700082, 70008, 700084, 70043; suberror `bad_token`.
    RefreshTokenExpired,
    /// 65001; suberror or error `consent_required`.
    ConsentRevoked,
    /// 65004; `access_denied` at sign-in.
    UserDeclined,
    /// 90094, 90095, 900941: an administrator must approve the app.
    AdminApprovalRequired,
    /// 50057.
    AccountDisabled,
    /// 7000222.
    AppSecretExpired,
    /// 7000215, 700027, 7000218, other `invalid_client`, or a malformed app-credentials secret.
    AppCredentialsInvalid,
    /// 700016, 700011, 7000112, other `unauthorized_client`.
    AppNotInTenant,
    /// 90002.
    TenantNotFound,
    /// 53003, 53000, 53001, 530032.
    ConditionalAccessBlocked,
    /// 54005: the authorization code was already used.
    CodeAlreadyRedeemed,
    /// 501481: the PKCE code_verifier does not match the code_challenge.
    PkceMismatch,
    /// Any other `invalid_grant` (expired or unknown code, revoked grant).
    InvalidGrant,
    /// Another interactive sign-in is needed (`interaction_required`, `login_required`, or
    /// suberrors `additional_action`, `message_only`, `ux_not_allowed`, `interrupted_user`).
    SignInRequired,
    /// A delegated sign-in returned no refresh token (`offline_access` was not granted).
    NoRefreshToken,
    /// `temporarily_unavailable`, `server_error`, 90033, 90090, 90055, 50196, HTTP 5xx/429,
    /// timeouts, dropped connections, unreadable responses.
    Transient,
    Unknown {
        error: String,
        codes: Vec<u32>,
    },
}

const PASSWORD_CHANGED: &[u32] = &[50173, 50132, 50133, 50055];
const MFA_REQUIRED: &[u32] = &[50076, 50079, 50078, 50074];
const REFRESH_TOKEN_EXPIRED: &[u32] = &[700082, 70008, 700084, 70043];
const CONSENT_REVOKED: &[u32] = &[65001];
const USER_DECLINED: &[u32] = &[65004];
const ADMIN_APPROVAL_REQUIRED: &[u32] = &[90094, 90095, 900941];
const ACCOUNT_DISABLED: &[u32] = &[50057];
const APP_SECRET_EXPIRED: &[u32] = &[7000222];
const APP_CREDENTIALS_INVALID: &[u32] = &[7000215, 700027, 7000218];
const APP_NOT_IN_TENANT: &[u32] = &[700016, 700011, 7000112];
const TENANT_NOT_FOUND: &[u32] = &[90002];
const CONDITIONAL_ACCESS: &[u32] = &[53003, 53000, 53001, 530032];
const CODE_ALREADY_REDEEMED: &[u32] = &[54005];
const PKCE_MISMATCH: &[u32] = &[501481];
const TRANSIENT: &[u32] = &[90033, 90090, 90055, 50196];

impl IdentityFailure {
    /// Classifies a token-endpoint error (`status` is the HTTP status when known).
    pub fn classify(status: Option<u16>, body: &EntraErrorBody) -> Self {
        let by_code: &[(&[u32], IdentityFailure)] = &[
            (PASSWORD_CHANGED, IdentityFailure::PasswordChanged),
            (MFA_REQUIRED, IdentityFailure::MfaRequired),
            (REFRESH_TOKEN_EXPIRED, IdentityFailure::RefreshTokenExpired),
            (CONSENT_REVOKED, IdentityFailure::ConsentRevoked),
            (USER_DECLINED, IdentityFailure::UserDeclined),
            (
                ADMIN_APPROVAL_REQUIRED,
                IdentityFailure::AdminApprovalRequired,
            ),
            (ACCOUNT_DISABLED, IdentityFailure::AccountDisabled),
            (APP_SECRET_EXPIRED, IdentityFailure::AppSecretExpired),
            (
                APP_CREDENTIALS_INVALID,
                IdentityFailure::AppCredentialsInvalid,
            ),
            (APP_NOT_IN_TENANT, IdentityFailure::AppNotInTenant),
            (TENANT_NOT_FOUND, IdentityFailure::TenantNotFound),
            (
                CONDITIONAL_ACCESS,
                IdentityFailure::ConditionalAccessBlocked,
            ),
            (CODE_ALREADY_REDEEMED, IdentityFailure::CodeAlreadyRedeemed),
            (PKCE_MISMATCH, IdentityFailure::PkceMismatch),
            (TRANSIENT, IdentityFailure::Transient),
        ];
        for code in &body.error_codes {
            if let Some((_, failure)) = by_code.iter().find(|(codes, _)| codes.contains(code)) {
                return failure.clone();
            }
        }
        let error = body.error.trim().to_ascii_lowercase();
        match body
            .suberror
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("basic_action")
                if matches!(error.as_str(), "interaction_required" | "invalid_grant") =>
            {
                return IdentityFailure::MfaRequired;
            }
            Some("consent_required") => return IdentityFailure::ConsentRevoked,
            Some("user_password_expired") => return IdentityFailure::PasswordChanged,
            Some("bad_token") => return IdentityFailure::RefreshTokenExpired,
            Some("additional_action" | "message_only" | "ux_not_allowed" | "interrupted_user") => {
                return IdentityFailure::SignInRequired;
            }
            _ => {}
        }
        match error.as_str() {
            "temporarily_unavailable" | "server_error" => return IdentityFailure::Transient,
            "invalid_client" => return IdentityFailure::AppCredentialsInvalid,
            "unauthorized_client" => return IdentityFailure::AppNotInTenant,
            "consent_required" => return IdentityFailure::ConsentRevoked,
            "interaction_required" | "login_required" => return IdentityFailure::SignInRequired,
            "access_denied" => return IdentityFailure::UserDeclined,
            "invalid_grant" => return IdentityFailure::InvalidGrant,
            _ => {}
        }
        if status.is_some_and(|s| s >= 500 || s == 429) {
            return IdentityFailure::Transient;
        }
        IdentityFailure::Unknown {
            error: body.error.clone(),
            codes: body.error_codes.clone(),
        }
    }

    /// Trying again later may work (nothing is wrong with the account or the app).
    pub fn is_retryable(&self) -> bool {
        matches!(self, IdentityFailure::Transient)
    }

    /// The person who connected must sign in again (a personal connection stops until then).
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            IdentityFailure::PasswordChanged
                | IdentityFailure::MfaRequired
                | IdentityFailure::RefreshTokenExpired
                | IdentityFailure::ConsentRevoked
                | IdentityFailure::UserDeclined
                | IdentityFailure::ConditionalAccessBlocked
                | IdentityFailure::CodeAlreadyRedeemed
                | IdentityFailure::PkceMismatch
                | IdentityFailure::InvalidGrant
                | IdentityFailure::SignInRequired
                | IdentityFailure::NoRefreshToken
        )
    }

    /// An administrator (of the customer's tenant, or of our app) has to act.
    pub fn needs_admin(&self) -> bool {
        matches!(
            self,
            IdentityFailure::AdminApprovalRequired
                | IdentityFailure::AccountDisabled
                | IdentityFailure::AppSecretExpired
                | IdentityFailure::AppCredentialsInvalid
                | IdentityFailure::AppNotInTenant
                | IdentityFailure::TenantNotFound
        )
    }

    /// What happened, for the person who sees the connection's status.
    pub fn reason(&self) -> String {
        match self {
            IdentityFailure::PasswordChanged => "The user's password changed or expired, which ended our access to the mailbox.".into(),
            IdentityFailure::MfaRequired => "Microsoft now requires multi-factor authentication for this account, so our access stopped.".into(),
            IdentityFailure::RefreshTokenExpired => "The sign-in expired: it was not used for too long, or it was revoked.".into(),
            IdentityFailure::ConsentRevoked => "Permission for this app was removed from the account.".into(),
            IdentityFailure::UserDeclined => "The permission request was declined during sign-in.".into(),
            IdentityFailure::AdminApprovalRequired => "The organization requires an administrator to approve this app.".into(),
            IdentityFailure::AccountDisabled => "The Microsoft 365 account is disabled.".into(),
            IdentityFailure::AppSecretExpired => "The app's client secret has expired.".into(),
            IdentityFailure::AppCredentialsInvalid => "Microsoft did not accept the app's client secret or certificate.".into(),
            IdentityFailure::AppNotInTenant => "The app is not registered in, or was removed from, the organization's Microsoft 365 tenant.".into(),
            IdentityFailure::TenantNotFound => "Microsoft could not find the organization's tenant.".into(),
            IdentityFailure::ConditionalAccessBlocked => "A Conditional Access policy of the organization blocks this sign-in.".into(),
            IdentityFailure::CodeAlreadyRedeemed => "This sign-in was already completed once and cannot be used again.".into(),
            IdentityFailure::PkceMismatch => "The sign-in could not be verified (the security check of the sign-in request did not match).".into(),
            IdentityFailure::InvalidGrant => "Microsoft no longer accepts this sign-in.".into(),
            IdentityFailure::SignInRequired => "Microsoft requires the user to sign in again.".into(),
            IdentityFailure::NoRefreshToken => "The sign-in did not allow offline access, so sync cannot run without the user present.".into(),
            IdentityFailure::Transient => "Microsoft's sign-in service is temporarily unavailable.".into(),
            IdentityFailure::Unknown { error, codes } => {
                let codes: Vec<String> = codes.iter().map(|c| format!("AADSTS{c}")).collect();
                format!("Microsoft refused the sign-in ({error}{}{}).", if codes.is_empty() { "" } else { ", " }, codes.join(", "))
            }
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            IdentityFailure::PasswordChanged
            | IdentityFailure::RefreshTokenExpired
            | IdentityFailure::InvalidGrant
            | IdentityFailure::SignInRequired => "Reconnect the account: sign in again.",
            IdentityFailure::MfaRequired => {
                "Reconnect the account and complete the multi-factor sign-in."
            }
            IdentityFailure::ConsentRevoked => {
                "Reconnect the account and accept the requested permissions."
            }
            IdentityFailure::UserDeclined => {
                "Connect again and accept the requested permissions, or ask an administrator to approve the app."
            }
            IdentityFailure::AdminApprovalRequired => {
                "Ask a Microsoft 365 administrator to approve the app (or connect organization-wide with admin consent), then reconnect."
            }
            IdentityFailure::AccountDisabled => {
                "A Microsoft 365 administrator must re-enable the account; then reconnect."
            }
            IdentityFailure::AppSecretExpired => {
                "An administrator must put a new client secret in the app-credentials secret."
            }
            IdentityFailure::AppCredentialsInvalid => {
                "An administrator must check the app-credentials secret: it needs the client secret's value (not its ID) or a valid certificate and key."
            }
            IdentityFailure::AppNotInTenant => {
                "A Microsoft 365 administrator of the organization must grant admin consent to the app again."
            }
            IdentityFailure::TenantNotFound => {
                "Check the organization's tenant, then connect again."
            }
            IdentityFailure::ConditionalAccessBlocked => {
                "A Microsoft 365 administrator must allow this app in the organization's Conditional Access policies; then reconnect."
            }
            IdentityFailure::CodeAlreadyRedeemed | IdentityFailure::PkceMismatch => {
                "Start the connection again."
            }
            IdentityFailure::NoRefreshToken => {
                "Reconnect the account and accept all requested permissions, including offline access."
            }
            IdentityFailure::Transient => "Nothing to do: we will try again shortly.",
            IdentityFailure::Unknown { .. } => {
                "Try connecting again; if it keeps failing, contact support with the error code."
            }
        }
    }
}

impl fmt::Display for IdentityFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

/// A failed token request: the classified failure plus what Microsoft sent to trace it
/// (never a token, a code, or a secret).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{failure} ({})", self.detail())]
pub struct IdentityError {
    pub failure: IdentityFailure,
    pub http_status: Option<u16>,
    /// Boxed: the error travels in `Result`s of every token call.
    details: Box<Details>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Details {
    error: Option<String>,
    codes: Vec<u32>,
    suberror: Option<String>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
    /// For failures without a Microsoft error body (network, parsing, credentials).
    note: Option<String>,
}

impl IdentityError {
    pub fn failure(&self) -> IdentityFailure {
        self.failure.clone()
    }

    pub fn is_retryable(&self) -> bool {
        self.failure.is_retryable()
    }

    pub fn needs_reconnect(&self) -> bool {
        self.failure.needs_reconnect()
    }

    /// Microsoft's token endpoint refused the app's own credential (`invalid_client`: an expired
    /// or wrong client secret, a certificate it does not know, none sent). Not for a credential
    /// that could not even be used here (a malformed app-credentials secret).
    pub fn refuses_app_credentials(&self) -> bool {
        matches!(
            self.failure,
            IdentityFailure::AppSecretExpired | IdentityFailure::AppCredentialsInvalid
        ) && (self.details.error.is_some() || !self.details.codes.is_empty())
    }

    /// The OAuth `error` value, e.g. `invalid_grant`.
    pub fn error(&self) -> Option<&str> {
        self.details.error.as_deref()
    }

    /// The `AADSTS` numbers Microsoft sent.
    pub fn codes(&self) -> &[u32] {
        &self.details.codes
    }

    pub fn suberror(&self) -> Option<&str> {
        self.details.suberror.as_deref()
    }

    pub fn trace_id(&self) -> Option<&str> {
        self.details.trace_id.as_deref()
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.details.correlation_id.as_deref()
    }

    pub fn from_body(status: Option<u16>, body: EntraErrorBody) -> Self {
        Self {
            failure: IdentityFailure::classify(status, &body),
            http_status: status,
            details: Box::new(Details {
                error: Some(body.error).filter(|e| !e.is_empty()),
                codes: body.error_codes,
                suberror: body.suberror,
                trace_id: body.trace_id,
                correlation_id: body.correlation_id,
                note: None,
            }),
        }
    }

    /// An error redirect from `/authorize` or `/adminconsent` (`error`, `error_description`).
    /// Redirects carry no `error_codes`, so the `AADSTSnnnnn` codes are read from the description.
    pub fn from_redirect(error: &str, error_description: &str) -> Self {
        let body = EntraErrorBody {
            error: error.to_owned(),
            error_codes: aadsts_codes(error_description),
            ..Default::default()
        };
        Self::from_body(None, body)
    }

    pub(crate) fn local(failure: IdentityFailure, note: impl Into<String>) -> Self {
        Self {
            failure,
            http_status: None,
            details: Box::new(Details {
                note: Some(note.into()),
                ..Details::default()
            }),
        }
    }

    fn detail(&self) -> String {
        let d = &self.details;
        let mut parts = Vec::new();
        if let Some(status) = self.http_status {
            parts.push(format!("HTTP {status}"));
        }
        if let Some(error) = &d.error {
            parts.push(format!("error={error}"));
        }
        if !d.codes.is_empty() {
            let codes: Vec<String> = d.codes.iter().map(|c| format!("AADSTS{c}")).collect();
            parts.push(codes.join(","));
        }
        if let Some(suberror) = &d.suberror {
            parts.push(format!("suberror={suberror}"));
        }
        if let Some(trace_id) = &d.trace_id {
            parts.push(format!("trace_id={trace_id}"));
        }
        if let Some(correlation_id) = &d.correlation_id {
            parts.push(format!("correlation_id={correlation_id}"));
        }
        if let Some(note) = &d.note {
            parts.push(note.clone());
        }
        parts.join(" ")
    }
}

impl From<CredentialsError> for IdentityError {
    fn from(err: CredentialsError) -> Self {
        IdentityError::local(IdentityFailure::AppCredentialsInvalid, err.to_string())
    }
}

/// `AADSTS65004` → 65004, for every code in a text.
fn aadsts_codes(text: &str) -> Vec<u32> {
    text.match_indices("AADSTS")
        .filter_map(|(i, _)| {
            let digits: String = text[i + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, json: serde_json::Value) -> IdentityFailure {
        let body: EntraErrorBody = serde_json::from_value(json).unwrap();
        IdentityFailure::classify(Some(status), &body)
    }

    /// A realistic token-endpoint error body.
    fn body(
        error: &str,
        code: u32,
        description: &str,
        suberror: Option<&str>,
    ) -> serde_json::Value {
        let mut b = serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333 Correlation ID: aaaa0000-bb11-2222-33cc-444444dddddd Timestamp: 2024-05-01 10:00:00Z"),
            "error_codes": [code],
            "timestamp": "2024-05-01 10:00:00Z",
            "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
            "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        });
        if let Some(s) = suberror {
            b["suberror"] = s.into();
        }
        b
    }

    #[test]
    fn every_documented_case() {
        use IdentityFailure::*;
        let cases: Vec<(u16, serde_json::Value, IdentityFailure)> = vec![
            (
                400,
                body(
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
                    None,
                ),
                PasswordChanged,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    50132,
                    "The session is not valid due to password expiration or recent password change.",
                    None,
                ),
                PasswordChanged,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    50133,
                    "Session is invalid due to expiration or recent password change.",
                    None,
                ),
                PasswordChanged,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    50055,
                    "The password is expired.",
                    Some("user_password_expired"),
                ),
                PasswordChanged,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    50076,
                    "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
                    Some("basic_action"),
                ),
                MfaRequired,
            ),
            (
                400,
                body(
                    "interaction_required",
                    50079,
                    "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication.",
                    Some("basic_action"),
                ),
                MfaRequired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    50078,
                    "Presented multi-factor authentication has expired due to policies configured by your administrator.",
                    None,
                ),
                MfaRequired,
            ),
            (
                400,
                body(
                    "interaction_required",
                    50074,
                    "Strong Authentication is required.",
                    None,
                ),
                MfaRequired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token was issued on 2023-01-01T00:00:00Z and was inactive for 90.00:00:00.",
                    None,
                ),
                RefreshTokenExpired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity.",
                    None,
                ),
                RefreshTokenExpired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    700084,
                    "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime of 1.00:00:00.",
                    None,
                ),
                RefreshTokenExpired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    70043,
                    "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.",
                    None,
                ),
                RefreshTokenExpired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    65001,
                    "The user or administrator has not consented to use the application with ID '11111111-2222-3333-4444-555555555555' named 'Outlook Integration'.",
                    Some("consent_required"),
                ),
                ConsentRevoked,
            ),
            (
                400,
                body(
                    "access_denied",
                    65004,
                    "User declined to consent to access the app.",
                    None,
                ),
                UserDeclined,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    90094,
                    "The grant requires admin permission.",
                    None,
                ),
                AdminApprovalRequired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    90095,
                    "Admin consent is required for the permissions requested by this application.",
                    None,
                ),
                AdminApprovalRequired,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    50057,
                    "The user account is disabled.",
                    None,
                ),
                AccountDisabled,
            ),
            (
                401,
                body(
                    "invalid_client",
                    7000222,
                    "The provided client secret keys for app '11111111-2222-3333-4444-555555555555' are expired.",
                    None,
                ),
                AppSecretExpired,
            ),
            (
                401,
                body(
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                    None,
                ),
                AppCredentialsInvalid,
            ),
            (
                401,
                body(
                    "invalid_client",
                    700027,
                    "Client assertion contains an invalid signature.",
                    None,
                ),
                AppCredentialsInvalid,
            ),
            (
                401,
                body(
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                    None,
                ),
                AppCredentialsInvalid,
            ),
            (
                400,
                body(
                    "unauthorized_client",
                    700016,
                    "Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory 'contoso.onmicrosoft.com'.",
                    None,
                ),
                AppNotInTenant,
            ),
            (
                400,
                body(
                    "unauthorized_client",
                    700011,
                    "Application with identifier was not found.",
                    None,
                ),
                AppNotInTenant,
            ),
            (
                400,
                body(
                    "unauthorized_client",
                    7000112,
                    "Application is disabled.",
                    None,
                ),
                AppNotInTenant,
            ),
            (
                400,
                body(
                    "invalid_request",
                    90002,
                    "Tenant 'contoso.example' not found.",
                    None,
                ),
                TenantNotFound,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    53003,
                    "Access has been blocked by Conditional Access policies.",
                    None,
                ),
                ConditionalAccessBlocked,
            ),
            (
                400,
                body(
                    "interaction_required",
                    53000,
                    "Device is not in required device state: compliant.",
                    None,
                ),
                ConditionalAccessBlocked,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    53001,
                    "Device is not in required device state: domain_joined.",
                    None,
                ),
                ConditionalAccessBlocked,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    530032,
                    "User blocked due to conditional access policy.",
                    None,
                ),
                ConditionalAccessBlocked,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                    None,
                ),
                CodeAlreadyRedeemed,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    None,
                ),
                PkceMismatch,
            ),
            (
                400,
                body(
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                    None,
                ),
                InvalidGrant,
            ),
            (
                400,
                body(
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                    None,
                ),
                Transient,
            ),
            (
                500,
                body(
                    "server_error",
                    90090,
                    "A transient error has occurred.",
                    None,
                ),
                Transient,
            ),
            (
                429,
                body("invalid_request", 90055, "The tenant is throttled.", None),
                Transient,
            ),
            (
                400,
                body(
                    "invalid_request",
                    50196,
                    "The server terminated an operation because it encountered a client request loop.",
                    None,
                ),
                Transient,
            ),
        ];
        for (status, json, expected) in cases {
            let got = classify(status, json.clone());
            assert_eq!(got, expected, "{json}");
        }
    }

    #[test]
    fn error_alone_is_never_enough() {
        // The same `error` with different suberrors means different things.
        let mfa = classify(
            400,
            serde_json::json!({"error": "invalid_grant", "error_codes": [], "suberror": "basic_action"}),
        );
        assert_eq!(mfa, IdentityFailure::MfaRequired);
        let consent = classify(
            400,
            serde_json::json!({"error": "invalid_grant", "suberror": "consent_required"}),
        );
        assert_eq!(consent, IdentityFailure::ConsentRevoked);
        let plain = classify(400, serde_json::json!({"error": "invalid_grant"}));
        assert_eq!(plain, IdentityFailure::InvalidGrant);
        let interaction = classify(
            400,
            serde_json::json!({"error": "interaction_required", "suberror": "basic_action"}),
        );
        assert_eq!(interaction, IdentityFailure::MfaRequired);
        let other = classify(
            400,
            serde_json::json!({"error": "interaction_required", "suberror": "additional_action"}),
        );
        assert_eq!(other, IdentityFailure::SignInRequired);
        // Codes beat the error value.
        assert_eq!(
            classify(
                401,
                serde_json::json!({"error": "invalid_client", "error_codes": [700016]})
            ),
            IdentityFailure::AppNotInTenant
        );
    }

    #[test]
    fn fallbacks_by_error_and_status() {
        assert_eq!(
            classify(401, serde_json::json!({"error": "invalid_client"})),
            IdentityFailure::AppCredentialsInvalid
        );
        assert_eq!(
            classify(503, serde_json::json!({})),
            IdentityFailure::Transient
        );
        assert_eq!(
            classify(
                400,
                serde_json::json!({"error": "invalid_scope", "error_codes": ["70011"]})
            ),
            IdentityFailure::Unknown {
                error: "invalid_scope".into(),
                codes: vec![70011]
            }
        );
    }

    #[test]
    fn flags_and_texts() {
        use IdentityFailure::*;
        let all = [
            PasswordChanged,
            MfaRequired,
            RefreshTokenExpired,
            ConsentRevoked,
            UserDeclined,
            AdminApprovalRequired,
            AccountDisabled,
            AppSecretExpired,
            AppCredentialsInvalid,
            AppNotInTenant,
            TenantNotFound,
            ConditionalAccessBlocked,
            CodeAlreadyRedeemed,
            PkceMismatch,
            InvalidGrant,
            SignInRequired,
            NoRefreshToken,
            Transient,
            Unknown {
                error: "weird".into(),
                codes: vec![12345],
            },
        ];
        for failure in &all {
            assert!(
                !failure.reason().is_empty() && failure.reason().ends_with('.'),
                "{failure:?}"
            );
            assert!(failure.fix().ends_with('.'), "{failure:?}");
            assert!(
                !(failure.needs_reconnect() && failure.needs_admin()),
                "{failure:?}"
            );
            assert_eq!(failure.is_retryable(), *failure == Transient);
        }
        assert_eq!(
            PasswordChanged.fix(),
            "Reconnect the account: sign in again."
        );
        assert_eq!(
            AppSecretExpired.reason(),
            "The app's client secret has expired."
        );
        assert_eq!(
            AppSecretExpired.fix(),
            "An administrator must put a new client secret in the app-credentials secret."
        );
        assert!(
            Unknown {
                error: "weird".into(),
                codes: vec![12345]
            }
            .reason()
            .contains("AADSTS12345")
        );
        assert!(
            PasswordChanged.needs_reconnect()
                && MfaRequired.needs_reconnect()
                && !AppSecretExpired.needs_reconnect()
        );
    }

    #[test]
    fn error_display_carries_trace_ids_not_descriptions() {
        let body: EntraErrorBody = serde_json::from_value(body(
            "invalid_grant",
            50173,
            "The user might have changed or reset their password.",
            None,
        ))
        .unwrap();
        let err = IdentityError::from_body(Some(400), body);
        let text = err.to_string();
        assert!(
            text.contains("AADSTS50173") && text.contains("trace_id=0000aaaa"),
            "{text}"
        );
        assert!(!text.contains("reset their password"), "{text}");
        assert_eq!(err.failure(), IdentityFailure::PasswordChanged);
    }

    #[test]
    fn redirect_errors_read_codes_from_the_description() {
        let err = IdentityError::from_redirect(
            "access_denied",
            "AADSTS65004: User declined to consent to access the app.\r\nTrace ID: x\r\nCorrelation ID: y",
        );
        assert_eq!(err.failure, IdentityFailure::UserDeclined);
        let admin = IdentityError::from_redirect(
            "consent_required",
            "AADSTS65004: User declined to consent to access the app.",
        );
        assert_eq!(admin.failure, IdentityFailure::UserDeclined);
        let approval = IdentityError::from_redirect(
            "access_denied",
            "AADSTS90094: The grant requires admin permission.",
        );
        assert_eq!(approval.failure, IdentityFailure::AdminApprovalRequired);
        assert_eq!(
            IdentityError::from_redirect("access_denied", "").failure,
            IdentityFailure::UserDeclined
        );
    }
}
