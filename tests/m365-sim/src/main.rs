//! `m365-sim --host 127.0.0.1 --port N --seed S [--port-file PATH] [--public-base-url URL]`

use anyhow::{Context, bail};
use m365_sim::{Sim, SimConfig, serve};

struct Args {
    host: String,
    port: u16,
    seed: u64,
    port_file: Option<String>,
    public_base_url: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 0,
        seed: 1,
        port_file: None,
        public_base_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--host" => a.host = val("--host")?,
            "--port" => a.port = val("--port")?.parse().context("--port")?,
            "--seed" => a.seed = val("--seed")?.parse().context("--seed")?,
            "--port-file" => a.port_file = Some(val("--port-file")?),
            "--public-base-url" => a.public_base_url = Some(val("--public-base-url")?),
            "-h" | "--help" => {
                println!(
                    "m365-sim --host 127.0.0.1 --port N --seed S [--port-file PATH] [--public-base-url URL]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.host != "127.0.0.1" && a.host != "localhost" {
        bail!("the simulator binds 127.0.0.1 only");
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .context("bind")?;
    let port = listener.local_addr()?.port();
    if let Some(p) = &args.port_file {
        let tmp = format!("{p}.tmp");
        std::fs::write(&tmp, port.to_string()).context("write port file")?;
        std::fs::rename(&tmp, p).context("write port file")?;
    }
    println!("listening on http://127.0.0.1:{port}");
    let sim = Sim::new(SimConfig {
        seed: args.seed,
        public_base_url: args.public_base_url,
    });
    tokio::select! {
        r = serve(listener, sim) => r.context("serve")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
