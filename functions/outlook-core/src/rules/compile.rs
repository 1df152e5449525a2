//! Validation: a [`RuleSet`] becomes a [`ValidRuleSet`] (with its [`CompiledRuleSet`]) only when
//! every rule is valid; otherwise all problems are reported at once.

use std::collections::HashSet;
use std::fmt;

use email_address::{EmailAddress, Options};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::error::{RuleValidationError, ValidationErrorKind as K};
use super::folder::FolderPath;
use super::limits::*;
use super::model::{Action, Condition, RegexField, Rule, RuleSet};
use super::text::normalize;
use crate::message::{FlagStatus, Importance, MessageKind, Sensitivity};

/// A rule set that passed validation, with its compiled form. The only way to get one is
/// [`validate`] (or [`super::parse_and_validate`]), so holding one proves the whole set is valid.
///
/// Serializes as the source [`RuleSet`] (what the store persists).
#[derive(Debug, Clone)]
pub struct ValidRuleSet {
    source: RuleSet,
    compiled: CompiledRuleSet,
}

impl ValidRuleSet {
    /// The rule set as submitted.
    pub fn rule_set(&self) -> &RuleSet {
        &self.source
    }

    /// The form [`super::evaluate`] runs.
    pub fn compiled(&self) -> &CompiledRuleSet {
        &self.compiled
    }

    pub fn version(&self) -> u64 {
        self.source.version
    }

    pub fn into_parts(self) -> (RuleSet, CompiledRuleSet) {
        (self.source, self.compiled)
    }

    /// The JSON document to store (the source rule set, camelCase).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.source).expect("rule sets serialize")
    }
}

impl AsRef<CompiledRuleSet> for ValidRuleSet {
    fn as_ref(&self) -> &CompiledRuleSet {
        &self.compiled
    }
}

impl Serialize for ValidRuleSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

/// Rules ready to evaluate: sorted by `order`, regexes compiled, values normalized.
#[derive(Debug, Clone)]
pub struct CompiledRuleSet {
    /// The version of each rule set in it (one, or more after [`CompiledRuleSet::chain`]).
    pub(crate) versions: Vec<u64>,
    pub(crate) rules: Vec<CompiledRule>,
    needs: FieldNeeds,
}

impl CompiledRuleSet {
    /// The version of the (first) rule set.
    pub fn version(&self) -> u64 {
        self.versions[0]
    }

    /// The versions of all rule sets in this one, in evaluation order (see [`Self::chain`]).
    pub fn versions(&self) -> &[u64] {
        &self.versions
    }

    /// One set that runs all of `self`'s rules (in their order), then all of `then`'s: e.g. a
    /// mailbox's own rules before the integration-wide ones. Evaluating the chain, rather than
    /// each set separately, renders the body once, lets a `stopProcessing` rule of the first set
    /// shield the second, and merges all actions by one policy (first move wins, and so on).
    ///
    /// Rule ids must be unique across both sets: the audit names rules by id. A clash is a
    /// `duplicateRuleId` error naming the rule of `then` (without an index: it is not in a
    /// submitted list). The per-set rule limit is not applied to the chain.
    pub fn chain(
        &self,
        then: &CompiledRuleSet,
    ) -> Result<CompiledRuleSet, Vec<RuleValidationError>> {
        let ids: HashSet<&str> = self.rule_ids().collect();
        let errors: Vec<RuleValidationError> = then
            .rules
            .iter()
            .filter(|r| ids.contains(r.id.as_str()))
            .map(|r| RuleValidationError {
                rule_index: None,
                rule_id: Some(r.id.clone()),
                field: "id".into(),
                kind: K::DuplicateRuleId(r.id.clone()),
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut needs = self.needs;
        needs.merge(then.needs);
        Ok(CompiledRuleSet {
            versions: self
                .versions
                .iter()
                .chain(&then.versions)
                .copied()
                .collect(),
            rules: self.rules.iter().chain(&then.rules).cloned().collect(),
            needs,
        })
    }

    /// Number of rules, disabled ones included.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule ids in evaluation order (disabled ones included).
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// Which optional message fields the enabled rules read, so sync `$select`s only those.
    pub fn needs(&self) -> FieldNeeds {
        self.needs
    }

    /// A rule reads the body (`bodyContains`, `bodyOrSubjectContains`, body regexes).
    pub fn needs_body(&self) -> bool {
        self.needs.body
    }

    /// A rule reads `internetMessageHeaders`: `headerContains`, header regexes, and also
    /// `sensitivity` and the message-kind conditions (`isAutomaticReply`...), because
    /// `MailMessage` derives sensitivity and kinds from headers.
    pub fn needs_headers(&self) -> bool {
        self.needs.headers
    }

    /// A rule reads the size (`withinSizeRange`).
    pub fn needs_size(&self) -> bool {
        self.needs.size
    }
}

/// Optional message fields the rules need (see [`CompiledRuleSet::needs`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldNeeds {
    pub body: bool,
    pub headers: bool,
    pub size: bool,
}

impl FieldNeeds {
    fn merge(&mut self, other: FieldNeeds) {
        self.body |= other.body;
        self.headers |= other.headers;
        self.size |= other.size;
    }
}

/// Colour of a master category created by `assignCategories`: `none` or `preset0`…`preset24`
/// (Graph's `categoryColor`). Serialized as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CategoryColor {
    None,
    Preset(u8),
}

