//! The JSON endpoints. Every handler takes the workspace from the authenticated [`Caller`],
//! never from the request, and reads records only under that workspace: another workspace's
//! ids are simply not found (404).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::auth::Caller;
use super::dto::{
    AuditRecordView, DryRunRequest, IntegrationView, MailboxView, ReconnectRequest,
    ReplaceRulesRequest, RuleSetView, SetFoldersRequest, StartConnectionRequest, StartedFlowView,
    UpdateMailboxesRequest, ValidateRulesRequest,
};
use super::http::HttpResponse;
use super::routes::Params;
use super::{ApiError, FieldError};
use crate::connect::flows::{DEFAULT_FOLDERS, StartOptions, StartedFlow, start};
use crate::connect::parse_mailbox_address;
use crate::graph::{GraphError, MailboxRef, SELECT_SIZE, WELL_KNOWN_FOLDERS};
use crate::health::{Reason, StatusReason};
use crate::ids::{IntegrationId, MailboxId};
use crate::model::{
    AccountType, FolderState, Integration, IntegrationStatus, Mailbox, MailboxKey, MailboxKind,
    MailboxStatus,
};
use crate::rules::{
    CompiledRuleSet, EvalContext, FieldNeeds, RuleValidationError, parse_and_validate,
};
use crate::rules_exec::MailboxRules;
use crate::services::Services;
use crate::store::{ALL_MAILBOXES, StoreError, StoredRuleSet};
use crate::sync::dispatch::SyncJob;
use crate::tokens::{TokenError, reason_for};

/// Mailboxes one organization-wide integration may sync.
pub const MAX_MAILBOXES: usize = 500;
/// Watched folders per mailbox.
pub const MAX_FOLDERS: usize = 20;
/// Audit records per request (default [`DEFAULT_AUDIT_LIMIT`]).
pub const MAX_AUDIT_LIMIT: usize = 200;
pub const DEFAULT_AUDIT_LIMIT: usize = 50;
/// Messages a dry run evaluates at most (default [`DEFAULT_DRY_RUN_LIMIT`]).
pub const MAX_DRY_RUN_LIMIT: u32 = 50;
pub const DEFAULT_DRY_RUN_LIMIT: u32 = 25;
/// The scope name `all` in paths stands for the integration-wide scope `*`.
pub const ALL_SCOPE_ALIAS: &str = "all";

/// What every handler gets.
pub struct Ctx<'a> {
    pub svc: &'a Services,
    pub caller: &'a Caller,
    pub params: &'a Params,
    pub body: &'a [u8],
    pub query: &'a str,
    pub now: OffsetDateTime,
}

type Answer = Result<HttpResponse, ApiError>;

fn ok(value: &impl Serialize) -> Answer {
    Ok(HttpResponse::json(200, value))
}

// ----- request parsing -----------------------------------------------------------------------

/// Parses a JSON object body: syntax errors are `invalid_json`, anything but an object or wrong
/// fields or types `invalid_request`. Messages name the field, line and column and what was
/// expected, never the value sent.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid_json = |message: String| ApiError::Invalid {
        code: "invalid_json",
        message,
        details: Vec::new(),
    };
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(invalid_json(
            "the request body is empty; send a JSON object".into(),
        ));
    };
    if *first != b'{' {
        // serde would read an array as the object's fields in order; only objects are requests.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => ApiError::invalid("the request body must be a JSON object"),
                Err(e) => invalid_json(format!(
                    "the request body is not valid JSON: {}",
                    describe_json_error(&e)
                )),
            },
        );
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| (field_path(e.path()), e.into_inner()))
        .and_then(|value| {
            // Trailing characters after the object.
            deserializer
                .end()
                .map(|()| value)
                .map_err(|e| (String::new(), e))
        });
    parsed.map_err(|(path, e)| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(format!(
            "the request body does not fit this endpoint: {path}{}",
            describe_json_error(&e)
        )),
        _ => invalid_json(format!(
            "the request body is not valid JSON: {}",
            describe_json_error(&e)
        )),
    })
}

/// `rules[2].actions: ` for the error's place in the body (keys cut to 40 characters: an
/// unknown key is the caller's text).
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.extend(key.chars().take(40));
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("{out}: ")
    }
}

/// serde_json's message without the value it quotes ("invalid type: string \"…\"",
/// "unknown variant `…`"): the kind of problem, what was expected (our own type's words) and
/// where.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(t, _)| t);
    let expected = text
        .split_once(", expected ")
        .map(|(_, expected)| format!(", expected {expected}"))
        .unwrap_or_default();
    let kind = if text.starts_with("missing field") || text.starts_with("invalid length") {
        // Only our own field names and counts.
        text.to_owned()
    } else if let Some(rest) = text.strip_prefix("invalid type: ") {
        // "string \"…\"" or "integer `5`": keep the JSON type, drop the value.
        let sent = rest.split([' ', ',']).next().unwrap_or_default();
        format!("wrong type: {sent}{expected}")
    } else if text.starts_with("unknown field") {
        format!("unknown field{expected}")
    } else if text.starts_with("unknown variant") {
        format!("unknown value{expected}")
    } else if text.starts_with("invalid value") {
        format!("invalid value{expected}")
    } else if e.classify() == serde_json::error::Category::Data {
        // Our own types' checks (ids, addresses) may quote what they were given.
        "invalid value".to_owned()
    } else {
        text.to_owned()
    };
    format!("{kind} (line {}, column {})", e.line(), e.column())
}

