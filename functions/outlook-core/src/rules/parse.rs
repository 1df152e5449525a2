//! Reading rule sets from JSON with errors that name the rule and the field.
//!
//! Plain `serde_json::from_str::<RuleSet>` works too (the types reject unknown fields), but stops
//! at the first problem and cannot say which rule it was in. These functions read the document
//! piece by piece and report every problem with its path, e.g.
//! `rule "r2" (rules[1]), conditions[0].all[1].senderDomain: unknown field `domian`, expected `domain` or `includeSubdomains``.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::compile::{ValidRuleSet, compile_rules, validate};
use super::error::{RuleValidationError, ValidationErrorKind as K};
use super::model::{ACTION_NAMES, Action, CONDITION_NAMES, Condition, RULE_FIELDS, Rule, RuleSet};

/// Reads a rule set document. Syntax only: use [`parse_and_validate`] to get a usable rule set.
pub fn parse_rule_set(json: &str) -> Result<RuleSet, Vec<RuleValidationError>> {
    let parsed = parse(json);
    if parsed.errors.is_empty() {
        let rules = parsed.rules.into_iter().map(|(_, r)| r).collect();
        Ok(RuleSet {
            version: parsed.version.unwrap_or_default(),
            rules,
        })
    } else {
        Err(parsed.errors)
    }
}

/// Reads and validates a rule set document, reporting syntax and validation problems together
/// (validation runs on every rule that could be read).
pub fn parse_and_validate(json: &str) -> Result<ValidRuleSet, Vec<RuleValidationError>> {
    let mut parsed = parse(json);
    if parsed.errors.is_empty() {
        let rules = parsed.rules.into_iter().map(|(_, r)| r).collect();
        return validate(RuleSet {
            version: parsed.version.unwrap_or_default(),
            rules,
        });
    }
    if parsed.total.is_some() {
        let rules = parsed.rules.iter().map(|(i, r)| (*i, r));
        compile_rules(
            0,
            rules,
            parsed.total.unwrap_or_default(),
            &mut parsed.errors,
        );
    }
    parsed
        .errors
        .sort_by_key(|e| e.rule_index.map_or(0, |i| i + 1));
    Err(parsed.errors)
}

struct Parsed {
    version: Option<u64>,
    rules: Vec<(usize, Rule)>,
    /// Number of entries in `rules`, when it was a list.
    total: Option<usize>,
    errors: Vec<RuleValidationError>,
}

fn parse(json: &str) -> Parsed {
    let mut parsed = Parsed {
        version: None,
        rules: Vec::new(),
        total: None,
        errors: Vec::new(),
    };
    let top = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(top)) => top,
        Ok(_) => {
            parsed.errors.push(RuleValidationError::set_level(
                "",
                K::InvalidJson("expected a JSON object".into()),
            ));
            return parsed;
        }
        Err(e) => {
            parsed.errors.push(RuleValidationError::set_level(
                "",
                K::InvalidJson(e.to_string()),
            ));
            return parsed;
        }
    };
    for key in top
        .keys()
        .filter(|k| !["version", "rules"].contains(&k.as_str()))
    {
        parsed.errors.push(RuleValidationError::set_level(
            key.clone(),
            K::UnknownField(key.clone()),
        ));
    }
    match top.get("version") {
        None => parsed
            .errors
            .push(RuleValidationError::set_level("version", K::MissingField)),
        Some(v) => match serde_json::from_value::<u64>(v.clone()) {
            Ok(version) => parsed.version = Some(version),
            Err(e) => parsed.errors.push(RuleValidationError::set_level(
                "version",
                K::InvalidJson(e.to_string()),
            )),
        },
    }
    match top.get("rules") {
        None => parsed
            .errors
            .push(RuleValidationError::set_level("rules", K::MissingField)),
        Some(Value::Array(rules)) => {
            parsed.total = Some(rules.len());
            for (index, value) in rules.iter().enumerate() {
                let mut ctx = RuleCtx {
                    index,
                    id: None,
                    errors: &mut parsed.errors,
                };
                if let Some(rule) = ctx.rule(value) {
                    parsed.rules.push((index, rule));
                }
            }
        }
        Some(_) => parsed.errors.push(RuleValidationError::set_level(
            "rules",
            K::InvalidJson("expected a list of rules".into()),
        )),
    }
    parsed
}

struct RuleCtx<'e> {
    index: usize,
    id: Option<String>,
    errors: &'e mut Vec<RuleValidationError>,
}

