//! `a365-token-server`: the local token server, for the demo and for
//! trying a365 without an Altium account.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, ServerState};
use anyhow::{Context, bail};
use clap::Parser;

/// A local OAuth 2.0 token server (loopback, plain HTTP) with rotating
/// refresh tokens and JWT access tokens.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Access token lifetime: "10s", "5m", "1h" or seconds.
    #[arg(long, default_value = "1h", value_parser = a365_token_server::parse_duration)]
    lifetime: Duration,
    /// Keep refresh tokens valid after use instead of rotating them.
    #[arg(long)]
    no_rotate: bool,
    #[arg(long, default_value = "demo")]
    client_id: String,
    /// Read the client secret from this file instead of generating one.
    #[arg(long, value_name = "FILE")]
    client_secret_file: Option<PathBuf>,
    /// Write `{"client_secret", "refresh_token"}` (0600) for `a365 add --secrets-from`.
    #[arg(long, value_name = "FILE")]
    write_secrets: Option<PathBuf>,
    /// Misbehave: status:CODE, rate-limited:SECS, delay:DURATION, hang, drop,
    /// rotate-then-drop, malformed-json, missing-access-token,
    /// missing-expires-in, invalid-grant, invalid-client.
    #[arg(long, value_name = "FAULT")]
    fault: Option<Fault>,
    /// Apply --fault to this many requests only (default: all).
    #[arg(long, value_name = "N", requires = "fault")]
    fault_times: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {}: this test server serves loopback only",
            args.listen
        );
    }
    let secret = match &args.client_secret_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned(),
        None => a365_token_server::random_secret(),
    };
    let config = ServerConfig {
        lifetime: args.lifetime,
        rotate: !args.no_rotate,
        clients: vec![(args.client_id.clone(), secret.clone())],
        listen: args.listen,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .context("binding")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState::new(&config, format!("http://{addr}")).with_stderr_log());
        if let Some(fault) = args.fault.clone() {
            state.set_fault(fault, args.fault_times);
        }
        if let Some(path) = &args.write_secrets {
            let rt = state.issue_refresh_token(&args.client_id);
            let json = serde_json::json!({"client_secret": secret, "refresh_token": rt});
            write_private(path, json.to_string().as_bytes())?;
        }
        // A script waits for this line: flush it now, whatever stdout is.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "token_url=http://{addr}/connect/token")?;
        stdout.flush()?;
        drop(stdout);
        eprintln!(
            "a365-token-server: listening on http://{addr}/connect/token (lifetime {:?})",
            config.lifetime
        );
        tokio::select! {
            served = a365_token_server::serve(listener, state) => served.context("serving")?,
            _ = shutdown_signal() => eprintln!("a365-token-server: stopping"),
        }
        Ok(())
    })
}

/// Writes a secrets file only its owner can read, even if it existed.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
