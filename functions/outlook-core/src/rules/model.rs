//! The rule model as customers write it and the store persists it (JSON, camelCase).
//!
//! These types are plain data: anything can be built or deserialized, and nothing here is usable
//! for evaluation until [`super::validate`] accepted the whole rule set.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::MailboxId;
use crate::message::{FlagStatus, Importance, Sensitivity};

/// Which mailboxes a rule set applies to. Serialized as the store's scope key: `"*"` for every
/// mailbox of the integration, or the mailbox id (`"mbx_..."`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RuleScope {
    AllMailboxes,
    Mailbox(MailboxId),
}

impl RuleScope {
    /// The scope key used by `store::put_ruleset`/`get_ruleset`.
    pub fn store_key(&self) -> &str {
        match self {
            Self::AllMailboxes => crate::store::ALL_MAILBOXES,
            Self::Mailbox(id) => id.as_str(),
        }
    }

    pub fn parse(key: &str) -> Result<Self, crate::ids::IdError> {
        if key == crate::store::ALL_MAILBOXES {
            Ok(Self::AllMailboxes)
        } else {
            MailboxId::parse(key).map(Self::Mailbox)
        }
    }
}

impl TryFrom<String> for RuleScope {
    type Error = crate::ids::IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RuleScope> for String {
    fn from(scope: RuleScope) -> String {
        scope.store_key().to_owned()
    }
}

impl fmt::Display for RuleScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.store_key())
    }
}

/// All rules of one scope, versioned as a whole (a new version replaces the previous one).
///
/// ```json
/// {"version": 3, "rules": [ { "id": "r1", ... } ]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSet {
    pub version: u64,
    pub rules: Vec<Rule>,
}

/// One rule: when all `conditions` match and no `exceptions` match, its `actions` apply.
///
/// ```json
/// {
///   "id": "r1",
///   "name": "Invoices",
///   "order": 1,
///   "enabled": true,
///   "conditions": [{"subjectContains": ["invoice", "rechnung"]}, {"senderDomain": {"domain": "acme.com"}}],
///   "exceptions": [{"categories": ["Paid"]}],
///   "actions": [
///     {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
///     {"moveToFolder": {"path": "Finance/Invoices"}}
///   ],
///   "stopProcessing": false
/// }
/// ```
///
/// - `id`: 1–64 characters of letters, digits, `-`, `_`, `.`, `:`; unique within the rule set.
/// - `order`: rules run in ascending `order`; equal orders keep their position in the list.
/// - `enabled`: optional, default `true`. Disabled rules are skipped entirely.
/// - `conditions`: a list whose entries must **all** match (like the predicates of an Outlook
///   rule). A single condition object is accepted in place of a one-entry list; `null`, absent or
///   `[]` means every message matches.
/// - `exceptions`: a list of conditions; if **any** of them matches, the rule does not apply.
///   A single object, `null`, absent or `[]` are accepted too.
/// - `actions`: what to do (see [`Action`]); may be empty only when `stopProcessing` is true.
/// - `stopProcessing`: optional, default `false`. When the rule applies, later rules are not
///   evaluated (Outlook's "stop processing more rules").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub order: u32,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, deserialize_with = "one_or_many")]
    pub conditions: Vec<Condition>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub exceptions: Vec<Condition>,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub stop_processing: bool,
}

fn default_true() -> bool {
    true
}

/// The field names of [`Rule`] in JSON, in the order they are documented.
pub(crate) const RULE_FIELDS: &[&str] = &[
    "id",
    "name",
    "order",
    "enabled",
    "conditions",
    "exceptions",
    "actions",
    "stopProcessing",
];

