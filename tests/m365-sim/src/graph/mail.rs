//! Graph mail handlers: user, mail folders, messages (list/get/update/delete), actions
//! (move, copy, forward, createForward, send) and master categories.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::query::{Filter, MESSAGE_PROPS, SELECT_ONLY, parse_orderby, parse_select, sort_key};
use super::{Action, Ctx, GErr, GReq, GResp, Route};
use crate::model::{Addr, Folder, FolderError, Mailbox, Message, SentRecord, World};
use crate::util::{encode_query, fmt_time, percent_encode_component, preview, trunc_secs};

/// How to render a message.
pub struct Render<'a> {
    pub immutable: bool,
    pub body_text: bool,
    pub select: Option<&'a [String]>,
    pub odata_type: bool,
    pub expand_size: bool,
}

pub fn message_id(m: &Message, immutable: bool) -> &str {
    if immutable {
        &m.immutable_id
    } else {
        &m.rest_id
    }
}

fn addrs(v: &[Addr]) -> Value {
    Value::Array(v.iter().map(Addr::json).collect())
}

pub fn message_json(m: &Message, r: &Render<'_>) -> Value {
    let mut o = Map::new();
    let is_event = m.meeting_type.is_some();
    if r.odata_type || is_event {
        o.insert(
            "@odata.type".into(),
            json!(if is_event {
                "#microsoft.graph.eventMessage"
            } else {
                "#microsoft.graph.message"
            }),
        );
    }
    o.insert(
        "@odata.etag".into(),
        json!(format!("W/\"{}\"", m.change_key())),
    );
    o.insert("id".into(), json!(message_id(m, r.immutable)));
    for p in MESSAGE_PROPS {
        let wanted = match r.select {
            Some(s) => s.iter().any(|x| x == p),
            None => !SELECT_ONLY.contains(p),
        };
        if !wanted {
            continue;
        }
        let (body, ctype) = if r.body_text {
            (m.text_body(), "text")
        } else {
            (m.body.clone(), if m.body_html { "html" } else { "text" })
        };
        let v = match *p {
            "createdDateTime" => json!(fmt_time(m.created)),
            "lastModifiedDateTime" => json!(fmt_time(m.last_modified)),
            "changeKey" => json!(m.change_key()),
            "categories" => json!(m.categories),
            "receivedDateTime" => json!(fmt_time(m.received)),
            "sentDateTime" => json!(fmt_time(m.sent)),
            "hasAttachments" => json!(m.has_attachments),
            "internetMessageId" => json!(m.internet_message_id),
            "subject" => json!(m.subject),
            "bodyPreview" => json!(preview(&m.text_body())),
            "importance" => json!(m.importance),
            "parentFolderId" => json!(m.folder_id),
            "conversationId" => json!(m.conversation_id),
            "conversationIndex" => json!(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                m.key.to_be_bytes()
            )),
            "isDeliveryReceiptRequested" => json!(m.delivery_receipt),
            "isReadReceiptRequested" => json!(m.read_receipt),
            "isRead" => json!(m.is_read),
            "isDraft" => json!(m.is_draft),
            "webLink" => json!(format!(
                "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
                percent_encode_component(message_id(m, r.immutable))
            )),
            "inferenceClassification" => json!(m.inference),
            "body" => json!({"contentType": ctype, "content": body}),
            "uniqueBody" => json!({"contentType": ctype, "content": body}),
            "sender" => m.sender.as_ref().map(Addr::json).unwrap_or(Value::Null),
            "from" => m.from.as_ref().map(Addr::json).unwrap_or(Value::Null),
            "toRecipients" => addrs(&m.to),
            "ccRecipients" => addrs(&m.cc),
            "bccRecipients" => addrs(&m.bcc),
            "replyTo" => addrs(&m.reply_to),
            "flag" => m.flag.clone(),
            "internetMessageHeaders" => Value::Array(
                m.headers
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect(),
            ),
            "meetingMessageType" => match &m.meeting_type {
                Some(t) => json!(t),
                None => continue,
            },
            _ => continue,
        };
        o.insert(p.to_string(), v);
    }
    if r.expand_size {
        o.insert(
            "singleValueExtendedProperties".into(),
            json!([{"id": "Integer 0xe08", "value": m.size.to_string()}]),
        );
    }
    Value::Object(o)
}

pub fn folder_json(mb: &Mailbox, f: &Folder) -> Value {
    let (total, unread) = mb.counts(&f.id);
    json!({
        "id": f.id,
        "displayName": f.display_name,
        "parentFolderId": f.parent_id,
        "childFolderCount": f.children.len(),
        "unreadItemCount": unread,
        "totalItemCount": total,
        "isHidden": f.is_hidden,
    })
}

