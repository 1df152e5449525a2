//! Runs the real function binaries as Lambda functions: cargo-lambda's Runtime API emulator,
//! with a thin proxy of ours between it and the function.
//!
//! ```text
//! test ──invoke──▶ cargo lambda watch --only-lambda-apis ◀──/.rt/<name>── proxy ◀── target/debug/<bin>
//!      ──HTTP───▶  /lambda-url/<name>/...                   (this module)      (AWS_LAMBDA_RUNTIME_API,
//!                                                                            a port per process)
//! ```
//!
//! `cargo lambda watch --only-lambda-apis` (the binary from `.local/venv`) queues invocations
//! (`POST /2015-03-31/functions/<name>/invocations`), turns plain HTTP requests under
//! `/lambda-url/<name>/...` into API Gateway v2 (function URL) events and their responses back,
//! and serves the Runtime API under `/.rt/<name>/2018-06-01/runtime/...`. It starts in ~60 ms,
//! so every harness has its own (own port), and tests stay parallel.
//!
//! Why a proxy between the function and cargo-lambda (checked against cargo-lambda 1.9.2):
//! - its `next` answer carries `Lambda-Runtime-Deadline-Ms: 600000` (1970-01-01 00:10 UTC), so a
//!   function's `Context::deadline` would lie in the past; the proxy sets now + the function's
//!   `Timeout` from `infra/template.yaml`, and a realistic `Invoked-Function-Arn`;
//! - when a function process dies mid-invocation cargo-lambda waits forever; the proxy knows
//!   which invocations each process holds and fails them as Lambda does (`Runtime.ExitError`),
//!   together with the [`FunctionHarness::invoke`] calls under way that it had not taken yet
//!   (their events may still be in cargo-lambda, or reach the proxy only after the kill; a
//!   caller that restarts the function once its invocation ended would otherwise wait for
//!   ever). To know those, `invoke` wraps its payload with an id, which the proxy takes off;
//! - a killed process's long-poll could still take the next event; the proxy pulls events
//!   itself and hands each only to the current process (a stale poller's event goes back).
//!   Every process gets a Runtime API port of its own (`AWS_LAMBDA_RUNTIME_API`), so the proxy
//!   knows which process each request comes from: a request that a process being killed sends
//!   after it was retired can never pass for its successor's (an event handed to it would be
//!   held by no process, and its invocation would never end);
//! - once a process has sent a result, nothing may lose it: the proxy forwards it in a task of
//!   its own (the function's connection closing, when the process dies right after sending,
//!   makes hyper drop the handler), and a result or `Runtime.ExitError` that cargo-lambda cannot
//!   be reached for is sent again.
//!
//! Results (`/response`, `/error`) go to cargo-lambda with `Transfer-Encoding: chunked`, never
//! `Content-Length`. cargo-lambda answers the runtime's `POST .../response` at once and hands the
//! still unread body to the waiting caller; for a function URL it then collects that body. Its
//! HTTP/1 server (hyper) signals the end of a `Content-Length` body that completes only after
//! the answer was sent (anything beyond what it read along with the head, so from ~8 KB) no
//! sooner than the next request on that connection: the function URL caller hung (or got a
//! 500 once the idle connection closed). The real runtime client hides this by sending its
//! next `/next` on the same connection right away; the proxy's connections stay idle. A
//! chunked body ends with its own zero-size chunk, which hyper reports as end of stream.
//!
//! A known limit of cargo-lambda's function URLs (not fixed here: it builds the API Gateway
//! event, not the proxy): a body that is not UTF-8 is base64-encoded (`isBase64Encoded`) only
//! when its `Content-Type` is neither `text/*` nor `application/json*`; a non-UTF-8 body with
//! such a type, or without `Content-Type`, gets cargo-lambda's own 500 without an invocation.
//!
//! Each function process gets the variables Lambda sets for a custom runtime
//! (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_VERSION`,
//! `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_LOG_GROUP_NAME`, `AWS_LAMBDA_LOG_STREAM_NAME`,
//! `AWS_LAMBDA_LOG_FORMAT=JSON`, `AWS_LAMBDA_INITIALIZATION_TYPE`, `AWS_EXECUTION_ENV`,
//! `_HANDLER`, `TZ`), the AWS SDK variables of the local stack (endpoint, region, dummy
//! credentials; see [`crate::stack::aws_env`]), `PATH`, `HOME`, `RUST_LOG=info`,
//! `RUST_BACKTRACE=1`, then the caller's variables, which win. Nothing else is inherited.
//! Not emulated: the function timeout (an invocation may run past its deadline), concurrency
//! (one process handles one invocation at a time, like one sandbox), automatic restarts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::paths;
use crate::process::{free_port, log_tail, sigkill, spawn_logged, wait_for_port};
use crate::stack::{ACCOUNT_ID, DEFAULT_REGION};

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const DEADLINE: &str = "lambda-runtime-deadline-ms";
const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
/// Headers of a `next` answer passed through to the function unchanged.
const PASSED_HEADERS: &[&str] = &[
    "lambda-runtime-trace-id",
    "lambda-runtime-client-context",
    "lambda-runtime-cognito-identity",
    "content-type",
];

