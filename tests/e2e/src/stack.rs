//! The local AWS stack (moto in server mode) that `make stack-up` starts, as seen by a test.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Variables of `.local/stack.env` that the process environment may override.
const STACK_KEYS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "M365_SIM_URL",
    "GRAPH_BASE_URL",
    "LOGIN_BASE_URL",
];

pub const DEFAULT_REGION: &str = "us-east-1";
/// The account moto reports in ARNs.
pub const ACCOUNT_ID: &str = "123456789012";

/// The AWS emulator's endpoint and an SDK configuration pointing at it.
#[derive(Clone, Debug)]
pub struct LocalStack {
    vars: BTreeMap<String, String>,
    sdk_config: SdkConfig,
}

impl LocalStack {
    /// Reads `AWS_ENDPOINT_URL` (and the other stack variables) from the environment, falling
    /// back to `.local/stack.env` at the workspace root, so `cargo test` works after
    /// `make stack-up`. Fails with a hint when no stack is up.
    pub async fn from_env() -> anyhow::Result<LocalStack> {
        let mut vars = stack_vars();
        let endpoint = vars
            .get("AWS_ENDPOINT_URL")
            .cloned()
            .ok_or_else(|| anyhow!("no local stack: AWS_ENDPOINT_URL is unset and .local/stack.env is missing; run `make stack-up`"))?;
        check_reachable(&endpoint).await?;
        vars.entry("AWS_REGION".into())
            .or_insert_with(|| DEFAULT_REGION.into());
        vars.entry("AWS_ACCESS_KEY_ID".into())
            .or_insert_with(|| "test".into());
        vars.entry("AWS_SECRET_ACCESS_KEY".into())
            .or_insert_with(|| "test".into());
        let credentials = Credentials::new(
            vars["AWS_ACCESS_KEY_ID"].clone(),
            vars["AWS_SECRET_ACCESS_KEY"].clone(),
            None,
            None,
            "e2e-local-stack",
        );
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new(vars["AWS_REGION"].clone()))
            .credentials_provider(credentials)
            .load()
            .await;
        Ok(LocalStack { vars, sdk_config })
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    pub fn endpoint_url(&self) -> &str {
        &self.vars["AWS_ENDPOINT_URL"]
    }

    pub fn region(&self) -> &str {
        &self.vars["AWS_REGION"]
    }

    /// A variable of the stack (`M365_SIM_URL`, or a default resource such as `TABLE_NAME`).
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// What a child process needs to reach the emulator with the AWS SDK.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        aws_env(&self.vars)
    }
}

/// The AWS variables for a child process: the emulator endpoint (when `vars` has one), the
/// region and dummy credentials, and no shared config files or instance metadata lookups.
pub fn aws_env(vars: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let get = |k: &str, default: &str| vars.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let mut env = vec![
        ("AWS_REGION".to_owned(), get("AWS_REGION", DEFAULT_REGION)),
        (
            "AWS_DEFAULT_REGION".to_owned(),
            get("AWS_REGION", DEFAULT_REGION),
        ),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            get("AWS_ACCESS_KEY_ID", "test"),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            get("AWS_SECRET_ACCESS_KEY", "test"),
        ),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            "/dev/null".to_owned(),
        ),
    ];
    if let Some(endpoint) = vars.get("AWS_ENDPOINT_URL") {
        env.push(("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()));
    }
    env
}

/// The stack's variables without contacting it: the process environment when it sets
/// `AWS_ENDPOINT_URL`, else `.local/stack.env` (empty if neither).
pub fn stack_vars() -> BTreeMap<String, String> {
    let mut vars = read_env_file(&crate::paths::stack_env_path()).unwrap_or_default();
    if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()) {
        // The process environment describes the stack: don't mix in a stale file.
        vars.retain(|k, _| !STACK_KEYS.contains(&k.as_str()));
        for key in STACK_KEYS {
            if let Ok(value) = std::env::var(key) {
                vars.insert((*key).to_owned(), value);
            }
        }
    }
    vars
}

/// Parses `KEY=VALUE` lines (blank lines and `#` comments ignored, optional quotes stripped).
pub fn read_env_file(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_env(&text))
}

pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.trim_start_matches("export ").split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

async fn check_reachable(endpoint: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(endpoint)
        .with_context(|| format!("AWS_ENDPOINT_URL {endpoint} is not a URL"))?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    for addr in addrs {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
        {
            return Ok(());
        }
    }
    bail!(
        "the AWS emulator at {endpoint} does not answer; run `make stack-up` (or `make stack-down stack-up` if it died)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_like_shell_assignments() {
        let vars = parse_env("# c\nA=1\nexport B='two words'\nC=\"x=y\"\n\nD=http://h:1/p\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x=y");
        assert_eq!(vars["D"], "http://h:1/p");
    }
}