/// `$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')` (message size).
fn wants_size(req: &GReq) -> Result<bool, GErr> {
    let Some(e) = req.q("$expand") else {
        return Ok(false);
    };
    let l = e.to_ascii_lowercase().replace(' ', "");
    if l.starts_with("singlevalueextendedproperties") {
        if l.contains("0x0e08") || l.contains("0xe08") {
            return Ok(true);
        }
        return Ok(false);
    }
    Err(GErr::bad(
        "RequestBroker--ParseUri",
        &format!(
            "Could not find a property named '{e}' on type 'Microsoft.OutlookServices.Message'."
        ),
    ))
}

pub fn select_of(req: &GReq) -> Result<Option<Vec<String>>, GErr> {
    match req.q("$select") {
        None => Ok(None),
        Some(s) => parse_select(s).map(Some).map_err(|p| {
            GErr::bad(
                "RequestBroker--ParseUri",
                &format!("Could not find a property named '{p}' on type 'Microsoft.OutlookServices.Message'."),
            )
        }),
    }
}

fn mailbox<'a>(w: &'a World, ctx: &Ctx) -> &'a Mailbox {
    &w.mailboxes[&ctx.user_id]
}

fn folder_or_404(mb: &Mailbox, f: &str) -> Result<String, GErr> {
    mb.resolve_folder(f).ok_or_else(GErr::item_not_found)
}

fn message_or_404(mb: &Mailbox, id: &str) -> Result<u64, GErr> {
    mb.find(id).ok_or_else(GErr::item_not_found)
}

fn ctx_user(ctx: &Ctx) -> String {
    format!("users('{}')", ctx.user_id)
}

fn next_link(ctx: &Ctx, req: &GReq, skip: usize, top: usize) -> String {
    let mut q: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skip") && !k.eq_ignore_ascii_case("$top"))
        .cloned()
        .collect();
    q.push(("$top".into(), top.to_string()));
    q.push(("$skip".into(), skip.to_string()));
    format!("{}{}?{}", ctx.graph_base(), req.path, encode_query(&q))
}

fn page_params(ctx: &Ctx, req: &GReq) -> Result<(usize, usize), GErr> {
    let top = match req.q("$top") {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                GErr::bad(
                    "ErrorInvalidArgument",
                    "The value of $top must be between 1 and 1000.",
                )
            })?,
        None => ctx.prefer.max_page_size.unwrap_or(10),
    };
    let skip = req
        .q("$skip")
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| GErr::bad("ErrorInvalidArgument", "Invalid $skip."))
        })
        .transpose()?
        .unwrap_or(0);
    Ok((top, skip))
}

pub fn handle(w: &mut World, ctx: &Ctx, req: &GReq, route: &Route) -> Result<GResp, GErr> {
    match route {
        Route::User => get_user(w, ctx),
        Route::Folders(parent) => {
            if req.method == "POST" {
                create_folder(w, ctx, req, parent.as_deref())
            } else {
                list_folders(w, ctx, req, parent.as_deref())
            }
        }
        Route::Folder(f) => {
            let mb = mailbox(w, ctx);
            let id = folder_or_404(mb, f)?;
            let mut v = folder_json(mb, &mb.folders[&id]);
            v["@odata.context"] = json!(format!(
                "{}/$metadata#{}/mailFolders/$entity",
                ctx.graph_base(),
                ctx_user(ctx)
            ));
            Ok(GResp::json(200, v))
        }
        Route::FolderMessages(f) => list_messages(w, ctx, req, Some(f)),
        Route::Messages => list_messages(w, ctx, req, None),
        Route::Message(id) => match req.method.as_str() {
            "GET" => get_message(w, ctx, req, id),
            "PATCH" => patch_message(w, ctx, req, id),
            _ => delete_message(w, ctx, id),
        },
        Route::MessageAction(id, a) => match a {
            Action::Move | Action::Copy => move_copy(w, ctx, req, id, a == &Action::Copy),
            Action::Forward => forward(w, ctx, req, id),
            Action::CreateForward => create_forward(w, ctx, req, id),
            Action::Send => send_draft(w, ctx, id),
        },
        Route::Categories => {
            if req.method == "POST" {
                create_category(w, ctx, req)
            } else {
                let mb = mailbox(w, ctx);
                Ok(GResp::json(
                    200,
                    json!({
                        "@odata.context": format!("{}/$metadata#{}/outlook/masterCategories", ctx.graph_base(), ctx_user(ctx)),
                        "value": mb.categories,
                    }),
                ))
            }
        }
        Route::Delta(_) => unreachable!("delta is handled elsewhere"),
    }
}

