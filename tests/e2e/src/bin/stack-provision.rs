//! `stack-provision --prefix NAME`: creates the template's tables, queues and secrets in the
//! running AWS emulator and prints them as `KEY=VALUE` lines for `.local/stack.env`.
//! `make stack-up` runs it for the default (demo) resources.

use anyhow::{Context, bail};
use e2e::{LocalStack, provision};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let prefix = match (args.next().as_deref(), args.next()) {
        (Some("--prefix"), Some(prefix)) => prefix,
        _ => bail!("usage: stack-provision --prefix NAME"),
    };
    let stack = LocalStack::from_env().await?;
    let resources = provision(stack.sdk_config(), &prefix)
        .await
        .context("provisioning from infra/template.yaml")?;
    println!("STACK_PREFIX={}", resources.prefix);
    println!("TABLE_NAME={}", resources.table_name);
    println!("SYNC_QUEUE_URL={}", resources.sync_queue_url);
    println!("RULES_QUEUE_URL={}", resources.rules_queue_url);
    println!("SYNC_DLQ_URL={}", resources.sync_dlq_url);
    println!("RULES_DLQ_URL={}", resources.rules_dlq_url);
    println!(
        "APP_CREDENTIALS_SECRET_ID={}",
        resources.app_credentials_secret_id
    );
    println!("TOKEN_SECRET_PREFIX={}", resources.token_secret_prefix);
    Ok(())
}