/// Why an invocation did not return a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The handler returned an error (or panicked): Lambda's `errorType`/`errorMessage`.
    Function {
        error_type: String,
        error_message: String,
    },
    /// The function process died during the invocation (`Runtime.ExitError`).
    Crashed { error_message: String },
    /// No answer within the harness's invoke timeout.
    Timeout(Duration),
    /// The emulator could not be reached or answered something unexpected.
    Transport(String),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Function {
                error_type,
                error_message,
            } => write!(f, "function error {error_type}: {error_message}"),
            InvokeError::Crashed { error_message } => {
                write!(f, "function process crashed: {error_message}")
            }
            InvokeError::Timeout(after) => write!(f, "no answer within {after:?}"),
            InvokeError::Transport(detail) => write!(f, "emulator: {detail}"),
        }
    }
}

impl std::error::Error for InvokeError {}

/// Settings of a [`FunctionHarness`] beyond the environment.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// How long [`FunctionHarness::invoke`] waits for an answer.
    pub invoke_timeout: Duration,
    /// The invocation deadline given to the function; default: the template's `Timeout` for
    /// this binary, else 30 s.
    pub function_timeout: Option<Duration>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`; default: the template's `MemorySize`, else 128.
    pub memory_mb: Option<u64>,
    /// How long start-up may take until the function polls for its first event.
    pub start_timeout: Duration,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            invoke_timeout: Duration::from_secs(120),
            function_timeout: None,
            memory_mb: None,
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// One event taken from cargo-lambda, waiting for a function process.
struct Event {
    request_id: String,
    /// The [`FunctionHarness::invoke`] call it comes from, if any (see [`wrap_payload`]).
    invocation: Option<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
}

/// Events waiting for a function process, and the harness's own invocations under way.
#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    /// [`FunctionHarness::invoke`] calls under way, by id: `Some(exit status)` once the process
    /// they were sent to is gone without having taken them (they fail as it did, wherever their
    /// event is: still in cargo-lambda, or queued here).
    invocations: HashMap<String, Option<String>>,
    /// Whether there is a current function process (spawned, and not killed or exited).
    running: bool,
}

/// State shared by the harness, the proxy's handlers and the process monitor.
struct Shared {
    name: String,
    /// `http://127.0.0.1:PORT/.rt/<name>` (cargo-lambda's Runtime API for this function).
    upstream: String,
    client: reqwest::Client,
    timeout: Duration,
    arn: String,
    queue: Mutex<Queue>,
    queued: Notify,
    /// Generation of the current function process; bumped when a process is spawned, killed or
    /// exits, so a poller of an older process never receives an event.
    generation: AtomicU64,
    /// Request id -> generation of the process holding that invocation. Its lock also orders
    /// generation bumps against hand-outs.
    in_flight: Mutex<HashMap<String, u64>>,
    /// The latest generation that polled for an event (start-up readiness).
    polled: watch::Sender<u64>,
}

