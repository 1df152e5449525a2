//! A counting proxy in front of the AWS emulator: give a function its URL as `AWS_ENDPOINT_URL`
//! and every DynamoDB, Secrets Manager and SQS call it makes is counted by operation, with the
//! bytes both ways. Benchmarks use it to report AWS operations *measured*, not read off the code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;

/// Calls and bytes of one operation, e.g. `dynamodb:UpdateItem`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub calls: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

#[derive(Default)]
struct Inner {
    counts: BTreeMap<String, CallCount>,
}

/// The proxy; counting runs until it is dropped.
pub struct AwsCallCounter {
    url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
}

impl AwsCallCounter {
    /// Listens on a free local port and forwards everything to `upstream` (the emulator's URL).
    pub async fn start(upstream: &str) -> anyhow::Result<AwsCallCounter> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().build()?,
            inner: inner.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AwsCallCounter { url, inner, server })
    }

    /// What to set as the function's `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The counts so far, by `service:Operation`.
    pub fn snapshot(&self) -> BTreeMap<String, CallCount> {
        self.inner.lock().expect("counter lock").counts.clone()
    }

    /// Counts since `before` (a snapshot taken earlier), operations with no new calls left out.
    pub fn since(&self, before: &BTreeMap<String, CallCount>) -> BTreeMap<String, CallCount> {
        self.snapshot()
            .into_iter()
            .filter_map(|(op, now)| {
                let then = before.get(&op).copied().unwrap_or_default();
                let delta = CallCount {
                    calls: now.calls - then.calls,
                    request_bytes: now.request_bytes - then.request_bytes,
                    response_bytes: now.response_bytes - then.response_bytes,
                };
                (delta.calls > 0).then_some((op, delta))
            })
            .collect()
    }
}

impl Drop for AwsCallCounter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Totals of a count map for one service prefix (`dynamodb`, `sqs`, `secretsmanager`).
pub fn service_total(counts: &BTreeMap<String, CallCount>, service: &str) -> CallCount {
    let prefix = format!("{service}:");
    counts
        .iter()
        .filter(|(op, _)| op.starts_with(&prefix))
        .fold(CallCount::default(), |acc, (_, c)| CallCount {
            calls: acc.calls + c.calls,
            request_bytes: acc.request_bytes + c.request_bytes,
            response_bytes: acc.response_bytes + c.response_bytes,
        })
}

/// DynamoDB writes (every write operation; a `BatchWriteItem` counts once per call) and reads.
pub fn dynamodb_writes_reads(counts: &BTreeMap<String, CallCount>) -> (u64, u64) {
    const WRITES: &[&str] = &[
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
    ];
    let mut writes = 0;
    let mut reads = 0;
    for (op, c) in counts {
        let Some(name) = op.strip_prefix("dynamodb:") else {
            continue;
        };
        if WRITES.contains(&name) {
            writes += c.calls;
        } else {
            reads += c.calls;
        }
    }
    (writes, reads)
}

/// `X-Amz-Target: DynamoDB_20120810.UpdateItem` -> `dynamodb:UpdateItem`; the SQS query
/// protocol's `Action=` when there is no target header.
fn operation(target: Option<&str>, body: &[u8]) -> String {
    if let Some((service, op)) = target.and_then(|t| t.split_once('.')) {
        let service = match service {
            s if s.starts_with("DynamoDB") => "dynamodb",
            "AmazonSQS" => "sqs",
            "secretsmanager" => "secretsmanager",
            other => other,
        };
        return format!("{service}:{op}");
    }
    let action = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned());
    match action {
        Some(action) => format!("query:{action}"),
        None => "unknown".into(),
    }
}

const HOP_BY_HOP: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let op = operation(target, &body);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body.clone());
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = answer.status();
    let headers = answer.headers().clone();
    let bytes: Bytes = answer.bytes().await.unwrap_or_default();
    {
        let mut inner = proxy.inner.lock().expect("counter lock");
        let count = inner.counts.entry(op).or_default();
        count.calls += 1;
        count.request_bytes += body.len() as u64;
        count.response_bytes += bytes.len() as u64;
    }
    let mut response = Response::builder().status(code);
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(HeaderName::from(name), value);
        }
    }
    response
        .body(Body::from(bytes))
        .unwrap_or_else(|_| status(StatusCode::BAD_GATEWAY))
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_operations_by_target_header_or_query_action() {
        assert_eq!(
            operation(Some("DynamoDB_20120810.UpdateItem"), b""),
            "dynamodb:UpdateItem"
        );
        assert_eq!(
            operation(Some("AmazonSQS.SendMessageBatch"), b""),
            "sqs:SendMessageBatch"
        );
        assert_eq!(
            operation(Some("secretsmanager.GetSecretValue"), b""),
            "secretsmanager:GetSecretValue"
        );
        assert_eq!(
            operation(None, b"Action=ReceiveMessage&Version=2012-11-05"),
            "query:ReceiveMessage"
        );
        assert_eq!(operation(None, b""), "unknown");
    }

    #[test]
    fn splits_dynamodb_writes_from_reads() {
        let counts: BTreeMap<String, CallCount> = [
            ("dynamodb:UpdateItem", 3),
            ("dynamodb:GetItem", 1),
            ("dynamodb:Query", 2),
            ("dynamodb:PutItem", 1),
            ("sqs:SendMessageBatch", 5),
        ]
        .into_iter()
        .map(|(op, calls)| {
            (
                op.to_owned(),
                CallCount {
                    calls,
                    ..CallCount::default()
                },
            )
        })
        .collect();
        assert_eq!(dynamodb_writes_reads(&counts), (4, 3));
        assert_eq!(service_total(&counts, "sqs").calls, 5);
    }
}