/// One condition. In JSON an object with exactly one key, the condition's name:
///
/// | JSON | matches when |
/// |---|---|
/// | `{"fromAddresses": ["a@x.com"]}` | the sender's address (`from`, else `sender`) equals one of them |
/// | `{"senderContains": ["acme"]}` | the sender's address or display name contains one of them |
/// | `{"sentToAddresses": ["a@x.com"]}` | a To/Cc/Bcc address equals one of them |
/// | `{"recipientContains": ["sales"]}` | a To/Cc/Bcc address or display name contains one of them |
/// | `{"subjectContains": ["invoice"]}` | the subject contains one of them |
/// | `{"bodyContains": ["IBAN"]}` | the body text (HTML rendered to text) contains one of them |
/// | `{"bodyOrSubjectContains": ["urgent"]}` | subject or body contains one of them |
/// | `{"headerContains": ["X-Spam: yes"]}` | a header line `Name: value` contains one of them |
/// | `{"sentToMe": true}` | the mailbox (address or alias) is in To |
/// | `{"sentOnlyToMe": true}` | the mailbox is the only recipient (To, Cc and Bcc) |
/// | `{"sentCcMe": true}` | the mailbox is in Cc |
/// | `{"sentToOrCcMe": true}` | the mailbox is in To or Cc |
/// | `{"notSentToMe": true}` | the mailbox is not among the To/Cc/Bcc recipients |
/// | `{"hasAttachments": true}` | the message has attachments |
/// | `{"importance": "high"}` | importance is `low`, `normal` or `high` |
/// | `{"sensitivity": "confidential"}` | sensitivity is `normal`, `personal`, `private` or `confidential` |
/// | `{"withinSizeRange": {"minimumSize": 10, "maximumSize": 500}}` | size in KB (1,024 bytes) within the inclusive range; either bound may be left out |
/// | `{"categories": ["Red"]}` | the message already has one of these categories |
/// | `{"flagStatus": "flagged"}` | the follow-up flag is `notFlagged`, `flagged` or `complete` |
/// | `{"isAutomaticReply": true}`, `isNonDeliveryReport`, `isReadReceipt`, `isMeetingRequest`, `isMeetingResponse`, `isAutomaticForward`, `isEncrypted`, `isSigned`, `isVoicemail`, `isApprovalRequest`, `isPermissionControlled` | the message is (or with `false`: is not) of that kind |
/// | `{"senderDomain": {"domain": "acme.com", "includeSubdomains": true}}` | the sender's domain is `acme.com` (or, with `includeSubdomains`, any `*.acme.com`) |
/// | `{"regex": {"field": "subject", "pattern": "^INV-\\d+", "caseSensitive": false}}` | a regular expression matches (see [`RegexCondition`]) |
/// | `{"all": [c1, c2]}` | all of them match (`[]`: always true) |
/// | `{"any": [c1, c2]}` | at least one matches (`[]`: never true) |
/// | `{"not": c}` | `c` does not match |
///
/// Lists are ORed, like Outlook: one matching value is enough. Text matching is
/// case-insensitive (Unicode lower-casing plus `ß`=`ss`) and treats runs of whitespace as one
/// space; address comparisons are case-insensitive. The boolean conditions state the value the
/// property must have: `{"hasAttachments": false}` matches messages without attachments.
/// (Unlike Graph, where `false` means "not set"; write `false` only when you mean it.)
///
/// Conditions are evaluated on the message as received; actions of earlier rules (such as a
/// category assigned by rule 1) are not visible to later rules. A missing body or size (not
/// synced) reads as an empty body and an unknown size, which no size range matches.
///
/// Not available: Outlook's `messageActionFlag` kinds (call, fyi, review...), which the synced
/// message does not carry; `flagStatus` covers flagged/complete/not flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    FromAddresses(Vec<String>),
    SenderContains(Vec<String>),
    SentToAddresses(Vec<String>),
    RecipientContains(Vec<String>),
    SubjectContains(Vec<String>),
    BodyContains(Vec<String>),
    BodyOrSubjectContains(Vec<String>),
    HeaderContains(Vec<String>),
    SentToMe(bool),
    SentOnlyToMe(bool),
    SentCcMe(bool),
    SentToOrCcMe(bool),
    NotSentToMe(bool),
    HasAttachments(bool),
    Importance(Importance),
    Sensitivity(Sensitivity),
    WithinSizeRange(SizeRange),
    Categories(Vec<String>),
    FlagStatus(FlagStatus),
    IsAutomaticReply(bool),
    IsNonDeliveryReport(bool),
    IsReadReceipt(bool),
    IsMeetingRequest(bool),
    IsMeetingResponse(bool),
    IsAutomaticForward(bool),
    IsEncrypted(bool),
    IsSigned(bool),
    IsVoicemail(bool),
    IsApprovalRequest(bool),
    IsPermissionControlled(bool),
    SenderDomain(SenderDomain),
    Regex(RegexCondition),
}

