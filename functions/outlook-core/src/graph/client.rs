//! The Graph mail client: one per cold start, shared by every mailbox the process handles.
//!
//! Every request carries `Prefer: IdType="ImmutableId"`, holds a permit of its mailbox's
//! concurrency limit (Outlook allows 4 concurrent requests per app and mailbox), and retries
//! throttling and transient failures within a bounded budget before handing the failure back.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use url::Url;

use crate::message::{Address, FlagStatus, Importance};

use super::batch::{MAX_BATCH_ITEMS, items_to_retry, match_responses, plan_batches};
use super::convert::MESSAGE_SIZE_PROPERTY_ID;
use super::error::{GraphError, classify, error_detail, is_folder_exists_code};
use super::retry::{Budget, RetryPolicy, parse_retry_after};
use super::types::{
    BatchRequest, BatchRequestItem, BatchResponse, BatchResponseItem, Collection, DeltaPage,
    GraphMessage, MailFolder, OutlookCategory, Recipient, User,
};

/// Outlook's limit of concurrent requests per app and mailbox.
pub const OUTLOOK_MAILBOX_CONCURRENCY: usize = 4;

/// Put this in a `select` list to get the message size: it becomes
/// `$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')` (extended properties
/// cannot be `$select`ed).
pub const SELECT_SIZE: &str = "singleValueExtendedProperties";

/// Folder names Graph accepts in place of a folder id, in any mailbox language.
pub const WELL_KNOWN_FOLDERS: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// Pages a listing follows at most (a guard against a link loop).
const MAX_LIST_PAGES: usize = 200;
const IMMUTABLE_ID: &str = "IdType=\"ImmutableId\"";

/// Whose mailbox a call addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailboxRef {
    /// `/me`: the signed-in user of a delegated token.
    Me,
    /// `/users/{id or userPrincipalName}`: app-only access, or a shared mailbox with delegated
    /// `.Shared` scopes (also valid for the signed-in user's own mailbox).
    User(String),
}

impl MailboxRef {
    pub(crate) fn segments(&self) -> Vec<&str> {
        match self {
            MailboxRef::Me => vec!["me"],
            MailboxRef::User(user) => vec!["users", user.as_str()],
        }
    }

    /// The key of the per-mailbox concurrency limit. `/me` mailboxes are told apart by their
    /// token (a hash of it, never the token itself): each delegated token belongs to one user.
    fn limiter_key(&self, token: &SecretString) -> String {
        match self {
            MailboxRef::User(user) => format!("user:{}", user.to_lowercase()),
            MailboxRef::Me => {
                let digest = Sha256::digest(token.expose_secret().as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("me:{hex}")
            }
        }
    }
}

/// A PATCH of the message fields rules change. `None` fields are left alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePatch {
    /// The complete new category list (display names of master categories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_read: Option<bool>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_flag"
    )]
    pub flag: Option<FlagStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importance: Option<Importance>,
}

fn serialize_flag<S: serde::Serializer>(
    flag: &Option<FlagStatus>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Flag {
        flag_status: FlagStatus,
    }
    flag.map(|flag_status| Flag { flag_status })
        .serialize(serializer)
}

/// What kind of Graph request was sent (for request accounting and tracing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    GetUser,
    ListFolders,
    GetFolder,
    CreateFolder,
    DeltaStart,
    DeltaFollow,
    GetMessage,
    PatchMessage,
    MoveMessage,
    CopyMessage,
    DeleteMessage,
    ForwardMessage,
    CreateForward,
    SendDraft,
    ListCategories,
    CreateCategory,
    Batch,
    ListMessages,
}

impl RequestKind {
    pub const ALL: [RequestKind; 18] = [
        RequestKind::GetUser,
        RequestKind::ListFolders,
        RequestKind::GetFolder,
        RequestKind::CreateFolder,
        RequestKind::DeltaStart,
        RequestKind::DeltaFollow,
        RequestKind::GetMessage,
        RequestKind::PatchMessage,
        RequestKind::MoveMessage,
        RequestKind::CopyMessage,
        RequestKind::DeleteMessage,
        RequestKind::ForwardMessage,
        RequestKind::CreateForward,
        RequestKind::SendDraft,
        RequestKind::ListCategories,
        RequestKind::CreateCategory,
        RequestKind::Batch,
        RequestKind::ListMessages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::GetUser => "get_user",
            RequestKind::ListFolders => "list_folders",
            RequestKind::GetFolder => "get_folder",
            RequestKind::CreateFolder => "create_folder",
            RequestKind::DeltaStart => "delta_start",
            RequestKind::DeltaFollow => "delta_follow",
            RequestKind::GetMessage => "get_message",
            RequestKind::PatchMessage => "patch_message",
            RequestKind::MoveMessage => "move_message",
            RequestKind::CopyMessage => "copy_message",
            RequestKind::DeleteMessage => "delete_message",
            RequestKind::ForwardMessage => "forward_message",
            RequestKind::CreateForward => "create_forward",
            RequestKind::SendDraft => "send_draft",
            RequestKind::ListCategories => "list_categories",
            RequestKind::CreateCategory => "create_category",
            RequestKind::Batch => "batch",
            RequestKind::ListMessages => "list_messages",
        }
    }

    /// The path without ids or query values (for traces).
    pub fn path_template(self) -> &'static str {
        match self {
            RequestKind::GetUser => "/{mailbox}",
            RequestKind::ListFolders => "/{mailbox}/mailFolders[/{id}/childFolders]",
            RequestKind::GetFolder => "/{mailbox}/mailFolders/{id}",
            RequestKind::CreateFolder => "/{mailbox}/mailFolders[/{id}/childFolders]",
            RequestKind::DeltaStart => "/{mailbox}/mailFolders/{id}/messages/delta",
            RequestKind::DeltaFollow => "/{mailbox}/mailFolders/{id}/messages/delta?{token}",
            RequestKind::GetMessage | RequestKind::PatchMessage | RequestKind::DeleteMessage => {
                "/{mailbox}/messages/{id}"
            }
            RequestKind::MoveMessage => "/{mailbox}/messages/{id}/move",
            RequestKind::CopyMessage => "/{mailbox}/messages/{id}/copy",
            RequestKind::ForwardMessage => "/{mailbox}/messages/{id}/forward",
            RequestKind::CreateForward => "/{mailbox}/messages/{id}/createForward",
            RequestKind::SendDraft => "/{mailbox}/messages/{id}/send",
            RequestKind::ListCategories | RequestKind::CreateCategory => {
                "/{mailbox}/outlook/masterCategories"
            }
            RequestKind::Batch => "/$batch",
            RequestKind::ListMessages => "/{mailbox}/mailFolders/{id}/messages",
        }
    }
}

