//! JSON `$batch`: building items, splitting into batches of at most 20, matching responses by id.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use thiserror::Error;
use url::Url;

use super::client::{MailboxRef, MessagePatch};
use super::types::{BatchRequestItem, BatchResponseItem};

/// Graph's limit of requests per batch.
pub const MAX_BATCH_ITEMS: usize = 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchPlanError {
    #[error("batch request ids must not be empty")]
    EmptyId,
    #[error("batch request id {0:?} is used twice")]
    DuplicateId(String),
    #[error("batch request {id:?} depends on {missing:?}, which is not in the batch")]
    UnknownDependency { id: String, missing: String },
    #[error("a chain of dependent batch requests is longer than {MAX_BATCH_ITEMS}")]
    ChainTooLong,
}

/// `/users/a%40b/messages/x` from segments, as a batch item url (relative to the version root).
pub(crate) fn relative_url(segments: &[&str], query: &str) -> String {
    let mut url = Url::parse("http://batch.invalid/").expect("static URL");
    url.path_segments_mut()
        .expect("http URL has a path")
        .pop_if_empty()
        .extend(segments);
    if query.is_empty() {
        url.path().to_owned()
    } else {
        format!("{}?{}", url.path(), query)
    }
}

impl BatchRequestItem {
    pub fn new(id: impl Into<String>, method: &str, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            method: method.to_owned(),
            url: url.into(),
            headers: Default::default(),
            body: None,
            depends_on: Vec::new(),
        }
    }

    /// Sets a JSON body and its required `Content-Type` header.
    pub fn with_json_body(mut self, body: Value) -> Self {
        self.headers
            .insert("Content-Type".into(), "application/json".into());
        self.body = Some(body);
        self
    }

    pub fn depends_on(mut self, ids: &[&str]) -> Self {
        self.depends_on = ids.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn message_url(mailbox: &MailboxRef, message_id: &str, action: Option<&str>) -> String {
        let mut segments = mailbox.segments();
        segments.extend(["messages", message_id]);
        segments.extend(action);
        relative_url(&segments, "")
    }

    pub fn get_message(
        id: impl Into<String>,
        mailbox: &MailboxRef,
        message_id: &str,
        select: &[&str],
    ) -> Self {
        let mut url = Self::message_url(mailbox, message_id, None);
        if !select.is_empty() {
            url = format!(
                "{url}?$select={}",
                super::client::encode_query_value(&select.join(","))
            );
        }
        Self::new(id, "GET", url)
    }

    pub fn patch_message(
        id: impl Into<String>,
        mailbox: &MailboxRef,
        message_id: &str,
        patch: &MessagePatch,
    ) -> Self {
        let body = serde_json::to_value(patch).expect("a message patch serializes");
        Self::new(id, "PATCH", Self::message_url(mailbox, message_id, None)).with_json_body(body)
    }

    /// `destination`: a folder id or a well-known name (`deleteditems`, `archive`, …).
    pub fn move_message(
        id: impl Into<String>,
        mailbox: &MailboxRef,
        message_id: &str,
        destination: &str,
    ) -> Self {
        Self::new(
            id,
            "POST",
            Self::message_url(mailbox, message_id, Some("move")),
        )
        .with_json_body(serde_json::json!({ "destinationId": destination }))
    }

    pub fn copy_message(
        id: impl Into<String>,
        mailbox: &MailboxRef,
        message_id: &str,
        destination: &str,
    ) -> Self {
        Self::new(
            id,
            "POST",
            Self::message_url(mailbox, message_id, Some("copy")),
        )
        .with_json_body(serde_json::json!({ "destinationId": destination }))
    }

    pub fn delete_message(id: impl Into<String>, mailbox: &MailboxRef, message_id: &str) -> Self {
        Self::new(id, "DELETE", Self::message_url(mailbox, message_id, None))
    }

    /// Safe to send twice: reads, absolute updates, deletes, and moves (with immutable ids a
    /// repeated move finds the message already in its destination).
    pub(crate) fn is_idempotent(&self) -> bool {
        match self.method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" | "PUT" | "PATCH" | "DELETE" => true,
            "POST" => self
                .url
                .split('?')
                .next()
                .unwrap_or_default()
                .ends_with("/move"),
            _ => false,
        }
    }
}