/// Like [`parse_body`], but an empty body means the type's default.
fn parse_optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

fn query_usize(query: &str, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(value) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
    else {
        return Ok(default);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "{name}: give a whole number from 1 to {max}"
        ))),
    }
}

/// An id in the path that cannot exist is simply not found.
fn integration_id(params: &Params) -> Result<IntegrationId, ApiError> {
    params
        .get("integrationId")
        .and_then(|v| IntegrationId::parse(v).ok())
        .ok_or(ApiError::NotFound("integration"))
}

fn mailbox_id(params: &Params) -> Result<MailboxId, ApiError> {
    params
        .get("mailboxId")
        .and_then(|v| MailboxId::parse(v).ok())
        .ok_or(ApiError::NotFound("mailbox"))
}

async fn load_integration(ctx: &Ctx<'_>) -> Result<Integration, ApiError> {
    let id = integration_id(ctx.params)?;
    ctx.svc
        .store
        .get_integration(&ctx.caller.workspace_id, &id)
        .await?
        .ok_or(ApiError::NotFound("integration"))
}

async fn load_mailbox(ctx: &Ctx<'_>, integration: &Integration) -> Result<Mailbox, ApiError> {
    let key = MailboxKey {
        workspace_id: ctx.caller.workspace_id.clone(),
        integration_id: integration.integration_id.clone(),
        mailbox_id: mailbox_id(ctx.params)?,
    };
    ctx.svc
        .store
        .get_mailbox(&key)
        .await?
        .ok_or(ApiError::NotFound("mailbox"))
}

async fn integration_view(
    ctx: &Ctx<'_>,
    integration: &Integration,
) -> Result<IntegrationView, ApiError> {
    let mailboxes = ctx
        .svc
        .store
        .list_mailboxes(&ctx.caller.workspace_id, Some(&integration.integration_id))
        .await?;
    Ok(IntegrationView::new(integration, &mailboxes, ctx.now))
}

fn not_connected(integration: &Integration) -> ApiError {
    let why = match &integration.status_reason {
        Some(reason) => format!(" {} {}", reason.code.message(), reason.code.fix()),
        None if integration.status == IntegrationStatus::Disconnected => {
            " It was disconnected; reconnect it first.".into()
        }
        None => String::new(),
    };
    ApiError::Conflict(format!("the integration is not connected.{why}"))
}

// ----- integrations --------------------------------------------------------------------------

pub async fn list_integrations(ctx: &Ctx<'_>) -> Answer {
    let ws = &ctx.caller.workspace_id;
    let (integrations, mailboxes) = futures::try_join!(
        ctx.svc.store.list_integrations(ws),
        ctx.svc.store.list_mailboxes(ws, None)
    )?;
    let mut views: Vec<IntegrationView> = integrations
        .iter()
        .map(|i| IntegrationView::new(i, &mailboxes, ctx.now))
        .collect();
    views.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    #[derive(Serialize)]
    struct List {
        integrations: Vec<IntegrationView>,
    }
    ok(&List {
        integrations: views,
    })
}

pub async fn get_integration(ctx: &Ctx<'_>) -> Answer {
    let integration = load_integration(ctx).await?;
    ok(&integration_view(ctx, &integration).await?)
}

fn started(status: u16, flow: StartedFlow) -> Answer {
    Ok(HttpResponse::json(
        status,
        &StartedFlowView {
            url: flow.url.to_string(),
            expires_at: flow.expires_at,
        },
    ))
}

pub async fn start_connection(ctx: &Ctx<'_>) -> Answer {
    let request: StartConnectionRequest = parse_body(ctx.body)?;
    let options = match request {
        StartConnectionRequest::Organization { mailboxes, tenant } => {
            StartOptions::Organization { mailboxes, tenant }
        }
        StartConnectionRequest::Personal {
            shared_mailboxes,
            login_hint,
        } => StartOptions::Personal {
            shared_mailboxes,
            login_hint,
        },
    };
    started(
        201,
        start(ctx.svc, ctx.caller, options, None, false, ctx.now).await?,
    )
}

