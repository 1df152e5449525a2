//! Child processes of tests: spawned with their output in a log file, killed with the test.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A port that was free a moment ago on 127.0.0.1 (the caller retries if a race takes it).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Spawns `command` with stdout and stderr appended to `log`.
///
/// The child gets `PR_SET_PDEATHSIG = SIGKILL`: if the thread that spawned it dies (a test
/// process killed by a timeout, or a test thread that ends without dropping its handle), the
/// kernel kills the child, so no emulator or function outlives its test. Spawn from a thread
/// that lives as long as the handle (a test's thread or a runtime worker, not `spawn_blocking`).
pub fn spawn_logged(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let stderr = file.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .spawn()
        .with_context(|| format!("starting {program}"))
}

/// Sends SIGKILL to `pid` (a child this crate started and has not reaped yet).
pub fn sigkill(pid: u32) {
    // SAFETY: plain syscall; callers only pass pids of their own unreaped children.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, failing early if `child`
/// exits first.
pub async fn wait_for_port(
    port: u16,
    child: &mut Child,
    timeout: Duration,
    what: &str,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before listening on port {port}; log {}:\n{}",
                log.display(),
                log_tail(log)
            );
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not listen on port {port} within {timeout:?}; log {}:\n{}",
                log.display(),
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
