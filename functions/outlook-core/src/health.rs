//! Why an integration or mailbox is not syncing, in words a person understands, with the fix.
//!
//! This list is the single source for the API's status reasons, the connect page and the
//! README's troubleshooting section (a test checks the README against it).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    PasswordChanged,
    MfaRequired,
    RefreshTokenExpired,
    ConsentRevoked,
    AccountDisabled,
    AdminApprovalRequired,
    ConditionalAccessBlocked,
    AppCredentialsExpired,
    AppCredentialsInvalid,
    AppRemovedFromTenant,
    TenantNotFound,
    MailboxOutsideAdminScope,
    SharedMailboxNotGranted,
    MailboxNotEnabled,
    Throttled,
    MicrosoftUnavailable,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::PasswordChanged,
        Reason::MfaRequired,
        Reason::RefreshTokenExpired,
        Reason::ConsentRevoked,
        Reason::AccountDisabled,
        Reason::AdminApprovalRequired,
        Reason::ConditionalAccessBlocked,
        Reason::AppCredentialsExpired,
        Reason::AppCredentialsInvalid,
        Reason::AppRemovedFromTenant,
        Reason::TenantNotFound,
        Reason::MailboxOutsideAdminScope,
        Reason::SharedMailboxNotGranted,
        Reason::MailboxNotEnabled,
        Reason::Throttled,
        Reason::MicrosoftUnavailable,
    ];

    /// The stable code used in the API and logs.
    pub fn code(self) -> &'static str {
        match self {
            Reason::PasswordChanged => "password_changed",
            Reason::MfaRequired => "mfa_required",
            Reason::RefreshTokenExpired => "refresh_token_expired",
            Reason::ConsentRevoked => "consent_revoked",
            Reason::AccountDisabled => "account_disabled",
            Reason::AdminApprovalRequired => "admin_approval_required",
            Reason::ConditionalAccessBlocked => "conditional_access_blocked",
            Reason::AppCredentialsExpired => "app_credentials_expired",
            Reason::AppCredentialsInvalid => "app_credentials_invalid",
            Reason::AppRemovedFromTenant => "app_removed_from_tenant",
            Reason::TenantNotFound => "tenant_not_found",
            Reason::MailboxOutsideAdminScope => "mailbox_outside_admin_scope",
            Reason::SharedMailboxNotGranted => "shared_mailbox_not_granted",
            Reason::MailboxNotEnabled => "mailbox_not_enabled",
            Reason::Throttled => "throttled",
            Reason::MicrosoftUnavailable => "microsoft_unavailable",
        }
    }

    /// What happened, in one sentence.
    pub fn message(self) -> &'static str {
        match self {
            Reason::PasswordChanged => {
                "The account's password was changed, which signed us out of the mailbox."
            }
            Reason::MfaRequired => {
                "The organization now requires multi-factor authentication for this account, so the old sign-in no longer works."
            }
            Reason::RefreshTokenExpired => {
                "The sign-in expired because the connection was not used for a long time (Microsoft limits this to 90 days)."
            }
            Reason::ConsentRevoked => "Access for this app was revoked in Microsoft 365.",
            Reason::AccountDisabled => {
                "The Microsoft 365 account was disabled by an administrator."
            }
            Reason::AdminApprovalRequired => {
                "The organization allows only administrators to approve apps that read mail."
            }
            Reason::ConditionalAccessBlocked => {
                "A Conditional Access policy of the organization blocks this sign-in."
            }
            Reason::AppCredentialsExpired => {
                "The integration app's client secret or certificate has expired."
            }
            Reason::AppCredentialsInvalid => {
                "The integration app's client secret or certificate is not valid."
            }
            Reason::AppRemovedFromTenant => {
                "The integration app was removed from the Microsoft 365 organization."
            }
            Reason::TenantNotFound => "The Microsoft 365 organization could not be found.",
            Reason::MailboxOutsideAdminScope => {
                "The organization's administrator has not allowed the app to access this mailbox."
            }
            Reason::SharedMailboxNotGranted => {
                "The signed-in user has no access to this shared mailbox."
            }
            Reason::MailboxNotEnabled => "This account has no Exchange Online mailbox.",
            Reason::Throttled => {
                "Microsoft is limiting how fast we may read this mailbox; sync resumes automatically."
            }
            Reason::MicrosoftUnavailable => {
                "Microsoft 365 did not answer; sync retries automatically."
            }
        }
    }

    /// What the customer (or their administrator) should do.
    pub fn fix(self) -> &'static str {
        match self {
            Reason::PasswordChanged
            | Reason::MfaRequired
            | Reason::RefreshTokenExpired
            | Reason::ConsentRevoked => {
                "Reconnect: sign in again with the same account. Sync resumes where it stopped."
            }
            Reason::AccountDisabled => {
                "Ask your Microsoft 365 administrator to re-enable the account, then reconnect; or connect organization-wide."
            }
            Reason::AdminApprovalRequired => {
                "Ask a Microsoft 365 administrator to connect organization-wide (recommended), or to approve the app for you."
            }
            Reason::ConditionalAccessBlocked => {
                "Ask your administrator to allow the app in Conditional Access, or connect organization-wide."
            }
            Reason::AppCredentialsExpired | Reason::AppCredentialsInvalid => {
                "Platform operators: put a valid client secret or certificate in the app-credentials secret. No customer action is needed."
            }
            Reason::AppRemovedFromTenant => {
                "A Microsoft 365 administrator must grant consent again: start an organization-wide connection."
            }
            Reason::TenantNotFound => "Check the organization and connect again.",
            Reason::MailboxOutsideAdminScope => {
                "Ask the administrator to add the mailbox to the app's access policy (or RBAC scope); changes can take an hour to apply."
            }
            Reason::SharedMailboxNotGranted => {
                "Ask the mailbox owner or an administrator to give the user Full Access to the shared mailbox, then reconnect."
            }
            Reason::MailboxNotEnabled => {
                "Give the account an Exchange Online licence, or remove the mailbox from the integration."
            }
            Reason::Throttled | Reason::MicrosoftUnavailable => {
                "Nothing to do: sync retries automatically."
            }
        }
    }

    /// A personal sign-in must be repeated; syncing stops until it is.
    pub fn needs_reconnect(self) -> bool {
        matches!(
            self,
            Reason::PasswordChanged
                | Reason::MfaRequired
                | Reason::RefreshTokenExpired
                | Reason::ConsentRevoked
                | Reason::AccountDisabled
                | Reason::ConditionalAccessBlocked
                | Reason::AdminApprovalRequired
        )
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.code() == code)
    }
}

/// The README's troubleshooting table, generated from this list (a test keeps them equal).
pub fn troubleshooting_markdown() -> String {
    let mut out = String::from(
        "| Status reason (`code`) | What happened | What to do | Syncing |\n|---|---|---|---|\n",
    );
    for reason in Reason::ALL {
        let syncing = if reason.needs_reconnect() {
            "stopped until reconnected"
        } else if matches!(reason, Reason::Throttled | Reason::MicrosoftUnavailable) {
            "retries automatically"
        } else if matches!(
            reason,
            Reason::MailboxOutsideAdminScope
                | Reason::SharedMailboxNotGranted
                | Reason::MailboxNotEnabled
        ) {
            "this mailbox stopped; others continue"
        } else {
            "stopped until fixed"
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            reason.code(),
            reason.message(),
            reason.fix(),
            syncing
        ));
    }
    out
}

/// The reason plus a human explanation, as stored on records and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReason {
    pub code: Reason,
    pub message: String,
    pub fix: String,
}

impl From<Reason> for StatusReason {
    fn from(reason: Reason) -> Self {
        Self {
            code: reason,
            message: reason.message().into(),
            fix: reason.fix().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_code(reason.code()), Some(*reason));
            let json = serde_json::to_string(reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.code()));
        }
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