/// Requests sent since the client was built (every attempt counts: it is what Microsoft sees).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphStats {
    pub requests: u64,
    /// Attempts that were repeats of a failed attempt.
    pub retries: u64,
    /// Responses with 429 (including batch items).
    pub throttled: u64,
    /// Items sent inside `$batch` requests.
    pub batch_items: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
struct Counters {
    by_kind: [AtomicU64; RequestKind::ALL.len()],
    retries: AtomicU64,
    throttled: AtomicU64,
    batch_items: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct GraphClientOptions {
    pub retry: RetryPolicy,
    /// Concurrent requests per mailbox (a batch holds one permit per item, up to this limit).
    pub mailbox_concurrency: usize,
}

impl Default for GraphClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            mailbox_concurrency: OUTLOOK_MAILBOX_CONCURRENCY,
        }
    }
}

pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    options: GraphClientOptions,
    limiter: Mutex<HashMap<String, Arc<Semaphore>>>,
    counters: Counters,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base.as_str())
            .field("options", &self.options)
            .finish()
    }
}

/// One request as the retry loop sends it.
struct Call {
    kind: RequestKind,
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    page_size: Option<u32>,
    /// Safe to repeat after an attempt that may have reached Microsoft.
    idempotent: bool,
    permits: u32,
}

impl Call {
    fn new(kind: RequestKind, method: Method, url: Url) -> Self {
        let idempotent = matches!(
            method,
            Method::GET | Method::PATCH | Method::PUT | Method::DELETE
        );
        Self {
            kind,
            method,
            url,
            body: None,
            page_size: None,
            idempotent,
            permits: 1,
        }
    }

    fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("request bodies serialize"));
        self
    }

    fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
}

/// A response as the retry loop sees it.
struct Raw {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// A failure to get any response.
struct SendFailure {
    reason: String,
    /// The request surely never reached Microsoft (connection refused, DNS, TLS).
    before_send: bool,
}

impl GraphClient {
    /// `base_url` is `GRAPH_BASE_URL` (e.g. `https://graph.microsoft.com/v1.0`); `http` should
    /// have connect and request timeouts and no redirects (see `clients::http_client`).
    pub fn new(http: reqwest::Client, base_url: Url) -> Self {
        Self::with_options(http, base_url, GraphClientOptions::default())
    }

    pub fn with_options(http: reqwest::Client, base_url: Url, options: GraphClientOptions) -> Self {
        let options = GraphClientOptions {
            mailbox_concurrency: options.mailbox_concurrency.max(1),
            ..options
        };
        Self {
            http,
            base: base_url,
            options,
            limiter: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Requests sent so far, in total and by kind.
    pub fn stats(&self) -> GraphStats {
        let by_kind: BTreeMap<&'static str, u64> = RequestKind::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str(),
                    self.counters.by_kind[*k as usize].load(Ordering::Relaxed),
                )
            })
            .collect();
        GraphStats {
            requests: by_kind.values().sum(),
            retries: self.counters.retries.load(Ordering::Relaxed),
            throttled: self.counters.throttled.load(Ordering::Relaxed),
            batch_items: self.counters.batch_items.load(Ordering::Relaxed),
            by_kind,
        }
    }

    // ----- users -------------------------------------------------------------------------------

    /// `GET /me` (delegated tokens).
    pub async fn get_me(&self, token: &SecretString) -> Result<User, GraphError> {
        self.get_user_at(token, &MailboxRef::Me).await
    }

    /// `GET /users/{id|upn}`. App-only needs `User.Read.All` (or `User.ReadBasic.All`).
    pub async fn get_user(
        &self,
        token: &SecretString,
        id_or_upn: &str,
    ) -> Result<User, GraphError> {
        self.get_user_at(token, &MailboxRef::User(id_or_upn.to_owned()))
            .await
    }

    async fn get_user_at(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
    ) -> Result<User, GraphError> {
        let url = self.url(
            mailbox,
            &[],
            &[("$select", "id,displayName,mail,userPrincipalName".into())],
        );
        self.send_json(
            token,
            mailbox,
            Call::new(RequestKind::GetUser, Method::GET, url),
            &mut self.budget(),
        )
        .await
    }

    // ----- folders -----------------------------------------------------------------------------

