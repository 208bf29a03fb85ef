//! The `switchyard` binary: flags, logging, signals. Everything else lives in the library.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use switchyard::app::App;
use switchyard::config::{LogFormat, ServeArgs, Settings};

/// Switchyard — an MCP gateway.
///
/// Clients connect to one Streamable HTTP endpoint (/mcp, or /servers/{id}/mcp
/// for a virtual server) and see the tools of every registered upstream MCP
/// server. Each client session gets its own upstream session per server.
/// Register upstreams with the REST API (POST /gateways) or in a config file.
#[derive(Parser)]
#[command(name = "switchyard", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (defaults: 127.0.0.1:4444, SQLite catalog in ./switchyard.db).
    Serve(ServeArgs),
}

fn init_logging(format: LogFormat) {
    let filter = std::env::var("SWITCHYARD_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the gateway");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// SIGHUP re-reads the config file (flags and env as at start) and applies
/// its gateways; settings that need a restart (address, database) are
/// reported, not applied.
async fn reload_on_sighup(app: std::sync::Arc<App>, args: ServeArgs) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload unavailable");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let fresh = match Settings::load(&args) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reload refused: invalid configuration; keeping the running one");
                continue;
            }
        };
        if fresh.host != app.settings.host
            || fresh.port != app.settings.port
            || fresh.database_url != app.settings.database_url
        {
            tracing::warn!("host, port and database_url changes take effect only after a restart");
        }
        if let Err(e) = switchyard::lifecycle::reload(&app, &fresh.gateways).await {
            tracing::error!(error = %e, "reload failed");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let settings = Settings::load(&args).context("invalid configuration")?;
    init_logging(settings.log_format);

    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener
        .local_addr()
        .context("listener has no local address")?;

    let shutdown = CancellationToken::new();
    let declared = settings.gateways.clone();
    let database = settings.database_url.clone();
    let app = App::new(settings, shutdown.clone())
        .await
        .context("cannot start")?;
    switchyard::lifecycle::sync_declared_gateways(&app, &declared, false)
        .await
        .context("cannot register the gateways declared in the config file")?;
    tracing::info!(address = %bound, database = %database, "switchyard listening; MCP endpoint http://{bound}/mcp");

    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    tokio::spawn(reload_on_sighup(std::sync::Arc::clone(&app), args));
    switchyard::serve(listener, app)
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}
