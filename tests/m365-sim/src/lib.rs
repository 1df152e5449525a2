//! A Microsoft 365 simulator: Entra ID v2.0 sign-in (authorize, admin consent, token) and the
//! Microsoft Graph mail API (folders, messages, actions, delta, `$batch`), with a control API
//! under `/_sim/...` for tests and the demo. See README.md for what is covered.
//!
//! Library use:
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = m365_sim::spawn(m365_sim::SimConfig { seed: 7, ..Default::default() }).await?;
//! println!("login base {} graph base {}/v1.0", sim.base_url, sim.base_url);
//! # Ok(()) }
//! ```

pub mod control;
pub mod faults;
pub mod generate;
pub mod graph;
pub mod identity;
pub mod model;
pub mod server;
pub mod util;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{any, get, post};

pub use model::World;
pub use server::{ConnCtl, SimHandle, serve, spawn};

/// Start-up configuration.
#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// Seeds ids, generated content and the fault RNG (deterministic runs).
    pub seed: u64,
    /// Base URL used in links (`@odata.nextLink`, token audiences, ...). Default: `http://{Host}`.
    pub public_base_url: Option<String>,
}

/// Shared simulator state.
pub struct Sim {
    pub config: SimConfig,
    world: Mutex<World>,
    /// HS256 key for access tokens and id tokens.
    pub jwt_key: Vec<u8>,
}

pub type SharedSim = Arc<Sim>;

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Sim> {
        let world = World::new(config.seed);
        let mut key = b"m365-sim-token-signing-key-".to_vec();
        key.extend_from_slice(&config.seed.to_be_bytes());
        Arc::new(Sim {
            config,
            world: Mutex::new(world),
            jwt_key: key,
        })
    }

    /// Locks the world (never held across an await).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the world with a fresh one (keeps the config; optional new seed).
    pub fn reset(&self, seed: Option<u64>) {
        let seed = seed.unwrap_or(self.config.seed);
        *self.world() = World::new(seed);
    }

    /// The public base URL (scheme + host), from the config or the request's Host header.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(b) = &self.config.public_base_url {
            return b.trim_end_matches('/').to_string();
        }
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get("host"))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        format!("{proto}://{host}")
    }
}

/// The full router: identity endpoints, Graph under `/v1.0`, control API under `/_sim`.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .nest("/_sim", control::routes())
        .route("/v1.0", any(graph::entry))
        .route("/v1.0/", any(graph::entry))
        .route("/v1.0/{*rest}", any(graph::entry))
        .route("/{tenant}/oauth2/v2.0/authorize", get(identity::authorize))
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route("/{tenant}/v2.0/adminconsent", get(identity::admin_consent))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::openid_configuration),
        )
        .fallback(graph::not_found)
        .with_state(sim)
}