    /// Child folders of `parent` (an id or well-known name), or the top-level folders (children
    /// of `msgfolderroot`) when `parent` is `None`. All pages. Hidden folders only when asked.
    pub async fn list_folders(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        parent: Option<&str>,
        include_hidden: bool,
    ) -> Result<Vec<MailFolder>, GraphError> {
        let mut query = vec![("$top", "100".to_owned())];
        if include_hidden {
            query.push(("includeHiddenFolders", "true".into()));
        }
        let url = match parent {
            Some(parent) => self.url(mailbox, &["mailFolders", parent, "childFolders"], &query),
            None => self.url(mailbox, &["mailFolders"], &query),
        };
        self.get_all(token, mailbox, RequestKind::ListFolders, url)
            .await
    }

    /// A folder by id or well-known name (`inbox`, `archive`, …).
    pub async fn get_folder(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        id_or_name: &str,
    ) -> Result<MailFolder, GraphError> {
        let url = self.url(mailbox, &["mailFolders", id_or_name], &[]);
        self.send_json(
            token,
            mailbox,
            Call::new(RequestKind::GetFolder, Method::GET, url),
            &mut self.budget(),
        )
        .await
    }

    /// Creates a folder under `parent` (top level when `None`). If a folder of that name already
    /// exists there (`ErrorFolderExists`, 409 or 400), returns the existing one.
    pub async fn create_folder(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        parent: Option<&str>,
        name: &str,
    ) -> Result<MailFolder, GraphError> {
        let url = match parent {
            Some(parent) => self.url(mailbox, &["mailFolders", parent, "childFolders"], &[]),
            None => self.url(mailbox, &["mailFolders"], &[]),
        };
        // A repeat after a lost response finds the folder via ErrorFolderExists: safe to retry.
        let call = Call::new(RequestKind::CreateFolder, Method::POST, url)
            .json(&serde_json::json!({ "displayName": name }))
            .idempotent(true);
        match self
            .send_json::<MailFolder>(token, mailbox, call, &mut self.budget())
            .await
        {
            Ok(folder) => Ok(folder),
            Err(
                GraphError::Conflict { code, message } | GraphError::BadRequest { code, message },
            ) if is_folder_exists_code(&code) => {
                let existing = self.list_folders(token, mailbox, parent, true).await?;
                existing
                    .into_iter()
                    .find(|f| same_name(&f.display_name, name))
                    .ok_or(GraphError::Conflict { code, message })
            }
            Err(other) => Err(other),
        }
    }

    /// The folder at `path` (`/`-separated display names, e.g. `Clients/Acme/Invoices`),
    /// creating missing folders. The first segment may be a well-known name (`Inbox/Clients`,
    /// `archive/2024`); otherwise the path starts at the top level. Names match case-insensitively.
    pub async fn ensure_folder_path(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        path: &str,
    ) -> Result<MailFolder, GraphError> {
        let segments: Vec<&str> = path
            .split('/')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let Some((first, rest)) = segments.split_first() else {
            return Err(GraphError::BadRequest {
                code: "InvalidFolderPath".into(),
                message: "the folder path is empty".into(),
            });
        };
        let (mut current, rest) = match WELL_KNOWN_FOLDERS
            .iter()
            .find(|w| w.eq_ignore_ascii_case(first))
        {
            Some(well_known) => (self.get_folder(token, mailbox, well_known).await?, rest),
            None => (
                self.find_or_create_child(token, mailbox, None, first)
                    .await?,
                rest,
            ),
        };
        for segment in rest {
            current = self
                .find_or_create_child(token, mailbox, Some(&current.id), segment)
                .await?;
        }
        Ok(current)
    }

    async fn find_or_create_child(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        parent: Option<&str>,
        name: &str,
    ) -> Result<MailFolder, GraphError> {
        let children = self.list_folders(token, mailbox, parent, false).await?;
        match children
            .into_iter()
            .find(|f| same_name(&f.display_name, name))
        {
            Some(found) => Ok(found),
            None => self.create_folder(token, mailbox, parent, name).await,
        }
    }

    // ----- delta -------------------------------------------------------------------------------

    /// Starts a delta round on one folder (id or well-known name). `page_size` goes in
    /// `Prefer: odata.maxpagesize` (never `$top`, which caps the whole round). With
    /// `received_since`, only messages received at or after it (`$filter=receivedDateTime ge`;
    /// Graph then returns at most 5,000 messages per round).
    pub async fn delta_start(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        folder_id: &str,
        select: &[&str],
        page_size: u32,
        received_since: Option<OffsetDateTime>,
    ) -> Result<DeltaPage<GraphMessage>, GraphError> {
        let mut query = select_query(select);
        if let Some(since) = received_since {
            let since = since
                .to_offset(time::UtcOffset::UTC)
                .replace_nanosecond(0)
                .unwrap_or(since);
            let since = since
                .format(&Rfc3339)
                .expect("a UTC date formats as RFC 3339");
            query.push(("$filter", format!("receivedDateTime ge {since}")));
        }
        let url = self.url(
            mailbox,
            &["mailFolders", folder_id, "messages", "delta"],
            &query,
        );
        let mut call = Call::new(RequestKind::DeltaStart, Method::GET, url);
        call.page_size = Some(page_size);
        self.send_json(token, mailbox, call, &mut self.budget())
            .await
    }

