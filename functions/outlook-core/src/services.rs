//! Everything a function needs, built once per cold start from the environment.

use std::sync::Arc;

use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::graph::GraphClient;
use crate::identity::{AppCredentials, CredentialsError, CredentialsLoader, IdentityClient};
use crate::store::Store;
use crate::tokens::TokenProvider;
use crate::vault::{TokenVault, VaultError};

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the app credentials secret: {0}")]
    Vault(#[from] VaultError),
    #[error("the app credentials secret is not usable: {0}")]
    Credentials(#[from] CredentialsError),
}

pub struct Services {
    pub config: Config,
    pub store: Store,
    pub vault: TokenVault,
    pub sqs: aws_sdk_sqs::Client,
    pub graph: GraphClient,
    pub tokens: TokenProvider,
}

impl Services {
    pub async fn from_env() -> Result<Self, StartupError> {
        let config = Config::from_env()?;
        let aws = crate::clients::aws_config().await;
        Self::build(config, &aws).await
    }

    /// Builds the clients for `config` (tests pass their own config and AWS endpoint).
    pub async fn build(config: Config, aws: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let store = Store::new(aws_sdk_dynamodb::Client::new(aws), &config.table_name);
        let vault = TokenVault::new(
            aws_sdk_secretsmanager::Client::new(aws),
            &config.app_credentials_secret_id,
            &config.token_secret_prefix,
        );
        let credentials = AppCredentials::from_secret_json(secrecy::ExposeSecret::expose_secret(
            &vault.app_credentials_json().await?,
        ))?;
        let http = crate::clients::http_client(&config);
        // Read again when Microsoft refuses the credentials: an operator's new client secret or
        // certificate reaches warm functions without a restart.
        let reload_vault = vault.clone();
        let loader: CredentialsLoader = Arc::new(move || {
            let vault = reload_vault.clone();
            Box::pin(async move { Ok(vault.app_credentials_json().await?) })
        });
        let identity = IdentityClient::with_reload(
            http.clone(),
            config.login_base_url.clone(),
            &config.app_client_id,
            credentials,
            loader,
        );
        Ok(Self {
            store,
            tokens: TokenProvider::new(identity, vault.clone()),
            vault,
            sqs: aws_sdk_sqs::Client::new(aws),
            graph: GraphClient::new(http, config.graph_base_url.clone()),
            config,
        })
    }

    pub fn identity(&self) -> &IdentityClient {
        self.tokens.identity()
    }
}