/// The options of a reconnect: the integration's own kind, with what the caller changes.
pub fn reconnect_options(
    integration: &Integration,
    request: ReconnectRequest,
) -> Result<StartOptions, ApiError> {
    match integration.account_type {
        AccountType::Organization => {
            if !request.shared_mailboxes.is_empty() || request.login_hint.is_some() {
                return Err(ApiError::invalid(
                    "sharedMailboxes and loginHint are for personal integrations; this one is organization-wide",
                ));
            }
            Ok(StartOptions::Organization {
                mailboxes: request.mailboxes,
                tenant: None,
            })
        }
        AccountType::Personal => {
            if !request.mailboxes.is_empty() {
                return Err(ApiError::invalid(
                    "mailboxes is for organization-wide integrations; name sharedMailboxes for a personal one",
                ));
            }
            Ok(StartOptions::Personal {
                shared_mailboxes: request.shared_mailboxes,
                login_hint: request.login_hint,
            })
        }
    }
}

pub async fn reconnect_integration(ctx: &Ctx<'_>) -> Answer {
    let request: ReconnectRequest = parse_optional_body(ctx.body)?;
    let integration = load_integration(ctx).await?;
    let options = reconnect_options(&integration, request)?;
    started(
        200,
        start(
            ctx.svc,
            ctx.caller,
            options,
            Some(&integration.integration_id),
            false,
            ctx.now,
        )
        .await?,
    )
}

/// Stops everything we do for an integration and deletes what we hold for it (idempotent):
/// the status becomes `disconnected` (workers stop using it), the refresh-token secret is
/// deleted, and its mailboxes leave the sync schedule.
pub async fn disconnect(
    svc: &Services,
    caller: &Caller,
    id: &IntegrationId,
    now: OffsetDateTime,
) -> Result<Integration, ApiError> {
    let ws = &caller.workspace_id;
    let mut integration = svc
        .store
        .get_integration(ws, id)
        .await?
        .ok_or(ApiError::NotFound("integration"))?;
    while integration.status != IntegrationStatus::Disconnected {
        integration.status = IntegrationStatus::Disconnected;
        integration.status_reason = None;
        // Invalidates access tokens cached for the old credential in warm sandboxes.
        integration.credential_generation += 1;
        integration.updated_at = now;
        match svc.store.save_integration(&integration).await {
            Ok(saved) => integration = saved,
            Err(StoreError::Conflict) => {
                integration = svc
                    .store
                    .get_integration(ws, id)
                    .await?
                    .ok_or(ApiError::NotFound("integration"))?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    svc.vault.delete_refresh_token(ws, id).await.map_err(|err| {
        tracing::error!(error = %err, integration = %id, "could not delete the refresh-token secret");
        ApiError::Unavailable
    })?;
    svc.tokens.invalidate(&integration).await;
    svc.store
        .set_integration_mailboxes_paused(ws, id, true, now)
        .await?;
    tracing::info!(workspace = %ws, integration = %id, by = %caller.subject, "integration disconnected");
    Ok(integration)
}

pub async fn disconnect_integration(ctx: &Ctx<'_>) -> Answer {
    let id = integration_id(ctx.params)?;
    let integration = disconnect(ctx.svc, ctx.caller, &id, ctx.now).await?;
    ok(&integration_view(ctx, &integration).await?)
}

// ----- mailboxes -----------------------------------------------------------------------------

fn graph_ref(mailbox: &Mailbox) -> MailboxRef {
    match mailbox.kind {
        MailboxKind::Own => MailboxRef::Me,
        _ => MailboxRef::User(mailbox.address.clone()),
    }
}

/// Whether a newly chosen organization mailbox is reachable with the app's access: `Some`
/// reason when Microsoft says it is not; `None` when it is, or when it cannot be told now (the
/// sync finds out).
async fn probe_new_mailbox(
    svc: &Services,
    integration: &Integration,
    address: &str,
) -> Option<Reason> {
    let token = match svc.tokens.access_token(integration).await {
        Ok(token) => token,
        Err(err) => {
            tracing::warn!(error = %err, "no token to check a new mailbox; sync will check it");
            return None;
        }
    };
    match svc
        .graph
        .get_folder(&token, &MailboxRef::User(address.to_owned()), "inbox")
        .await
    {
        Ok(_) => None,
        Err(err) if err.is_mailbox_not_enabled() => Some(Reason::MailboxNotEnabled),
        Err(GraphError::Forbidden { .. }) => Some(Reason::MailboxOutsideAdminScope),
        Err(GraphError::NotFound { .. }) => Some(Reason::MailboxNotEnabled),
        Err(err) => {
            tracing::warn!(error = %err, "could not check a new mailbox; sync will check it");
            None
        }
    }
}

fn parse_address_list(field: &str, values: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    let mut details = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match parse_mailbox_address(value) {
            Ok(address) if !out.contains(&address) => out.push(address),
            Ok(_) => {}
            Err(message) => details.push(FieldError {
                field: format!("{field}[{i}]"),
                message,
            }),
        }
    }
    if details.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Invalid {
            code: "invalid_request",
            message: format!("{field}: invalid email addresses"),
            details,
        })
    }
}