    /// Follows an `@odata.nextLink` or stored `@odata.deltaLink` exactly as Graph gave it.
    /// A link that does not point at this client's Graph base URL is never sent (it would carry
    /// the token elsewhere): it is treated as an unusable sync state (`SyncStateExpired`).
    pub async fn delta_follow(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        link: &str,
        page_size: u32,
    ) -> Result<DeltaPage<GraphMessage>, GraphError> {
        let Some(url) = self.trusted_link(link) else {
            tracing::warn!(
                "stored delta link does not point at the Graph base URL; starting a new round"
            );
            return Err(GraphError::SyncStateExpired);
        };
        let mut call = Call::new(RequestKind::DeltaFollow, Method::GET, url);
        call.page_size = Some(page_size);
        self.send_json(token, mailbox, call, &mut self.budget())
            .await
    }

    // ----- messages ----------------------------------------------------------------------------

    /// One message with `$select` (add [`SELECT_SIZE`] for its size).
    pub async fn get_message(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
        select: &[&str],
    ) -> Result<GraphMessage, GraphError> {
        let url = self.url(mailbox, &["messages", message_id], &select_query(select));
        self.send_json(
            token,
            mailbox,
            Call::new(RequestKind::GetMessage, Method::GET, url),
            &mut self.budget(),
        )
        .await
    }

    /// The newest `top` messages of a folder (id or well-known name), newest first: one page of
    /// `GET .../mailFolders/{id}/messages?$orderby=receivedDateTime desc&$top=N` (for the
    /// management API's dry run; sync uses delta queries). `top` is clamped to 1..=1000.
    pub async fn list_recent_messages(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        folder_id: &str,
        select: &[&str],
        top: u32,
    ) -> Result<Vec<GraphMessage>, GraphError> {
        let mut query = select_query(select);
        query.push(("$orderby", "receivedDateTime desc".into()));
        query.push(("$top", top.clamp(1, 1000).to_string()));
        let url = self.url(mailbox, &["mailFolders", folder_id, "messages"], &query);
        let page: Collection<GraphMessage> = self
            .send_json(
                token,
                mailbox,
                Call::new(RequestKind::ListMessages, Method::GET, url),
                &mut self.budget(),
            )
            .await?;
        Ok(page.value)
    }

    /// Sets categories, read state, flag and/or importance.
    pub async fn patch_message(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
        patch: &MessagePatch,
    ) -> Result<(), GraphError> {
        let url = self.url(mailbox, &["messages", message_id], &[]);
        let call = Call::new(RequestKind::PatchMessage, Method::PATCH, url).json(patch);
        self.send_empty(token, mailbox, call).await
    }

    /// Moves a message to a folder id or well-known name; returns it in its new folder (with
    /// immutable ids its id does not change).
    pub async fn move_message(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
        destination: &str,
    ) -> Result<GraphMessage, GraphError> {
        let url = self.url(mailbox, &["messages", message_id, "move"], &[]);
        let call = Call::new(RequestKind::MoveMessage, Method::POST, url)
            .json(&serde_json::json!({ "destinationId": destination }))
            .idempotent(true);
        self.send_json(token, mailbox, call, &mut self.budget())
            .await
    }

    /// Copies a message to a folder id or well-known name; returns the copy. Not repeated after
    /// an attempt that may have reached Microsoft (a repeat would make a second copy).
    pub async fn copy_message(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
        destination: &str,
    ) -> Result<GraphMessage, GraphError> {
        let url = self.url(mailbox, &["messages", message_id, "copy"], &[]);
        let call = Call::new(RequestKind::CopyMessage, Method::POST, url)
            .json(&serde_json::json!({ "destinationId": destination }));
        self.send_json(token, mailbox, call, &mut self.budget())
            .await
    }

    /// Deletes a message (Graph moves it to Recoverable Items). `NotFound` if already gone.
    pub async fn delete_message(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
    ) -> Result<(), GraphError> {
        let url = self.url(mailbox, &["messages", message_id], &[]);
        self.send_empty(
            token,
            mailbox,
            Call::new(RequestKind::DeleteMessage, Method::DELETE, url),
        )
        .await
    }

    /// `POST …/forward` (needs `Mail.Send`; 202, no body). Not repeated after an attempt that
    /// may have reached Microsoft. For exactly-once forwarding use
    /// [`GraphClient::create_forward`] + [`GraphClient::send_draft`].
    pub async fn forward_message(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
        to: &[Address],
        comment: Option<&str>,
    ) -> Result<(), GraphError> {
        let url = self.url(mailbox, &["messages", message_id, "forward"], &[]);
        let call = Call::new(RequestKind::ForwardMessage, Method::POST, url)
            .json(&forward_body(to, comment));
        self.send_empty(token, mailbox, call).await
    }

    /// `POST …/createForward`: a forward draft in Drafts (201), to send with
    /// [`GraphClient::send_draft`].
    pub async fn create_forward(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        message_id: &str,
        to: &[Address],
        comment: Option<&str>,
    ) -> Result<GraphMessage, GraphError> {
        let url = self.url(mailbox, &["messages", message_id, "createForward"], &[]);
        let call = Call::new(RequestKind::CreateForward, Method::POST, url)
            .json(&forward_body(to, comment));
        self.send_json(token, mailbox, call, &mut self.budget())
            .await
    }

    /// Sends a draft (202). `GraphError::NotFound` when the draft no longer exists, e.g. because
    /// an earlier attempt sent it.
    pub async fn send_draft(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        draft_id: &str,
    ) -> Result<(), GraphError> {
        let url = self.url(mailbox, &["messages", draft_id, "send"], &[]);
        // A repeat of a send that went through gets 404, which the caller can tell apart.
        let call = Call::new(RequestKind::SendDraft, Method::POST, url).idempotent(true);
        self.send_empty(token, mailbox, call).await
    }

    // ----- categories --------------------------------------------------------------------------

