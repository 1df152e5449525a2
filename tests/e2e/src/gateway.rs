//! The template's HTTP API (`HttpApi`) locally: one base URL whose routes (`GET /oauth/callback`,
//! `ANY /api/{proxy+}`, ...) go to the functions that declare them in `infra/template.yaml`, as
//! API Gateway does. Each function is reached through its harness's function URL.
//!
//! Bind first, then start the functions with `PUBLIC_BASE_URL` = [`HttpApiGateway::base_url`],
//! then [`HttpApiGateway::add`] them:
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use e2e::{FunctionHarness, HttpApiGateway};
//! let gateway = HttpApiGateway::start().await?;
//! let env = [("PUBLIC_BASE_URL", gateway.base_url())];
//! let callback = FunctionHarness::start("oauth-callback", &env).await?;
//! let api = FunctionHarness::start("management-api", &env).await?;
//! gateway.add(&callback)?;
//! gateway.add(&api)?;
//! // GET {base}/connect -> management-api, GET {base}/oauth/callback -> oauth-callback
//! # Ok(()) }
//! ```

use std::sync::{Arc, RwLock};

use anyhow::{Context, anyhow};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::task::JoinHandle;

use crate::lambda::FunctionHarness;
use crate::template::{HttpRoute, Template};

#[derive(Debug, Clone)]
struct Route {
    method: String,
    /// Path segments; a last segment `{x+}` matches one or more remaining segments.
    path: String,
    target: String,
}

impl Route {
    /// How well `path` matches: `None` if not at all; exact routes beat greedy ones, and
    /// longer greedy prefixes beat shorter ones (API Gateway's most specific match).
    fn score(&self, method: &str, path: &str) -> Option<(u8, usize)> {
        if self.method != "ANY" && self.method != method {
            return None;
        }
        let route: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for (i, segment) in route.iter().enumerate() {
            if segment.starts_with('{') && segment.ends_with("+}") {
                let rest = &actual[i.min(actual.len())..];
                return (i < actual.len() && rest.iter().any(|s| !s.is_empty())).then_some((0, i));
            }
            let matches = match actual.get(i) {
                Some(a) => {
                    (segment.starts_with('{') && segment.ends_with('}') && !a.is_empty())
                        || a == segment
                }
                None => false,
            };
            if !matches {
                return None;
            }
        }
        (route.len() == actual.len()).then_some((1, route.len()))
    }
}

struct Shared {
    routes: RwLock<Vec<Route>>,
    client: reqwest::Client,
}

/// A local HTTP API in front of function harnesses (see the module docs).
pub struct HttpApiGateway {
    base_url: String,
    shared: Arc<Shared>,
    template: Template,
    server: JoinHandle<()>,
}

impl HttpApiGateway {
    /// Listens on a free 127.0.0.1 port, with no routes yet.
    pub async fn start() -> anyhow::Result<HttpApiGateway> {
        let template = Template::load()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the HTTP API")?;
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let shared = Arc::new(Shared {
            routes: RwLock::new(Vec::new()),
            // Redirects (the connect flow's 302s) go back to the caller untouched.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        });
        let app = axum::Router::new()
            .fallback(route)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpApiGateway {
            base_url,
            shared,
            template,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, the local `PUBLIC_BASE_URL`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Routes the `HttpApi` events the template declares for `function`'s binary to it.
    pub fn add(&self, function: &FunctionHarness) -> anyhow::Result<Vec<HttpRoute>> {
        let def = self
            .template
            .function_by_binary(function.name())
            .ok_or_else(|| {
                anyhow!(
                    "no function with binary `{}` in the template",
                    function.name()
                )
            })?;
        if def.http_routes.is_empty() {
            return Err(anyhow!(
                "{} has no HttpApi events in the template",
                def.logical_id
            ));
        }
        let target = function.http_base_url();
        let mut routes = self.shared.routes.write().expect("routes lock");
        for r in &def.http_routes {
            routes.push(Route {
                method: r.method.clone(),
                path: r.path.clone(),
                target: target.clone(),
            });
        }
        Ok(def.http_routes.clone())
    }
}

impl HttpApiGateway {
    /// Routes `method path` (API Gateway syntax: `ANY`, `{name}`, a last `{name+}`) to
    /// `function`, for functions the template does not route (test-only binaries).
    pub fn add_route(&self, method: &str, path: &str, function: &FunctionHarness) {
        self.shared
            .routes
            .write()
            .expect("routes lock")
            .push(Route {
                method: method.to_uppercase(),
                path: path.to_owned(),
                target: function.http_base_url(),
            });
    }
}

impl Drop for HttpApiGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for HttpApiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApiGateway")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn not_found() -> Response {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"message":"Not Found"}"#))
        .expect("response")
}

async fn route(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let target = {
        let routes = shared.routes.read().expect("routes lock");
        routes
            .iter()
            .filter_map(|r| r.score(parts.method.as_str(), &path).map(|s| (s, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r.target.clone())
    };
    let Some(target) = target else {
        return not_found();
    };
    let Ok(body) = axum::body::to_bytes(body, 10 * 1024 * 1024).await else {
        return Response::builder()
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .body(Body::empty())
            .expect("response");
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut upstream = shared
        .client
        .request(parts.method.clone(), format!("{target}{path}{query}"));
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            upstream = upstream.header(k.as_str(), v.as_bytes());
        }
    }
    match upstream.body(body).send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            for (k, v) in answer.headers() {
                // cargo-lambda's CORS and length headers are not the API's.
                let name = k.as_str();
                if name != "content-length"
                    && name != "transfer-encoding"
                    && !name.starts_with("access-control-")
                    && name != "vary"
                {
                    response = response.header(name, v.as_bytes());
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).expect("response")
        }
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("local HTTP API: {e}")))
            .expect("response"),
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    fn route(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            target: String::new(),
        }
    }

    #[test]
    fn routes_match_like_api_gateway() {
        let greedy = route("ANY", "/api/{proxy+}");
        assert!(greedy.score("POST", "/api/integrations/x").is_some());
        assert!(
            greedy.score("GET", "/api/").is_none(),
            "greedy needs a segment"
        );
        assert!(greedy.score("GET", "/api").is_none());
        let exact = route("GET", "/connect");
        assert!(exact.score("GET", "/connect").is_some());
        assert!(exact.score("POST", "/connect").is_none());
        assert!(exact.score("GET", "/connect/x").is_none());
        let sub = route("GET", "/connect/{proxy+}");
        assert!(sub.score("GET", "/connect/org/start").is_some());
        let root = route("GET", "/");
        assert!(root.score("GET", "/").is_some());
        assert!(root.score("GET", "/x").is_none());
        assert!(
            exact.score("GET", "/connect") > sub.score("GET", "/connect/a"),
            "exact beats greedy"
        );
    }
}
