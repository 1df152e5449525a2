//! The Microsoft 365 simulator (`tests/m365-sim`) as a child process of a test.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::process::{Child, Command};

use crate::paths;
use crate::process::{log_tail, sigkill, spawn_logged};

/// A running `m365-sim` on its own free port, killed on drop.
#[derive(Debug)]
pub struct SimProcess {
    /// `http://127.0.0.1:PORT`: the login base URL; Graph is under `/v1.0`.
    pub base_url: String,
    pub port: u16,
    pub seed: u64,
    log_path: PathBuf,
    child: Child,
}

impl SimProcess {
    /// Starts `target/<profile>/m365-sim --host 127.0.0.1 --port 0 --port-file F --seed SEED`
    /// (`M365_SIM_BIN` overrides the binary) and waits until it answers HTTP.
    pub async fn start(seed: u64) -> anyhow::Result<SimProcess> {
        Self::start_with_args(seed, &[]).await
    }

    /// Like [`SimProcess::start`], with extra command-line arguments for the simulator.
    pub async fn start_with_args(seed: u64, extra_args: &[&str]) -> anyhow::Result<SimProcess> {
        let bin = match std::env::var_os("M365_SIM_BIN") {
            Some(path) => PathBuf::from(path),
            None => paths::bin_path("m365-sim")?,
        };
        let log_path = paths::new_log_path("m365-sim")?;
        let port_file = log_path.with_extension("port");
        let mut command = Command::new(&bin);
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--port-file"])
            .arg(&port_file)
            .args(["--seed", &seed.to_string()])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("SIM_RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let mut child = spawn_logged(&mut command, &log_path)?;

        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "m365-sim exited ({status}) during start-up; log {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse::<u16>()
            {
                break port;
            }
            if Instant::now() > deadline {
                sigkill_child(&mut child);
                bail!(
                    "m365-sim wrote no port file within 30 s; log {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = std::fs::remove_file(&port_file);
        let base_url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        loop {
            // Any HTTP answer (even a 404) means it is serving.
            if client.get(&base_url).send().await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "m365-sim exited ({status}); log {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
            if Instant::now() > deadline {
                sigkill_child(&mut child);
                bail!(
                    "m365-sim does not answer at {base_url}; log {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(SimProcess {
            base_url,
            port,
            seed,
            log_path,
            child,
        })
    }

    /// `GRAPH_BASE_URL` for functions: `{base_url}/v1.0`.
    pub fn graph_base_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }

    /// `LOGIN_BASE_URL` for functions: the base URL itself.
    pub fn login_base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The simulator's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn sigkill_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        sigkill(pid);
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        sigkill_child(&mut self.child);
        let _ = self.child.try_wait();
    }
}