    /// The mailbox's master category list (`MailboxSettings.Read`).
    pub async fn list_categories(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
    ) -> Result<Vec<OutlookCategory>, GraphError> {
        let url = self.url(mailbox, &["outlook", "masterCategories"], &[]);
        self.get_all(token, mailbox, RequestKind::ListCategories, url)
            .await
    }

    /// Adds a master category (`MailboxSettings.ReadWrite`); `color` is `none` or `preset0`…`preset24`.
    /// A duplicate (409) returns the existing category.
    pub async fn create_category(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        display_name: &str,
        color: &str,
    ) -> Result<OutlookCategory, GraphError> {
        let url = self.url(mailbox, &["outlook", "masterCategories"], &[]);
        let call = Call::new(RequestKind::CreateCategory, Method::POST, url)
            .json(&serde_json::json!({ "displayName": display_name, "color": color }))
            .idempotent(true);
        match self
            .send_json::<OutlookCategory>(token, mailbox, call, &mut self.budget())
            .await
        {
            Ok(category) => Ok(category),
            Err(GraphError::Conflict { code, message }) => self
                .list_categories(token, mailbox)
                .await?
                .into_iter()
                .find(|c| same_name(&c.display_name, display_name))
                .ok_or(GraphError::Conflict { code, message }),
            Err(other) => Err(other),
        }
    }

    /// The master category named `display_name` (case-insensitively), created if missing.
    pub async fn ensure_category(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        display_name: &str,
        color: &str,
    ) -> Result<OutlookCategory, GraphError> {
        let existing = self.list_categories(token, mailbox).await?;
        match existing
            .into_iter()
            .find(|c| same_name(&c.display_name, display_name))
        {
            Some(found) => Ok(found),
            None => {
                self.create_category(token, mailbox, display_name, color)
                    .await
            }
        }
    }

    // ----- batch -------------------------------------------------------------------------------

    /// Sends `items` (all addressing `mailbox`) as JSON batches of at most 20 and returns one
    /// response per item, in the order of `items`.
    ///
    /// Items Microsoft throttles (429) or finds unavailable (503), and items that failed (424)
    /// because they depend on one of those, are sent again in a new batch after the largest
    /// `Retry-After`, within the retry budget; afterwards they keep their last response (see
    /// [`BatchResponseItem::error`]). Each batch holds as many mailbox permits as it has items,
    /// up to the mailbox limit. Fails as a whole only when ids are invalid or nothing could be
    /// sent; a later failure of the whole request shows as a synthesized response per item.
    pub async fn batch(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        items: Vec<BatchRequestItem>,
    ) -> Result<Vec<BatchResponseItem>, GraphError> {
        plan_batches(&items).map_err(|e| GraphError::BadRequest {
            code: "InvalidBatch".into(),
            message: e.to_string(),
        })?;
        let items: Vec<BatchRequestItem> = items.into_iter().map(with_immutable_id).collect();
        let mut results: Vec<Option<BatchResponseItem>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut budget = self.budget();
        let mut round = 0u32;
        let mut anything_sent = false;
        while !pending.is_empty() {
            round += 1;
            let round_items: Vec<&BatchRequestItem> = pending.iter().map(|&i| &items[i]).collect();
            let owned: Vec<BatchRequestItem> = round_items.iter().map(|i| (*i).clone()).collect();
            let plan = plan_batches(&owned).expect("a subset of a valid batch is valid");
            let mut round_responses: Vec<Option<BatchResponseItem>> = vec![None; pending.len()];
            for chunk in plan {
                let requests: Vec<BatchRequestItem> =
                    chunk.iter().map(|&i| owned[i].clone()).collect();
                match self
                    .send_batch_request(token, mailbox, requests, &mut budget)
                    .await
                {
                    Ok(responses) => {
                        anything_sent = true;
                        let ids: Vec<&str> = chunk.iter().map(|&i| owned[i].id.as_str()).collect();
                        for (slot, response) in chunk.iter().zip(match_responses(&ids, responses)) {
                            round_responses[*slot] = response;
                        }
                    }
                    Err(err) if !anything_sent => return Err(err),
                    Err(err) => {
                        for &slot in &chunk {
                            round_responses[slot] =
                                Some(synthesized_response(&owned[slot].id, &err));
                        }
                    }
                }
            }
            let throttled = round_responses
                .iter()
                .flatten()
                .filter(|r| r.status == 429)
                .count() as u64;
            self.counters
                .throttled
                .fetch_add(throttled, Ordering::Relaxed);
            let retry = items_to_retry(&round_items, &round_responses);
            let now = SystemTime::now();
            let hint = retry
                .iter()
                .filter_map(|&i| round_responses[i].as_ref())
                .filter_map(|r| {
                    r.header("Retry-After")
                        .and_then(|v| parse_retry_after(v, now))
                })
                .max();
            for (slot, response) in round_responses.into_iter().enumerate() {
                if let Some(response) = response {
                    results[pending[slot]] = Some(response);
                }
            }
            if retry.is_empty() {
                break;
            }
            match budget.next_wait(round, hint) {
                Ok(wait) => {
                    tracing::info!(
                        items = retry.len(),
                        wait_ms = wait.as_millis() as u64,
                        round,
                        "retrying throttled batch items"
                    );
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    pending = retry.into_iter().map(|slot| pending[slot]).collect();
                }
                Err(_) => break,
            }
        }
        Ok(items
            .iter()
            .zip(results)
            .map(|(item, r)| {
                r.unwrap_or_else(|| {
                    synthesized_response(
                        &item.id,
                        &GraphError::transient("no response for this batch item"),
                    )
                })
            })
            .collect())
    }