fn get_user(w: &World, ctx: &Ctx) -> Result<GResp, GErr> {
    let u = &w.users[&ctx.user_id];
    let (given, surname) = u
        .display_name
        .split_once(' ')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or((u.display_name.clone(), String::new()));
    Ok(GResp::json(
        200,
        json!({
            "@odata.context": format!("{}/$metadata#users/$entity", ctx.graph_base()),
            "businessPhones": [],
            "displayName": u.display_name,
            "givenName": given,
            "jobTitle": null,
            "mail": if u.has_mailbox { json!(u.mail) } else { Value::Null },
            "mobilePhone": null,
            "officeLocation": null,
            "preferredLanguage": "en-US",
            "surname": surname,
            "userPrincipalName": u.upn,
            "id": u.id,
        }),
    ))
}

fn list_folders(w: &World, ctx: &Ctx, req: &GReq, parent: Option<&str>) -> Result<GResp, GErr> {
    let mb = mailbox(w, ctx);
    let parent_id = match parent {
        Some(p) => folder_or_404(mb, p)?,
        None => mb.root_id.clone(),
    };
    let include_hidden = req
        .q("includeHiddenFolders")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let all: Vec<&Folder> = mb.folders[&parent_id]
        .children
        .iter()
        .map(|c| &mb.folders[c])
        .filter(|f| include_hidden || !f.is_hidden)
        .collect();
    let (top, skip) = page_params(ctx, req)?;
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(top)
        .map(|f| folder_json(mb, f))
        .collect();
    let context = match parent {
        Some(_) => format!(
            "{}/$metadata#{}/mailFolders('{}')/childFolders",
            ctx.graph_base(),
            ctx_user(ctx),
            parent_id
        ),
        None => format!(
            "{}/$metadata#{}/mailFolders",
            ctx.graph_base(),
            ctx_user(ctx)
        ),
    };
    let mut v = json!({"@odata.context": context, "value": page});
    if skip + top < all.len() {
        v["@odata.nextLink"] = json!(next_link(ctx, req, skip + top, top));
    }
    Ok(GResp::json(200, v))
}

fn create_folder(
    w: &mut World,
    ctx: &Ctx,
    req: &GReq,
    parent: Option<&str>,
) -> Result<GResp, GErr> {
    let body = req.json_body()?;
    let name = body
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            GErr::bad(
                "ErrorInvalidRequest",
                "The displayName property is required.",
            )
        })?
        .to_string();
    let hidden = body
        .get("isHidden")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let World {
        gen_, mailboxes, ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let parent_id = match parent {
        Some(p) => folder_or_404(mb, p)?,
        None => mb.root_id.clone(),
    };
    let id = match mb.create_folder(gen_, &parent_id, &name, hidden) {
        Ok(id) => id,
        Err(FolderError::Exists) => {
            return Err(GErr::new(
                409,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            ));
        }
        Err(FolderError::NoParent) => return Err(GErr::item_not_found()),
    };
    let mut v = folder_json(mb, &mb.folders[&id]);
    v["@odata.context"] = json!(match parent {
        Some(_) => format!(
            "{}/$metadata#{}/mailFolders('{}')/childFolders/$entity",
            ctx.graph_base(),
            ctx_user(ctx),
            parent_id
        ),
        None => format!(
            "{}/$metadata#{}/mailFolders/$entity",
            ctx.graph_base(),
            ctx_user(ctx)
        ),
    });
    Ok(GResp::json(201, v))
}

