//! Identifiers, parsed at the edge so an invalid one cannot be constructed.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub reason: &'static str,
}

fn check(kind: &'static str, value: &str, prefix: &str) -> Result<(), IdError> {
    if value.is_empty() || value.len() > 64 {
        return Err(IdError {
            kind,
            reason: "must be 1 to 64 characters",
        });
    }
    if !value.starts_with(prefix) {
        return Err(IdError {
            kind,
            reason: "has the wrong prefix",
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError {
            kind,
            reason: "may contain only letters, digits, '-' and '_'",
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, &value, $prefix)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A customer workspace of the platform; every record belongs to exactly one.
    WorkspaceId, "workspace id", ""
);
id_type!(
    /// One connected Microsoft 365 account (organization-wide or personal).
    IntegrationId, "integration id", "int_"
);
id_type!(
    /// One mailbox synced under an integration.
    MailboxId, "mailbox id", "mbx_"
);

impl IntegrationId {
    pub fn generate() -> Self {
        Self(format!("int_{}", uuid::Uuid::new_v4().simple()))
    }
}

impl MailboxId {
    pub fn generate() -> Self {
        Self(format!("mbx_{}", uuid::Uuid::new_v4().simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_separators_and_wrong_prefixes() {
        assert!(WorkspaceId::parse("acme-corp").is_ok());
        assert!(WorkspaceId::parse("acme#corp").is_err());
        assert!(WorkspaceId::parse("").is_err());
        assert!(IntegrationId::parse("mbx_1").is_err());
        assert!(MailboxId::parse(MailboxId::generate().to_string()).is_ok());
        let json = serde_json::to_string(&IntegrationId::parse("int_abc").unwrap()).unwrap();
        assert_eq!(json, "\"int_abc\"");
        assert!(serde_json::from_str::<IntegrationId>("\"int_a#b\"").is_err());
    }
}
