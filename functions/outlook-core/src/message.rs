//! The message as the integration sees it: the fields sync selects from Graph and rules evaluate.
//!
//! Built from a Graph `message` (see `graph::types::GraphMessage`) by `MailMessage::from_graph`;
//! stored (without body) in the processed-message record and carried (with body) on the rules queue.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An email address with an optional display name, compared case-insensitively on the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub address: String,
}

impl Address {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            name: None,
            address: address.into(),
        }
    }

    /// The domain part after the last `@`, lower-cased; empty when the address has none.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default()
    }

    pub fn is(&self, other: &str) -> bool {
        self.address.eq_ignore_ascii_case(other.trim())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Importance {
    Low,
    #[default]
    Normal,
    High,
}

/// Outlook's sensitivity label of a message, from its `Sensitivity` header (RFC 2156).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Sensitivity {
    #[default]
    Normal,
    Personal,
    Private,
    Confidential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum FlagStatus {
    #[default]
    NotFlagged,
    Complete,
    Flagged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum BodyType {
    #[default]
    Text,
    Html,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Body {
    pub content_type: BodyType,
    pub content: String,
}

/// What kind of message this is, as far as the synced fields show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum MessageKind {
    #[default]
    Normal,
    AutomaticReply,
    NonDeliveryReport,
    ReadReceipt,
    MeetingRequest,
    MeetingResponse,
    AutomaticForward,
    Encrypted,
    Signed,
    Voicemail,
    ApprovalRequest,
    PermissionControlled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A message in a watched folder of a mailbox, with everything rules can match on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailMessage {
    /// Graph's immutable id (requested with `Prefer: IdType="ImmutableId"`).
    pub id: String,
    /// The folder the message was seen in (a Graph folder id).
    pub folder_id: String,
    #[serde(default)]
    pub internet_message_id: Option<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub from: Option<Address>,
    #[serde(default)]
    pub sender: Option<Address>,
    #[serde(default)]
    pub to: Vec<Address>,
    #[serde(default)]
    pub cc: Vec<Address>,
    #[serde(default)]
    pub bcc: Vec<Address>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(default)]
    pub has_attachments: bool,
    #[serde(default)]
    pub importance: Importance,
    #[serde(default)]
    pub sensitivity: Sensitivity,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub flag: FlagStatus,
    #[serde(default)]
    pub is_read: bool,
    /// Size in bytes (MAPI `PR_MESSAGE_SIZE`), when the sync asked for it.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Message kinds derived from `@odata.type`, headers and content type; empty for a normal message.
    #[serde(default)]
    pub kinds: Vec<MessageKind>,
    #[serde(default)]
    pub headers: Vec<Header>,
    /// The body, present only when a rule needs it (bodies are never logged nor stored at rest).
    #[serde(default)]
    pub body: Option<Body>,
}

impl MailMessage {
    /// The first value of a header, matched case-insensitively on the name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn is_kind(&self, kind: MessageKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Who the message is from for rule purposes: `from`, falling back to `sender`.
    pub fn from_address(&self) -> Option<&Address> {
        self.from.as_ref().or(self.sender.as_ref())
    }
}
