//! Configuration from environment variables, read and validated once per cold start.
//!
//! Every function reads the same [`Config`]; variables only some functions need are optional
//! here and demanded at cold start with [`Config::require`], so a missing one fails the
//! function's init with an error that names the variable.

use std::time::Duration;

use thiserror::Error;
use url::Url;

pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
pub const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A variable that only some functions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    PublicBaseUrl,
    SyncQueueUrl,
    RulesQueueUrl,
    ApiJwt,
}

#[derive(Debug, Clone)]
pub struct ApiJwtConfig {
    pub issuer: String,
    pub audience: String,
    /// PEM of the RSA public key that signs management-API bearer tokens (public, not a secret).
    pub public_key_pem: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub graph_base_url: Url,
    pub login_base_url: Url,
    pub app_client_id: String,
    pub app_credentials_secret_id: String,
    /// Name prefix of the per-integration refresh-token secrets, e.g. `outlook/integrations/`.
    pub token_secret_prefix: String,
    pub public_base_url: Option<Url>,
    pub sync_queue_url: Option<String>,
    pub rules_queue_url: Option<String>,
    pub api_jwt: Option<ApiJwtConfig>,
    /// Timeout of one HTTP request to Microsoft (connect + response).
    pub http_timeout: Duration,
    /// How long a sync worker holds a mailbox before another may take over (a crashed worker's
    /// mailbox resumes after this).
    pub sync_lease: Duration,
    /// Time between two syncs of a mailbox (the schedule ticks every minute; a shorter interval
    /// only matters locally, where the demo runs several ticks in a few seconds).
    pub sync_interval: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let url = |name: &'static str, value: String| parse_base_url(name, &value);

        let api_jwt = match (
            get("API_JWT_ISSUER"),
            get("API_JWT_AUDIENCE"),
            get("API_JWT_PUBLIC_KEY"),
        ) {
            (None, None, None) => None,
            (issuer, audience, key) => Some(ApiJwtConfig {
                issuer: issuer.ok_or(ConfigError::Missing("API_JWT_ISSUER"))?,
                audience: audience.ok_or(ConfigError::Missing("API_JWT_AUDIENCE"))?,
                public_key_pem: key
                    .ok_or(ConfigError::Missing("API_JWT_PUBLIC_KEY"))?
                    .replace("\\n", "\n"),
            }),
        };
        let http_timeout = match get("HTTP_TIMEOUT_MS") {
            None => Duration::from_secs(20),
            Some(v) => {
                Duration::from_millis(v.parse::<u64>().map_err(|e| ConfigError::Invalid {
                    name: "HTTP_TIMEOUT_MS",
                    reason: e.to_string(),
                })?)
            }
        };
        let seconds = |name: &'static str, default: u64| match get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
                _ => Err(ConfigError::Invalid {
                    name,
                    reason: "must be a positive whole number of seconds".into(),
                }),
            },
        };
        let sync_lease = seconds("SYNC_LEASE_SECONDS", 180)?;
        let sync_interval = seconds("SYNC_INTERVAL_SECONDS", 60)?;
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            graph_base_url: url(
                "GRAPH_BASE_URL",
                get("GRAPH_BASE_URL").unwrap_or_else(|| DEFAULT_GRAPH_BASE_URL.into()),
            )?,
            login_base_url: url(
                "LOGIN_BASE_URL",
                get("LOGIN_BASE_URL").unwrap_or_else(|| DEFAULT_LOGIN_BASE_URL.into()),
            )?,
            app_client_id: required("APP_CLIENT_ID")?,
            app_credentials_secret_id: required("APP_CREDENTIALS_SECRET_ID")?,
            token_secret_prefix: required("TOKEN_SECRET_PREFIX")?,
            public_base_url: get("PUBLIC_BASE_URL")
                .map(|v| url("PUBLIC_BASE_URL", v))
                .transpose()?,
            sync_queue_url: get("SYNC_QUEUE_URL"),
            rules_queue_url: get("RULES_QUEUE_URL"),
            api_jwt,
            http_timeout,
            sync_lease,
            sync_interval,
        })
    }

    /// Fails with the name of the first variable in `needs` that is not set.
    pub fn require(&self, needs: &[Need]) -> Result<(), ConfigError> {
        for need in needs {
            let (present, name) = match need {
                Need::PublicBaseUrl => (self.public_base_url.is_some(), "PUBLIC_BASE_URL"),
                Need::SyncQueueUrl => (self.sync_queue_url.is_some(), "SYNC_QUEUE_URL"),
                Need::RulesQueueUrl => (self.rules_queue_url.is_some(), "RULES_QUEUE_URL"),
                Need::ApiJwt => (self.api_jwt.is_some(), "API_JWT_ISSUER"),
            };
            if !present {
                return Err(ConfigError::Missing(name));
            }
        }
        Ok(())
    }

    /// The URL Microsoft redirects back to after sign-in or admin consent.
    pub fn callback_url(&self) -> Option<Url> {
        self.public_base_url
            .as_ref()
            .map(|base| join_path(base, "oauth/callback"))
    }
}

