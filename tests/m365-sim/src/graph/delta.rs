//! `GET .../mailFolders/{id}/messages/delta`: per-folder rounds over the folder's change log.
//! Skip and delta tokens are server-side state (so they can be expired by the control API).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::mail::{Render, message_json, select_of};
use super::query::Filter;
use super::{Ctx, GErr, GReq, GResp};
use crate::model::{ChangeKind, DeltaEntry, DeltaKind, DeltaParams, DeltaState, Mailbox, World};
use crate::util::encode_query;

const DEFAULT_PAGE: usize = 10;

/// Per message in a round: first change kind, first removal (REST id, immutable id), updated.
type PerKey = (ChangeKind, Option<(String, String)>, bool);

pub fn handle(w: &mut World, ctx: &Ctx, req: &GReq, folder: &str) -> Result<GResp, GErr> {
    let skip = req.q("$skiptoken").map(str::to_string);
    let delta = req.q("$deltatoken").map(str::to_string);
    let token = skip.or(delta.clone()).filter(|t| !t.is_empty());
    let state = match token {
        Some(t) => {
            let Some(st) = w.delta_tokens.get(&t).cloned() else {
                return Err(GErr::bad(
                    "syncStateNotFound",
                    "The sync state generation is not found or is invalid. Please restart the sync.",
                ));
            };
            if st.mailbox != ctx.user_id {
                return Err(GErr::bad(
                    "syncStateNotFound",
                    "The sync state does not belong to this mailbox.",
                ));
            }
            if let Some(exp) = &st.expired {
                if exp.status == 410 {
                    let mut q = st.params.initial_query.clone();
                    q.push(("$deltatoken".into(), String::new()));
                    let loc = format!(
                        "{}{}/mailFolders('{}')/messages/delta?{}",
                        ctx.graph_base(),
                        st.path_prefix,
                        st.folder_id,
                        encode_query(&q)
                    );
                    return Err(GErr::new(
                        410,
                        &exp.code,
                        "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
                    )
                    .with_header("Location", loc));
                }
                return Err(GErr::new(
                    exp.status,
                    &exp.code,
                    "The sync state generation is not found. Please restart the sync with an empty token.",
                ));
            }
            match &st.kind {
                DeltaKind::Page { .. } => st,
                DeltaKind::Round { watermark } => new_round(w, &st, *watermark),
            }
        }
        None => initial_round(w, ctx, req, folder)?,
    };
    serve_page(w, ctx, state)
}

fn initial_round(w: &mut World, ctx: &Ctx, req: &GReq, folder: &str) -> Result<DeltaState, GErr> {
    let mb = &w.mailboxes[&ctx.user_id];
    let folder_id = mb.resolve_folder(folder).ok_or_else(GErr::item_not_found)?;
    let select = select_of(req)?;
    let filter = req
        .q("$filter")
        .map(|f| {
            Filter::parse(f)
                .ok()
                .filter(Filter::delta_compatible)
                .ok_or_else(|| {
                    GErr::bad(
                        "ErrorInvalidUrlQueryFilter",
                        "The query filter contains one or more invalid nodes. Delta supports only receivedDateTime ge|gt.",
                    )
                })
        })
        .transpose()?;
    if let Some(o) = req.q("$orderby")
        && !o
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .eq_ignore_ascii_case("receivedDateTime desc")
    {
        return Err(GErr::bad(
            "ErrorInvalidUrlQuery",
            "Delta supports only $orderby=receivedDateTime desc.",
        ));
    }
    if req.q("$search").is_some() {
        return Err(GErr::bad(
            "ErrorInvalidUrlQuery",
            "$search is not supported on delta.",
        ));
    }
    let change_types = match req.q("changeType") {
        Some(c) => {
            let set: BTreeSet<String> = c
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect();
            if set
                .iter()
                .any(|s| !["created", "updated", "deleted"].contains(&s.as_str()))
            {
                return Err(GErr::bad(
                    "ErrorInvalidUrlQuery",
                    "changeType must be created, updated or deleted.",
                ));
            }
            Some(set)
        }
        None => None,
    };
    let top = req
        .q("$top")
        .map(|t| {
            t.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| GErr::bad("ErrorInvalidArgument", "Invalid $top."))
        })
        .transpose()?;
    let initial_query: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("$deltatoken") && !k.eq_ignore_ascii_case("$skiptoken")
        })
        .cloned()
        .collect();
    let params = DeltaParams {
        select,
        filter,
        change_types,
        top,
        initial_query,
    };
    let watermark = w.gen_.seq;
    let include_created = params
        .change_types
        .as_ref()
        .is_none_or(|c| c.contains("created"));
    let mut msgs: Vec<_> = mb
        .messages
        .values()
        .filter(|m| m.folder_id == folder_id)
        .filter(|m| params.filter.as_ref().is_none_or(|f| f.matches(m)))
        .collect();
    msgs.sort_by(|a, b| b.received.cmp(&a.received).then(b.key.cmp(&a.key)));
    let mut entries: Vec<DeltaEntry> = if include_created {
        msgs.iter().map(|m| DeltaEntry::Item(m.key)).collect()
    } else {
        vec![]
    };
    let capped = cap(&mut entries, params.top);
    Ok(DeltaState {
        mailbox: ctx.user_id.clone(),
        folder_id,
        path_prefix: ctx.prefix.clone(),
        params,
        kind: DeltaKind::Page {
            entries: Arc::new(entries),
            offset: 0,
            capped,
            next_watermark: watermark,
        },
        expired: None,
    })
}

