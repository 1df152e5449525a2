//! HTTP/1.1 server loop. It is axum's router on hyper, with one addition: a handler can close its
//! connection without answering (the "dropped connection" fault) through [`ConnCtl`].

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::{Sim, SimConfig, router};

/// Request extension: notify it to close the connection without a response.
#[derive(Clone)]
pub struct ConnCtl(pub Arc<Notify>);

/// Serves the simulator on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, sim: Arc<Sim>) -> std::io::Result<()> {
    let app = router(sim);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let k2 = kill.clone();
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnCtl(k2.clone()));
                app.clone().oneshot(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!("connection ended: {e}");
                    }
                }
                _ = kill.notified() => {
                    tracing::debug!("connection dropped by a fault");
                }
            }
        });
    }
}

/// A simulator running in-process (tests, the demo). Dropping it stops the server.
pub struct SimHandle {
    /// `http://127.0.0.1:PORT` — the login base; Graph is at `{base_url}/v1.0`.
    pub base_url: String,
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    task: JoinHandle<()>,
}

impl SimHandle {
    pub fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds 127.0.0.1 on a free port and serves a fresh simulator.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    spawn_on(config, 0).await
}

pub async fn spawn_on(config: SimConfig, port: u16) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(config);
    let s2 = sim.clone();
    let task = tokio::spawn(async move {
        let _ = serve(listener, s2).await;
    });
    Ok(SimHandle {
        base_url: format!("http://{addr}"),
        addr,
        sim,
        task,
    })
}
