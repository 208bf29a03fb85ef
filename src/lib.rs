//! Switchyard: an MCP gateway.
//!
//! Many MCP clients connect to one Streamable HTTP endpoint and see the
//! federated tools of many upstream MCP servers. Each downstream session gets
//! its own upstream session per upstream server, reused for every call in that
//! session and never shared with another.
//!
//! # Layout
//! - [`config`]: settings from flags, env and a TOML file; validated once.
//! - [`auth`]: who is calling (API tokens, JWTs) and whether they may; `/.well-known/oauth-protected-resource`.
//! - [`jsonrpc`], [`mcp`], [`sse`]: wire types and framing, no I/O.
//! - [`downstream`]: the MCP endpoints clients talk to (`/mcp`, `/servers/{id}/mcp`) and their sessions.
//! - [`interim`]: the per-request queue for messages an upstream sends before its answer.
//! - [`router`]: what each MCP method does — answered locally or routed to a gateway.
//! - [`registry`]: `(downstream session, gateway)` → one live upstream session.
//! - [`upstream`]: the MCP client side: Streamable HTTP, session owner tasks, discovery.
//! - [`catalog`]: gateways, tools, virtual servers; SQLite record, in-memory snapshot.
//! - [`lifecycle`]: background upkeep (session expiry, gateway health) and reload.
//! - [`metrics`]: Prometheus metrics.
//! - [`passthrough`]: which downstream headers may reach an upstream (none unless allowed).
//! - [`admin`]: the REST API (ContextForge-compatible `/gateways`, `/tools`, `/servers`).
//! - [`app`]: shared state and the assembled HTTP service.
//!
//! [`serve`] takes a bound listener and a started [`app::App`]; `main` only
//! wires flags, signals and logging to it.

pub mod admin;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod downstream;
pub mod fs;
pub mod interim;
pub mod jsonrpc;
pub mod lifecycle;
pub mod mcp;
pub mod metrics;
pub mod passthrough;
pub mod registry;
pub mod router;
pub mod secrets;
pub mod sse;
pub mod trace;
pub mod upstream;

use std::future::IntoFuture;
use std::sync::Arc;

use tokio::net::TcpListener;

use tokio_util::task::TaskTracker;

use app::App;

/// The hasher of the maps on the per-call path (see `foldhash` in Cargo.toml).
pub(crate) type FastHash = foldhash::fast::RandomState;

/// Serves until `app.shutdown` is cancelled, then shuts down within bounds:
/// in-flight requests get the shutdown grace period to finish, then every
/// upstream session is closed in parallel (each bounded by the same grace).
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let grace = app.settings.timeouts.shutdown;
    let background = TaskTracker::new();
    lifecycle::spawn(&app, &background);
    // No Nagle delay on accepted connections: an SSE answer is a series of
    // small writes (progress, log lines, then the response), each of which
    // a client should see at once.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    // `into_make_service`: served as a plain `Router`, axum rebuilds the
    // whole route table (every route's service cloned and re-boxed) for
    // each accepted connection; this way a connection costs an `Arc` clone.
    let server = axum::serve(listener, app.router().into_make_service())
        .with_graceful_shutdown(app.shutdown.clone().cancelled_owned())
        .into_future();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        done = &mut server => done?,
        _ = app.shutdown.cancelled() => {
            match tokio::time::timeout(grace, &mut server).await {
                Ok(done) => done?,
                Err(_) => tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still in flight after the grace period; dropped"),
            }
        }
    }
    let closed = app.registry.close_all().await;
    tracing::info!(
        upstream_sessions_closed = closed,
        "upstream sessions closed"
    );
    app.catalog.close().await;
    Ok(())
}
