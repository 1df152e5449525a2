//! Wire types of the Graph mail API: only the fields we use, tolerant of extra fields and OData
//! annotations, strict about the types of the fields they do read (a date that is not a date fails).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::message::{BodyType, FlagStatus, Header, Importance};

/// `null` and a missing field both become an empty list (Graph sends `[]`, but some shapes omit
/// or null collections).
pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `emailAddress` of a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct EmailAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A `recipient`: `{"emailAddress": {"name", "address"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    #[serde(default)]
    pub email_address: EmailAddress,
}

impl Recipient {
    pub fn new(address: impl Into<String>, name: Option<String>) -> Self {
        Self {
            email_address: EmailAddress {
                name,
                address: Some(address.into()),
            },
        }
    }
}

/// `itemBody`. Its `Debug` never shows the content (bodies are never logged).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    pub content_type: BodyType,
    #[serde(default)]
    pub content: String,
}

impl fmt::Debug for ItemBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemBody")
            .field("content_type", &self.content_type)
            .field("content", &format_args!("[{} bytes]", self.content.len()))
            .finish()
    }
}

/// `followupFlag`; only the status is read (the dateTimeTimeZone fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FollowupFlag {
    #[serde(default)]
    pub flag_status: Option<FlagStatus>,
}

/// `@removed` on a delta item: `{"reason": "deleted" | "changed"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Removed {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A `singleValueLegacyExtendedProperty`, e.g. `{"id": "Integer 0xe08", "value": "5120"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SingleValueExtendedProperty {
    pub id: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// A Graph `message` (or `eventMessage`), or a delta tombstone (`id` + `@removed`).
///
/// Everything but `id` is optional because delta and `$select` return subsets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphMessage {
    pub id: String,
    /// `#microsoft.graph.message`, `#microsoft.graph.eventMessage`, `…eventMessageRequest`, …
    #[serde(default, rename = "@odata.type")]
    pub odata_type: Option<String>,
    #[serde(default, rename = "@removed")]
    pub removed: Option<Removed>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub from: Option<Recipient>,
    #[serde(default)]
    pub sender: Option<Recipient>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub to_recipients: Vec<Recipient>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cc_recipients: Vec<Recipient>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub bcc_recipients: Vec<Recipient>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub received_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sent_date_time: Option<OffsetDateTime>,
    #[serde(default)]
    pub has_attachments: Option<bool>,
    #[serde(default)]
    pub importance: Option<Importance>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub categories: Vec<String>,
    #[serde(default)]
    pub flag: Option<FollowupFlag>,
    #[serde(default)]
    pub is_read: Option<bool>,
    #[serde(default)]
    pub is_draft: Option<bool>,
    #[serde(default)]
    pub internet_message_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub internet_message_headers: Vec<Header>,
    #[serde(default)]
    pub body: Option<ItemBody>,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    /// On `eventMessage`s: `meetingRequest`, `meetingCancelled`, `meetingAccepted`,
    /// `meetingTenativelyAccepted` (sic), `meetingDeclined` or `none`. Kept as text: the set grows.
    #[serde(default)]
    pub meeting_message_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub single_value_extended_properties: Vec<SingleValueExtendedProperty>,
}

impl GraphMessage {
    /// A delta tombstone: the message left the folder (moved or deleted).
    pub fn is_removed(&self) -> bool {
        self.removed.is_some()
    }
}

/// A `mailFolder` (or `mailSearchFolder`, or a folder-delta tombstone).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailFolder {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_folder_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_folder_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_item_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_item_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_hidden: Option<bool>,
    #[serde(
        default,
        rename = "@odata.type",
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    #[serde(default, rename = "@removed", skip_serializing)]
    pub removed: Option<Removed>,
}

impl MailFolder {
    /// Search folders are virtual: they cannot be a move/copy destination nor be delta-synced.
    pub fn is_search_folder(&self) -> bool {
        self.odata_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("#microsoft.graph.mailSearchFolder"))
    }
}

/// One page of a delta query. Exactly one of `next_link` (keep paging) and `delta_link` (round
/// complete; store it) is normally present. Both are opaque: follow them as they are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeltaPage<T> {
    #[serde(default, rename = "@odata.context")]
    pub context: Option<String>,
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// A page of a plain collection (`value` + optional `@odata.nextLink`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Collection<T> {
    #[serde(default, rename = "@odata.context")]
    pub context: Option<String>,
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// An `outlookCategory` of the mailbox's master category list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlookCategory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub display_name: String,
    /// `none` or `preset0` … `preset24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// A `user` (`/me` or `/users/{id|upn}`), with the fields we select.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
}

/// Graph's error body: `{"error": {"code", "message", "innerError"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphErrorDetail,
}

/// The `error` object. `code` is what callers branch on; it can be empty (seen in batch items).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct GraphErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "innerError", alias = "innererror")]
    pub inner_error: Option<InnerError>,
}

/// `innerError`. `date` stays text: Graph sends it without an offset (`2025-02-13T10:17:05`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct InnerError {
    #[serde(default, rename = "request-id", alias = "requestId")]
    pub request_id: Option<String>,
    #[serde(default, rename = "client-request-id")]
    pub client_request_id: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

/// The body of `POST /$batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BatchRequest {
    pub requests: Vec<BatchRequestItem>,
}

/// One request of a JSON batch. `url` is relative to the version root, e.g. `/me/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequestItem {
    pub id: String,
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// The body of a `$batch` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct BatchResponse {
    pub responses: Vec<BatchResponseItem>,
}

/// One response of a JSON batch; match it to its request by `id` (the order is arbitrary).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchResponseItem {
    pub id: String,
    pub status: u16,
    /// Header names as Graph sent them; look them up with [`BatchResponseItem::header`].
    #[serde(default, deserialize_with = "header_map")]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

impl BatchResponseItem {
    /// A header value, matched case-insensitively on the name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T` (e.g. a [`GraphMessage`] of a move).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.body.as_ref().unwrap_or(&serde_json::Value::Null))
    }

    /// The error body's `error` object, when there is one.
    pub fn error_detail(&self) -> Option<GraphErrorDetail> {
        self.body
            .as_ref()
            .and_then(|b| GraphErrorBody::deserialize(b).ok())
            .map(|b| b.error)
    }
}

/// Batch item headers: values are strings, but numbers are tolerated (made into text).
fn header_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?
        .unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}