impl Shared {
    /// Ends process generation `generation` if it is the current one (`status`: how it ends):
    /// no event goes to it any more, and the [`FunctionHarness::invoke`] calls under way, which
    /// were sent to it, fail as it does even where it never took them. Returns the queued events
    /// of those, for [`Shared::fail_exited`]; the events it took fail in
    /// [`Shared::process_exited`].
    fn retire(&self, generation: u64, status: &str) -> Vec<Event> {
        {
            let _in_flight = self.in_flight.lock().expect("in_flight lock");
            if self
                .generation
                .compare_exchange(
                    generation,
                    generation + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_err()
            {
                return Vec::new();
            }
        }
        let mut guard = self.queue.lock().expect("queue lock");
        let queue = &mut *guard;
        queue.running = false;
        for doomed in queue.invocations.values_mut() {
            doomed.get_or_insert_with(|| status.to_owned());
        }
        let (doomed, waiting): (VecDeque<Event>, VecDeque<Event>) =
            queue.events.drain(..).partition(|e| {
                e.invocation
                    .as_ref()
                    .is_some_and(|id| queue.invocations.contains_key(id))
            });
        queue.events = waiting;
        doomed.into()
    }

    /// Queues `event` for the current or next process, unless it belongs to an invocation whose
    /// process has gone ([`Shared::retire`]): that one fails, in a task of its own.
    fn enqueue(self: &Arc<Self>, event: Event, front: bool) {
        let mut queue = self.queue.lock().expect("queue lock");
        let doomed = event
            .invocation
            .as_ref()
            .and_then(|id| queue.invocations.get(id))
            .cloned()
            .flatten();
        if let Some(status) = doomed {
            drop(queue);
            let shared = self.clone();
            tokio::spawn(async move { shared.fail_exited(vec![event], &status).await });
        } else {
            if front {
                queue.events.push_front(event);
            } else {
                queue.events.push_back(event);
            }
            drop(queue);
            self.queued.notify_one();
        }
    }

    /// Fails `events` with `Runtime.ExitError`: their process exited (`status`).
    async fn fail_exited(&self, events: Vec<Event>, status: &str) {
        for event in events {
            let id = event.request_id;
            let message = format!("RequestId: {id} Error: Runtime exited with error: {status}");
            self.fail(&id, "Runtime.ExitError", &message).await;
        }
    }

    /// Fails every invocation held by generation `generation`, as Lambda does when the runtime
    /// process exits (`Runtime.ExitError`), and those sent to it that it never took.
    async fn process_exited(&self, generation: u64, status: &str) {
        let queued = self.retire(generation, status);
        self.fail_exited(queued, status).await;
        let lost: Vec<String> = {
            let mut in_flight = self.in_flight.lock().expect("in_flight lock");
            let ids = in_flight
                .iter()
                .filter(|(_, g)| **g == generation)
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>();
            for id in &ids {
                in_flight.remove(id);
            }
            ids
        };
        for id in lost {
            let message = format!("RequestId: {id} Error: Runtime exited with error: {status}");
            self.fail(&id, "Runtime.ExitError", &message).await;
        }
    }

    /// Sends error `error_type` as invocation `id`'s result (for an invocation that no process
    /// can finish any more).
    async fn fail(&self, id: &str, error_type: &str, message: &str) {
        let body = serde_json::json!({"errorType": error_type, "errorMessage": message});
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Ok(value) = HeaderValue::from_str(error_type) {
            headers.insert("lambda-runtime-function-error-type", value);
        }
        let path = format!("/2018-06-01/runtime/invocation/{id}/error");
        if let Err(e) = self
            .send_upstream(
                reqwest::Method::POST,
                &path,
                &headers,
                body.to_string().into(),
            )
            .await
        {
            eprintln!(
                "{} runtime proxy: could not fail invocation {id}: {e}",
                self.name
            );
        }
    }

    /// Sends a Runtime API request to cargo-lambda (`path_and_query` below `/.rt/<name>`),
    /// again after a failed attempt (a pooled connection cargo-lambda closed, say): it is a
    /// function's result, which must not be lost. A body goes chunked (see the module docs).
    async fn send_upstream(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: axum::body::Bytes,
    ) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{path_and_query}", self.upstream);
        let mut attempt = 1;
        loop {
            let mut request = self.client.request(method.clone(), &url);
            for (k, v) in headers {
                if k != "host" && k != "content-length" && k != "transfer-encoding" {
                    request = request.header(k.as_str(), v.as_bytes());
                }
            }
            if !body.is_empty() {
                // Chunked, so that cargo-lambda sees the end of a result it reads after
                // answering (see the module docs); hyper then frames the buffered body as chunks.
                request = request.header("transfer-encoding", "chunked");
            }
            match request.body(body.clone()).send().await {
                Err(e) if attempt < RESULT_ATTEMPTS => {
                    eprintln!(
                        "{} runtime proxy: {method} {path_and_query} (attempt {attempt}): {e}",
                        self.name
                    );
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

/// The Runtime API as one function process sees it: requests on its port come from that
/// process only.
#[derive(Clone)]
struct ProcessApi {
    shared: Arc<Shared>,
    /// Generation of the process this port was made for.
    generation: u64,
}

/// Unregisters an [`FunctionHarness::invoke`] call when it ends (or its caller drops it).
struct UnderWay {
    shared: Arc<Shared>,
    id: String,
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.invocations.remove(&self.id);
        }
    }
}

/// Aborts a task when dropped (the Runtime API server of a process, with the process's monitor).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The error type of an invocation the proxy itself failed (its event could not be read):
/// [`InvokeError::Transport`] to the caller.
const PROXY_ERROR: &str = "Runtime.ProxyError";

/// How often a result is sent to cargo-lambda when the request fails (not when it answers).
const RESULT_ATTEMPTS: u32 = 5;

/// The running function process.
struct Proc {
    pid: u32,
    generation: u64,
    exited: watch::Receiver<Option<String>>,
    monitor: JoinHandle<()>,
}

/// A real function binary running as a Lambda function (see the module docs).
pub struct FunctionHarness {
    name: String,
    bin: PathBuf,
    env: Vec<(String, String)>,
    options: HarnessOptions,
    shared: Arc<Shared>,
    emulator_url: String,
    http: reqwest::Client,
    log_path: PathBuf,
    emulator: Child,
    emulator_log: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    process: tokio::sync::Mutex<Option<Proc>>,
}

impl FunctionHarness {
    /// Starts `target/<profile>/<bin_name>` as Lambda function `<bin_name>` with `env` added to
    /// its environment, and waits until it polls for its first event.
    pub async fn start<K: AsRef<str>, V: AsRef<str>>(
        bin_name: &str,
        env: &[(K, V)],
    ) -> anyhow::Result<FunctionHarness> {
        Self::start_with(bin_name, env, HarnessOptions::default()).await
    }

    pub async fn start_with<K: AsRef<str>, V: AsRef<str>>(
        bin_name: &str,
        env: &[(K, V)],
        options: HarnessOptions,
    ) -> anyhow::Result<FunctionHarness> {
        let bin = paths::bin_path(bin_name)?;
        let template = crate::template::Template::load().ok();
        let def = template
            .as_ref()
            .and_then(|t| t.function_by_binary(bin_name));
        let timeout = options
            .function_timeout
            .or_else(|| def.map(|d| Duration::from_secs(d.timeout_seconds)))
            .unwrap_or(Duration::from_secs(30));
        let memory = options
            .memory_mb
            .or_else(|| def.map(|d| d.memory_mb))
            .unwrap_or(128);

        let (emulator, emulator_port, emulator_log) = start_emulator(bin_name).await?;
        let emulator_url = format!("http://127.0.0.1:{emulator_port}");
        let (polled, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            name: bin_name.to_owned(),
            upstream: format!("{emulator_url}/.rt/{bin_name}"),
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()?,
            timeout,
            arn: format!("arn:aws:lambda:{DEFAULT_REGION}:{ACCOUNT_ID}:function:{bin_name}"),
            queue: Mutex::new(Queue::default()),
            queued: Notify::new(),
            generation: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::new()),
            polled,
        });

        let poller = tokio::spawn(pull_events(shared.clone()));

        let mut vars = base_env(bin_name, memory);
        vars.extend(
            env.iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        let harness = FunctionHarness {
            name: bin_name.to_owned(),
            bin,
            env: vars,
            options,
            shared,
            emulator_url,
            http: reqwest::Client::new(),
            log_path: paths::new_log_path(bin_name)?,
            emulator,
            emulator_log,
            tasks: vec![poller],
            process: tokio::sync::Mutex::new(None),
        };
        harness.spawn().await?;
        Ok(harness)
    }

    /// Invokes the function synchronously (`RequestResponse`) with `payload` as the event. While
    /// no function process runs (killed or exited, not restarted yet), the invocation waits for
    /// [`FunctionHarness::restart`]; if the process it was sent to dies, it fails with
    /// [`InvokeError::Crashed`].
    pub async fn invoke<P: Serialize + ?Sized>(&self, payload: &P) -> Result<Value, InvokeError> {
        self.invoke_with(payload, false).await
    }

    /// Like [`FunctionHarness::invoke`], but fails at once with [`InvokeError::Crashed`] while no
    /// function process runs instead of waiting for a restart: for an event source whose poll
    /// races a kill (the restart comes after the poll), a kill just before the invocation is
    /// like one during it.
    pub async fn invoke_if_running<P: Serialize + ?Sized>(
        &self,
        payload: &P,
    ) -> Result<Value, InvokeError> {
        self.invoke_with(payload, true).await
    }

    async fn invoke_with<P: Serialize + ?Sized>(
        &self,
        payload: &P,
        only_if_running: bool,
    ) -> Result<Value, InvokeError> {
        let payload = serde_json::to_vec(payload)
            .map_err(|e| InvokeError::Transport(format!("payload: {e}")))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        {
            let mut queue = self.shared.queue.lock().expect("queue lock");
            if only_if_running && !queue.running {
                return Err(InvokeError::Crashed {
                    error_message: format!(
                        "{} has no running process (killed or exited, not restarted)",
                        self.name
                    ),
                });
            }
            queue.invocations.insert(id.clone(), None);
        }
        let _under_way = UnderWay {
            shared: self.shared.clone(),
            id: id.clone(),
        };
        let body = wrap_payload(&id, &payload);
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.emulator_url, self.name
        );
        let call = async {
            let response = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        };
        let (status, bytes) = match tokio::time::timeout(self.options.invoke_timeout, call).await {
            Err(_) => return Err(InvokeError::Timeout(self.options.invoke_timeout)),
            Ok(Err(e)) => return Err(InvokeError::Transport(e.to_string())),
            Ok(Ok(answer)) => answer,
        };
        match status.as_u16() {
            200 if bytes.is_empty() => Ok(Value::Null),
            200 => serde_json::from_slice(&bytes).map_err(|e| {
                InvokeError::Transport(format!(
                    "response is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                ))
            }),
            500 => {
                let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let field = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let (error_type, error_message) = (field("errorType"), field("errorMessage"));
                if error_type.is_empty() {
                    Err(InvokeError::Transport(format!(
                        "500: {}",
                        String::from_utf8_lossy(&bytes)
                    )))
                } else if error_type == "Runtime.ExitError" {
                    Err(InvokeError::Crashed { error_message })
                } else if error_type == PROXY_ERROR {
                    Err(InvokeError::Transport(error_message))
                } else {
                    Err(InvokeError::Function {
                        error_type,
                        error_message,
                    })
                }
            }
            other => Err(InvokeError::Transport(format!(
                "{other}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    /// Base URL of the function's HTTP endpoint (a function URL, API Gateway v2 payload):
    /// `http://127.0.0.1:PORT/lambda-url/<name>`; append the request path to it.
    pub fn http_base_url(&self) -> String {
        format!("{}/lambda-url/{}", self.emulator_url, self.name)
    }

    /// SIGKILLs the function process (crash injection) and waits until it is gone; its
    /// in-flight invocations fail with [`InvokeError::Crashed`]: every [`invoke`] under way,
    /// whether the process had taken its event yet or not. Invocations sent afterwards wait for
    /// [`FunctionHarness::restart`] (see [`FunctionHarness::invoke_if_running`]).
    ///
    /// [`invoke`]: FunctionHarness::invoke
    pub async fn kill(&self) {
        let mut process = self.process.lock().await;
        if let Some(proc) = process.take() {
            let status = "signal: 9 (SIGKILL)";
            let queued = self.shared.retire(proc.generation, status);
            if proc.exited.borrow().is_none() {
                sigkill(proc.pid);
            }
            self.shared.fail_exited(queued, status).await;
            let mut exited = proc.exited.clone();
            let _ = exited.wait_for(Option::is_some).await;
        }
    }

    /// Kills the function process if it runs and starts a fresh one (a cold start).
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.kill().await;
        self.spawn().await
    }

    /// Whether the function process is alive.
    pub async fn is_running(&self) -> bool {
        self.process
            .lock()
            .await
            .as_ref()
            .is_some_and(|p| p.exited.borrow().is_none())
    }

    /// Pid of the function process, if it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.process
            .lock()
            .await
            .as_ref()
            .filter(|p| p.exited.borrow().is_none())
            .map(|p| p.pid)
    }

    /// The Lambda function name (the binary's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cargo-lambda emulator's base URL (`http://127.0.0.1:PORT`).
    pub fn emulator_url(&self) -> &str {
        &self.emulator_url
    }

    /// The function's environment (without the per-process `AWS_LAMBDA_RUNTIME_API` and
    /// `AWS_LAMBDA_LOG_STREAM_NAME`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The function's stdout and stderr (all of its processes so far).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn spawn(&self) -> anyhow::Result<()> {
        let mut process = self.process.lock().await;
        if process
            .as_ref()
            .is_some_and(|p| p.exited.borrow().is_none())
        {
            bail!("function {} is already running", self.name);
        }
        let generation = {
            let _in_flight = self.shared.in_flight.lock().expect("in_flight lock");
            self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut polled = self.shared.polled.subscribe();
        // This process's own Runtime API port (see the module docs).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the runtime proxy")?;
        let api_port = listener.local_addr()?.port();
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_event))
            .fallback(forward)
            .with_state(ProcessApi {
                shared: self.shared.clone(),
                generation,
            });
        let server = AbortOnDrop(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        let mut command = Command::new(&self.bin);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let stream = format!("{}/[$LATEST]{}", today(), uuid::Uuid::new_v4().simple());
        command
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{api_port}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .current_dir(paths::workspace_root());
        let mut child = spawn_logged(&mut command, &self.log_path)?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", self.name))?;
        // Before the monitor starts: its retire when the process exits must come after this.
        self.shared.queue.lock().expect("queue lock").running = true;

        let (exited_tx, exited) = watch::channel(None);
        let shared = self.shared.clone();
        let monitor = tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            shared.process_exited(generation, &status).await;
            let _ = exited_tx.send(Some(status));
            // The port of a process that is gone closes with its monitor.
            drop(server);
        });
        let proc = Proc {
            pid,
            generation,
            exited: exited.clone(),
            monitor,
        };

        let mut exited_wait = exited.clone();
        let ready = tokio::time::timeout(self.options.start_timeout, async {
            tokio::select! {
                ok = polled.wait_for(|g| *g >= generation) => ok.map(|_| ()).map_err(|_| anyhow!("proxy stopped")),
                status = exited_wait.wait_for(Option::is_some) => {
                    let status = status.map(|s| s.clone().unwrap_or_default()).unwrap_or_default();
                    Err(anyhow!("{} exited ({status}) before polling for an event; log {}:\n{}",
                        self.name, self.log_path.display(), log_tail(&self.log_path)))
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => {
                *process = Some(proc);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                sigkill(pid);
                bail!(
                    "{} did not poll for an event within {:?}; log {}:\n{}",
                    self.name,
                    self.options.start_timeout,
                    self.log_path.display(),
                    log_tail(&self.log_path)
                )
            }
        }
    }
}

impl Drop for FunctionHarness {
    fn drop(&mut self) {
        if let Ok(mut process) = self.process.try_lock()
            && let Some(proc) = process.take()
        {
            if proc.exited.borrow().is_none() {
                sigkill(proc.pid);
            }
            proc.monitor.abort();
        }
        if let Some(pid) = self.emulator.id() {
            sigkill(pid);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for FunctionHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionHarness")
            .field("name", &self.name)
            .field("emulator_url", &self.emulator_url)
            .field("log_path", &self.log_path)
            .field("emulator_log", &self.emulator_log)
            .finish_non_exhaustive()
    }
}

/// Starts `cargo lambda watch --only-lambda-apis` on a free port (retrying if another process
/// takes the port first). It runs in the workspace root: it serves only functions named after
/// the workspace's binaries.
async fn start_emulator(name: &str) -> anyhow::Result<(Child, u16, PathBuf)> {
    let cargo_lambda = paths::cargo_lambda_path()?;
    let log = paths::new_log_path(&format!("cargo-lambda-{name}"))?;
    let mut last_error = None;
    for _ in 0..3 {
        let port = free_port()?;
        let mut command = Command::new(&cargo_lambda);
        command
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
            ])
            .args(["--invoke-port", &port.to_string()])
            .current_dir(paths::workspace_root())
            .env("NO_COLOR", "1");
        let mut child = spawn_logged(&mut command, &log)?;
        match wait_for_port(
            port,
            &mut child,
            Duration::from_secs(30),
            "cargo lambda watch",
            &log,
        )
        .await
        {
            Ok(()) => return Ok((child, port, log)),
            Err(e) => {
                if let Some(pid) = child.id() {
                    sigkill(pid);
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("cargo lambda watch did not start")))
}

/// The environment Lambda gives a custom runtime, plus the local stack's AWS variables.
fn base_env(name: &str, memory_mb: u64) -> Vec<(String, String)> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            vars.insert(key.into(), value);
        }
    }
    let set = |vars: &mut BTreeMap<String, String>, k: &str, v: &str| {
        vars.insert(k.to_owned(), v.to_owned());
    };
    set(&mut vars, "AWS_LAMBDA_FUNCTION_NAME", name);
    set(&mut vars, "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    set(
        &mut vars,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        &memory_mb.to_string(),
    );
    set(
        &mut vars,
        "AWS_LAMBDA_LOG_GROUP_NAME",
        &format!("/aws/lambda/{name}"),
    );
    set(&mut vars, "AWS_LAMBDA_LOG_FORMAT", "JSON");
    set(&mut vars, "AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");
    set(&mut vars, "AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023");
    set(&mut vars, "_HANDLER", "bootstrap");
    set(&mut vars, "TZ", ":UTC");
    set(&mut vars, "RUST_LOG", "info");
    set(&mut vars, "RUST_BACKTRACE", "1");
    for (k, v) in crate::stack::aws_env(&crate::stack::stack_vars()) {
        vars.insert(k, v);
    }
    vars.into_iter().collect()
}

fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}/{m:02}/{d:02}")
}

/// Pulls this function's events from cargo-lambda, one at a time, into the shared queue.
async fn pull_events(shared: Arc<Shared>) {
    let url = format!("{}/2018-06-01/runtime/invocation/next", shared.upstream);
    loop {
        let response = match shared.client.get(&url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => r,
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut headers = HeaderMap::new();
        for (k, v) in response.headers() {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_ref()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.insert(k, v);
            }
        }
        let Some(request_id) = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            continue;
        };
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                // Taken from cargo-lambda but unreadable: no process can run it, so it fails
                // now rather than waiting for its caller's timeout.
                let message = format!("RequestId: {request_id} Error: reading the event: {e}");
                shared.fail(&request_id, PROXY_ERROR, &message).await;
                continue;
            }
        };
        let (invocation, body) = unwrap_payload(body);
        shared.enqueue(
            Event {
                request_id,
                invocation,
                headers,
                body,
            },
            false,
        );
    }
}

