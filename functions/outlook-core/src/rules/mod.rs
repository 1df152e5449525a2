//! Rule model, validation and evaluation (pure domain, no I/O).
//!
//! Customers write rules per mailbox, or for all mailboxes of an integration ([`RuleScope`]).
//! The rules of one scope form a versioned [`RuleSet`], stored as JSON. The flow is:
//!
//! 1. [`parse_and_validate`] (or `serde_json` + [`validate`]) turns a document into a
//!    [`ValidRuleSet`], or returns *every* problem as [`RuleValidationError`]s naming the rule
//!    and field. Only a valid set can be evaluated: [`CompiledRuleSet`] comes only from
//!    validation, with regexes compiled and values normalized once.
//! 2. [`CompiledRuleSet::chain`] joins a mailbox's own set with the integration-wide set when
//!    both apply, and [`CompiledRuleSet::needs`] tells sync which optional message fields to
//!    `$select`. Compiling is the expensive step (regexes): cache compiled sets by scope and
//!    version rather than validating per message.
//! 3. [`evaluate`] runs the rules on a [`MailMessage`](crate::message::MailMessage) and returns
//!    an [`Evaluation`]: the applied rules and the merged [`PlannedAction`]s in execution order,
//!    each with an idempotency key and the rules that caused it. Executing them is not done here.
//!
//! # JSON format
//!
//! ```json
//! {
//!   "version": 4,
//!   "rules": [
//!     {
//!       "id": "invoices",
//!       "name": "Invoices from Acme",
//!       "order": 10,
//!       "enabled": true,
//!       "conditions": [
//!         {"subjectContains": ["invoice", "rechnung"]},
//!         {"senderDomain": {"domain": "acme.com", "includeSubdomains": true}}
//!       ],
//!       "exceptions": [{"categories": ["Paid"]}],
//!       "actions": [
//!         {"assignCategories": {"categories": ["Invoices"], "color": "preset4"}},
//!         {"forwardTo": {"recipients": ["ap@example.com"], "comment": "For booking"}},
//!         {"moveToFolder": {"path": "Finance/Invoices"}}
//!       ],
//!       "stopProcessing": true
//!     }
//!   ]
//! }
//! ```
//!
//! All names are camelCase and unknown fields are rejected. `conditions` must all match (a single
//! condition object is accepted too), any matching `exception` cancels the rule, and groups nest
//! with `{"all": [...]}`, `{"any": [...]}` and `{"not": {...}}`. See [`Rule`], [`Condition`],
//! [`Action`] and [`FolderPath`] for every field, and [`evaluate`] for how actions of several
//! rules are merged and ordered.

mod compile;
mod error;
mod eval;
mod folder;
mod model;
mod parse;
mod text;

pub use compile::{CategoryColor, CompiledRuleSet, FieldNeeds, ValidRuleSet, validate};
pub use error::{RuleValidationError, ValidationErrorKind};
pub use eval::{
    CategoryAssignment, EvalContext, Evaluation, PlannedAction, PlannedActionKind, RuleMatch,
    evaluate,
};
pub use folder::{ALLOWED_ROOTS, FORBIDDEN_ROOTS, FolderPath, FolderPathError};
pub use model::{
    ACTION_NAMES, Action, CONDITION_NAMES, Condition, RegexCondition, RegexField, Rule, RuleScope,
    RuleSet, SenderDomain, SizeRange,
};
pub use parse::{parse_and_validate, parse_rule_set};

/// Limits enforced by validation (and by evaluation, for bodies).
pub mod limits {
    /// Rules per rule set.
    pub const MAX_RULES: usize = 500;
    pub const MAX_RULE_ID_CHARS: usize = 64;
    pub const MAX_RULE_NAME_CHARS: usize = 256;
    /// Values in one list condition (`subjectContains`, `fromAddresses`, `categories`...).
    pub const MAX_VALUES: usize = 100;
    /// Characters of one "contains" value.
    pub const MAX_VALUE_CHARS: usize = 1_000;
    pub const MAX_EMAIL_CHARS: usize = 254;
    /// Nesting of conditions (a top-level condition is level 1; each `all`/`any`/`not` adds one).
    pub const MAX_CONDITION_DEPTH: usize = 8;
    /// Condition nodes per rule, over conditions and exceptions, groups included.
    pub const MAX_CONDITIONS_PER_RULE: usize = 200;
    pub const MAX_ACTIONS_PER_RULE: usize = 20;
    pub const MAX_REGEX_CHARS: usize = 1_000;
    /// Compiled size of one regex (`RegexBuilder::size_limit`).
    pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
    /// Lazy DFA cache of one regex (`RegexBuilder::dfa_size_limit`).
    pub const REGEX_DFA_SIZE_LIMIT: usize = 512 * 1024;
    pub const REGEX_NEST_LIMIT: u32 = 50;
    pub const MAX_HEADER_NAME_CHARS: usize = 128;
    pub const MAX_CATEGORIES_PER_ACTION: usize = 25;
    pub const MAX_CATEGORY_CHARS: usize = 255;
    pub const MAX_FORWARD_RECIPIENTS: usize = 20;
    pub const MAX_COMMENT_CHARS: usize = 4_000;
    /// Folder names below the root in a move/copy path.
    pub const MAX_FOLDER_DEPTH: usize = 10;
    pub const MAX_FOLDER_SEGMENT_CHARS: usize = 255;
    pub const MAX_FOLDER_PATH_CHARS: usize = 1_024;
    /// Body bytes looked at by body conditions; the rest of a longer body is ignored.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// Tags (`<` characters) of an HTML body rendered to text; text after them is ignored. Bounds
    /// the parser's worst case (deeply nested elements) while normal mail is rendered whole.
    pub const MAX_HTML_TAGS: usize = 10_000;
    /// Line width for rendering HTML bodies (wrapping is harmless to "contains", which treats line
    /// breaks as spaces; wide lines keep regexes on the body simple).
    pub const BODY_RENDER_WIDTH: usize = 1_000;
}
