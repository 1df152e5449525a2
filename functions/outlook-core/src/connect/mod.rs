//! Connecting Outlook: organization-wide (admin consent, app-only access) and personal
//! (authorization code + PKCE sign-in), from the start URL to the callback's result page.

pub mod callback_params;
pub mod flows;

use std::str::FromStr;

/// Application permissions the organization-wide app asks the admin for, and why.
pub const APPLICATION_PERMISSIONS: &[(&str, &str)] = &[
    (
        "Mail.ReadWrite",
        "read new mail (delta sync), set categories, flags, importance and read state, move, copy and delete \
         messages, create folders, create forward drafts; also used to check each chosen mailbox is reachable",
    ),
    (
        "Mail.Send",
        "forward messages (Graph's forward and sending a forward draft require Mail.Send)",
    ),
    (
        "MailboxSettings.ReadWrite",
        "create a missing category in the mailbox's master category list",
    ),
];

/// Delegated scopes a personal sign-in asks for, and why.
pub const DELEGATED_SCOPES: &[(&str, &str)] = &[
    (
        "offline_access",
        "a refresh token, so sync keeps running without the user present",
    ),
    (
        "openid",
        "identify who signed in (organization and user ids in the ID token)",
    ),
    ("User.Read", "read the signed-in user's name and address"),
    (
        "Mail.ReadWrite",
        "read new mail, categorize, flag, mark read, move, copy, delete, create folders and drafts",
    ),
    ("Mail.Send", "forward messages"),
    (
        "MailboxSettings.ReadWrite",
        "create missing master categories",
    ),
];

/// Added only when the user names shared mailboxes.
pub const SHARED_MAILBOX_SCOPES: &[(&str, &str)] = &[
    (
        "Mail.ReadWrite.Shared",
        "the same mail access in shared mailboxes the user was granted",
    ),
    ("Mail.Send.Shared", "forward from those shared mailboxes"),
];

/// The delegated scopes for a sign-in, as Microsoft expects them (Graph scopes fully qualified
/// are not needed: the v2.0 endpoint defaults short names to Graph).
pub fn delegated_scopes(with_shared_mailboxes: bool) -> Vec<&'static str> {
    let mut scopes: Vec<&str> = DELEGATED_SCOPES.iter().map(|(s, _)| *s).collect();
    if with_shared_mailboxes {
        scopes.extend(SHARED_MAILBOX_SCOPES.iter().map(|(s, _)| *s));
    }
    scopes
}

/// Validates and normalizes a mailbox address (lower-case).
pub fn parse_mailbox_address(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.len() > 254 {
        return Err(format!(
            "'{}…' is too long for an email address",
            trimmed.chars().take(40).collect::<String>()
        ));
    }
    email_address::EmailAddress::from_str(trimmed)
        .map(|a| a.as_str().to_lowercase())
        .map_err(|e| format!("'{trimmed}' is not a valid email address: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_scopes_only_when_asked_for() {
        assert!(
            !delegated_scopes(false)
                .iter()
                .any(|s| s.ends_with(".Shared"))
        );
        assert!(delegated_scopes(true).contains(&"Mail.ReadWrite.Shared"));
        assert!(delegated_scopes(false).contains(&"offline_access"));
    }

    #[test]
    fn addresses_are_validated_and_lowercased() {
        assert_eq!(
            parse_mailbox_address(" Finance@Contoso.com ").unwrap(),
            "finance@contoso.com"
        );
        assert!(parse_mailbox_address("not an address").is_err());
        assert!(parse_mailbox_address("").is_err());
    }
}
