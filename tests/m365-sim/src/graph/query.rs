//! OData query options the simulator understands: `$select` (validated against the message
//! properties), a small `$filter` (comparisons joined by `and`), `$orderby` on dates.

use time::OffsetDateTime;

use crate::model::Message;
use crate::util::parse_time;

/// Message properties, in Graph's output order.
pub const MESSAGE_PROPS: &[&str] = &[
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "internetMessageHeaders",
    "meetingMessageType",
];

/// Properties returned only when selected.
pub const SELECT_ONLY: &[&str] = &["uniqueBody", "internetMessageHeaders"];

/// Parses `$select` into canonical property names. Err(name) for an unknown property.
pub fn parse_select(s: &str) -> Result<Vec<String>, String> {
    let mut out = vec![];
    for raw in s.split(',') {
        let p = raw.trim();
        if p.is_empty() {
            continue;
        }
        // Allow a type cast prefix such as microsoft.graph.eventMessage/meetingMessageType.
        let name = p.rsplit('/').next().unwrap_or(p);
        if name == "id" || name == "*" {
            if name == "*" {
                return Ok(MESSAGE_PROPS
                    .iter()
                    .filter(|x| !SELECT_ONLY.contains(x))
                    .map(|s| s.to_string())
                    .collect());
            }
            continue;
        }
        match MESSAGE_PROPS.iter().find(|k| k.eq_ignore_ascii_case(name)) {
            Some(k) => {
                if !out.iter().any(|x: &String| x == k) {
                    out.push(k.to_string())
                }
            }
            None => return Err(name.to_string()),
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug)]
pub enum Val {
    Time(OffsetDateTime),
    Bool(bool),
    Str(String),
}

#[derive(Clone, Debug)]
pub struct Cond {
    pub prop: String,
    pub op: Op,
    pub val: Val,
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub conds: Vec<Cond>,
}

const TIME_PROPS: &[&str] = &[
    "receivedDateTime",
    "sentDateTime",
    "createdDateTime",
    "lastModifiedDateTime",
];
const BOOL_PROPS: &[&str] = &["isRead", "hasAttachments", "isDraft"];
const STR_PROPS: &[&str] = &["subject", "importance", "inferenceClassification"];

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, String> {
        let mut conds = vec![];
        let lower = s.to_ascii_lowercase();
        let mut parts = vec![];
        let mut start = 0;
        while let Some(i) = lower[start..].find(" and ") {
            parts.push(&s[start..start + i]);
            start += i + 5;
        }
        parts.push(&s[start..]);
        for part in parts {
            let part = part.trim().trim_start_matches('(').trim_end_matches(')');
            let mut it = part.splitn(3, ' ');
            let (Some(prop), Some(op), Some(val)) = (it.next(), it.next(), it.next()) else {
                return Err(part.to_string());
            };
            let op = match op.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => return Err(part.to_string()),
            };
            let val = val.trim();
            if let Some(p) = TIME_PROPS.iter().find(|p| p.eq_ignore_ascii_case(prop)) {
                let t = parse_time(val).ok_or_else(|| part.to_string())?;
                conds.push(Cond {
                    prop: p.to_string(),
                    op,
                    val: Val::Time(t),
                });
            } else if let Some(p) = BOOL_PROPS.iter().find(|p| p.eq_ignore_ascii_case(prop)) {
                let b = match val {
                    "true" => true,
                    "false" => false,
                    _ => return Err(part.to_string()),
                };
                conds.push(Cond {
                    prop: p.to_string(),
                    op,
                    val: Val::Bool(b),
                });
            } else if let Some(p) = STR_PROPS.iter().find(|p| p.eq_ignore_ascii_case(prop)) {
                let v = val
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .ok_or_else(|| part.to_string())?;
                conds.push(Cond {
                    prop: p.to_string(),
                    op,
                    val: Val::Str(v.replace("''", "'")),
                });
            } else {
                return Err(part.to_string());
            }
        }
        Ok(Filter { conds })
    }

    /// Delta accepts only `receivedDateTime ge|gt`.
    pub fn delta_compatible(&self) -> bool {
        self.conds
            .iter()
            .all(|c| c.prop == "receivedDateTime" && matches!(c.op, Op::Ge | Op::Gt))
    }

    pub fn matches(&self, m: &Message) -> bool {
        self.conds.iter().all(|c| {
            let ord = match (&c.val, c.prop.as_str()) {
                (Val::Time(t), "receivedDateTime") => m.received.cmp(t),
                (Val::Time(t), "sentDateTime") => m.sent.cmp(t),
                (Val::Time(t), "createdDateTime") => m.created.cmp(t),
                (Val::Time(t), "lastModifiedDateTime") => m.last_modified.cmp(t),
                (Val::Bool(b), "isRead") => m.is_read.cmp(b),
                (Val::Bool(b), "hasAttachments") => m.has_attachments.cmp(b),
                (Val::Bool(b), "isDraft") => m.is_draft.cmp(b),
                (Val::Str(s), "subject") => m.subject.as_str().cmp(s.as_str()),
                (Val::Str(s), "importance") => m.importance.as_str().cmp(s.as_str()),
                (Val::Str(s), "inferenceClassification") => m.inference.as_str().cmp(s.as_str()),
                _ => return false,
            };
            use std::cmp::Ordering::*;
            match c.op {
                Op::Eq => ord == Equal,
                Op::Ne => ord != Equal,
                Op::Gt => ord == Greater,
                Op::Ge => ord != Less,
                Op::Lt => ord == Less,
                Op::Le => ord != Greater,
            }
        })
    }
}

/// `$orderby`: (property, descending). Only date properties are supported.
pub fn parse_orderby(s: &str) -> Result<(String, bool), String> {
    let mut it = s.split_whitespace();
    let prop = it.next().unwrap_or("");
    let dir = it.next().unwrap_or("asc").to_ascii_lowercase();
    let Some(p) = TIME_PROPS.iter().find(|p| p.eq_ignore_ascii_case(prop)) else {
        return Err(s.to_string());
    };
    match dir.as_str() {
        "asc" => Ok((p.to_string(), false)),
        "desc" => Ok((p.to_string(), true)),
        _ => Err(s.to_string()),
    }
}

pub fn sort_key(m: &Message, prop: &str) -> OffsetDateTime {
    match prop {
        "sentDateTime" => m.sent,
        "createdDateTime" => m.created,
        "lastModifiedDateTime" => m.last_modified,
        _ => m.received,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parses_and_joins() {
        let f =
            Filter::parse("receivedDateTime ge 2024-01-01T00:00:00Z and isRead eq false").unwrap();
        assert_eq!(f.conds.len(), 2);
        assert!(!f.delta_compatible());
        assert!(Filter::parse("foo eq 1").is_err());
        let f = Filter::parse("receivedDateTime gt 2024-01-01T00:00:00Z").unwrap();
        assert!(f.delta_compatible());
    }

    #[test]
    fn select_validates() {
        assert_eq!(
            parse_select("subject,Sender,id").unwrap(),
            vec!["subject", "sender"]
        );
        assert_eq!(parse_select("subject,nope").unwrap_err(), "nope");
    }
}
