//! Where things are: the workspace root, the template, `.local/`, and the built binaries.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// `infra/template.yaml`, the one definition of every table, queue and secret.
pub fn template_path() -> PathBuf {
    workspace_root().join("infra").join("template.yaml")
}

/// `.local/` at the workspace root: the virtualenv, pid files, logs and `stack.env`.
pub fn local_dir() -> PathBuf {
    workspace_root().join(".local")
}

/// `.local/stack.env`, written by `make stack-up`.
pub fn stack_env_path() -> PathBuf {
    local_dir().join("stack.env")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Directory for the logs of processes that tests start (functions, emulators, simulators).
pub fn process_log_dir() -> PathBuf {
    target_dir().join("e2e-logs")
}

/// The path of a workspace binary built by cargo, e.g. `bin_path("mailbox-sync")`.
///
/// Looks in `E2E_BIN_DIR` first (`make bench` points it at the release functions), then next to
/// the running executable, so a test built with `--release` runs the release binaries (a test
/// executable lives in `target/<profile>/deps/`, a binary in `target/<profile>/`), then in
/// `<target>/debug`.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        candidates.push(PathBuf::from(dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join(name));
        }
    }
    candidates.push(target_dir().join("debug").join(name));
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "binary `{name}` is not built (looked at {}); run `cargo build --workspace --bins` (make test does)",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The `cargo-lambda` executable: `CARGO_LAMBDA` or the one `make setup` installs into the venv.
pub fn cargo_lambda_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return Ok(PathBuf::from(path));
    }
    let path = local_dir().join("venv").join("bin").join("cargo-lambda");
    if !path.is_file() {
        bail!("{} is missing; run `make setup`", path.display());
    }
    Ok(path)
}

/// Creates the process log directory and returns a fresh log file path for `name`.
pub fn new_log_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = process_log_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    Ok(dir.join(format!("{name}-{}.log", &unique[..8])))
}