    async fn send_batch_request(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        requests: Vec<BatchRequestItem>,
        budget: &mut Budget,
    ) -> Result<Vec<BatchResponseItem>, GraphError> {
        debug_assert!(requests.len() <= MAX_BATCH_ITEMS);
        let idempotent = requests.iter().all(BatchRequestItem::is_idempotent);
        let permits = requests.len().min(self.options.mailbox_concurrency) as u32;
        self.counters
            .batch_items
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base URL is http(s)")
            .pop_if_empty()
            .push("$batch");
        let mut call = Call::new(RequestKind::Batch, Method::POST, url)
            .json(&BatchRequest { requests })
            .idempotent(idempotent);
        call.permits = permits;
        let response: BatchResponse = self.send_json(token, mailbox, call, budget).await?;
        Ok(response.responses)
    }

    // ----- plumbing ----------------------------------------------------------------------------

    fn budget(&self) -> Budget {
        Budget::new(self.options.retry)
    }

    /// `{base}/{me | users/{id}}/{segments…}?{query}`, every segment percent-encoded.
    fn url(&self, mailbox: &MailboxRef, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("base URL is http(s)");
            path.pop_if_empty();
            path.extend(mailbox.segments());
            path.extend(segments);
        }
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
                .collect();
            url.set_query(Some(&q.join("&")));
        }
        url
    }

    /// `link` if it points at this client's Graph origin (scheme, host, port).
    fn trusted_link(&self, link: &str) -> Option<Url> {
        Url::parse(link)
            .ok()
            .filter(|url| url.origin() == self.base.origin())
    }

    async fn get_all<T: DeserializeOwned>(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        kind: RequestKind,
        first: Url,
    ) -> Result<Vec<T>, GraphError> {
        let mut budget = self.budget();
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_LIST_PAGES {
                return Err(GraphError::transient(format!(
                    "{} returned more than {MAX_LIST_PAGES} pages",
                    kind.as_str()
                )));
            }
            let page: Collection<T> = self
                .send_json(
                    token,
                    mailbox,
                    Call::new(kind, Method::GET, url),
                    &mut budget,
                )
                .await?;
            items.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.trusted_link(&link).ok_or_else(|| GraphError::Other {
                    status: 0,
                    code: "UntrustedNextLink".into(),
                    message: "Graph returned a nextLink outside the Graph base URL".into(),
                })?);
            }
        }
        Ok(items)
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        call: Call,
        budget: &mut Budget,
    ) -> Result<T, GraphError> {
        self.execute(token, mailbox, &call, budget, |body| {
            serde_json::from_slice(body).map_err(|e| e.to_string())
        })
        .await
    }

    async fn send_empty(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        call: Call,
    ) -> Result<(), GraphError> {
        self.execute(token, mailbox, &call, &mut self.budget(), |_| Ok(()))
            .await
    }

    /// The retry loop: one attempt at a time, each holding the mailbox's permits.
    async fn execute<T>(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        call: &Call,
        budget: &mut Budget,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, GraphError> {
        let delta = matches!(
            call.kind,
            RequestKind::DeltaStart | RequestKind::DeltaFollow
        );
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(token, mailbox, call, attempt).await;
            let (error, hint) = match outcome {
                Err(failure) => {
                    let error = GraphError::transient(failure.reason);
                    if !(call.idempotent || failure.before_send) {
                        return Err(error);
                    }
                    (error, None)
                }
                Ok(raw) if raw.status.is_success() => match parse(&raw.body) {
                    Ok(value) => return Ok(value),
                    Err(reason) => {
                        let error =
                            GraphError::transient(format!("malformed response body: {reason}"));
                        if !call.idempotent {
                            return Err(error);
                        }
                        (error, None)
                    }
                },
                Ok(raw) => {
                    let status = raw.status.as_u16();
                    match status {
                        429 => {
                            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                            (
                                GraphError::Throttled {
                                    retry_after: raw.retry_after.unwrap_or(Duration::from_secs(1)),
                                },
                                raw.retry_after,
                            )
                        }
                        // 503 is "not processed, come back later": safe to repeat any request.
                        503 => {
                            let error = match raw.retry_after {
                                Some(retry_after) => GraphError::Throttled { retry_after },
                                None => GraphError::transient("HTTP 503 Service Unavailable"),
                            };
                            (error, raw.retry_after)
                        }
                        500 | 502 | 504 if call.idempotent => (
                            GraphError::transient(format!(
                                "HTTP {status} {}",
                                error_detail(&raw.body).code
                            )),
                            raw.retry_after,
                        ),
                        _ => return Err(classify(status, error_detail(&raw.body), delta)),
                    }
                }
            };
            match budget.next_wait(attempt, hint) {
                Ok(wait) => {
                    tracing::warn!(
                        kind = call.kind.as_str(),
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %error,
                        "retrying Graph request"
                    );
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
                Err(wait) => {
                    return Err(match error {
                        GraphError::Throttled { .. } => GraphError::Throttled { retry_after: wait },
                        other => other,
                    });
                }
            }
        }
    }

    /// One HTTP exchange, holding the mailbox's permits while it runs (not while waiting to retry).
    async fn attempt(
        &self,
        token: &SecretString,
        mailbox: &MailboxRef,
        call: &Call,
        attempt: u32,
    ) -> Result<Raw, SendFailure> {
        let _permits = self.acquire(mailbox, token, call.permits).await;
        self.counters.by_kind[call.kind as usize].fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "graph_request",
            method = %call.method,
            path = call.kind.path_template(),
            attempt,
            status = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        let prefer = match call.page_size {
            Some(size) => format!("{IMMUTABLE_ID}, odata.maxpagesize={size}"),
            None => IMMUTABLE_ID.to_owned(),
        };
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(token.expose_secret())
            .header(ACCEPT, "application/json")
            .header("Prefer", prefer);
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        async {
            let response = request.send().await.map_err(send_failure)?;
            let status = response.status();
            let span = tracing::Span::current();
            span.record("status", status.as_u16());
            if let Some(id) = response
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
            {
                span.record("request_id", id);
            }
            let retry_after = retry_after(response.headers());
            let body = response.bytes().await.map_err(send_failure)?.to_vec();
            tracing::debug!(bytes = body.len(), "Graph response");
            Ok(Raw {
                status,
                retry_after,
                body,
            })
        }
        .instrument(span)
        .await
    }

    async fn acquire(
        &self,
        mailbox: &MailboxRef,
        token: &SecretString,
        permits: u32,
    ) -> OwnedSemaphorePermit {
        let limit = self.options.mailbox_concurrency;
        let semaphore = {
            let mut map = self.limiter.lock().expect("limiter lock is never poisoned");
            if map.len() > 1024 {
                // Forget idle mailboxes (no permit handed out, no waiter holding the Arc).
                map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < limit);
            }
            map.entry(mailbox.limiter_key(token))
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone()
        };
        let permits = permits.clamp(1, limit as u32);
        semaphore
            .acquire_many_owned(permits)
            .await
            .expect("mailbox semaphores are never closed")
    }
}