/// Joins `path` under `base`, keeping every path segment of `base`.
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

fn parse_base_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("scheme must be http or https, got {}", url.scheme()),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::Invalid {
            name,
            reason: "must not have a query or fragment".into(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("TABLE_NAME", "t"),
            ("APP_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("APP_CREDENTIALS_SECRET_ID", "outlook/app"),
            ("TOKEN_SECRET_PREFIX", "outlook/integrations/"),
        ])
    }

    fn load(vars: &HashMap<&'static str, &'static str>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_point_at_microsoft() {
        let config = load(&base()).unwrap();
        assert_eq!(
            config.graph_base_url.as_str(),
            "https://graph.microsoft.com/v1.0"
        );
        assert_eq!(
            config.login_base_url.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert!(config.sync_queue_url.is_none());
    }

    #[test]
    fn missing_required_variable_is_named() {
        let mut vars = base();
        vars.remove("TABLE_NAME");
        assert_eq!(load(&vars).unwrap_err(), ConfigError::Missing("TABLE_NAME"));
        vars.insert("TABLE_NAME", "   ");
        assert_eq!(load(&vars).unwrap_err(), ConfigError::Missing("TABLE_NAME"));
    }

    #[test]
    fn invalid_url_is_named() {
        let mut vars = base();
        vars.insert("GRAPH_BASE_URL", "not a url");
        let err = load(&vars).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "GRAPH_BASE_URL",
                    ..
                }
            ),
            "{err}"
        );
        vars.insert("GRAPH_BASE_URL", "ftp://x");
        assert!(matches!(
            load(&vars).unwrap_err(),
            ConfigError::Invalid {
                name: "GRAPH_BASE_URL",
                ..
            }
        ));
    }

    #[test]
    fn require_names_the_missing_variable() {
        let config = load(&base()).unwrap();
        assert_eq!(
            config.require(&[Need::SyncQueueUrl]).unwrap_err(),
            ConfigError::Missing("SYNC_QUEUE_URL")
        );
        let mut vars = base();
        vars.insert("SYNC_QUEUE_URL", "http://127.0.0.1:1/q");
        assert!(load(&vars).unwrap().require(&[Need::SyncQueueUrl]).is_ok());
    }

    #[test]
    fn partial_api_jwt_config_is_an_error() {
        let mut vars = base();
        vars.insert("API_JWT_ISSUER", "https://issuer");
        assert_eq!(
            load(&vars).unwrap_err(),
            ConfigError::Missing("API_JWT_AUDIENCE")
        );
    }

    #[test]
    fn callback_url_keeps_the_base_path() {
        let mut vars = base();
        vars.insert(
            "PUBLIC_BASE_URL",
            "http://127.0.0.1:9000/lambda-url/oauth-callback/",
        );
        let config = load(&vars).unwrap();
        assert_eq!(
            config.callback_url().unwrap().as_str(),
            "http://127.0.0.1:9000/lambda-url/oauth-callback/oauth/callback"
        );
    }
}