/// Splits `items` into batches of at most [`MAX_BATCH_ITEMS`] (indices into `items`, in order),
/// keeping every `dependsOn` chain inside one batch. Ids must be unique and non-empty.
pub fn plan_batches(items: &[BatchRequestItem]) -> Result<Vec<Vec<usize>>, BatchPlanError> {
    let mut index = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.id.is_empty() {
            return Err(BatchPlanError::EmptyId);
        }
        if index.insert(item.id.as_str(), i).is_some() {
            return Err(BatchPlanError::DuplicateId(item.id.clone()));
        }
    }
    // Union-find over dependencies: each connected group goes into one batch.
    let mut parent: Vec<usize> = (0..items.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, item) in items.iter().enumerate() {
        for dep in &item.depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                return Err(BatchPlanError::UnknownDependency {
                    id: item.id.clone(),
                    missing: dep.clone(),
                });
            };
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    for i in 0..items.len() {
        let r = root(&mut parent, i);
        let g = *group_of_root.entry(r).or_insert_with(|| {
            groups.push((r, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for (_, group) in groups {
        if group.len() > MAX_BATCH_ITEMS {
            return Err(BatchPlanError::ChainTooLong);
        }
        match batches.last_mut() {
            Some(last) if last.len() + group.len() <= MAX_BATCH_ITEMS => last.extend(group),
            _ => batches.push(group),
        }
    }
    for batch in &mut batches {
        batch.sort_unstable();
    }
    Ok(batches)
}

/// Puts `responses` in the order of `ids` (Graph answers in any order). Unknown or repeated
/// response ids are ignored; a request without a response gets `None`.
pub fn match_responses(
    ids: &[&str],
    responses: Vec<BatchResponseItem>,
) -> Vec<Option<BatchResponseItem>> {
    let mut by_id: HashMap<String, BatchResponseItem> = HashMap::with_capacity(responses.len());
    for response in responses {
        by_id.entry(response.id.clone()).or_insert(response);
    }
    ids.iter().map(|id| by_id.remove(*id)).collect()
}

/// Items to send again: those Microsoft throttled or found unavailable (429/503), and those that
/// failed (424) because an item they depend on is being sent again.
pub(crate) fn items_to_retry(
    items: &[&BatchRequestItem],
    responses: &[Option<BatchResponseItem>],
) -> Vec<usize> {
    let mut retry: Vec<usize> = responses
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().is_none_or(|r| matches!(r.status, 429 | 503)))
        .map(|(i, _)| i)
        .collect();
    let mut retried_ids: HashSet<&str> = retry.iter().map(|&i| items[i].id.as_str()).collect();
    loop {
        let more: Vec<usize> = responses
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !retry.contains(i)
                    && r.as_ref().is_some_and(|r| r.status == 424)
                    && items[*i]
                        .depends_on
                        .iter()
                        .any(|d| retried_ids.contains(d.as_str()))
            })
            .map(|(i, _)| i)
            .collect();
        if more.is_empty() {
            break;
        }
        for &i in &more {
            retried_ids.insert(items[i].id.as_str());
        }
        retry.extend(more);
    }
    retry.sort_unstable();
    retry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> BatchRequestItem {
        BatchRequestItem::new(id, "GET", "/me")
    }

    fn response(id: &str, status: u16) -> BatchResponseItem {
        BatchResponseItem {
            id: id.into(),
            status,
            headers: Default::default(),
            body: None,
        }
    }

    #[test]
    fn splits_into_batches_of_twenty() {
        let items: Vec<_> = (0..45).map(|i| item(&i.to_string())).collect();
        let plan = plan_batches(&items).unwrap();
        assert_eq!(
            plan.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![20, 20, 5]
        );
        assert_eq!(plan.concat(), (0..45).collect::<Vec<_>>());
        assert!(plan_batches(&[]).unwrap().is_empty());
    }

    #[test]
    fn dependency_chains_stay_together() {
        let mut items: Vec<_> = (0..19).map(|i| item(&format!("a{i}"))).collect();
        items.push(item("c1"));
        items.push(item("c2").depends_on(&["c1"]));
        items.push(item("c3").depends_on(&["c2"]));
        let plan = plan_batches(&items).unwrap();
        assert_eq!(plan[0].len(), 19);
        assert_eq!(plan[1], vec![19, 20, 21]);
    }

    #[test]
    fn invalid_ids_are_refused() {
        assert_eq!(
            plan_batches(&[item("1"), item("1")]).unwrap_err(),
            BatchPlanError::DuplicateId("1".into())
        );
        assert_eq!(
            plan_batches(&[item("")]).unwrap_err(),
            BatchPlanError::EmptyId
        );
        assert!(matches!(
            plan_batches(&[item("1").depends_on(&["9"])]).unwrap_err(),
            BatchPlanError::UnknownDependency { .. }
        ));
        let chain: Vec<_> = (0..21)
            .map(|i| {
                if i == 0 {
                    item("0")
                } else {
                    item(&i.to_string()).depends_on(&[&(i - 1).to_string()])
                }
            })
            .collect();
        assert_eq!(
            plan_batches(&chain).unwrap_err(),
            BatchPlanError::ChainTooLong
        );
    }

    #[test]
    fn responses_are_matched_by_id() {
        let matched = match_responses(
            &["1", "2", "3"],
            vec![
                response("3", 204),
                response("1", 200),
                response("9", 500),
                response("1", 500),
            ],
        );
        assert_eq!(matched[0].as_ref().unwrap().status, 200);
        assert!(matched[1].is_none());
        assert_eq!(matched[2].as_ref().unwrap().status, 204);
    }

    #[test]
    fn throttled_items_and_their_dependents_are_retried() {
        let items = [
            item("1"),
            item("2").depends_on(&["1"]),
            item("3"),
            item("4").depends_on(&["3"]),
        ];
        let refs: Vec<_> = items.iter().collect();
        let responses = vec![
            Some(response("1", 429)),
            Some(response("2", 424)),
            Some(response("3", 200)),
            Some(response("4", 424)),
        ];
        assert_eq!(items_to_retry(&refs, &responses), vec![0, 1]);
        let missing = vec![
            Some(response("1", 200)),
            None,
            Some(response("3", 503)),
            Some(response("4", 424)),
        ];
        assert_eq!(items_to_retry(&refs, &missing), vec![1, 2, 3]);
    }

    #[test]
    fn builders_encode_urls_and_set_content_type() {
        let mailbox = MailboxRef::User("shared box@contoso.com".into());
        let moved = BatchRequestItem::move_message("1", &mailbox, "AAMk/x=", "deleteditems");
        assert_eq!(
            moved.url,
            "/users/shared%20box@contoso.com/messages/AAMk%2Fx=/move"
        );
        assert_eq!(
            moved.headers.get("Content-Type").map(String::as_str),
            Some("application/json")
        );
        assert!(moved.is_idempotent());
        assert!(
            !BatchRequestItem::copy_message("2", &MailboxRef::Me, "m", "inbox").is_idempotent()
        );
        let get = BatchRequestItem::get_message("3", &MailboxRef::Me, "m", &["id", "subject"]);
        assert_eq!(get.url, "/me/messages/m?$select=id,subject");
        assert!(get.body.is_none() && get.headers.is_empty());
    }
}