fn list_messages(w: &World, ctx: &Ctx, req: &GReq, folder: Option<&String>) -> Result<GResp, GErr> {
    let mb = mailbox(w, ctx);
    let folder_id = folder.map(|f| folder_or_404(mb, f)).transpose()?;
    let select = select_of(req)?;
    let expand_size = wants_size(req)?;
    let filter = req
        .q("$filter")
        .map(|f| {
            Filter::parse(f).map_err(|_| {
                GErr::bad(
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                )
            })
        })
        .transpose()?;
    let (order_prop, desc) = match req.q("$orderby") {
        Some(o) => parse_orderby(o).map_err(|_| {
            GErr::bad(
                "ErrorInvalidUrlQuery",
                "The $orderby expression is not supported.",
            )
        })?,
        None => ("receivedDateTime".to_string(), true),
    };
    let mut msgs: Vec<&Message> = mb
        .messages
        .values()
        .filter(|m| folder_id.as_ref().is_none_or(|f| &m.folder_id == f))
        .filter(|m| filter.as_ref().is_none_or(|f| f.matches(m)))
        .collect();
    msgs.sort_by(|a, b| {
        let o = sort_key(a, &order_prop).cmp(&sort_key(b, &order_prop));
        let o = if desc { o.reverse() } else { o };
        o.then(b.key.cmp(&a.key))
    });
    let (top, skip) = page_params(ctx, req)?;
    let r = Render {
        immutable: ctx.prefer.immutable_ids,
        body_text: ctx.prefer.body_text,
        select: select.as_deref(),
        odata_type: false,
        expand_size,
    };
    let page: Vec<Value> = msgs
        .iter()
        .skip(skip)
        .take(top)
        .map(|m| message_json(m, &r))
        .collect();
    let sel = select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let context = match &folder_id {
        Some(f) => format!(
            "{}/$metadata#{}/mailFolders('{}')/messages{sel}",
            ctx.graph_base(),
            ctx_user(ctx),
            f
        ),
        None => format!(
            "{}/$metadata#{}/messages{sel}",
            ctx.graph_base(),
            ctx_user(ctx)
        ),
    };
    let mut v = json!({"@odata.context": context, "value": page});
    if req.q("$count").is_some_and(|c| c == "true") {
        v["@odata.count"] = json!(msgs.len());
    }
    if skip + top < msgs.len() {
        v["@odata.nextLink"] = json!(next_link(ctx, req, skip + top, top));
    }
    let mut resp = GResp::json(200, v);
    if ctx.prefer.body_text {
        resp = resp.header("Preference-Applied", "outlook.body-content-type=\"text\"");
    }
    Ok(resp)
}

fn entity_context(ctx: &Ctx, select: Option<&[String]>) -> String {
    let sel = select
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    format!(
        "{}/$metadata#{}/messages{sel}/$entity",
        ctx.graph_base(),
        ctx_user(ctx)
    )
}

fn get_message(w: &World, ctx: &Ctx, req: &GReq, id: &str) -> Result<GResp, GErr> {
    let mb = mailbox(w, ctx);
    let key = message_or_404(mb, id)?;
    let select = select_of(req)?;
    let r = Render {
        immutable: ctx.prefer.immutable_ids,
        body_text: ctx.prefer.body_text,
        select: select.as_deref(),
        odata_type: false,
        expand_size: wants_size(req)?,
    };
    let mut v = message_json(&mb.messages[&key], &r);
    v["@odata.context"] = json!(entity_context(ctx, select.as_deref()));
    let mut resp = GResp::json(200, v);
    if ctx.prefer.body_text {
        resp = resp.header("Preference-Applied", "outlook.body-content-type=\"text\"");
    }
    Ok(resp)
}

fn full_render(ctx: &Ctx, odata_type: bool) -> Render<'static> {
    Render {
        immutable: ctx.prefer.immutable_ids,
        body_text: ctx.prefer.body_text,
        select: None,
        odata_type,
        expand_size: false,
    }
}

fn parse_addrs(v: &Value, field: &str) -> Result<Vec<Addr>, GErr> {
    let arr = v.as_array().ok_or_else(|| {
        GErr::bad(
            "RequestBodyRead",
            &format!("Cannot read the value of '{field}': expected a collection of recipients."),
        )
    })?;
    arr.iter()
        .map(|r| {
            Addr::from_json(r).ok_or_else(|| {
                GErr::bad(
                    "ErrorInvalidRecipients",
                    "At least one recipient isn't valid.",
                )
            })
        })
        .collect()
}

const WRITABLE: &[&str] = &[
    "categories",
    "isRead",
    "flag",
    "importance",
    "inferenceClassification",
];
const DRAFT_WRITABLE: &[&str] = &[
    "subject",
    "body",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "internetMessageId",
];