const WRAP_HEAD: &[u8] = b"{\"e2e-harness-invocation\":\"";
const WRAP_MIDDLE: &[u8] = b"\",\"payload\":";
/// Length of an invocation id (a simple UUID).
const INVOCATION_ID_LEN: usize = 32;

/// The payload of [`FunctionHarness::invoke`] call `id` as sent to cargo-lambda: wrapped as
/// `{"e2e-harness-invocation":"<id>","payload":<payload>}`, so that the proxy knows which call
/// an event comes from (cargo-lambda passes no header of an invocation on to its event). The
/// proxy unwraps it: the function gets `payload` byte for byte.
fn wrap_payload(id: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() + 80);
    body.extend_from_slice(WRAP_HEAD);
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(WRAP_MIDDLE);
    body.extend_from_slice(payload);
    body.push(b'}');
    body
}

/// The invocation id and payload of an event body made by [`wrap_payload`]; any other body
/// (a function URL's event, say) as it is.
fn unwrap_payload(body: axum::body::Bytes) -> (Option<String>, axum::body::Bytes) {
    let start = WRAP_HEAD.len() + INVOCATION_ID_LEN + WRAP_MIDDLE.len();
    if body.len() > start
        && body.starts_with(WRAP_HEAD)
        && body[WRAP_HEAD.len() + INVOCATION_ID_LEN..].starts_with(WRAP_MIDDLE)
        && body.ends_with(b"}")
        && let Ok(id) = std::str::from_utf8(&body[WRAP_HEAD.len()..][..INVOCATION_ID_LEN])
    {
        let id = id.to_owned();
        return (Some(id), body.slice(start..body.len() - 1));
    }
    (None, body)
}