fn send_failure(error: reqwest::Error) -> SendFailure {
    // Without the URL: delta links carry sync tokens.
    let before_send = error.is_connect() || error.is_builder();
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "connection error"
    };
    SendFailure {
        reason: format!("{kind}: {}", error.without_url()),
        before_send,
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// `$select` (and `$expand` for [`SELECT_SIZE`]).
fn select_query(select: &[&str]) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    let fields: Vec<&str> = select
        .iter()
        .copied()
        .filter(|f| *f != SELECT_SIZE)
        .collect();
    if !fields.is_empty() {
        query.push(("$select", fields.join(",")));
    }
    if select.contains(&SELECT_SIZE) {
        query.push((
            "$expand",
            format!("singleValueExtendedProperties($filter=id eq '{MESSAGE_SIZE_PROPERTY_ID}')"),
        ));
    }
    query
}

/// Percent-encodes a query value, keeping the characters OData expressions use literally.
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'$'
            | b','
            | b'\''
            | b'('
            | b')'
            | b':'
            | b'@'
            | b'/'
            | b'*' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn forward_body(to: &[Address], comment: Option<&str>) -> serde_json::Value {
    let recipients: Vec<Recipient> = to
        .iter()
        .map(|a| Recipient::new(a.address.clone(), a.name.clone()))
        .collect();
    let mut body = serde_json::json!({ "toRecipients": recipients });
    if let Some(comment) = comment {
        body["comment"] = serde_json::Value::String(comment.to_owned());
    }
    body
}

/// Adds `Prefer: IdType="ImmutableId"` to a batch item (the outer request's headers do not apply
/// to the items).
fn with_immutable_id(mut item: BatchRequestItem) -> BatchRequestItem {
    match item
        .headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("Prefer"))
    {
        Some((_, value)) if !value.contains("IdType") => {
            *value = format!("{IMMUTABLE_ID}, {value}")
        }
        Some(_) => {}
        None => {
            item.headers.insert("Prefer".into(), IMMUTABLE_ID.into());
        }
    }
    item
}

/// A per-item response standing for a failure of the whole batch request.
fn synthesized_response(id: &str, error: &GraphError) -> BatchResponseItem {
    let (status, retry_after) = match error {
        GraphError::Throttled { retry_after } => (429, Some(*retry_after)),
        GraphError::Transient { .. } => (503, None),
        GraphError::Unauthorized { .. } => (401, None),
        GraphError::Forbidden { .. } => (403, None),
        GraphError::NotFound { .. } => (404, None),
        GraphError::Conflict { .. } => (409, None),
        GraphError::BadRequest { .. } => (400, None),
        GraphError::SyncStateExpired => (410, None),
        GraphError::Other { status, .. } => (*status, None),
    };
    let mut headers = BTreeMap::new();
    if let Some(wait) = retry_after {
        headers.insert(
            "Retry-After".to_owned(),
            format!("{:.3}", wait.as_secs_f64()),
        );
    }
    let code = error
        .code()
        .filter(|c| !c.is_empty())
        .unwrap_or("BatchRequestFailed");
    BatchResponseItem {
        id: id.to_owned(),
        status,
        headers,
        body: Some(serde_json::json!({ "error": { "code": code, "message": error.to_string() } })),
    }
}