fn patch_message(w: &mut World, ctx: &Ctx, req: &GReq, id: &str) -> Result<GResp, GErr> {
    let body = req.json_body()?;
    let obj = body
        .as_object()
        .ok_or_else(|| GErr::bad("RequestBodyRead", "The request body must be a JSON object."))?
        .clone();
    let now = w.now();
    let World {
        gen_, mailboxes, ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let key = message_or_404(mb, id)?;
    let is_draft = mb.messages[&key].is_draft;
    type Apply = Box<dyn FnOnce(&mut Message)>;
    let mut ops: Vec<Apply> = vec![];
    let type_err = |k: &str, t: &str| {
        GErr::bad(
            "RequestBodyRead",
            &format!("Cannot convert the literal for property '{k}' to the expected type '{t}'."),
        )
    };
    for (k, v) in obj {
        if k.starts_with('@') {
            continue;
        }
        let canonical = MESSAGE_PROPS
            .iter()
            .chain(["id"].iter())
            .find(|p| p.eq_ignore_ascii_case(&k))
            .copied();
        let Some(p) = canonical else {
            return Err(GErr::bad(
                "RequestBodyRead",
                &format!(
                    "The property '{k}' does not exist on type 'Microsoft.OutlookServices.Message'. Make sure to only use property names that are defined by the type or mark the type as open type."
                ),
            ));
        };
        if WRITABLE.contains(&p) {
            match p {
                "categories" => {
                    let cats: Vec<String> = v
                        .as_array()
                        .ok_or_else(|| type_err(p, "Collection(Edm.String)"))?
                        .iter()
                        .map(|c| c.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or_else(|| type_err(p, "Collection(Edm.String)"))?;
                    ops.push(Box::new(move |m| m.categories = cats));
                }
                "isRead" => {
                    let b = v.as_bool().ok_or_else(|| type_err(p, "Edm.Boolean"))?;
                    ops.push(Box::new(move |m| m.is_read = b));
                }
                "importance" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| type_err(p, "microsoft.graph.importance"))?;
                    let s = s.to_ascii_lowercase();
                    if !["low", "normal", "high"].contains(&s.as_str()) {
                        return Err(type_err(p, "microsoft.graph.importance"));
                    }
                    ops.push(Box::new(move |m| m.importance = s));
                }
                "inferenceClassification" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| type_err(p, "microsoft.graph.inferenceClassificationType"))?
                        .to_ascii_lowercase();
                    if !["focused", "other"].contains(&s.as_str()) {
                        return Err(type_err(p, "microsoft.graph.inferenceClassificationType"));
                    }
                    ops.push(Box::new(move |m| m.inference = s));
                }
                "flag" => {
                    let f = v
                        .as_object()
                        .ok_or_else(|| type_err(p, "microsoft.graph.followupFlag"))?
                        .clone();
                    let mut flag = Map::new();
                    let status = match f.get("flagStatus") {
                        Some(s) => {
                            let s = s.as_str().ok_or_else(|| {
                                type_err("flagStatus", "microsoft.graph.followupFlagStatus")
                            })?;
                            let c = ["notFlagged", "complete", "flagged"]
                                .iter()
                                .find(|x| x.eq_ignore_ascii_case(s))
                                .ok_or_else(|| {
                                    type_err("flagStatus", "microsoft.graph.followupFlagStatus")
                                })?;
                            c.to_string()
                        }
                        None => "flagged".into(),
                    };
                    if f.contains_key("dueDateTime") && !f.contains_key("startDateTime") {
                        return Err(GErr::bad(
                            "ErrorInvalidArgument",
                            "The StartDateTime property must be set when DueDateTime is set.",
                        ));
                    }
                    flag.insert("flagStatus".into(), json!(status));
                    for k in ["startDateTime", "dueDateTime", "completedDateTime"] {
                        if let Some(d) = f.get(k) {
                            flag.insert(k.into(), d.clone());
                        }
                    }
                    if status == "complete" && !flag.contains_key("completedDateTime") {
                        flag.insert(
                            "completedDateTime".into(),
                            json!({"dateTime": fmt_time(now).trim_end_matches('Z').to_string() + ".0000000", "timeZone": "UTC"}),
                        );
                    }
                    let flag = Value::Object(flag);
                    ops.push(Box::new(move |m| m.flag = flag));
                }
                _ => {}
            }
        } else if DRAFT_WRITABLE.contains(&p) {
            if !is_draft {
                return Err(GErr::bad(
                    "ErrorInvalidPropertyUpdateSentMessage",
                    "Update operation is invalid for property of a sent message.",
                ));
            }
            match p {
                "subject" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| type_err(p, "Edm.String"))?
                        .to_string();
                    ops.push(Box::new(move |m| m.subject = s));
                }
                "internetMessageId" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| type_err(p, "Edm.String"))?
                        .to_string();
                    ops.push(Box::new(move |m| m.internet_message_id = s));
                }
                "body" => {
                    let content = v
                        .get("content")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let html = v
                        .get("contentType")
                        .and_then(Value::as_str)
                        .is_some_and(|c| c.eq_ignore_ascii_case("html"));
                    ops.push(Box::new(move |m| {
                        m.body = content;
                        m.body_html = html;
                    }));
                }
                _ => {
                    let list = parse_addrs(&v, p)?;
                    let p = p.to_string();
                    ops.push(Box::new(move |m| match p.as_str() {
                        "toRecipients" => m.to = list,
                        "ccRecipients" => m.cc = list,
                        "bccRecipients" => m.bcc = list,
                        _ => m.reply_to = list,
                    }));
                }
            }
        } else {
            return Err(GErr::bad(
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update operation is invalid for property of a sent message.",
            ));
        }
    }
    mb.update(gen_, key, now, |m| {
        for op in ops {
            op(m);
        }
    });
    let mut v = message_json(&mb.messages[&key], &full_render(ctx, false));
    v["@odata.context"] = json!(entity_context(ctx, None));
    Ok(GResp::json(200, v))
}