/// Adds and removes mailboxes of an organization-wide integration (a personal one may only drop
/// shared mailboxes: adding one needs a new sign-in with the shared-mailbox scopes).
pub async fn update_mailboxes(ctx: &Ctx<'_>) -> Answer {
    let request: UpdateMailboxesRequest = parse_body(ctx.body)?;
    let add = parse_address_list("add", &request.add)?;
    let remove = parse_address_list("remove", &request.remove)?;
    if let Some(both) = add.iter().find(|a| remove.contains(a)) {
        return Err(ApiError::invalid(format!(
            "{both} is both added and removed"
        )));
    }
    let integration = load_integration(ctx).await?;
    if integration.account_type == AccountType::Personal && !add.is_empty() {
        return Err(ApiError::invalid(
            "a personal integration syncs the signed-in user's mailbox and the shared mailboxes named when connecting; \
             reconnect with sharedMailboxes to add one",
        ));
    }
    let ws = &ctx.caller.workspace_id;
    let existing = ctx
        .svc
        .store
        .list_mailboxes(ws, Some(&integration.integration_id))
        .await?;
    let find = |address: &str| {
        existing
            .iter()
            .find(|m| m.address.eq_ignore_ascii_case(address))
    };
    let to_remove: Vec<&Mailbox> = remove.iter().filter_map(|a| find(a)).collect();
    if let Some(own) = to_remove.iter().find(|m| m.kind == MailboxKind::Own) {
        return Err(ApiError::invalid(format!(
            "{} is the signed-in user's own mailbox; disconnect the integration to stop syncing it",
            own.address
        )));
    }
    let to_add: Vec<&String> = add.iter().filter(|a| find(a).is_none()).collect();
    if existing.len() - to_remove.len() + to_add.len() > MAX_MAILBOXES {
        return Err(ApiError::invalid(format!(
            "an integration syncs at most {MAX_MAILBOXES} mailboxes"
        )));
    }
    for mailbox in to_remove {
        ctx.svc.store.delete_mailbox(&mailbox.key()).await?;
        tracing::info!(mailbox = %mailbox.mailbox_id, "mailbox removed from the integration");
    }
    let connected = integration.status == IntegrationStatus::Connected;
    for address in to_add {
        let mut mailbox = Mailbox::new(
            ws.clone(),
            integration.integration_id.clone(),
            address.as_str(),
            MailboxKind::Organization,
            DEFAULT_FOLDERS,
            ctx.now,
        );
        if !connected {
            mailbox.status = MailboxStatus::Paused;
        } else if let Some(reason) = probe_new_mailbox(ctx.svc, &integration, address).await {
            mailbox.status = MailboxStatus::Blocked;
            mailbox.status_reason = Some(StatusReason::from(reason));
        }
        match ctx.svc.store.create_mailbox(&mailbox).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(other) => return Err(other.into()),
        }
    }
    ok(&integration_view(ctx, &integration).await?)
}

pub async fn get_mailbox(ctx: &Ctx<'_>) -> Answer {
    let integration = load_integration(ctx).await?;
    let mailbox = load_mailbox(ctx, &integration).await?;
    ok(&MailboxView::new(&mailbox, &integration, ctx.now))
}

/// A watched folder: a well-known name (any case, stored lower-case) or a Graph folder id.
pub fn parse_folder(value: &str) -> Result<String, String> {
    let value = value.trim();
    if let Some(known) = WELL_KNOWN_FOLDERS
        .iter()
        .find(|w| w.eq_ignore_ascii_case(value))
    {
        return Ok((*known).to_owned());
    }
    let id_like = !value.is_empty()
        && value.len() <= 512
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'/' | b'.')
        });
    if id_like && value.len() >= 16 {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "'{}' is neither a well-known folder name ({}) nor a folder id",
            value.chars().take(80).collect::<String>(),
            WELL_KNOWN_FOLDERS.join(", ")
        ))
    }
}

