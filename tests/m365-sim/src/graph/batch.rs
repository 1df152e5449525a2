//! JSON batching: `POST /v1.0/$batch` with up to 20 requests, `dependsOn` sequencing (424 for
//! dependents of a failed request), at most 4 items in flight, each item authenticated,
//! throttled and logged on its own.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use super::{GBody, GErr, GReq, GResp, execute};
use crate::Sim;
use crate::util::parse_query;

pub const MAX_REQUESTS: usize = 20;
pub const MAX_IN_FLIGHT: usize = 4;

struct Item {
    id: String,
    req: GReq,
    depends: Vec<String>,
}

fn item_json(id: &str, r: &GResp) -> Value {
    let mut headers = Map::new();
    for (k, v) in &r.headers {
        headers.insert(k.clone(), json!(v));
    }
    let mut o = json!({"id": id, "status": r.status});
    match &r.body {
        GBody::Json(v) => {
            headers.insert("Content-Type".into(), json!(super::JSON_CT));
            o["body"] = v.clone();
        }
        GBody::Raw(s) => {
            headers.insert("Content-Type".into(), json!(super::JSON_CT));
            o["body"] = json!(s);
        }
        GBody::None => {
            o["body"] = Value::Null;
        }
    }
    o["headers"] = Value::Object(headers);
    o
}

pub fn handle(sim: Arc<Sim>, req: GReq) -> Pin<Box<dyn Future<Output = GResp> + Send>> {
    Box::pin(async move {
        match parse(&req) {
            Ok(items) => run(sim, req, items).await,
            Err(e) => {
                let mut w = sim.world();
                e.into_resp(&mut w, &req)
            }
        }
    })
}

fn parse(req: &GReq) -> Result<Vec<Item>, GErr> {
    let bad = |m: &str| GErr::bad("BadRequest", m);
    let v: Value =
        serde_json::from_slice(&req.body).map_err(|_| bad("Invalid batch payload format."))?;
    let arr = v
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid batch payload format. The 'requests' property is required."))?;
    if arr.len() > MAX_REQUESTS {
        return Err(bad(&format!(
            "Invalid batch payload format. The number of requests ({}) exceeds the limit of {MAX_REQUESTS}.",
            arr.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut items = vec![];
    for r in arr {
        let id = match r.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(bad(
                    "Invalid batch payload format. Every request needs an id.",
                ));
            }
        };
        if !seen.insert(id.clone()) {
            return Err(bad(&format!("Batch request contains duplicate id '{id}'.")));
        }
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .ok_or_else(|| bad(&format!("Request id : {id} does not have a valid method.")))?;
        let url = r
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("Request id : {id} does not have a url.")))?;
        let mut headers = HeaderMap::new();
        if let Some(h) = r.get("headers").and_then(Value::as_object) {
            for (k, v) in h {
                if let (Ok(k), Some(Ok(v))) = (
                    HeaderName::try_from(k.as_str()),
                    v.as_str().map(HeaderValue::from_str),
                ) {
                    headers.append(k, v);
                }
            }
        }
        let body = r.get("body").filter(|b| !b.is_null());
        if body.is_some() && !headers.contains_key("content-type") {
            return Err(bad(&format!(
                "Write request id : {id} does not contain Content-Type header or body."
            )));
        }
        let body = match body {
            Some(Value::String(s)) => Bytes::from(s.clone()),
            Some(b) => Bytes::from(b.to_string()),
            None => Bytes::new(),
        };
        let depends: Vec<String> = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| match d {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if url.starts_with("http://") || url.starts_with("https://") {
            return Err(bad(&format!(
                "Request id : {id} has an absolute url; batch requests use urls relative to the version, e.g. /me/messages."
            )));
        }
        let url = url.trim_start_matches('/');
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        // Inherit the outer request's authorization.
        if let Some(a) = req.headers.get("authorization")
            && !headers.contains_key("authorization")
        {
            headers.insert("authorization", a.clone());
        }
        items.push(Item {
            id,
            req: GReq {
                method,
                path: format!("/{path}"),
                query: parse_query(query),
                headers,
                body,
                base: req.base.clone(),
                batched: true,
            },
            depends,
        });
    }
    let ids: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    for i in &items {
        for d in &i.depends {
            if !ids.contains(d.as_str()) {
                return Err(bad(&format!(
                    "Request id : {} depends on an unknown request id '{d}'.",
                    i.id
                )));
            }
        }
    }
    Ok(items)
}

async fn run(sim: Arc<Sim>, outer: GReq, items: Vec<Item>) -> GResp {
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut pending: Vec<Item> = items;
    let mut responses: Vec<Value> = vec![];
    while !pending.is_empty() {
        // Dependents of failed requests get 424 right away.
        let mut progressed = false;
        let mut i = 0;
        while i < pending.len() {
            let failed_dep = pending[i]
                .depends
                .iter()
                .any(|d| statuses.get(d).is_some_and(|s| *s >= 400));
            if failed_dep {
                let it = pending.remove(i);
                let mut w = sim.world();
                let r = GErr::new(
                    424,
                    "FailedDependency",
                    "The request could not be executed because a request it depends on failed.",
                )
                .into_resp(&mut w, &it.req);
                drop(w);
                statuses.insert(it.id.clone(), 424);
                responses.push(item_json(&it.id, &r));
                progressed = true;
            } else {
                i += 1;
            }
        }
        let ready: Vec<usize> = pending
            .iter()
            .enumerate()
            .filter(|(_, it)| it.depends.iter().all(|d| statuses.contains_key(d)))
            .map(|(i, _)| i)
            .take(MAX_IN_FLIGHT)
            .collect();
        if ready.is_empty() {
            if progressed {
                continue;
            }
            // A dependency cycle: fail what is left.
            for it in pending.drain(..) {
                let mut w = sim.world();
                let r = GErr::new(424, "FailedDependency", "Circular dependency.")
                    .into_resp(&mut w, &it.req);
                drop(w);
                responses.push(item_json(&it.id, &r));
            }
            break;
        }
        let mut set = JoinSet::new();
        for idx in ready.into_iter().rev() {
            let it = pending.remove(idx);
            let s = sim.clone();
            set.spawn(async move {
                let r = execute(&s, it.req).await;
                (it.id, r)
            });
        }
        while let Some(res) = set.join_next().await {
            if let Ok((id, r)) = res {
                statuses.insert(id.clone(), r.status);
                responses.push(item_json(&id, &r));
            }
        }
    }
    let _ = outer;
    GResp::json(200, json!({"responses": responses}))
}