impl Condition {
    /// The condition's JSON name, e.g. `subjectContains` (used in error paths).
    pub fn name(&self) -> &'static str {
        match self {
            Self::All(_) => "all",
            Self::Any(_) => "any",
            Self::Not(_) => "not",
            Self::FromAddresses(_) => "fromAddresses",
            Self::SenderContains(_) => "senderContains",
            Self::SentToAddresses(_) => "sentToAddresses",
            Self::RecipientContains(_) => "recipientContains",
            Self::SubjectContains(_) => "subjectContains",
            Self::BodyContains(_) => "bodyContains",
            Self::BodyOrSubjectContains(_) => "bodyOrSubjectContains",
            Self::HeaderContains(_) => "headerContains",
            Self::SentToMe(_) => "sentToMe",
            Self::SentOnlyToMe(_) => "sentOnlyToMe",
            Self::SentCcMe(_) => "sentCcMe",
            Self::SentToOrCcMe(_) => "sentToOrCcMe",
            Self::NotSentToMe(_) => "notSentToMe",
            Self::HasAttachments(_) => "hasAttachments",
            Self::Importance(_) => "importance",
            Self::Sensitivity(_) => "sensitivity",
            Self::WithinSizeRange(_) => "withinSizeRange",
            Self::Categories(_) => "categories",
            Self::FlagStatus(_) => "flagStatus",
            Self::IsAutomaticReply(_) => "isAutomaticReply",
            Self::IsNonDeliveryReport(_) => "isNonDeliveryReport",
            Self::IsReadReceipt(_) => "isReadReceipt",
            Self::IsMeetingRequest(_) => "isMeetingRequest",
            Self::IsMeetingResponse(_) => "isMeetingResponse",
            Self::IsAutomaticForward(_) => "isAutomaticForward",
            Self::IsEncrypted(_) => "isEncrypted",
            Self::IsSigned(_) => "isSigned",
            Self::IsVoicemail(_) => "isVoicemail",
            Self::IsApprovalRequest(_) => "isApprovalRequest",
            Self::IsPermissionControlled(_) => "isPermissionControlled",
            Self::SenderDomain(_) => "senderDomain",
            Self::Regex(_) => "regex",
        }
    }

    /// `{"all": [...]}`
    pub fn all(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Self::All(conditions.into_iter().collect())
    }

    /// `{"any": [...]}`
    pub fn any(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Self::Any(conditions.into_iter().collect())
    }

    /// `{"not": ...}`
    #[allow(clippy::should_implement_trait)]
    pub fn not(condition: Condition) -> Self {
        Self::Not(Box::new(condition))
    }
}

/// `withinSizeRange`: message size in KB (1 KB = 1,024 bytes), both bounds inclusive and
/// optional (at least one is required), like Outlook's `sizeRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SizeRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// `senderDomain`: `{"domain": "acme.com", "includeSubdomains": false}`. The domain is compared
/// case-insensitively with the part after the sender address's last `@`; with
/// `includeSubdomains` (default `false`) `mail.acme.com` matches too (but `notacme.com` never).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SenderDomain {
    pub domain: String,
    #[serde(default)]
    pub include_subdomains: bool,
}

/// `regex`: `{"field": "subject", "pattern": "^INV-\\d+$", "caseSensitive": false}`.
///
/// Patterns use the syntax of Rust's `regex` crate (no look-around, no back-references), which
/// matches in linear time, so no pattern can stall evaluation; compiled size is limited. The
/// pattern matches anywhere in the text unless anchored. Matching is case-insensitive unless
/// `caseSensitive` is true (the regex engine's simple Unicode case folding: unlike "contains",
/// `ß` does not match `ss`).
///
/// `field`:
/// - `subject`; `body` (the rendered body text, lines kept: use `(?m)^...$` for lines);
///   `bodyOrSubject`;
/// - `sender`: the sender's address or display name; `recipients`: any To/Cc/Bcc address or
///   display name;
/// - `header`: with `"header": "X-Mailer"` each value of that header (name case-insensitive),
///   without it each header line `Name: value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexCondition {
    pub field: RegexField,
    pub pattern: String,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// What a [`RegexCondition`] is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegexField {
    Subject,
    Body,
    BodyOrSubject,
    Sender,
    Recipients,
    Header,
}