/// Replaces the watched folders. Folders kept keep their sync position; new ones start
/// watching now (mail already in them is history, never handed to rules).
pub async fn set_folders(ctx: &Ctx<'_>) -> Answer {
    let request: SetFoldersRequest = parse_body(ctx.body)?;
    let mut folders: Vec<String> = Vec::new();
    let mut details = Vec::new();
    for (i, value) in request.folders.iter().enumerate() {
        match parse_folder(value) {
            Ok(folder) if !folders.contains(&folder) => folders.push(folder),
            Ok(_) => {}
            Err(message) => details.push(FieldError {
                field: format!("folders[{i}]"),
                message,
            }),
        }
    }
    if !details.is_empty() {
        return Err(ApiError::Invalid {
            code: "invalid_request",
            message: "folders: invalid folders".into(),
            details,
        });
    }
    if folders.is_empty() || folders.len() > MAX_FOLDERS {
        return Err(ApiError::invalid(format!(
            "folders: watch 1 to {MAX_FOLDERS} folders"
        )));
    }
    let integration = load_integration(ctx).await?;
    let mut mailbox = load_mailbox(ctx, &integration).await?;
    // New folders must exist, when Microsoft can tell us now.
    let new: Vec<&String> = folders
        .iter()
        .filter(|f| !mailbox.folders.contains_key(*f))
        .collect();
    if !new.is_empty()
        && integration.status == IntegrationStatus::Connected
        && mailbox.status == MailboxStatus::Active
    {
        match ctx.svc.tokens.access_token(&integration).await {
            Ok(token) => {
                let target = graph_ref(&mailbox);
                for folder in &new {
                    match ctx.svc.graph.get_folder(&token, &target, folder).await {
                        Ok(_) => {}
                        Err(GraphError::NotFound { .. } | GraphError::BadRequest { .. }) => {
                            return Err(ApiError::invalid(format!(
                                "folders: this mailbox has no folder '{folder}'"
                            )));
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "could not check a new folder; sync will")
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "no token to check new folders; sync will"),
        }
    }
    loop {
        let mut next: BTreeMap<String, FolderState> = BTreeMap::new();
        for folder in &folders {
            let state =
                mailbox.folders.get(folder).cloned().unwrap_or_else(|| {
                    FolderState::starting(folder, ctx.now, time::Duration::ZERO)
                });
            next.insert(folder.clone(), state);
        }
        mailbox.folders = next;
        match ctx.svc.store.save_mailbox(&mailbox).await {
            Ok(saved) => return ok(&MailboxView::new(&saved, &integration, ctx.now)),
            Err(StoreError::Conflict) => mailbox = load_mailbox(ctx, &integration).await?,
            Err(other) => return Err(other.into()),
        }
    }
}

/// Enqueues a forced sync of every active mailbox of the integration.
pub async fn sync_now(ctx: &Ctx<'_>) -> Answer {
    let integration = load_integration(ctx).await?;
    if integration.status != IntegrationStatus::Connected {
        return Err(not_connected(&integration));
    }
    let queue = ctx
        .svc
        .config
        .sync_queue_url
        .as_deref()
        .ok_or(ApiError::Unavailable)?;
    let mailboxes = ctx
        .svc
        .store
        .list_mailboxes(&ctx.caller.workspace_id, Some(&integration.integration_id))
        .await?;
    let jobs: Vec<SyncJob> = mailboxes
        .iter()
        .filter(|m| m.status == MailboxStatus::Active)
        .map(|m| SyncJob::single(m.key(), true))
        .collect();
    let failed = send_jobs(&ctx.svc.sqs, queue, &jobs).await;
    if failed > 0 {
        tracing::error!(failed, "sync now: some jobs were not enqueued");
        return Err(ApiError::Unavailable);
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Enqueued {
        enqueued: usize,
        mailbox_ids: Vec<String>,
    }
    Ok(HttpResponse::json(
        202,
        &Enqueued {
            enqueued: jobs.len(),
            mailbox_ids: jobs
                .iter()
                .map(|j| j.mailbox.mailbox_id.to_string())
                .collect(),
        },
    ))
}

/// Sends sync jobs ten per `SendMessageBatch`, one batch after the other (an integration has
/// few mailboxes; `dispatch::enqueue`'s concurrent stream cannot be proven `Send` from inside a
/// handler that borrows its context, a rustc limitation with higher-ranked lifetimes).
async fn send_jobs(sqs: &aws_sdk_sqs::Client, queue: &str, jobs: &[SyncJob]) -> usize {
    let mut failed = 0;
    for chunk in jobs.chunks(10) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, job) in chunk.iter().enumerate() {
            let body = serde_json::to_string(job).expect("sync jobs serialize");
            match aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
            {
                Ok(entry) => entries.push(entry),
                Err(_) => failed += 1,
            }
        }
        match sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => failed += out.failed.len(),
            Err(err) => {
                tracing::warn!(error = %err, "SendMessageBatch failed");
                failed += chunk.len();
            }
        }
    }
    failed
}

pub async fn list_audit(ctx: &Ctx<'_>) -> Answer {
    let limit = query_usize(ctx.query, "limit", DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT)?;
    let integration = load_integration(ctx).await?;
    let mailbox = load_mailbox(ctx, &integration).await?;
    let records = ctx
        .svc
        .store
        .list_audit(&ctx.caller.workspace_id, &mailbox.mailbox_id, limit)
        .await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Audit {
        mailbox_id: String,
        records: Vec<AuditRecordView>,
    }
    ok(&Audit {
        mailbox_id: mailbox.mailbox_id.to_string(),
        records: records.into_iter().map(Into::into).collect(),
    })
}

// ----- rules ---------------------------------------------------------------------------------

