//! Placeholder demo (the lead replaces it): provisions the template's resources, starts a
//! Microsoft 365 simulator and prints what is up. `make demo` runs it on the local stack.

use e2e::{LocalStack, SimProcess, provision, unique_prefix};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stack = LocalStack::from_env().await?;
    let resources = provision(stack.sdk_config(), &unique_prefix("demo")).await?;
    let sim = SimProcess::start(1).await?;
    println!("local stack");
    println!("  AWS emulator      {}", stack.endpoint_url());
    println!("  table             {}", resources.table_name);
    println!("  sync queue        {}", resources.sync_queue_url);
    println!("  rules queue       {}", resources.rules_queue_url);
    println!(
        "  app secret        {}",
        resources.app_credentials_secret_id
    );
    println!("  token secrets     {}*", resources.token_secret_prefix);
    println!("  M365 simulator    {} (seed {})", sim.base_url, sim.seed);
    for f in &resources.template().functions {
        println!(
            "  function          {} ({}, {} s, {} MB)",
            f.logical_id, f.binary, f.timeout_seconds, f.memory_mb
        );
    }
    Ok(())
}