/// One action. In JSON an object with exactly one key:
///
/// | JSON | effect |
/// |---|---|
/// | `{"assignCategories": {"categories": ["Invoices"], "color": "preset4"}}` | add categories; missing master categories are created with `color` (`none`, `preset0`…`preset24`; optional) |
/// | `{"moveToFolder": {"path": "Finance/Invoices"}}` | move (path syntax: [`super::FolderPath`]) |
/// | `{"copyToFolder": {"path": "inbox/Copies"}}` | copy |
/// | `{"markAsRead": {}}` | mark as read |
/// | `{"markImportance": {"importance": "high"}}` | set importance |
/// | `{"flag": {"status": "flagged"}}` | set the follow-up flag (`flagged`, `complete`, or `notFlagged` to clear it) |
/// | `{"delete": {}}` | move to Deleted Items (never a permanent delete) |
/// | `{"forwardTo": {"recipients": ["a@x.com"], "comment": "FYI"}}` | forward, with an optional comment above the original |
///
/// Within one rule each kind may appear once, except `copyToFolder` (once per folder);
/// `moveToFolder` and `delete` exclude each other. Stopping further rules is the rule's
/// `stopProcessing` flag, not an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    #[serde(rename_all = "camelCase")]
    AssignCategories {
        categories: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        color: Option<String>,
    },
    MoveToFolder {
        path: String,
    },
    CopyToFolder {
        path: String,
    },
    MarkAsRead {},
    MarkImportance {
        importance: Importance,
    },
    Flag {
        status: FlagStatus,
    },
    Delete {},
    ForwardTo {
        recipients: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
}

impl Action {
    /// The action's JSON name, e.g. `moveToFolder` (used in error paths).
    pub fn name(&self) -> &'static str {
        match self {
            Self::AssignCategories { .. } => "assignCategories",
            Self::MoveToFolder { .. } => "moveToFolder",
            Self::CopyToFolder { .. } => "copyToFolder",
            Self::MarkAsRead {} => "markAsRead",
            Self::MarkImportance { .. } => "markImportance",
            Self::Flag { .. } => "flag",
            Self::Delete {} => "delete",
            Self::ForwardTo { .. } => "forwardTo",
        }
    }
}

/// Deserializes `null` / absent as empty, a single object as a one-entry list, or a list.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Condition>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<Condition>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a condition object, a list of conditions, or null")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::<Condition>::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Condition::deserialize(de::value::MapAccessDeserializer::new(map)).map(|c| vec![c])
        }
    }

    deserializer.deserialize_option(OneOrMany)
}

/// The JSON names of all [`Condition`]s.
pub const CONDITION_NAMES: &[&str] = &[
    "all",
    "any",
    "not",
    "fromAddresses",
    "senderContains",
    "sentToAddresses",
    "recipientContains",
    "subjectContains",
    "bodyContains",
    "bodyOrSubjectContains",
    "headerContains",
    "sentToMe",
    "sentOnlyToMe",
    "sentCcMe",
    "sentToOrCcMe",
    "notSentToMe",
    "hasAttachments",
    "importance",
    "sensitivity",
    "withinSizeRange",
    "categories",
    "flagStatus",
    "isAutomaticReply",
    "isNonDeliveryReport",
    "isReadReceipt",
    "isMeetingRequest",
    "isMeetingResponse",
    "isAutomaticForward",
    "isEncrypted",
    "isSigned",
    "isVoicemail",
    "isApprovalRequest",
    "isPermissionControlled",
    "senderDomain",
    "regex",
];

/// The JSON names of all [`Action`]s.
pub const ACTION_NAMES: &[&str] = &[
    "assignCategories",
    "moveToFolder",
    "copyToFolder",
    "markAsRead",
    "markImportance",
    "flag",
    "delete",
    "forwardTo",
];