/// The store scope of `{scope}`: `all` or `*` for the whole integration, or one of its mailboxes.
async fn scope_key(ctx: &Ctx<'_>, integration: &Integration) -> Result<String, ApiError> {
    let raw = ctx.params.get("scope").unwrap_or_default();
    if raw == ALL_MAILBOXES || raw == ALL_SCOPE_ALIAS {
        return Ok(ALL_MAILBOXES.to_owned());
    }
    let mailbox = MailboxId::parse(raw).map_err(|_| ApiError::NotFound("rule scope"))?;
    let key = MailboxKey {
        workspace_id: ctx.caller.workspace_id.clone(),
        integration_id: integration.integration_id.clone(),
        mailbox_id: mailbox,
    };
    ctx.svc
        .store
        .get_mailbox(&key)
        .await?
        .ok_or(ApiError::NotFound("mailbox"))?;
    Ok(key.mailbox_id.to_string())
}

pub async fn list_rule_sets(ctx: &Ctx<'_>) -> Answer {
    let integration = load_integration(ctx).await?;
    let mut sets: Vec<RuleSetView> = ctx
        .svc
        .store
        .list_rulesets(&ctx.caller.workspace_id, &integration.integration_id)
        .await?
        .iter()
        .map(RuleSetView::from_stored)
        .collect();
    if !sets.iter().any(|s| s.scope == ALL_MAILBOXES) {
        sets.insert(0, RuleSetView::empty(ALL_MAILBOXES));
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List {
        rule_sets: Vec<RuleSetView>,
    }
    ok(&List { rule_sets: sets })
}

pub async fn get_rule_set(ctx: &Ctx<'_>) -> Answer {
    let integration = load_integration(ctx).await?;
    let scope = scope_key(ctx, &integration).await?;
    let stored = ctx
        .svc
        .store
        .get_ruleset(
            &ctx.caller.workspace_id,
            &integration.integration_id,
            &scope,
        )
        .await?;
    ok(&stored
        .as_ref()
        .map(RuleSetView::from_stored)
        .unwrap_or_else(|| RuleSetView::empty(&scope)))
}

/// Validates `rules` (the JSON list) as a rule set of `version`; every problem is returned.
pub fn validate_rules(
    version: u64,
    rules: &serde_json::Value,
) -> Result<crate::rules::ValidRuleSet, Vec<RuleValidationError>> {
    let document = serde_json::json!({"version": version, "rules": rules});
    parse_and_validate(&document.to_string())
}

pub async fn replace_rule_set(ctx: &Ctx<'_>) -> Answer {
    let request: ReplaceRulesRequest = parse_body(ctx.body)?;
    let integration = load_integration(ctx).await?;
    let scope = scope_key(ctx, &integration).await?;
    let ws = &ctx.caller.workspace_id;
    let current = ctx
        .svc
        .store
        .get_ruleset(ws, &integration.integration_id, &scope)
        .await?
        .map_or(0, |s| s.version);
    let next = request.expected_version.checked_add(1).ok_or_else(|| {
        ApiError::invalid("expectedVersion: not a version this rule set can have")
    })?;
    let valid = validate_rules(next, &request.rules).map_err(ApiError::InvalidRules)?;
    if request.expected_version != current {
        return Err(ApiError::VersionConflict { current });
    }
    let record = StoredRuleSet {
        workspace_id: ws.clone(),
        integration_id: integration.integration_id.clone(),
        scope,
        version: next,
        document: valid.to_json(),
        updated_at: ctx.now,
        updated_by: Some(ctx.caller.subject.clone()),
    };
    match ctx.svc.store.put_ruleset(&record).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            let current = ctx
                .svc
                .store
                .get_ruleset(ws, &integration.integration_id, &record.scope)
                .await?
                .map_or(0, |s| s.version);
            return Err(ApiError::VersionConflict { current });
        }
        Err(other) => return Err(other.into()),
    }
    tracing::info!(scope = %record.scope, version = next, rules = valid.rule_set().rules.len(), "rule set replaced");
    ok(&RuleSetView::from_stored(&record))
}

pub async fn validate(ctx: &Ctx<'_>) -> Answer {
    let request: ValidateRulesRequest = parse_body(ctx.body)?;
    let errors = validate_rules(request.version.unwrap_or(0), &request.rules)
        .err()
        .unwrap_or_default();
    #[derive(Serialize)]
    struct Validation {
        valid: bool,
        errors: Vec<RuleValidationError>,
    }
    ok(&Validation {
        valid: errors.is_empty(),
        errors,
    })
}

fn compile_stored(stored: Option<StoredRuleSet>) -> Option<Arc<CompiledRuleSet>> {
    let stored = stored?;
    match parse_and_validate(&stored.document) {
        Ok(valid) => Some(Arc::new(valid.into_parts().1)),
        Err(errors) => {
            tracing::error!(scope = %stored.scope, version = stored.version, errors = errors.len(), "a stored rule set does not validate; the dry run ignores it");
            None
        }
    }
}