impl CategoryColor {
    pub fn parse(value: &str) -> Option<Self> {
        if value == "none" {
            return Some(Self::None);
        }
        let n = value.strip_prefix("preset")?;
        if n.is_empty()
            || n.len() > 2
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() == 2 && n.starts_with('0'))
        {
            return None;
        }
        let n: u8 = n.parse().ok()?;
        (n <= 24).then_some(Self::Preset(n))
    }
}

impl fmt::Display for CategoryColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Preset(n) => write!(f, "preset{n}"),
        }
    }
}

impl TryFrom<String> for CategoryColor {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value).ok_or_else(|| format!("invalid category color {value:?}"))
    }
}

impl From<CategoryColor> for String {
    fn from(color: CategoryColor) -> String {
        color.to_string()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) order: u32,
    pub(crate) enabled: bool,
    pub(crate) conditions: Vec<Node>,
    pub(crate) exceptions: Vec<Node>,
    pub(crate) actions: Vec<CompiledAction>,
    pub(crate) stop_processing: bool,
}

/// A compiled condition; string values are already normalized (see `text::normalize`).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Contains(TextField, Vec<String>),
    FromAddress(Vec<String>),
    SentToAddress(Vec<String>),
    Me(MeTest, bool),
    HasAttachments(bool),
    Importance(Importance),
    Sensitivity(Sensitivity),
    /// Bytes, inclusive.
    Size(Option<u64>, Option<u64>),
    Categories(Vec<String>),
    Flag(FlagStatus),
    Kind(MessageKind, bool),
    Domain {
        domain: String,
        subdomains: bool,
    },
    Regex {
        field: RegexField,
        header: Option<String>,
        regex: Regex,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextField {
    Subject,
    Body,
    BodyOrSubject,
    Headers,
    Sender,
    Recipients,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MeTest {
    To,
    OnlyMe,
    Cc,
    ToOrCc,
    NotRecipient,
}

#[derive(Debug, Clone)]
pub(crate) enum CompiledAction {
    Categorize {
        categories: Vec<String>,
        color: Option<CategoryColor>,
    },
    Move(FolderPath),
    Copy(FolderPath),
    MarkRead,
    Importance(Importance),
    Flag(FlagStatus),
    Delete,
    Forward {
        recipients: Vec<String>,
        comment: Option<String>,
    },
}

/// Validates a whole rule set and compiles it. Returns every problem found (each naming the
/// rule and field), or a [`ValidRuleSet`] when there are none: nothing is usable half-valid.
///
/// Policy decisions enforced here:
/// - at most `MAX_RULES` rules; rule ids unique (exact match);
/// - each action kind at most once per rule, except `copyToFolder` (once per folder);
/// - `moveToFolder` together with `delete` in one rule is a conflict (a message ends in one
///   folder); across rules the first applying rule's move or delete wins at evaluation time;
/// - a rule needs at least one action unless it only stops processing;
/// - empty value lists are errors (Outlook would never match them); empty `all`/`any` groups
///   are allowed (`all: []` is true, `any: []` is false).
pub fn validate(rule_set: RuleSet) -> Result<ValidRuleSet, Vec<RuleValidationError>> {
    let mut errors = Vec::new();
    let compiled = compile_rules(
        rule_set.version,
        rule_set.rules.iter().enumerate(),
        rule_set.rules.len(),
        &mut errors,
    );
    if errors.is_empty() {
        Ok(ValidRuleSet {
            source: rule_set,
            compiled,
        })
    } else {
        Err(errors)
    }
}

/// Validates rules given with their original positions (the JSON parser passes only the rules
/// it could read, so their errors are reported together with the parse errors).
pub(crate) fn compile_rules<'a>(
    version: u64,
    rules: impl Iterator<Item = (usize, &'a Rule)>,
    total: usize,
    errors: &mut Vec<RuleValidationError>,
) -> CompiledRuleSet {
    if total > MAX_RULES {
        errors.push(RuleValidationError::set_level(
            "rules",
            K::TooManyRules {
                count: total,
                max: MAX_RULES,
            },
        ));
    }
    let mut ids: HashSet<&str> = HashSet::new();
    let mut compiled = Vec::new();
    let mut needs = FieldNeeds::default();
    for (index, rule) in rules {
        let mut checker = RuleChecker::new(index, rule, errors);
        if !ids.insert(rule.id.as_str()) {
            checker.err("id", K::DuplicateRuleId(rule.id.clone()));
        }
        let (rule, rule_needs) = checker.rule(rule);
        if let Some(rule) = rule {
            if rule.enabled {
                needs.merge(rule_needs);
            }
            compiled.push(rule);
        }
    }
    compiled.sort_by_key(|r| r.order);
    CompiledRuleSet {
        versions: vec![version],
        rules: compiled,
        needs,
    }
}

struct RuleChecker<'e> {
    errors: &'e mut Vec<RuleValidationError>,
    index: usize,
    id: Option<String>,
    nodes: usize,
    needs: FieldNeeds,
    failed: bool,
}

impl<'e> RuleChecker<'e> {
    fn new(index: usize, rule: &Rule, errors: &'e mut Vec<RuleValidationError>) -> Self {
        let id = (!rule.id.is_empty()).then(|| rule.id.chars().take(MAX_RULE_ID_CHARS).collect());
        Self {
            errors,
            index,
            id,
            nodes: 0,
            needs: FieldNeeds::default(),
            failed: false,
        }
    }

    fn err(&mut self, field: impl Into<String>, kind: K) {
        self.failed = true;
        self.errors.push(RuleValidationError {
            rule_index: Some(self.index),
            rule_id: self.id.clone(),
            field: field.into(),
            kind,
        });
    }

    fn rule(mut self, rule: &Rule) -> (Option<CompiledRule>, FieldNeeds) {
        self.rule_id(&rule.id);
        self.name(&rule.name);
        let conditions = self.conditions(&rule.conditions, "conditions");
        let exceptions = self.conditions(&rule.exceptions, "exceptions");
        let actions = self.actions(&rule.actions, rule.stop_processing);
        if self.failed {
            return (None, self.needs);
        }
        let compiled = CompiledRule {
            id: rule.id.clone(),
            name: rule.name.clone(),
            order: rule.order,
            enabled: rule.enabled,
            conditions,
            exceptions,
            actions,
            stop_processing: rule.stop_processing,
        };
        (Some(compiled), self.needs)
    }

    fn rule_id(&mut self, id: &str) {
        if id.is_empty() {
            self.err("id", K::InvalidRuleId("must not be empty"));
        } else if id.len() > MAX_RULE_ID_CHARS {
            self.err("id", K::InvalidRuleId("must be at most 64 characters"));
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            self.err(
                "id",
                K::InvalidRuleId("may contain only letters, digits, '-', '_', '.' and ':'"),
            );
        }
    }

    fn name(&mut self, name: &str) {
        if name.trim().is_empty() {
            self.err("name", K::BlankValue);
        } else if name.chars().count() > MAX_RULE_NAME_CHARS {
            self.err(
                "name",
                K::TooLong {
                    max: MAX_RULE_NAME_CHARS,
                },
            );
        } else if name.chars().any(char::is_control) {
            self.err("name", K::ControlCharacter);
        }
    }

    fn conditions(&mut self, conditions: &[Condition], field: &str) -> Vec<Node> {
        let mut out = Vec::with_capacity(conditions.len());
        for (i, c) in conditions.iter().enumerate() {
            if let Some(node) = self.condition(c, &format!("{field}[{i}]"), 1) {
                out.push(node);
            }
        }
        out
    }

    fn condition(&mut self, c: &Condition, at: &str, depth: usize) -> Option<Node> {
        self.nodes += 1;
        if self.nodes == MAX_CONDITIONS_PER_RULE + 1 {
            self.err(
                at,
                K::TooManyConditions {
                    max: MAX_CONDITIONS_PER_RULE,
                },
            );
        }
        if depth > MAX_CONDITION_DEPTH {
            self.err(
                at,
                K::TooDeep {
                    max: MAX_CONDITION_DEPTH,
                },
            );
            return None;
        }
        let path = format!("{at}.{}", c.name());
        let node = match c {
            Condition::All(items) | Condition::Any(items) => {
                let mut nodes = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(node) = self.condition(item, &format!("{path}[{i}]"), depth + 1) {
                        nodes.push(node);
                    }
                }
                if matches!(c, Condition::All(_)) {
                    Node::All(nodes)
                } else {
                    Node::Any(nodes)
                }
            }
            Condition::Not(inner) => {
                Node::Not(Box::new(self.condition(inner, &path, depth + 1)?))
            }
            Condition::FromAddresses(v) => Node::FromAddress(self.addresses(v, &path)?),
            Condition::SentToAddresses(v) => Node::SentToAddress(self.addresses(v, &path)?),
            Condition::SenderContains(v) => {
                Node::Contains(TextField::Sender, self.texts(v, &path)?)
            }
            Condition::RecipientContains(v) => {
                Node::Contains(TextField::Recipients, self.texts(v, &path)?)
            }
            Condition::SubjectContains(v) => {
                Node::Contains(TextField::Subject, self.texts(v, &path)?)
            }
            Condition::BodyContains(v) => {
                self.needs.body = true;
                Node::Contains(TextField::Body, self.texts(v, &path)?)
            }
            Condition::BodyOrSubjectContains(v) => {
                self.needs.body = true;
                Node::Contains(TextField::BodyOrSubject, self.texts(v, &path)?)
            }
            Condition::HeaderContains(v) => {
                self.needs.headers = true;
                Node::Contains(TextField::Headers, self.texts(v, &path)?)
            }
            Condition::SentToMe(b) => Node::Me(MeTest::To, *b),
            Condition::SentOnlyToMe(b) => Node::Me(MeTest::OnlyMe, *b),
            Condition::SentCcMe(b) => Node::Me(MeTest::Cc, *b),
            Condition::SentToOrCcMe(b) => Node::Me(MeTest::ToOrCc, *b),
            Condition::NotSentToMe(b) => Node::Me(MeTest::NotRecipient, *b),
            Condition::HasAttachments(b) => Node::HasAttachments(*b),
            Condition::Importance(i) => Node::Importance(*i),
            Condition::Sensitivity(s) => {
                self.needs.headers = true;
                Node::Sensitivity(*s)
            }
            Condition::WithinSizeRange(range) => {
                self.needs.size = true;
                match (range.minimum_size, range.maximum_size) {
                    (None, None) => {
                        self.err(
                            path,
                            K::InvalidSizeRange("give `minimumSize`, `maximumSize` or both"),
                        );
                        return None;
                    }
                    (Some(min), Some(max)) if min > max => {
                        self.err(
                            path,
                            K::InvalidSizeRange("`minimumSize` is larger than `maximumSize`"),
                        );
                        return None;
                    }
                    (min, max) => Node::Size(
                        min.map(|kb| kb.saturating_mul(1024)),
                        max.map(|kb| kb.saturating_mul(1024)),
                    ),
                }
            }
            Condition::Categories(v) => Node::Categories(
                self.category_names(v, &path)?
                    .iter()
                    .map(|c| normalize(c))
                    .collect(),
            ),
            Condition::FlagStatus(f) => Node::Flag(*f),
            Condition::IsAutomaticReply(b) => self.kind(MessageKind::AutomaticReply, *b),
            Condition::IsNonDeliveryReport(b) => self.kind(MessageKind::NonDeliveryReport, *b),
            Condition::IsReadReceipt(b) => self.kind(MessageKind::ReadReceipt, *b),
            Condition::IsMeetingRequest(b) => self.kind(MessageKind::MeetingRequest, *b),
            Condition::IsMeetingResponse(b) => self.kind(MessageKind::MeetingResponse, *b),
            Condition::IsAutomaticForward(b) => self.kind(MessageKind::AutomaticForward, *b),
            Condition::IsEncrypted(b) => self.kind(MessageKind::Encrypted, *b),
            Condition::IsSigned(b) => self.kind(MessageKind::Signed, *b),
            Condition::IsVoicemail(b) => self.kind(MessageKind::Voicemail, *b),
            Condition::IsApprovalRequest(b) => self.kind(MessageKind::ApprovalRequest, *b),
            Condition::IsPermissionControlled(b) => {
                self.kind(MessageKind::PermissionControlled, *b)
            }
            Condition::SenderDomain(d) => match check_domain(&d.domain) {
                Ok(domain) => Node::Domain {
                    domain,
                    subdomains: d.include_subdomains,
                },
                Err(reason) => {
                    self.err(
                        format!("{path}.domain"),
                        K::InvalidDomain(d.domain.clone(), reason),
                    );
                    return None;
                }
            },
            Condition::Regex(r) => {
                let mut ok = true;
                match (r.field, &r.header) {
                    (RegexField::Header, Some(name)) if !valid_header_name(name) => {
                        self.err(format!("{path}.header"), K::InvalidHeaderName(name.clone()));
                        ok = false;
                    }
                    (RegexField::Header, _) => self.needs.headers = true,
                    (_, Some(_)) => {
                        self.err(format!("{path}.header"), K::HeaderNameNotAllowed);
                        ok = false;
                    }
                    (RegexField::Body | RegexField::BodyOrSubject, None) => self.needs.body = true,
                    _ => {}
                }
                // Compiled even when the header is wrong, so a bad pattern is reported too.
                let regex = self.regex(&r.pattern, r.case_sensitive, &format!("{path}.pattern"));
                if !ok {
                    return None;
                }
                Node::Regex {
                    field: r.field,
                    header: r.header.clone(),
                    regex: regex?,
                }
            }
        };
        Some(node)
    }

    fn kind(&mut self, kind: MessageKind, expected: bool) -> Node {
        self.needs.headers = true;
        Node::Kind(kind, expected)
    }

    fn list_size(&mut self, len: usize, path: &str) -> bool {
        if len == 0 {
            self.err(path, K::Empty);
            return false;
        }
        if len > MAX_VALUES {
            self.err(
                path,
                K::TooMany {
                    count: len,
                    max: MAX_VALUES,
                },
            );
            return false;
        }
        true
    }

    /// Contains-values: non-blank, bounded, normalized.
    fn texts(&mut self, values: &[String], path: &str) -> Option<Vec<String>> {
        if !self.list_size(values.len(), path) {
            return None;
        }
        let mut ok = true;
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            if v.trim().is_empty() {
                self.err(format!("{path}[{i}]"), K::BlankValue);
                ok = false;
            } else if v.chars().count() > MAX_VALUE_CHARS {
                self.err(
                    format!("{path}[{i}]"),
                    K::TooLong {
                        max: MAX_VALUE_CHARS,
                    },
                );
                ok = false;
            } else {
                out.push(normalize(v));
            }
        }
        ok.then_some(out)
    }

    /// Email addresses: valid, normalized for case-insensitive comparison.
    fn addresses(&mut self, values: &[String], path: &str) -> Option<Vec<String>> {
        if !self.list_size(values.len(), path) {
            return None;
        }
        let mut ok = true;
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            if valid_email(v.trim()) {
                out.push(normalize(v.trim()));
            } else {
                self.err(format!("{path}[{i}]"), K::InvalidEmail(v.clone()));
                ok = false;
            }
        }
        ok.then_some(out)
    }

    fn category_names(&mut self, values: &[String], path: &str) -> Option<Vec<String>> {
        if !self.list_size(values.len(), path) {
            return None;
        }
        let mut ok = true;
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            match check_category(v) {
                Ok(()) => out.push(v.trim().to_owned()),
                Err(reason) => {
                    self.err(
                        format!("{path}[{i}]"),
                        K::InvalidCategory(v.clone(), reason),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn regex(&mut self, pattern: &str, case_sensitive: bool, path: &str) -> Option<Regex> {
        if pattern.is_empty() {
            self.err(path, K::Empty);
            return None;
        }
        if pattern.chars().count() > MAX_REGEX_CHARS {
            self.err(
                path,
                K::TooLong {
                    max: MAX_REGEX_CHARS,
                },
            );
            return None;
        }
        match RegexBuilder::new(pattern)
            .case_insensitive(!case_sensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
        {
            Ok(regex) => Some(regex),
            Err(e) => {
                self.err(path, K::InvalidRegex(e.to_string()));
                None
            }
        }
    }

    fn actions(&mut self, actions: &[Action], stop_processing: bool) -> Vec<CompiledAction> {
        if actions.is_empty() && !stop_processing {
            self.err("actions", K::NoActions);
        }
        if actions.len() > MAX_ACTIONS_PER_RULE {
            self.err(
                "actions",
                K::TooMany {
                    count: actions.len(),
                    max: MAX_ACTIONS_PER_RULE,
                },
            );
        }
        let mut seen: HashSet<&'static str> = HashSet::new();
        let mut copies: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            let name = action.name();
            let path = format!("actions[{i}].{name}");
            if let Action::CopyToFolder { path: p } = action {
                if let Ok(folder) = FolderPath::parse(p)
                    && !copies.insert(folder.match_key())
                {
                    self.err(format!("actions[{i}]"), K::DuplicateAction(name));
                }
            } else if !seen.insert(name) {
                self.err(format!("actions[{i}]"), K::DuplicateAction(name));
            }
            if let Some(compiled) = self.action(action, &path) {
                out.push(compiled);
            }
        }
        if seen.contains("moveToFolder") && seen.contains("delete") {
            self.err(
                "actions",
                K::ConflictingActions("a rule cannot both move and delete a message"),
            );
        }
        out
    }

    fn action(&mut self, action: &Action, path: &str) -> Option<CompiledAction> {
        Some(match action {
            Action::AssignCategories { categories, color } => {
                let categories =
                    self.categories_to_assign(categories, &format!("{path}.categories"));
                let color = match color {
                    None => None,
                    Some(c) => match CategoryColor::parse(c) {
                        Some(color) => Some(color),
                        None => {
                            self.err(format!("{path}.color"), K::InvalidColor(c.clone()));
                            return None;
                        }
                    },
                };
                CompiledAction::Categorize {
                    categories: categories?,
                    color,
                }
            }
            Action::MoveToFolder { path: p } => CompiledAction::Move(self.folder(p, path)?),
            Action::CopyToFolder { path: p } => CompiledAction::Copy(self.folder(p, path)?),
            Action::MarkAsRead {} => CompiledAction::MarkRead,
            Action::MarkImportance { importance } => CompiledAction::Importance(*importance),
            Action::Flag { status } => CompiledAction::Flag(*status),
            Action::Delete {} => CompiledAction::Delete,
            Action::ForwardTo {
                recipients,
                comment,
            } => {
                let recipients_path = format!("{path}.recipients");
                let mut ok = true;
                if recipients.len() > MAX_FORWARD_RECIPIENTS {
                    self.err(
                        &recipients_path,
                        K::TooMany {
                            count: recipients.len(),
                            max: MAX_FORWARD_RECIPIENTS,
                        },
                    );
                    ok = false;
                } else if recipients.is_empty() {
                    self.err(&recipients_path, K::Empty);
                    ok = false;
                }
                let mut valid = Vec::with_capacity(recipients.len());
                for (i, r) in recipients.iter().enumerate() {
                    if valid_email(r.trim()) {
                        valid.push(r.trim().to_owned());
                    } else {
                        self.err(
                            format!("{recipients_path}[{i}]"),
                            K::InvalidEmail(r.clone()),
                        );
                        ok = false;
                    }
                }
                if let Some(c) = comment
                    && c.chars().count() > MAX_COMMENT_CHARS
                {
                    self.err(
                        format!("{path}.comment"),
                        K::TooLong {
                            max: MAX_COMMENT_CHARS,
                        },
                    );
                    ok = false;
                }
                if !ok {
                    return None;
                }
                let comment = comment.as_ref().filter(|c| !c.trim().is_empty()).cloned();
                CompiledAction::Forward {
                    recipients: valid,
                    comment,
                }
            }
        })
    }

    fn categories_to_assign(&mut self, values: &[String], path: &str) -> Option<Vec<String>> {
        if values.len() > MAX_CATEGORIES_PER_ACTION {
            self.err(
                path,
                K::TooMany {
                    count: values.len(),
                    max: MAX_CATEGORIES_PER_ACTION,
                },
            );
            return None;
        }
        if values.is_empty() {
            self.err(path, K::Empty);
            return None;
        }
        self.category_names(values, path)
    }

    fn folder(&mut self, path: &str, at: &str) -> Option<FolderPath> {
        match FolderPath::parse(path) {
            Ok(folder) => Some(folder),
            Err(e) => {
                self.err(format!("{at}.path"), K::InvalidFolderPath(e));
                None
            }
        }
    }
}

fn valid_email(address: &str) -> bool {
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        allow_long_local_parts: false,
    };
    address.len() <= MAX_EMAIL_CHARS && EmailAddress::parse_with_options(address, options).is_ok()
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Outlook category names: non-blank, at most 255 characters, no control characters, and no
/// `,` or `;` (Outlook clients use them to separate categories).
fn check_category(name: &str) -> Result<(), &'static str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Err("must not be empty")
    } else if trimmed.chars().count() > MAX_CATEGORY_CHARS {
        Err("longer than 255 characters")
    } else if trimmed.chars().any(char::is_control) {
        Err("contains a control character")
    } else if trimmed.contains([',', ';']) {
        Err("must not contain `,` or `;`")
    } else {
        Ok(())
    }
}

/// A DNS domain (IDN labels allowed), returned normalized.
fn check_domain(domain: &str) -> Result<String, &'static str> {
    let d = domain.trim();
    if d.is_empty() {
        return Err("must not be empty");
    }
    if d.contains('@') {
        return Err("write only the domain, without `@`");
    }
    if d.contains('*') {
        return Err("wildcards are not supported; use `includeSubdomains`");
    }
    if d.len() > 253 {
        return Err("longer than 253 characters");
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels, e.g. `acme.com`");
    }
    for label in labels {
        if label.is_empty() {
            return Err("has an empty label");
        }
        if label.len() > 63 {
            return Err("has a label longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err("may contain only letters, digits, `-` and `.`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with `-`");
        }
    }
    Ok(normalize(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_colors_parse_exactly() {
        assert_eq!(CategoryColor::parse("none"), Some(CategoryColor::None));
        assert_eq!(
            CategoryColor::parse("preset0"),
            Some(CategoryColor::Preset(0))
        );
        assert_eq!(
            CategoryColor::parse("preset24"),
            Some(CategoryColor::Preset(24))
        );
        for bad in [
            "preset25",
            "preset",
            "preset01",
            "Preset1",
            "red",
            "preset-1",
            "preset100",
        ] {
            assert_eq!(CategoryColor::parse(bad), None, "{bad}");
        }
        assert_eq!(CategoryColor::Preset(7).to_string(), "preset7");
    }

    #[test]
    fn domains_are_checked() {
        assert_eq!(check_domain(" Acme.COM ").unwrap(), "acme.com");
        assert_eq!(check_domain("bücher.de").unwrap(), "bücher.de");
        assert!(check_domain("acme").is_err());
        assert!(check_domain("@acme.com").is_err());
        assert!(check_domain("*.acme.com").is_err());
        assert!(check_domain("acme..com").is_err());
        assert!(check_domain("-acme.com").is_err());
        assert!(check_domain("ac me.com").is_err());
    }

    #[test]
    fn emails_are_checked() {
        assert!(valid_email("a.b+tag@sub.example.com"));
        assert!(valid_email("müller@bücher.de"));
        for bad in [
            "",
            "a",
            "a@",
            "@b.com",
            "a@b",
            "Name <a@b.com>",
            "a b@c.com",
            "a@[1.2.3.4]",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
