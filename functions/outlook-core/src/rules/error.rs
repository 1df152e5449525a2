//! Validation errors: each names the rule (position and id) and the field it is about.

use std::fmt;

use serde::{Serialize, Serializer};
use thiserror::Error;

use super::folder::FolderPathError;

/// One problem found in a submitted rule set.
///
/// Serialized for API responses as
/// `{"ruleIndex": 2, "ruleId": "r3", "field": "actions[1].moveToFolder.path", "code": "invalidFolderPath", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleValidationError {
    /// Position of the rule in the submitted `rules` list; `None` for errors about the set itself.
    pub rule_index: Option<usize>,
    /// The rule's id, when it has a readable one.
    pub rule_id: Option<String>,
    /// Path of the offending field, e.g. `conditions[0].all[1].fromAddresses[2]`; for set-level
    /// errors a top-level field such as `rules` or `version`.
    pub field: String,
    pub kind: ValidationErrorKind,
}

impl RuleValidationError {
    pub(crate) fn set_level(field: impl Into<String>, kind: ValidationErrorKind) -> Self {
        Self {
            rule_index: None,
            rule_id: None,
            field: field.into(),
            kind,
        }
    }

    /// A short stable identifier of the kind, e.g. `invalidEmail`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for RuleValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rule_id, self.rule_index) {
            (Some(id), Some(index)) => write!(f, "rule {id:?} (rules[{index}]), ")?,
            (Some(id), None) => write!(f, "rule {id:?}, ")?,
            (None, Some(index)) => write!(f, "rules[{index}], ")?,
            (None, None) => {}
        }
        if self.field.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.field, self.kind)
        }
    }
}

impl std::error::Error for RuleValidationError {}

impl Serialize for RuleValidationError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            rule_index: Option<usize>,
            rule_id: Option<&'a str>,
            field: &'a str,
            code: &'static str,
            message: String,
        }
        Wire {
            rule_index: self.rule_index,
            rule_id: self.rule_id.as_deref(),
            field: &self.field,
            code: self.code(),
            message: self.to_string(),
        }
        .serialize(serializer)
    }
}

/// What is wrong. The `Display` text is meant for the person who wrote the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationErrorKind {
    #[error("{0}")]
    InvalidJson(String),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("missing field")]
    MissingField,
    #[error("unknown condition `{0}`")]
    UnknownCondition(String),
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    #[error("must be an object with exactly one key (the {0} name); combine several with `all`")]
    NotOneKey(&'static str),
    #[error("too many rules: {count} (at most {max} per rule set)")]
    TooManyRules { count: usize, max: usize },
    #[error("duplicate rule id {0:?}")]
    DuplicateRuleId(String),
    #[error("invalid rule id: {0}")]
    InvalidRuleId(&'static str),
    #[error("must not be empty")]
    Empty,
    #[error("must not be empty or only whitespace")]
    BlankValue,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error("has {count} entries (at most {max})")]
    TooMany { count: usize, max: usize },
    #[error("contains a control character")]
    ControlCharacter,
    #[error("invalid email address {0:?}")]
    InvalidEmail(String),
    #[error("invalid domain {0:?}: {1}")]
    InvalidDomain(String, &'static str),
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
    #[error("invalid header name {0:?}: 1 to 128 printable ASCII characters without spaces or `:`")]
    InvalidHeaderName(String),
    #[error("`header` is only allowed with `\"field\": \"header\"`")]
    HeaderNameNotAllowed,
    #[error("invalid size range: {0}")]
    InvalidSizeRange(&'static str),
    #[error("conditions nest deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("the rule has more than {max} conditions")]
    TooManyConditions { max: usize },
    #[error("{0}")]
    InvalidFolderPath(FolderPathError),
    #[error("invalid category name {0:?}: {1}")]
    InvalidCategory(String, &'static str),
    #[error("invalid category color {0:?}: use `none` or `preset0` to `preset24`")]
    InvalidColor(String),
    #[error("the rule has no actions (add an action, or set `stopProcessing`)")]
    NoActions,
    #[error("`{0}` appears more than once in this rule")]
    DuplicateAction(&'static str),
    #[error("conflicting actions: {0}")]
    ConflictingActions(&'static str),
}

impl ValidationErrorKind {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalidJson",
            Self::UnknownField(_) => "unknownField",
            Self::MissingField => "missingField",
            Self::UnknownCondition(_) => "unknownCondition",
            Self::UnknownAction(_) => "unknownAction",
            Self::NotOneKey(_) => "notOneKey",
            Self::TooManyRules { .. } => "tooManyRules",
            Self::DuplicateRuleId(_) => "duplicateRuleId",
            Self::InvalidRuleId(_) => "invalidRuleId",
            Self::Empty => "empty",
            Self::BlankValue => "blankValue",
            Self::TooLong { .. } => "tooLong",
            Self::TooMany { .. } => "tooMany",
            Self::ControlCharacter => "controlCharacter",
            Self::InvalidEmail(_) => "invalidEmail",
            Self::InvalidDomain(..) => "invalidDomain",
            Self::InvalidRegex(_) => "invalidRegex",
            Self::InvalidHeaderName(_) => "invalidHeaderName",
            Self::HeaderNameNotAllowed => "headerNameNotAllowed",
            Self::InvalidSizeRange(_) => "invalidSizeRange",
            Self::TooDeep { .. } => "tooDeep",
            Self::TooManyConditions { .. } => "tooManyConditions",
            Self::InvalidFolderPath(_) => "invalidFolderPath",
            Self::InvalidCategory(..) => "invalidCategory",
            Self::InvalidColor(_) => "invalidColor",
            Self::NoActions => "noActions",
            Self::DuplicateAction(_) => "duplicateAction",
            Self::ConflictingActions(_) => "conflictingActions",
        }
    }
}