fn needs_of(sets: &[&Arc<CompiledRuleSet>]) -> FieldNeeds {
    sets.iter().fold(FieldNeeds::default(), |acc, set| {
        let n = set.needs();
        FieldNeeds {
            body: acc.body || n.body,
            headers: acc.headers || n.headers,
            size: acc.size || n.size,
        }
    })
}

fn token_problem(err: TokenError) -> ApiError {
    match err {
        TokenError::Identity(failure) if !failure.is_retryable() => {
            let reason = reason_for(&failure);
            ApiError::Conflict(format!(
                "Microsoft refused the integration's sign-in: {} {}",
                reason.message(),
                reason.fix()
            ))
        }
        TokenError::NoRefreshToken => {
            ApiError::Conflict("the integration has no stored sign-in; reconnect it".into())
        }
        other => {
            tracing::warn!(error = %other, "no access token for a dry run");
            ApiError::Unavailable
        }
    }
}

fn graph_problem(err: GraphError, mailbox: &Mailbox) -> ApiError {
    let reason = match &err {
        e if e.is_mailbox_not_enabled() => Some(Reason::MailboxNotEnabled),
        GraphError::Forbidden { .. } if mailbox.kind == MailboxKind::Shared => {
            Some(Reason::SharedMailboxNotGranted)
        }
        GraphError::Forbidden { .. } => Some(Reason::MailboxOutsideAdminScope),
        _ => None,
    };
    match (reason, err) {
        (Some(reason), _) => ApiError::Conflict(format!("{} {}", reason.message(), reason.fix())),
        (None, GraphError::NotFound { .. } | GraphError::BadRequest { .. }) => {
            ApiError::invalid("folder: this mailbox has no such folder")
        }
        (None, other) => {
            tracing::warn!(error = %other, "Graph failed during a dry run");
            ApiError::Unavailable
        }
    }
}

