//! The `switchyard` binary: flags, logging, signals. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use switchyard::app::App;
use switchyard::config::{LogFormat, ServeArgs, Settings};

/// Every relayed call allocates and frees dozens of short-lived buffers,
/// futures and header maps, often on another thread than the one that
/// allocated them; glibc malloc spent ~18 % of the gateway's CPU on that
/// (bench/RESULTS.md). The binary only: the library leaves the choice to its user.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc keeps a thread's emptied pages until that thread collects them,
/// and returns them to the OS (after its 1 s purge delay) only on a later
/// collection: I/O threads gone quiet after 10,000 sessions ended kept their
/// memory (123 MB, against 14 MB idle) until the process exited. Collected
/// once a second per I/O thread, the RSS is back at 28 MB within 5 s, and
/// calls at 64 concurrent ran as fast as without it (bench/RESULTS.md).
const RETURN_FREED_MEMORY: switchyard::ThreadUpkeep = switchyard::ThreadUpkeep {
    every: std::time::Duration::from_secs(1),
    run: return_freed_memory,
};

fn return_freed_memory() {
    // SAFETY: mi_collect has no preconditions; it works on the calling
    // thread's own heap and the process-wide arenas, which mimalloc locks.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Switchyard — an MCP gateway.
///
/// Clients connect to one Streamable HTTP endpoint (/mcp, or /servers/{id}/mcp
/// for a virtual server) and see the tools of every registered upstream MCP
/// server. Each client session gets its own upstream session per server.
/// Register upstreams with the REST API (POST /gateways) or in a config file.
///
/// Every request but /health and /.well-known/* needs "Authorization: Bearer <token>":
/// an API token (`switchyard token create`, POST /tokens) or a configured JWT. The
/// first start mints an admin token, prints it once and writes it to --admin-token-file.
#[derive(Parser)]
#[command(name = "switchyard", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (defaults: 127.0.0.1:4444, SQLite catalog in ./switchyard.db).
    ///
    /// The first start (no API token in the catalog) mints an admin token, prints it once
    /// on stdout and writes it, readable by the owner only, to --admin-token-file
    /// (default: next to the database, ./switchyard-admin.token).
    Serve(Box<ServeArgs>),
    /// Manage API tokens in the catalog database (works while the gateway runs).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint an API token; prints it once on stdout (only its SHA-256 digest is stored).
    Create(TokenCreateArgs),
    /// List API tokens (never their secrets).
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke an API token by id; a running gateway refuses it within seconds
    /// (through the API, `DELETE /tokens/{id}`, at once) and ends its sessions.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// Which catalog a `token` command works on.
#[derive(clap::Args)]
struct DatabaseArgs {
    /// Catalog database, as for `serve` [default: sqlite://switchyard.db].
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Config file, as for `serve` (only its database_url is used here).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TokenCreateArgs {
    /// What the token is for (shown in GET /tokens).
    #[arg(long)]
    name: String,
    /// Lifetime: 90s, 15m, 12h, 30d, 2w, or seconds. Default: never expires.
    #[arg(long)]
    expires: Option<String>,
    /// May change the catalog, mint tokens and use the admin endpoints.
    #[arg(long)]
    admin: bool,
    #[command(flatten)]
    db: DatabaseArgs,
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

/// Waits for SIGTERM or Ctrl-C. Installed before the gateway says it is
/// listening: a supervisor that stops it right after would otherwise kill
/// it with the default action, skipping the bounded shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = wait(term, "SIGTERM") => {}
            _ = wait(int, "SIGINT") => {}
        }
    }
}

/// SIGHUP re-reads the config file (flags and env as at start) and applies
/// its gateways; settings that need a restart (address, database) are
/// reported, not applied.
async fn reload_on_sighup(
    app: std::sync::Arc<App>,
    args: ServeArgs,
    hup: std::io::Result<tokio::signal::unix::Signal>,
) {
    let mut hup = match hup {
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
        match app.auth.reload_jwt(&fresh.security.auth).await {
            Ok(()) => tracing::info!("JWT keys reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "JWT keys not reloaded; the previous ones stay in use")
            }
        }
    }
}