impl RuleCtx<'_> {
    fn err(&mut self, field: impl Into<String>, kind: K) {
        self.errors.push(RuleValidationError {
            rule_index: Some(self.index),
            rule_id: self.id.clone(),
            field: field.into(),
            kind,
        });
    }

    fn rule(&mut self, value: &Value) -> Option<Rule> {
        let Value::Object(obj) = value else {
            self.err("", K::InvalidJson("expected a rule object".into()));
            return None;
        };
        self.id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(64).collect());
        let before = self.errors.len();
        for key in obj.keys().filter(|k| !RULE_FIELDS.contains(&k.as_str())) {
            self.err(key.clone(), K::UnknownField(key.clone()));
        }
        let id = self.required::<String>(obj, "id");
        let name = self.required::<String>(obj, "name");
        let order = self.required::<u32>(obj, "order");
        let enabled = self.optional::<bool>(obj, "enabled");
        let stop_processing = self.optional::<bool>(obj, "stopProcessing");
        let conditions = self.condition_list(obj.get("conditions"), "conditions");
        let exceptions = self.condition_list(obj.get("exceptions"), "exceptions");
        let actions = match obj.get("actions") {
            None => {
                self.err("actions", K::MissingField);
                None
            }
            Some(Value::Array(items)) => {
                let actions: Vec<Option<Action>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, a)| self.action(a, &format!("actions[{i}]")))
                    .collect();
                actions.into_iter().collect()
            }
            Some(_) => {
                self.err(
                    "actions",
                    K::InvalidJson("expected a list of actions".into()),
                );
                None
            }
        };
        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            id: id?,
            name: name?,
            order: order?,
            enabled: enabled?.unwrap_or(true),
            conditions: conditions?,
            exceptions: exceptions?,
            actions: actions?,
            stop_processing: stop_processing?.unwrap_or(false),
        })
    }

    fn required<T: DeserializeOwned>(&mut self, obj: &Map<String, Value>, key: &str) -> Option<T> {
        match obj.get(key) {
            None => {
                self.err(key, K::MissingField);
                None
            }
            Some(v) => self.value(v, key),
        }
    }

    /// `Some(None)` when absent or null, `None` on error.
    fn optional<T: DeserializeOwned>(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
    ) -> Option<Option<T>> {
        match obj.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.value(v, key).map(Some),
        }
    }

    fn value<T: DeserializeOwned>(&mut self, value: &Value, path: &str) -> Option<T> {
        match serde_json::from_value(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(path, K::InvalidJson(e.to_string()));
                None
            }
        }
    }

    fn condition_list(&mut self, value: Option<&Value>, field: &str) -> Option<Vec<Condition>> {
        match value {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) => {
                let all: Vec<Option<Condition>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.condition(c, &format!("{field}[{i}]")))
                    .collect();
                all.into_iter().collect()
            }
            Some(single @ Value::Object(_)) => self.condition(single, field).map(|c| vec![c]),
            Some(_) => {
                self.err(
                    field,
                    K::InvalidJson(
                        "expected a condition object, a list of conditions, or null".into(),
                    ),
                );
                None
            }
        }
    }

    fn condition(&mut self, value: &Value, path: &str) -> Option<Condition> {
        let (key, inner) = self.one_key(value, path, "condition")?;
        if !CONDITION_NAMES.contains(&key) {
            self.err(path, K::UnknownCondition(key.to_owned()));
            return None;
        }
        let inner_path = format!("{path}.{key}");
        match (key, inner) {
            ("all" | "any", Value::Array(items)) => {
                let all: Vec<Option<Condition>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.condition(c, &format!("{inner_path}[{i}]")))
                    .collect();
                let items: Vec<Condition> = all.into_iter().collect::<Option<_>>()?;
                Some(if key == "all" {
                    Condition::All(items)
                } else {
                    Condition::Any(items)
                })
            }
            ("all" | "any", _) => {
                self.err(
                    inner_path,
                    K::InvalidJson("expected a list of conditions".into()),
                );
                None
            }
            ("not", inner) => self.condition(inner, &inner_path).map(Condition::not),
            _ => self.value(value, &inner_path),
        }
    }

    fn action(&mut self, value: &Value, path: &str) -> Option<Action> {
        let (key, _) = self.one_key(value, path, "action")?;
        if !ACTION_NAMES.contains(&key) {
            self.err(path, K::UnknownAction(key.to_owned()));
            return None;
        }
        self.value(value, &format!("{path}.{key}"))
    }

    fn one_key<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        what: &'static str,
    ) -> Option<(&'v str, &'v Value)> {
        match value {
            Value::Object(obj) if obj.len() == 1 => obj.iter().next().map(|(k, v)| (k.as_str(), v)),
            Value::Object(_) => {
                self.err(path, K::NotOneKey(what));
                None
            }
            _ => {
                self.err(
                    path,
                    K::InvalidJson(format!("expected a JSON object naming one {what}")),
                );
                None
            }
        }
    }
}