/// Evaluates a rule set (the request's, or the mailbox's stored rules) against the newest
/// messages of a folder, read from Microsoft Graph; acts on nothing and records nothing.
pub async fn dry_run(ctx: &Ctx<'_>) -> Answer {
    let request: DryRunRequest = parse_optional_body(ctx.body)?;
    let limit = request.limit.unwrap_or(DEFAULT_DRY_RUN_LIMIT);
    if !(1..=MAX_DRY_RUN_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit: give a whole number from 1 to {MAX_DRY_RUN_LIMIT}"
        )));
    }
    let folder = match &request.folder {
        Some(folder) => {
            parse_folder(folder).map_err(|e| ApiError::invalid(format!("folder: {e}")))?
        }
        None => "inbox".to_owned(),
    };
    let integration = load_integration(ctx).await?;
    let mailbox = load_mailbox(ctx, &integration).await?;
    let (source, sets) = match &request.rules {
        Some(rules) => {
            let valid = validate_rules(0, rules).map_err(ApiError::InvalidRules)?;
            ("request", vec![Arc::new(valid.into_parts().1)])
        }
        None => {
            let ws = &ctx.caller.workspace_id;
            let int = &integration.integration_id;
            let (own, all) = futures::try_join!(
                ctx.svc
                    .store
                    .get_ruleset(ws, int, mailbox.mailbox_id.as_str()),
                ctx.svc.store.get_ruleset(ws, int, ALL_MAILBOXES)
            )?;
            (
                "stored",
                [compile_stored(own), compile_stored(all)]
                    .into_iter()
                    .flatten()
                    .collect(),
            )
        }
    };
    if integration.status != IntegrationStatus::Connected {
        return Err(not_connected(&integration));
    }
    let needs = needs_of(&sets.iter().collect::<Vec<_>>());
    let rules = match sets.as_slice() {
        [] => None,
        [one] => Some(MailboxRules::Single(one.clone())),
        [own, all, ..] => MailboxRules::combine(Some(own.clone()), Some(all.clone())),
    };
    let mut select: Vec<&str> = crate::sync::worker::SELECT.to_vec();
    if needs.body {
        select.push("body");
    }
    if needs.size {
        select.push(SELECT_SIZE);
    }
    let token = ctx
        .svc
        .tokens
        .access_token(&integration)
        .await
        .map_err(token_problem)?;
    let graph_messages = ctx
        .svc
        .graph
        .list_recent_messages(&token, &graph_ref(&mailbox), &folder, &select, limit)
        .await
        .map_err(|e| graph_problem(e, &mailbox))?;
    let messages: Vec<crate::message::MailMessage> = graph_messages
        .into_iter()
        .filter_map(|m| m.into_mail_message(&folder).ok())
        .collect();
    let eval_ctx = EvalContext::new(mailbox.address.clone());
    let results = match &rules {
        Some(rules) => rules.dry_run(&messages, &eval_ctx),
        None => messages
            .iter()
            .map(|m| crate::rules_exec::DryRunResult {
                message_id: m.id.clone(),
                subject: m.subject.clone(),
                matched: Vec::new(),
                actions: Vec::new(),
            })
            .collect(),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Message {
        #[serde(flatten)]
        result: crate::rules_exec::DryRunResult,
        from: Option<String>,
        #[serde(with = "time::serde::rfc3339")]
        received_at: OffsetDateTime,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct DryRun {
        source: &'static str,
        folder: String,
        rule_set_versions: Vec<u64>,
        messages: Vec<Message>,
    }
    ok(&DryRun {
        source,
        folder,
        rule_set_versions: rules
            .as_ref()
            .map(MailboxRules::versions)
            .unwrap_or_default(),
        messages: results
            .into_iter()
            .zip(&messages)
            .map(|(result, m)| Message {
                result,
                from: m.from.as_ref().map(|a| a.address.clone()),
                received_at: m.received_at,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_with_clear_errors() {
        let err = parse_body::<SetFoldersRequest>(b"{\"folders\": [").unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "invalid_json"));
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse_body::<SetFoldersRequest>(b"{\"folder\": []}").unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "invalid_request"));
        assert!(
            err.to_string()
                .contains("folder: unknown field, expected `folders`"),
            "{err}"
        );
        let err = parse_body::<SetFoldersRequest>(b"  ").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(parse_optional_body::<DryRunRequest>(b"").is_ok());
    }

    #[test]
    fn only_objects_are_requests() {
        // serde would read `[["inbox"]]` as `{"folders": ["inbox"]}`.
        for body in [&b"[[\"inbox\"]]"[..], b"[]", b"\"x\"", b"1", b"null"] {
            let err = parse_body::<SetFoldersRequest>(body).unwrap_err();
            assert_eq!(
                (err.status(), err.code()),
                (400, "invalid_request"),
                "{err}"
            );
            assert!(err.to_string().contains("must be a JSON object"), "{err}");
        }
        let err = parse_body::<SetFoldersRequest>(b"[1,").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        let err = parse_body::<SetFoldersRequest>(b"{\"folders\": []} x").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(parse_body::<SetFoldersRequest>(b" {\"folders\": [\"inbox\"]} ").is_ok());
    }

    #[test]
    fn messages_name_the_field_and_never_echo_the_value() {
        let marker = "ECHO".repeat(100);
        for body in [
            format!("{{\"folders\": \"{marker}\"}}"),
            format!("{{\"folders\": [1], \"x\": \"{marker}\"}}"),
            format!("{{\"{marker}\": 1}}"),
        ] {
            let err = parse_body::<SetFoldersRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{err}");
            assert!(!err.to_string().contains(&marker), "{err}");
            assert!(err.to_string().contains("line 1"), "{err}");
        }
        let err = parse_body::<SetFoldersRequest>(b"{\"folders\": \"inbox\"}").unwrap_err();
        assert!(
            err.to_string()
                .contains("folders: wrong type: string, expected"),
            "{err}"
        );
        let err = parse_body::<StartConnectionRequest>(
            format!("{{\"accountType\": \"{marker}\"}}").as_bytes(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("accountType: unknown value, expected"),
            "{err}"
        );
        assert!(!err.to_string().contains(&marker), "{err}");
    }

    #[test]
    fn folders_are_well_known_names_or_ids() {
        assert_eq!(parse_folder(" Inbox ").unwrap(), "inbox");
        assert_eq!(parse_folder("ArChIvE").unwrap(), "archive");
        assert!(parse_folder("AAMkAGI2TG93AAA=").is_ok());
        assert!(parse_folder("Invoices").is_err());
        assert!(parse_folder("").is_err());
        assert!(parse_folder("AAMkAGI2 TG93AAA=").is_err());
    }

    #[test]
    fn rules_validation_names_rule_and_field() {
        let rules = serde_json::json!([
            {"id": "r1", "name": "ok", "order": 1, "actions": [{"markAsRead": {}}]},
            {"id": "r2", "name": "bad", "order": 2, "conditions": [{"fromAddresses": ["not an address"]}], "actions": []}
        ]);
        let errors = validate_rules(1, &rules).unwrap_err();
        assert!(errors.len() >= 2, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.rule_id.as_deref() == Some("r2")),
            "{errors:?}"
        );
        let body = ApiError::InvalidRules(errors).body();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_rules");
        assert_eq!(json["error"]["details"][0]["ruleId"], "r2");
        assert!(json["error"]["details"][0]["field"].as_str().unwrap().len() > 2);
    }

    #[test]
    fn query_limits_are_checked() {
        assert_eq!(query_usize("", "limit", 50, 200).unwrap(), 50);
        assert_eq!(query_usize("limit=7", "limit", 50, 200).unwrap(), 7);
        assert!(query_usize("limit=0", "limit", 50, 200).is_err());
        assert!(query_usize("limit=abc", "limit", 50, 200).is_err());
        assert!(query_usize("limit=201", "limit", 50, 200).is_err());
    }
}