/// `$top` caps a whole round (trap: what is cut off is not seen later).
fn cap(entries: &mut Vec<DeltaEntry>, top: Option<usize>) -> bool {
    match top {
        Some(t) if entries.len() >= t => {
            entries.truncate(t);
            true
        }
        _ => false,
    }
}

/// Computes the changes in the folder since `watermark`.
fn new_round(w: &World, st: &DeltaState, watermark: u64) -> DeltaState {
    let mb: &Mailbox = &w.mailboxes[&st.mailbox];
    let now_seq = w.gen_.seq;
    // key -> (first change kind in window, first removal (rest id, imm id), any update)
    let mut per: BTreeMap<u64, PerKey> = BTreeMap::new();
    let mut order: Vec<u64> = vec![];
    for c in mb
        .changes
        .iter()
        .filter(|c| c.seq > watermark && c.seq <= now_seq && c.folder_id == st.folder_id)
    {
        let e = per.entry(c.key).or_insert_with(|| {
            order.push(c.key);
            (c.kind, None, false)
        });
        if c.kind == ChangeKind::Removed && e.1.is_none() {
            e.1 = Some((c.rest_id.clone(), c.immutable_id.clone()));
        }
        if c.kind == ChangeKind::Updated {
            e.2 = true;
        }
    }
    let types = st.params.change_types.as_ref();
    let want = |t: &str| types.is_none_or(|s| s.contains(t));
    let mut entries = vec![];
    for key in order {
        let (first, removed, _updated) = per[&key].clone();
        let was_present = first != ChangeKind::Created;
        let present = mb
            .messages
            .get(&key)
            .is_some_and(|m| m.folder_id == st.folder_id);
        let passes_filter = mb
            .messages
            .get(&key)
            .is_some_and(|m| st.params.filter.as_ref().is_none_or(|f| f.matches(m)));
        match (was_present, present) {
            (true, true) => {
                if let Some((rest_id, immutable_id)) = removed {
                    // Moved away and back: the REST id changed.
                    if want("deleted") {
                        entries.push(DeltaEntry::Removed {
                            rest_id,
                            immutable_id,
                            skip_if_immutable: true,
                        });
                    }
                }
                if want("updated") && passes_filter {
                    entries.push(DeltaEntry::Item(key));
                }
            }
            (false, true) => {
                if want("created") && passes_filter {
                    entries.push(DeltaEntry::Item(key));
                }
            }
            (true, false) => {
                if want("deleted")
                    && let Some((rest_id, immutable_id)) = removed
                {
                    entries.push(DeltaEntry::Removed {
                        rest_id,
                        immutable_id,
                        skip_if_immutable: false,
                    });
                }
            }
            (false, false) => {}
        }
    }
    let capped = cap(&mut entries, st.params.top);
    DeltaState {
        kind: DeltaKind::Page {
            entries: Arc::new(entries),
            offset: 0,
            capped,
            next_watermark: now_seq,
        },
        ..st.clone()
    }
}

fn serve_page(w: &mut World, ctx: &Ctx, st: DeltaState) -> Result<GResp, GErr> {
    let DeltaKind::Page {
        entries,
        offset,
        capped,
        next_watermark,
    } = st.kind.clone()
    else {
        unreachable!("pages only");
    };
    let size = ctx.prefer.max_page_size.unwrap_or(DEFAULT_PAGE);
    let end = (offset + size).min(entries.len());
    let slice = if offset < entries.len() {
        &entries[offset..end]
    } else {
        &[][..]
    };
    let mb = &w.mailboxes[&st.mailbox];
    let r = Render {
        immutable: ctx.prefer.immutable_ids,
        body_text: ctx.prefer.body_text,
        select: st.params.select.as_deref(),
        odata_type: true,
        expand_size: false,
    };
    let mut value = vec![];
    for e in slice {
        match e {
            DeltaEntry::Item(k) => {
                if let Some(m) = mb.messages.get(k)
                    && m.folder_id == st.folder_id
                {
                    value.push(message_json(m, &r));
                }
            }
            DeltaEntry::Removed {
                rest_id,
                immutable_id,
                skip_if_immutable,
            } => {
                if *skip_if_immutable && ctx.prefer.immutable_ids {
                    continue;
                }
                let id = if ctx.prefer.immutable_ids {
                    immutable_id
                } else {
                    rest_id
                };
                value.push(json!({
                    "@odata.type": "#microsoft.graph.message",
                    "id": id,
                    "@removed": {"reason": "deleted"},
                }));
            }
        }
    }
    let more = end < entries.len() || (capped && offset < entries.len());
    let link_base = format!(
        "{}{}/mailFolders('{}')/messages/delta",
        ctx.graph_base(),
        st.path_prefix,
        st.folder_id
    );
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#Collection(message)", ctx.graph_base()),
        "value": value,
    });
    if more {
        let tok = w.gen_.token(32);
        w.put_delta_token(
            tok.clone(),
            DeltaState {
                kind: DeltaKind::Page {
                    entries: entries.clone(),
                    offset: end,
                    capped,
                    next_watermark,
                },
                expired: None,
                ..st.clone()
            },
        );
        body["@odata.nextLink"] = Value::String(format!("{link_base}?$skiptoken={tok}"));
    } else {
        let tok = w.gen_.token(40);
        w.put_delta_token(
            tok.clone(),
            DeltaState {
                kind: DeltaKind::Round {
                    watermark: next_watermark,
                },
                expired: None,
                ..st.clone()
            },
        );
        body["@odata.deltaLink"] = Value::String(format!("{link_base}?$deltatoken={tok}"));
    }
    let mut resp = GResp::json(200, body);
    if let Some(n) = ctx.prefer.max_page_size {
        resp = resp.header("Preference-Applied", format!("odata.maxpagesize={n}"));
    }
    Ok(resp)
}