/// The token store of the catalog `db` names, straight in the database (a
/// running gateway uses the same file).
async fn open_tokens(
    db: DatabaseArgs,
) -> anyhow::Result<(switchyard::catalog::Store, switchyard::auth::TokenStore)> {
    let serve = ServeArgs {
        database_url: db.database_url,
        config: db.config,
        ..ServeArgs::default()
    };
    let settings = Settings::load(&serve).context("invalid configuration")?;
    if settings.database_url.contains(":memory:") {
        anyhow::bail!("an in-memory catalog cannot hold tokens for a gateway; pass --database-url");
    }
    let store = switchyard::catalog::Store::open(&settings.database_url)
        .await
        .with_context(|| format!("cannot open {}", settings.database_url))?;
    let tokens = switchyard::auth::TokenStore::open(store.pool()).await?;
    Ok((store, tokens))
}

async fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => create_token(args).await,
        TokenCommand::List { json, db } => {
            let (store, tokens) = open_tokens(db).await?;
            let list = tokens.list().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())
            };
            println!(
                "{:<36}  {:<24}  {:<5}  {:<16}  {:<16}  last used",
                "id", "name", "admin", "created", "expires"
            );
            for t in list {
                println!(
                    "{:<36}  {:<24}  {:<5}  {:<16}  {:<16}  {}",
                    t.id,
                    t.name,
                    if t.admin { "yes" } else { "no" },
                    time(Some(t.created_at)),
                    time(t.expires_at),
                    time(t.last_used)
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { id, db } => {
            let (store, tokens) = open_tokens(db).await?;
            let found = tokens.revoke(&id).await?;
            store.close().await;
            if !found {
                anyhow::bail!("no API token with id {id}");
            }
            eprintln!("revoked API token {id}");
            Ok(())
        }
    }
}

/// `switchyard token create`: straight into the catalog database; a running
/// gateway finds the new token on its first use.
async fn create_token(args: TokenCreateArgs) -> anyhow::Result<()> {
    let lifetime = args
        .expires
        .as_deref()
        .map(switchyard::auth::tokens::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
    let (store, tokens) = open_tokens(args.db).await?;
    let minted = tokens.create(&args.name, args.admin, lifetime).await?;
    store.close().await;
    eprintln!(
        "created API token {} ({}{}; {}); it is shown only now:",
        minted.info.id,
        minted.info.name,
        if minted.info.admin { ", admin" } else { "" },
        minted
            .info
            .expires_at
            .map_or("never expires".to_owned(), |t| format!("expires {t}")),
    );
    println!("{}", minted.token);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => *args,
        Command::Token(command) => return token_command(command).await,
    };
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
    let token_file = settings.security.auth.admin_token_file.clone();
    let app = App::new(settings, shutdown.clone())
        .await
        .context("cannot start")?;
    if app.auth.enabled() {
        let minted =
            switchyard::auth::mint_first_admin_token(&app.auth.tokens, token_file.as_deref())
                .await
                .context("cannot mint the first admin token")?;
        if let Some(minted) = minted {
            // Printed, not logged: log pipelines keep what they are given.
            let saved = token_file.as_ref().map_or(String::new(), |p| {
                format!(" (also written to {}, mode 0600)", p.display())
            });
            println!("switchyard: no API token yet; minted an admin token, shown only now{saved}:");
            println!("{}", minted.token);
            let file = token_file.as_ref().map(|p| p.display().to_string());
            tracing::info!(token = %minted.info.id, file = file.as_deref().unwrap_or("-"), "first admin API token minted");
        }
    } else {
        tracing::warn!("authentication is off (--auth none): anyone who can reach {bound} controls the gateway");
    }
    switchyard::lifecycle::sync_declared_gateways(&app, &declared, false)
        .await
        .context("cannot register the gateways declared in the config file")?;
    let stop = shutdown_signal();
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    tracing::info!(address = %bound, database = %database, "switchyard listening; MCP endpoint http://{bound}/mcp");

    let signal = shutdown.clone();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    tokio::spawn(reload_on_sighup(std::sync::Arc::clone(&app), args, hup));
    switchyard::serve_with(listener, app, Some(RETURN_FREED_MEMORY))
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}
