//! The simulator's state: tenants, app registrations, users, mailboxes (folders, messages,
//! per-folder change logs), OAuth codes and refresh tokens, delta tokens, recorded sent mail,
//! the request log, faults and throttling usage.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::util::{exchange_id, token_string, trunc_secs, uuid_from};

/// Id generator and global change sequence (kept apart from the maps so both can be borrowed).
pub struct Gen {
    pub rng: StdRng,
    pub seq: u64,
    pub next_key: u64,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x05ee_d1d5),
            seq: 0,
            next_key: 1,
        }
    }
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
    pub fn uuid(&mut self) -> String {
        uuid_from(&mut self.rng)
    }
    pub fn token(&mut self, n: usize) -> String {
        token_string(&mut self.rng, n)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    pub password_change_revokes_refresh_tokens: bool,
    /// `invalid_grant` or `interaction_required` (both carry suberror `basic_action`).
    pub mfa_error_kind: String,
    pub admin_consent_only_for_mail: bool,
    pub access_token_lifetime_secs: u64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            password_change_revokes_refresh_tokens: true,
            mfa_error_kind: "invalid_grant".into(),
            admin_consent_only_for_mail: false,
            access_token_lifetime_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct ServicePrincipal {
    pub id: String,
    /// Application permissions (app roles) the admin consented to.
    pub roles: BTreeSet<String>,
    /// Delegated scopes consented tenant-wide by an admin.
    pub admin_delegated: BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum AccessRight {
    RestrictAccess,
    DenyAccess,
}

#[derive(Clone, Debug, Serialize)]
pub struct AccessPolicy {
    pub app_id: String,
    pub access_right: AccessRight,
    /// User ids of the mailboxes in scope.
    pub mailboxes: BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tenant {
    pub id: String,
    pub domain: String,
    pub display_name: String,
    pub settings: TenantSettings,
    pub mfa_required: bool,
    pub service_principals: BTreeMap<String, ServicePrincipal>,
    pub access_policies: Vec<AccessPolicy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Secret {
    pub id: String,
    pub value: String,
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Certificate {
    pub id: String,
    /// base64url SHA-256 of the certificate DER (`x5t#S256`), when a certificate was given.
    pub x5t_s256: Option<String>,
    /// base64url SHA-1 of the certificate DER (`x5t`), when a certificate was given.
    pub x5t: Option<String>,
    /// The RSA public key as a `PUBLIC KEY` PEM.
    pub public_key_pem: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct App {
    pub client_id: String,
    pub display_name: String,
    pub redirect_uris: Vec<String>,
    pub secrets: Vec<Secret>,
    pub certificates: Vec<Certificate>,
    pub application_permissions: Vec<String>,
    pub delegated_scopes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    User,
    Shared,
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub upn: String,
    pub display_name: String,
    pub mail: String,
    pub kind: UserKind,
    pub has_mailbox: bool,
    pub enabled: bool,
    /// Mailboxes (user ids) this user may open with `.Shared` scopes.
    pub shared_access: BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Addr {
    #[serde(default)]
    pub name: String,
    pub address: String,
}

impl Addr {
    pub fn json(&self) -> Value {
        serde_json::json!({"emailAddress": {"name": self.name, "address": self.address}})
    }
    pub fn from_json(v: &Value) -> Option<Addr> {
        let e = v.get("emailAddress").unwrap_or(v);
        let address = e.get("address")?.as_str()?.to_string();
        let name = e
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&address)
            .to_string();
        Some(Addr { name, address })
    }
}

#[derive(Clone, Debug)]
pub struct Folder {
    pub id: String,
    pub display_name: String,
    pub parent_id: String,
    pub well_known: Option<String>,
    pub is_hidden: bool,
    pub children: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub key: u64,
    pub immutable_id: String,
    pub rest_id: String,
    pub folder_id: String,
    pub created: OffsetDateTime,
    pub last_modified: OffsetDateTime,
    pub received: OffsetDateTime,
    pub sent: OffsetDateTime,
    pub has_attachments: bool,
    pub internet_message_id: String,
    pub subject: String,
    pub body_html: bool,
    pub body: String,
    pub importance: String,
    pub conversation_id: String,
    pub is_read: bool,
    pub is_draft: bool,
    pub inference: String,
    pub from: Option<Addr>,
    pub sender: Option<Addr>,
    pub to: Vec<Addr>,
    pub cc: Vec<Addr>,
    pub bcc: Vec<Addr>,
    pub reply_to: Vec<Addr>,
    pub flag: Value,
    pub categories: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// Some(meetingMessageType) for `#microsoft.graph.eventMessage`.
    pub meeting_type: Option<String>,
    pub size: u64,
    pub version: u64,
    pub delivery_receipt: bool,
    pub read_receipt: bool,
    /// For drafts made by createForward: the message being forwarded.
    pub forward_of: Option<u64>,
    pub forward_comment: Option<String>,
}

impl Message {
    pub fn change_key(&self) -> String {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.key.to_be_bytes());
        b.extend_from_slice(&self.version.to_be_bytes());
        format!(
            "CQAAABYAAA{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
        )
    }
    pub fn text_body(&self) -> String {
        if self.body_html {
            crate::util::strip_html(&self.body)
        } else {
            self.body.clone()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Removed,
}

#[derive(Clone, Debug)]
pub struct Change {
    pub seq: u64,
    pub folder_id: String,
    pub key: u64,
    pub kind: ChangeKind,
    /// The REST id the message had in this folder when the change happened.
    pub rest_id: String,
    pub immutable_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Category {
    pub id: String,
    #[serde(rename = "displayName")]
    pub display_name: String,
    pub color: String,
}

pub struct Mailbox {
    pub user_id: String,
    pub root_id: String,
    pub folders: BTreeMap<String, Folder>,
    pub messages: BTreeMap<u64, Message>,
    pub rest_index: HashMap<String, u64>,
    pub imm_index: HashMap<String, u64>,
    pub changes: Vec<Change>,
    pub categories: Vec<Category>,
}

/// (well-known name, display name, hidden, parent well-known name)
const DEFAULT_FOLDERS: &[(&str, &str, bool, &str)] = &[
    ("archive", "Archive", false, "msgfolderroot"),
    (
        "conversationhistory",
        "Conversation History",
        false,
        "msgfolderroot",
    ),
    ("deleteditems", "Deleted Items", false, "msgfolderroot"),
    ("drafts", "Drafts", false, "msgfolderroot"),
    ("inbox", "Inbox", false, "msgfolderroot"),
    ("junkemail", "Junk Email", false, "msgfolderroot"),
    ("outbox", "Outbox", false, "msgfolderroot"),
    ("sentitems", "Sent Items", false, "msgfolderroot"),
    ("syncissues", "Sync Issues", false, "msgfolderroot"),
    ("conflicts", "Conflicts", false, "syncissues"),
    ("localfailures", "Local Failures", false, "syncissues"),
    ("serverfailures", "Server Failures", false, "syncissues"),
    ("", "Conversation Action Settings", true, "msgfolderroot"),
];

pub const DEFAULT_CATEGORIES: &[(&str, &str)] = &[
    ("Red category", "preset0"),
    ("Orange category", "preset1"),
    ("Yellow category", "preset3"),
    ("Green category", "preset4"),
    ("Blue category", "preset7"),
    ("Purple category", "preset8"),
];

impl Mailbox {
    pub fn new(gen_: &mut Gen, user_id: &str) -> Self {
        let root_id = exchange_id(&mut gen_.rng, "AQMkAD", 30);
        let top_id = exchange_id(&mut gen_.rng, "AQMkAD", 30);
        let mut mb = Mailbox {
            user_id: user_id.to_string(),
            root_id: root_id.clone(),
            folders: BTreeMap::new(),
            messages: BTreeMap::new(),
            rest_index: HashMap::new(),
            imm_index: HashMap::new(),
            changes: Vec::new(),
            categories: Vec::new(),
        };
        mb.folders.insert(
            root_id.clone(),
            Folder {
                id: root_id.clone(),
                display_name: "Top of Information Store".into(),
                parent_id: top_id,
                well_known: Some("msgfolderroot".into()),
                is_hidden: false,
                children: vec![],
            },
        );
        for (wk, name, hidden, parent) in DEFAULT_FOLDERS {
            let parent_id = mb.well_known(parent).expect("parent folder").to_string();
            let id = exchange_id(&mut gen_.rng, "AQMkAD", 30);
            mb.folders.insert(
                id.clone(),
                Folder {
                    id: id.clone(),
                    display_name: name.to_string(),
                    parent_id: parent_id.clone(),
                    well_known: (!wk.is_empty()).then(|| wk.to_string()),
                    is_hidden: *hidden,
                    children: vec![],
                },
            );
            mb.folders
                .get_mut(&parent_id)
                .expect("parent")
                .children
                .push(id);
        }
        for (name, color) in DEFAULT_CATEGORIES {
            let id = gen_.uuid();
            mb.categories.push(Category {
                id,
                display_name: name.to_string(),
                color: color.to_string(),
            });
        }
        mb
    }

    pub fn well_known(&self, name: &str) -> Option<&str> {
        self.folders
            .values()
            .find(|f| {
                f.well_known
                    .as_deref()
                    .is_some_and(|w| w.eq_ignore_ascii_case(name))
            })
            .map(|f| f.id.as_str())
    }

    /// Resolves a folder id or well-known name.
    pub fn resolve_folder(&self, id_or_name: &str) -> Option<String> {
        if self.folders.contains_key(id_or_name) {
            return Some(id_or_name.to_string());
        }
        self.well_known(id_or_name).map(str::to_string)
    }

    /// Resolves a folder by id, well-known name or display-name path (`Inbox/Invoices`).
    pub fn resolve_folder_path(&self, p: &str) -> Option<String> {
        if let Some(id) = self.resolve_folder(p) {
            return Some(id);
        }
        let mut cur = self.root_id.clone();
        for part in p.split('/').filter(|s| !s.is_empty()) {
            let f = &self.folders[&cur];
            cur = f
                .children
                .iter()
                .find(|c| self.folders[*c].display_name.eq_ignore_ascii_case(part))?
                .clone();
        }
        (cur != self.root_id).then_some(cur)
    }

    pub fn folder_path(&self, id: &str) -> String {
        let mut parts = vec![];
        let mut cur = id.to_string();
        while let Some(f) = self.folders.get(&cur) {
            if cur == self.root_id {
                break;
            }
            parts.push(f.display_name.clone());
            cur = f.parent_id.clone();
        }
        parts.reverse();
        parts.join("/")
    }

    pub fn counts(&self, folder_id: &str) -> (usize, usize) {
        let mut total = 0;
        let mut unread = 0;
        for m in self.messages.values() {
            if m.folder_id == folder_id {
                total += 1;
                if !m.is_read {
                    unread += 1;
                }
            }
        }
        (total, unread)
    }

    /// Finds a message by a currently valid REST id or immutable id.
    pub fn find(&self, id: &str) -> Option<u64> {
        self.rest_index
            .get(id)
            .or_else(|| self.imm_index.get(id))
            .copied()
    }

    pub fn create_folder(
        &mut self,
        gen_: &mut Gen,
        parent_id: &str,
        name: &str,
        hidden: bool,
    ) -> Result<String, FolderError> {
        let parent = self.folders.get(parent_id).ok_or(FolderError::NoParent)?;
        if parent
            .children
            .iter()
            .any(|c| self.folders[c].display_name.eq_ignore_ascii_case(name))
        {
            return Err(FolderError::Exists);
        }
        let id = exchange_id(&mut gen_.rng, "AAMkAD", 36);
        self.folders.insert(
            id.clone(),
            Folder {
                id: id.clone(),
                display_name: name.to_string(),
                parent_id: parent_id.to_string(),
                well_known: None,
                is_hidden: hidden,
                children: vec![],
            },
        );
        self.folders
            .get_mut(parent_id)
            .expect("parent")
            .children
            .push(id.clone());
        Ok(id)
    }

    fn log(&mut self, gen_: &mut Gen, folder_id: &str, key: u64, kind: ChangeKind) {
        let m = &self.messages[&key];
        let c = Change {
            seq: gen_.next_seq(),
            folder_id: folder_id.to_string(),
            key,
            kind,
            rest_id: m.rest_id.clone(),
            immutable_id: m.immutable_id.clone(),
        };
        self.changes.push(c);
    }

    pub fn insert(&mut self, gen_: &mut Gen, mut m: Message) -> u64 {
        let key = gen_.next_key;
        gen_.next_key += 1;
        m.key = key;
        m.immutable_id = exchange_id(&mut gen_.rng, "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", 33);
        m.rest_id = exchange_id(&mut gen_.rng, "AAMkAGI2TG93AAA", 45);
        m.version = 1;
        let folder = m.folder_id.clone();
        self.rest_index.insert(m.rest_id.clone(), key);
        self.imm_index.insert(m.immutable_id.clone(), key);
        self.messages.insert(key, m);
        self.log(gen_, &folder, key, ChangeKind::Created);
        key
    }

    pub fn update(
        &mut self,
        gen_: &mut Gen,
        key: u64,
        now: OffsetDateTime,
        f: impl FnOnce(&mut Message),
    ) {
        let Some(m) = self.messages.get_mut(&key) else {
            return;
        };
        f(m);
        m.version += 1;
        m.last_modified = trunc_secs(now);
        let folder = m.folder_id.clone();
        self.log(gen_, &folder, key, ChangeKind::Updated);
    }

    /// Moves a message; its REST id changes, its immutable id does not.
    pub fn move_to(&mut self, gen_: &mut Gen, key: u64, dest: &str, now: OffsetDateTime) {
        let Some(m) = self.messages.get(&key) else {
            return;
        };
        if m.folder_id == dest {
            return;
        }
        let old_folder = m.folder_id.clone();
        self.log(gen_, &old_folder, key, ChangeKind::Removed);
        let new_id = exchange_id(&mut gen_.rng, "AAMkAGI2TG93AAA", 45);
        let m = self.messages.get_mut(&key).expect("message");
        self.rest_index.remove(&m.rest_id);
        m.rest_id = new_id.clone();
        m.folder_id = dest.to_string();
        m.version += 1;
        m.last_modified = trunc_secs(now);
        self.rest_index.insert(new_id, key);
        self.log(gen_, dest, key, ChangeKind::Created);
    }

    pub fn copy_to(
        &mut self,
        gen_: &mut Gen,
        key: u64,
        dest: &str,
        now: OffsetDateTime,
    ) -> Option<u64> {
        let mut m = self.messages.get(&key)?.clone();
        m.folder_id = dest.to_string();
        m.created = trunc_secs(now);
        m.last_modified = trunc_secs(now);
        Some(self.insert(gen_, m))
    }

    /// Removes a message for good.
    pub fn remove(&mut self, gen_: &mut Gen, key: u64) -> Option<Message> {
        let folder = self.messages.get(&key)?.folder_id.clone();
        self.log(gen_, &folder, key, ChangeKind::Removed);
        let m = self.messages.remove(&key)?;
        self.rest_index.remove(&m.rest_id);
        self.imm_index.remove(&m.immutable_id);
        Some(m)
    }
}

#[derive(Debug, PartialEq)]
pub enum FolderError {
    NoParent,
    Exists,
}

#[derive(Clone, Debug)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub user_id: String,
    pub tenant_id: String,
    pub issued_at: OffsetDateTime,
    pub redeemed: bool,
    pub nonce: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub client_id: String,
    pub user_id: String,
    pub tenant_id: String,
    pub scopes: Vec<String>,
    pub issued_seq: u64,
    pub issued_at: OffsetDateTime,
    pub last_used: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PasswordChanged,
    MfaRequired,
    RefreshTokenInactive,
    ConsentRevoked,
    UserDisabled,
    SecretExpired,
    AppRemoved,
    TokensRevoked,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdentityEvent {
    pub seq: u64,
    pub kind: EventKind,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    /// Whether the event revokes refresh tokens (password change depends on a tenant setting).
    pub effective: bool,
    pub at: String,
}

#[derive(Clone, Debug)]
pub enum DeltaEntry {
    Item(u64),
    Removed {
        rest_id: String,
        immutable_id: String,
        /// The item is also reported as present (moved away and back): with immutable ids the
        /// removal is not reported.
        skip_if_immutable: bool,
    },
}

#[derive(Clone, Debug)]
pub struct DeltaParams {
    pub select: Option<Vec<String>>,
    pub filter: Option<crate::graph::query::Filter>,
    pub change_types: Option<BTreeSet<String>>,
    pub top: Option<usize>,
    /// Query options of the initial request (to rebuild a fresh URL on 410).
    pub initial_query: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub enum DeltaKind {
    Page {
        entries: Arc<Vec<DeltaEntry>>,
        offset: usize,
        capped: bool,
        next_watermark: u64,
    },
    Round {
        watermark: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeltaExpiry {
    /// 410 (Gone + Location) or 400.
    pub status: u16,
    pub code: String,
}

#[derive(Clone, Debug)]
pub struct DeltaState {
    pub mailbox: String,
    pub folder_id: String,
    pub path_prefix: String,
    pub params: DeltaParams,
    pub kind: DeltaKind,
    pub expired: Option<DeltaExpiry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SentRecord {
    pub id: String,
    /// `forward` (POST /forward) or `send` (POST /messages/{draft}/send).
    pub via: String,
    pub mailbox: String,
    pub mailbox_upn: String,
    pub from: Addr,
    pub to: Vec<Addr>,
    pub cc: Vec<Addr>,
    pub subject: String,
    pub comment: Option<String>,
    pub body: String,
    pub original_message_id: Option<String>,
    pub original_immutable_id: Option<String>,
    pub original_internet_message_id: Option<String>,
    pub app_id: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    pub seq: u64,
    pub time: String,
    /// `graph`, `token`, `authorize`, `adminconsent`.
    pub kind: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub mailbox: Option<String>,
    pub tenant: Option<String>,
    pub app_id: Option<String>,
    pub user: Option<String>,
    pub grant_type: Option<String>,
    pub batched: bool,
    pub fault: Option<String>,
    pub error_code: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Interactive {
    /// UPN or id of the user who signs in at the next /authorize (wins over login_hint).
    pub signin_user: Option<String>,
    /// `approve` or `decline` on the user-consent screen.
    pub user_consent: String,
    /// `approve` or `decline` on the admin-consent screen.
    pub admin_consent: String,
    /// Which tenant's admin consents when /adminconsent is called on `organizations`/`common`.
    pub admin_tenant: Option<String>,
}

impl Default for Interactive {
    fn default() -> Self {
        Self {
            signin_user: None,
            user_consent: "approve".into(),
            admin_consent: "approve".into(),
            admin_tenant: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    pub requests_per_window: u32,
    pub window_secs: u64,
    pub concurrency: u32,
    /// Retry-After for the budget limit is the time until the window frees a slot; this one is
    /// used for the concurrency limit. A string so fractional values (`"0.5"`) can be sent.
    pub concurrency_retry_after: String,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_window: 10_000,
            window_secs: 600,
            concurrency: 4,
            concurrency_retry_after: "1".into(),
        }
    }
}

#[derive(Default)]
pub struct Usage {
    pub times: VecDeque<OffsetDateTime>,
    pub inflight: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Added to every Graph request (makes concurrency limits observable).
    pub graph_latency_ms: u64,
    /// Delta/skip tokens kept; the oldest are evicted beyond this (like Outlook's token cache:
    /// an evicted token answers 400 syncStateNotFound).
    pub max_delta_tokens: usize,
    /// Request-log entries kept (oldest dropped).
    pub max_log_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            graph_latency_ms: 0,
            max_delta_tokens: 200_000,
            max_log_entries: 200_000,
        }
    }
}

pub struct World {
    pub gen_: Gen,
    pub seed: u64,
    pub clock_offset_secs: i64,
    pub tenants: BTreeMap<String, Tenant>,
    pub apps: BTreeMap<String, App>,
    pub users: BTreeMap<String, User>,
    pub mailboxes: HashMap<String, Mailbox>,
    pub codes: HashMap<String, AuthCode>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    /// (client_id, user_id) -> consented delegated scopes.
    pub user_consents: HashMap<(String, String), BTreeSet<String>>,
    pub events: Vec<IdentityEvent>,
    pub delta_tokens: HashMap<String, DeltaState>,
    pub delta_order: VecDeque<String>,
    pub delta_expiry_default: DeltaExpiry,
    pub sent: Vec<SentRecord>,
    pub log: Vec<LogEntry>,
    pub log_seq: u64,
    pub faults: crate::faults::Faults,
    pub throttle: ThrottleConfig,
    pub usage: HashMap<(String, String), Usage>,
    pub interactive: Interactive,
    pub settings: Settings,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self {
            gen_: Gen::new(seed),
            seed,
            clock_offset_secs: 0,
            tenants: BTreeMap::new(),
            apps: BTreeMap::new(),
            users: BTreeMap::new(),
            mailboxes: HashMap::new(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            user_consents: HashMap::new(),
            events: Vec::new(),
            delta_tokens: HashMap::new(),
            delta_order: VecDeque::new(),
            delta_expiry_default: DeltaExpiry {
                status: 410,
                code: "resyncRequired".into(),
            },
            sent: Vec::new(),
            log: Vec::new(),
            log_seq: 0,
            faults: crate::faults::Faults::new(seed),
            throttle: ThrottleConfig::default(),
            usage: HashMap::new(),
            interactive: Interactive::default(),
            settings: Settings::default(),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.clock_offset_secs)
    }

    /// Finds a tenant by id or domain (case-insensitive).
    pub fn find_tenant(&self, t: &str) -> Option<&Tenant> {
        self.tenants.get(t).or_else(|| {
            self.tenants
                .values()
                .find(|x| x.domain.eq_ignore_ascii_case(t) || x.id.eq_ignore_ascii_case(t))
        })
    }

    /// Finds a user by object id or UPN/mail (case-insensitive).
    pub fn find_user(&self, u: &str) -> Option<&User> {
        self.users.get(u).or_else(|| {
            self.users.values().find(|x| {
                x.upn.eq_ignore_ascii_case(u)
                    || x.mail.eq_ignore_ascii_case(u)
                    || x.id.eq_ignore_ascii_case(u)
            })
        })
    }

    pub fn log_entry(&mut self, mut e: LogEntry) {
        self.log_seq += 1;
        e.seq = self.log_seq;
        self.log.push(e);
        let max = self.settings.max_log_entries.max(1);
        if self.log.len() > max + max / 10 {
            let drop = self.log.len() - max;
            self.log.drain(..drop);
        }
    }

    /// Stores a delta/skip token, evicting the oldest beyond the configured maximum.
    pub fn put_delta_token(&mut self, token: String, state: DeltaState) {
        self.delta_tokens.insert(token.clone(), state);
        self.delta_order.push_back(token);
        let max = self.settings.max_delta_tokens.max(1);
        while self.delta_order.len() > max {
            if let Some(old) = self.delta_order.pop_front() {
                self.delta_tokens.remove(&old);
            }
        }
    }
}