/// `GET /2018-06-01/runtime/invocation/next` from the function process.
///
/// The process's generation comes from the port the request arrived on, never from the current
/// generation when it arrives: a process being killed may still poll after it was retired.
async fn next_event(State(api): State<ProcessApi>) -> Response {
    let ProcessApi { shared, generation } = api;
    shared.polled.send_if_modified(|g| {
        let newer = *g < generation;
        if newer {
            *g = generation;
        }
        newer
    });
    let event = loop {
        let notified = shared.queued.notified();
        if let Some(event) = shared.queue.lock().expect("queue lock").events.pop_front() {
            break event;
        }
        notified.await;
    };
    {
        let mut in_flight = shared.in_flight.lock().expect("in_flight lock");
        if shared.generation.load(Ordering::SeqCst) != generation {
            // This poller's process was killed or replaced: the event waits for the next one.
            drop(in_flight);
            shared.enqueue(event, true);
            return Response::builder()
                .status(StatusCode::GONE)
                .body(Body::empty())
                .expect("response");
        }
        in_flight.insert(event.request_id.clone(), generation);
    }
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + shared.timeout;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(REQUEST_ID, &event.request_id)
        .header(DEADLINE, deadline.as_millis().to_string())
        .header(FUNCTION_ARN, &shared.arn);
    for name in PASSED_HEADERS {
        if let Some(value) = event.headers.get(*name) {
            response = response.header(*name, value);
        }
    }
    response.body(Body::from(event.body)).expect("response")
}