impl BatchResponseItem {
    /// The item's failure as a [`GraphError`], `None` for a 2xx.
    pub fn error(&self) -> Option<GraphError> {
        if self.is_success() {
            return None;
        }
        let retry_after = self
            .header("Retry-After")
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        Some(match (self.status, retry_after) {
            (429, wait) => GraphError::Throttled {
                retry_after: wait.unwrap_or(Duration::from_secs(1)),
            },
            (503, Some(retry_after)) => GraphError::Throttled { retry_after },
            (424, _) => GraphError::transient("a request this one depends on failed (424)"),
            (status, _) => classify(status, self.error_detail().unwrap_or_default(), false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_serializes_only_what_is_set() {
        let patch = MessagePatch {
            categories: Some(vec!["Red".into()]),
            flag: Some(FlagStatus::Flagged),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!({"categories": ["Red"], "flag": {"flagStatus": "flagged"}})
        );
        let patch = MessagePatch {
            is_read: Some(true),
            importance: Some(Importance::High),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!({"isRead": true, "importance": "high"})
        );
    }

    #[test]
    fn urls_encode_ids_and_query_values() {
        let client = GraphClient::new(
            reqwest::Client::new(),
            Url::parse("https://graph.microsoft.com/v1.0").unwrap(),
        );
        let url = client.url(
            &MailboxRef::User("a#EXT#@b.com".into()),
            &["mailFolders", "AQ/k=", "messages", "delta"],
            &[
                ("$select", "id,subject".into()),
                ("$filter", "receivedDateTime ge 2024-05-01T00:00:00Z".into()),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/users/a%23EXT%23@b.com/mailFolders/AQ%2Fk=/messages/delta?$select=id,subject&$filter=receivedDateTime%20ge%202024-05-01T00:00:00Z"
        );
        let with_slash = GraphClient::new(
            reqwest::Client::new(),
            Url::parse("http://127.0.0.1:9/sim/v1.0/").unwrap(),
        );
        assert_eq!(
            with_slash
                .url(&MailboxRef::Me, &["mailFolders"], &[])
                .as_str(),
            "http://127.0.0.1:9/sim/v1.0/me/mailFolders"
        );
    }

    #[test]
    fn size_is_expanded_not_selected() {
        let q = select_query(&["id", SELECT_SIZE]);
        assert_eq!(q[0], ("$select", "id".to_owned()));
        assert_eq!(
            q[1],
            (
                "$expand",
                "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')".to_owned()
            )
        );
        assert_eq!(
            encode_query_value(&q[1].1),
            "singleValueExtendedProperties($filter%3Did%20eq%20'Integer%200x0E08')"
        );
        assert!(select_query(&[]).is_empty());
    }

    #[test]
    fn links_must_stay_on_the_graph_origin() {
        let client = GraphClient::new(
            reqwest::Client::new(),
            Url::parse("https://graph.microsoft.com/v1.0").unwrap(),
        );
        assert!(client.trusted_link("https://graph.microsoft.com/v1.0/me/mailFolders('x')/messages/delta?$deltatoken=abc").is_some());
        assert!(
            client
                .trusted_link("https://evil.example.com/v1.0/me/messages/delta?$deltatoken=abc")
                .is_none()
        );
        assert!(
            client
                .trusted_link("http://graph.microsoft.com/v1.0/me")
                .is_none()
        );
        assert!(client.trusted_link("not a url").is_none());
    }

    #[test]
    fn me_mailboxes_are_told_apart_by_token_without_keeping_it() {
        let a = MailboxRef::Me.limiter_key(&SecretString::from("token-a"));
        let b = MailboxRef::Me.limiter_key(&SecretString::from("token-b"));
        assert_ne!(a, b);
        assert!(!a.contains("token"));
        assert_eq!(
            MailboxRef::User("A@B.com".into()).limiter_key(&SecretString::from("x")),
            "user:a@b.com"
        );
    }

    #[test]
    fn batch_items_get_the_immutable_id_preference() {
        let item = with_immutable_id(BatchRequestItem::new("1", "GET", "/me"));
        assert_eq!(
            item.headers.get("Prefer").map(String::as_str),
            Some(IMMUTABLE_ID)
        );
        let mut other = BatchRequestItem::new("2", "GET", "/me");
        other
            .headers
            .insert("prefer".into(), "outlook.body-content-type=\"text\"".into());
        let other = with_immutable_id(other);
        assert_eq!(
            other.headers.get("prefer").unwrap(),
            "IdType=\"ImmutableId\", outlook.body-content-type=\"text\""
        );
    }

    #[test]
    fn batch_item_errors() {
        let mut throttled = BatchResponseItem {
            id: "1".into(),
            status: 429,
            headers: BTreeMap::new(),
            body: None,
        };
        throttled.headers.insert("retry-after".into(), "7".into());
        assert_eq!(
            throttled.error(),
            Some(GraphError::Throttled {
                retry_after: Duration::from_secs(7)
            })
        );
        let not_found = BatchResponseItem {
            id: "2".into(),
            status: 404,
            headers: BTreeMap::new(),
            body: Some(
                serde_json::json!({"error": {"code": "ErrorItemNotFound", "message": "gone"}}),
            ),
        };
        assert_eq!(
            not_found.error(),
            Some(GraphError::NotFound {
                code: "ErrorItemNotFound".into()
            })
        );
        let ok = BatchResponseItem {
            id: "3".into(),
            status: 204,
            headers: BTreeMap::new(),
            body: None,
        };
        assert_eq!(ok.error(), None);
        let synthesized = synthesized_response(
            "4",
            &GraphError::Throttled {
                retry_after: Duration::from_millis(1500),
            },
        );
        assert_eq!(
            synthesized.error(),
            Some(GraphError::Throttled {
                retry_after: Duration::from_millis(1500)
            })
        );
    }

    #[test]
    fn forward_body_shape() {
        let body = forward_body(
            &[Address {
                name: Some("Alex".into()),
                address: "alex@contoso.com".into(),
            }],
            Some("FYI"),
        );
        assert_eq!(
            body,
            serde_json::json!({"comment": "FYI", "toRecipients": [{"emailAddress": {"name": "Alex", "address": "alex@contoso.com"}}]})
        );
        assert!(forward_body(&[], None).get("comment").is_none());
    }
}