fn delete_message(w: &mut World, ctx: &Ctx, id: &str) -> Result<GResp, GErr> {
    let now = w.now();
    let World {
        gen_, mailboxes, ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let key = message_or_404(mb, id)?;
    let deleted = mb
        .well_known("deleteditems")
        .expect("deleteditems")
        .to_string();
    if mb.messages[&key].folder_id == deleted {
        mb.remove(gen_, key);
    } else {
        mb.move_to(gen_, key, &deleted, now);
    }
    Ok(GResp::empty(204))
}

fn move_copy(w: &mut World, ctx: &Ctx, req: &GReq, id: &str, copy: bool) -> Result<GResp, GErr> {
    let body = req.json_body()?;
    let dest = body
        .get("destinationId")
        .and_then(Value::as_str)
        .ok_or_else(|| GErr::bad("ErrorInvalidIdMalformed", "Id is malformed."))?
        .to_string();
    let now = w.now();
    let World {
        gen_, mailboxes, ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let key = message_or_404(mb, id)?;
    let dest_id = folder_or_404(mb, &dest)?;
    let out_key = if copy {
        mb.copy_to(gen_, key, &dest_id, now)
            .ok_or_else(GErr::item_not_found)?
    } else {
        mb.move_to(gen_, key, &dest_id, now);
        key
    };
    let mut v = message_json(&mb.messages[&out_key], &full_render(ctx, true));
    v["@odata.context"] = json!(format!(
        "{}/$metadata#{}/messages/$entity",
        ctx.graph_base(),
        ctx_user(ctx)
    ));
    Ok(GResp::json(201, v))
}

struct ForwardInput {
    comment: Option<String>,
    to: Vec<Addr>,
    body_override: Option<(String, bool)>,
}

fn parse_forward_body(req: &GReq, require_recipients: bool) -> Result<ForwardInput, GErr> {
    let ct = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    if ct.starts_with("text/plain") {
        // MIME variant: base64 MIME content.
        let raw: String = String::from_utf8_lossy(&req.body)
            .split_whitespace()
            .collect();
        let mime =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, raw.as_bytes())
                .map_err(|_| {
                    GErr::bad(
                        "ErrorMimeContentInvalidBase64String",
                        "Invalid base64 string for MIME content.",
                    )
                })?;
        let text = String::from_utf8_lossy(&mime).to_string();
        let mut to = vec![];
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("To:") {
                for part in rest.split(',') {
                    let part = part.trim();
                    let (name, address) = match (part.find('<'), part.find('>')) {
                        (Some(a), Some(b)) if a < b => {
                            (part[..a].trim().to_string(), part[a + 1..b].to_string())
                        }
                        _ => (part.to_string(), part.to_string()),
                    };
                    if address.contains('@') {
                        to.push(Addr { name, address });
                    }
                }
            }
        }
        if require_recipients && to.is_empty() {
            return Err(GErr::bad(
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid.",
            ));
        }
        return Ok(ForwardInput {
            comment: None,
            to,
            body_override: Some((text, false)),
        });
    }
    let body = req.json_body()?;
    let comment = body
        .get("comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    let top_to = body
        .get("toRecipients")
        .map(|v| parse_addrs(v, "toRecipients"))
        .transpose()?;
    let msg = body.get("message");
    let msg_to = msg
        .and_then(|m| m.get("toRecipients"))
        .map(|v| parse_addrs(v, "toRecipients"))
        .transpose()?;
    let msg_body = msg.and_then(|m| m.get("body")).map(|b| {
        (
            b.get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            b.get("contentType")
                .and_then(Value::as_str)
                .is_some_and(|c| c.eq_ignore_ascii_case("html")),
        )
    });
    if comment.is_some() && msg_body.is_some() {
        return Err(GErr::bad(
            "ErrorInvalidRequest",
            "Specify either the comment or the body property of the message parameter, not both.",
        ));
    }
    let to = match (top_to, msg_to) {
        (Some(_), Some(_)) => {
            return Err(GErr::bad(
                "ErrorInvalidRequest",
                "Specify either the toRecipients parameter or the toRecipients property of the message parameter, not both.",
            ));
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => vec![],
    };
    if require_recipients && to.is_empty() {
        return Err(GErr::bad(
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
        ));
    }
    Ok(ForwardInput {
        comment,
        to,
        body_override: msg_body,
    })
}

fn owner_addr(w: &World, ctx: &Ctx) -> Addr {
    let u = &w.users[&ctx.user_id];
    Addr {
        name: u.display_name.clone(),
        address: u.mail.clone(),
    }
}

fn forward_body(orig: &Message, comment: Option<&str>) -> String {
    let from = orig
        .from
        .as_ref()
        .map(|a| format!("{} &lt;{}&gt;", a.name, a.address))
        .unwrap_or_default();
    let to = orig
        .to
        .iter()
        .map(|a| a.name.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let original = if orig.body_html {
        orig.body.clone()
    } else {
        format!("<pre>{}</pre>", crate::util::html_escape(&orig.body))
    };
    format!(
        "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head><body><div>{}</div><hr style=\"display:inline-block;width:98%\" tabindex=\"-1\"><div id=\"divRplyFwdMsg\" dir=\"ltr\"><font face=\"Calibri, sans-serif\" style=\"font-size:11pt\" color=\"#000000\"><b>From:</b> {from}<br><b>Sent:</b> {}<br><b>To:</b> {to}<br><b>Subject:</b> {}</font><div>&nbsp;</div></div>{original}</body></html>",
        crate::util::html_escape(comment.unwrap_or_default()),
        fmt_time(orig.sent),
        crate::util::html_escape(&orig.subject),
    )
}

fn new_internet_id(w: &mut World, domain: &str) -> String {
    format!("<{}@{}>", w.gen_.token(24), domain)
}

#[allow(clippy::too_many_arguments)]
fn sent_copy(
    owner: &Addr,
    to: Vec<Addr>,
    subject: String,
    body: String,
    html: bool,
    now: OffsetDateTime,
    conv: String,
    imid: String,
    folder: String,
    has_att: bool,
) -> Message {
    let now = trunc_secs(now);
    Message {
        key: 0,
        immutable_id: String::new(),
        rest_id: String::new(),
        folder_id: folder,
        created: now,
        last_modified: now,
        received: now,
        sent: now,
        has_attachments: has_att,
        internet_message_id: imid,
        subject,
        body_html: html,
        size: body.len() as u64 + 2048,
        body,
        importance: "normal".into(),
        conversation_id: conv,
        is_read: true,
        is_draft: false,
        inference: "focused".into(),
        from: Some(owner.clone()),
        sender: Some(owner.clone()),
        to,
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        flag: json!({"flagStatus": "notFlagged"}),
        categories: vec![],
        headers: vec![],
        meeting_type: None,
        version: 1,
        delivery_receipt: false,
        read_receipt: false,
        forward_of: None,
        forward_comment: None,
    }
}

fn fw_subject(s: &str) -> String {
    format!("FW: {s}")
}

fn forward(w: &mut World, ctx: &Ctx, req: &GReq, id: &str) -> Result<GResp, GErr> {
    let input = parse_forward_body(req, true)?;
    let now = w.now();
    let owner = owner_addr(w, ctx);
    let key = message_or_404(mailbox(w, ctx), id)?;
    let orig = mailbox(w, ctx).messages[&key].clone();
    let (body, html) = match &input.body_override {
        Some(b) => b.clone(),
        None => (forward_body(&orig, input.comment.as_deref()), true),
    };
    let domain = owner
        .address
        .split('@')
        .nth(1)
        .unwrap_or("contoso.com")
        .to_string();
    let imid = new_internet_id(w, &domain);
    let rec_id = w.gen_.uuid();
    let upn = w.users[&ctx.user_id].upn.clone();
    let World {
        gen_,
        mailboxes,
        sent,
        ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let sent_folder = mb.well_known("sentitems").expect("sentitems").to_string();
    let copy = sent_copy(
        &owner,
        input.to.clone(),
        fw_subject(&orig.subject),
        body.clone(),
        html,
        now,
        orig.conversation_id.clone(),
        imid,
        sent_folder,
        orig.has_attachments,
    );
    mb.insert(gen_, copy);
    sent.push(SentRecord {
        id: rec_id,
        via: "forward".into(),
        mailbox: ctx.user_id.clone(),
        mailbox_upn: upn,
        from: owner,
        to: input.to,
        cc: vec![],
        subject: fw_subject(&orig.subject),
        comment: input.comment,
        body,
        original_message_id: Some(orig.rest_id.clone()),
        original_immutable_id: Some(orig.immutable_id.clone()),
        original_internet_message_id: Some(orig.internet_message_id.clone()),
        app_id: ctx.caller.app_id.clone(),
        at: fmt_time(now),
    });
    Ok(GResp::empty(202))
}

fn create_forward(w: &mut World, ctx: &Ctx, req: &GReq, id: &str) -> Result<GResp, GErr> {
    let input = parse_forward_body(req, false)?;
    let now = w.now();
    let owner = owner_addr(w, ctx);
    let key = message_or_404(mailbox(w, ctx), id)?;
    let orig = mailbox(w, ctx).messages[&key].clone();
    let (body, html) = match &input.body_override {
        Some(b) => b.clone(),
        None => (forward_body(&orig, input.comment.as_deref()), true),
    };
    let domain = owner
        .address
        .split('@')
        .nth(1)
        .unwrap_or("contoso.com")
        .to_string();
    let imid = new_internet_id(w, &domain);
    let World {
        gen_, mailboxes, ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let drafts = mb.well_known("drafts").expect("drafts").to_string();
    let mut draft = sent_copy(
        &owner,
        input.to,
        fw_subject(&orig.subject),
        body,
        html,
        now,
        orig.conversation_id.clone(),
        imid,
        drafts,
        orig.has_attachments,
    );
    draft.is_draft = true;
    draft.forward_of = Some(key);
    draft.forward_comment = input.comment;
    let dk = mb.insert(gen_, draft);
    let mut v = message_json(&mb.messages[&dk], &full_render(ctx, false));
    v["@odata.context"] = json!(entity_context(ctx, None));
    Ok(GResp::json(201, v))
}

fn send_draft(w: &mut World, ctx: &Ctx, id: &str) -> Result<GResp, GErr> {
    let now = w.now();
    let owner = owner_addr(w, ctx);
    let key = message_or_404(mailbox(w, ctx), id)?;
    let draft = mailbox(w, ctx).messages[&key].clone();
    if !draft.is_draft {
        return Err(GErr::item_not_found());
    }
    if draft.to.is_empty() && draft.cc.is_empty() && draft.bcc.is_empty() {
        return Err(GErr::bad(
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
        ));
    }
    let rec_id = w.gen_.uuid();
    let upn = w.users[&ctx.user_id].upn.clone();
    let World {
        gen_,
        mailboxes,
        sent,
        ..
    } = w;
    let mb = mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    let original = draft.forward_of.and_then(|k| mb.messages.get(&k)).cloned();
    mb.remove(gen_, key);
    let sent_folder = mb.well_known("sentitems").expect("sentitems").to_string();
    let mut copy = draft.clone();
    copy.is_draft = false;
    copy.folder_id = sent_folder;
    copy.sent = trunc_secs(now);
    copy.received = trunc_secs(now);
    copy.forward_of = None;
    mb.insert(gen_, copy);
    sent.push(SentRecord {
        id: rec_id,
        via: "send".into(),
        mailbox: ctx.user_id.clone(),
        mailbox_upn: upn,
        from: owner,
        to: draft.to.clone(),
        cc: draft.cc.clone(),
        subject: draft.subject.clone(),
        comment: draft.forward_comment.clone(),
        body: draft.body.clone(),
        original_message_id: original.as_ref().map(|o| o.rest_id.clone()),
        original_immutable_id: original.as_ref().map(|o| o.immutable_id.clone()),
        original_internet_message_id: original.as_ref().map(|o| o.internet_message_id.clone()),
        app_id: ctx.caller.app_id.clone(),
        at: fmt_time(now),
    });
    Ok(GResp::empty(202))
}

fn create_category(w: &mut World, ctx: &Ctx, req: &GReq) -> Result<GResp, GErr> {
    let body = req.json_body()?;
    let name = body
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            GErr::bad(
                "ErrorInvalidArgument",
                "The displayName property is required.",
            )
        })?
        .to_string();
    let color = body
        .get("color")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_string();
    let valid_color = color == "none"
        || color
            .strip_prefix("preset")
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| n <= 24);
    if !valid_color {
        return Err(GErr::bad(
            "RequestBodyRead",
            &format!("Requested value '{color}' was not found."),
        ));
    }
    let cid = w.gen_.uuid();
    let mb = w.mailboxes.get_mut(&ctx.user_id).expect("mailbox");
    if mb
        .categories
        .iter()
        .any(|c| c.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(GErr::new(
            409,
            "ErrorDuplicateCategoryName",
            &format!("A category with the name '{name}' already exists."),
        ));
    }
    let cat = crate::model::Category {
        id: cid,
        display_name: name,
        color,
    };
    mb.categories.push(cat.clone());
    let mut v = serde_json::to_value(&cat).expect("category");
    v["@odata.context"] = json!(format!(
        "{}/$metadata#{}/outlook/masterCategories/$entity",
        ctx.graph_base(),
        ctx_user(ctx)
    ));
    Ok(GResp::json(201, v))
}