/// Every other Runtime API call (`/response`, `/error`, `/init/error`) goes to cargo-lambda.
///
/// The invocation stays in flight (failed with `Runtime.ExitError` if its process dies) until
/// its result has been read whole; from then on a task of its own sends it, which the function
/// process dying meanwhile cannot cancel (hyper drops this handler when the connection closes).
async fn forward(State(api): State<ProcessApi>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::empty())
            .expect("response");
    };
    let shared = api.shared;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let path = parts.uri.path().to_owned();
    let is_result = path.ends_with("/response") || path.ends_with("/error");
    let send = tokio::spawn(async move {
        if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/")
            && let Some((id, _)) = rest.split_once('/')
        {
            shared.in_flight.lock().expect("in_flight lock").remove(id);
        }
        match shared
            .send_upstream(parts.method, &path_and_query, &parts.headers, body)
            .await
        {
            // Lambda accepts a result even when its invoker has gone (e.g. an invoke that
            // timed out); cargo-lambda answers 500 then, which would make the runtime exit.
            Ok(answer) if is_result && !answer.status().is_success() => Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::empty())
                .expect("response"),
            Ok(answer) => {
                let status = StatusCode::from_u16(answer.status().as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let bytes = answer.bytes().await.unwrap_or_default();
                Response::builder()
                    .status(status)
                    .body(Body::from(bytes))
                    .expect("response")
            }
            Err(e) => {
                eprintln!("{} runtime proxy: {path}: {e}", shared.name);
                Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::from(format!("{} runtime proxy: {e}", shared.name)))
                    .expect("response")
            }
        }
    });
    send.await.unwrap_or_else(|e| {
        Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("runtime proxy: {e}")))
            .expect("response")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrapped_payloads_come_back_byte_for_byte() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        for payload in [&b"{}"[..], b"{\"a\": [1, 2]}", b"null", b"\"}\""] {
            let wrapped = super::wrap_payload(&id, payload);
            let value: serde_json::Value = serde_json::from_slice(&wrapped).unwrap();
            assert_eq!(value["e2e-harness-invocation"], id.as_str());
            let (got, body) = super::unwrap_payload(wrapped.into());
            assert_eq!(got.as_deref(), Some(id.as_str()));
            assert_eq!(&body[..], payload);
        }
        let event = axum::body::Bytes::from_static(b"{\"version\":\"2.0\"}");
        let (got, body) = super::unwrap_payload(event.clone());
        assert_eq!((got, body), (None, event));
    }

    #[test]
    fn log_stream_dates_are_civil_dates() {
        let today = super::today();
        assert_eq!(today.len(), 10, "{today}");
        assert!(today.starts_with("20"), "{today}");
    }
}
