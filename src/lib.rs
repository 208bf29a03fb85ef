//! Switchyard: an MCP gateway.
//!
//! Many MCP clients connect to one Streamable HTTP endpoint and see the
//! federated tools of many upstream MCP servers. Each downstream session gets
//! its own upstream session per upstream server, reused for every call in that
//! session and never shared with another.
//!
//! # Layout
//! - [`config`]: settings from flags, env and a TOML file; validated once.
//! - [`jsonrpc`], [`mcp`], [`sse`]: wire types and framing, no I/O.
//! - [`downstream`]: the MCP endpoints clients talk to (`/mcp`, `/servers/{id}/mcp`) and their sessions.
//! - [`router`]: what each MCP method does — answered locally or routed to a gateway.
//! - [`registry`]: `(downstream session, gateway)` → one live upstream session.
//! - [`upstream`]: the MCP client side: Streamable HTTP, session owner tasks, discovery.
//! - [`catalog`]: gateways, tools, virtual servers; SQLite record, in-memory snapshot.
//! - [`admin`]: the REST API (ContextForge-compatible `/gateways`, `/tools`, `/servers`).
//! - [`app`]: shared state and the assembled HTTP service.
//!
//! [`serve`] takes a bound listener and a started [`app::App`]; `main` only
//! wires flags, signals and logging to it.

pub mod admin;
pub mod app;
pub mod catalog;
pub mod config;
pub mod downstream;
pub mod jsonrpc;
pub mod mcp;
pub mod registry;
pub mod router;
pub mod sse;
pub mod upstream;

use std::future::IntoFuture;
use std::sync::Arc;

use tokio::net::TcpListener;

use app::App;
use catalog::GatewaySpec;
use registry::EvictReason;

/// Serves until `app.shutdown` is cancelled, then shuts down within bounds:
/// in-flight requests get the shutdown grace period to finish, then every
/// upstream session is closed in parallel (each bounded by the same grace).
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let grace = app.settings.timeouts.shutdown;
    let server = axum::serve(listener, app.router())
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

/// Registers (or brings up to date) the gateways declared in the config file.
/// An unreachable one is stored as unreachable rather than failing start-up.
pub async fn register_declared_gateways(
    app: &App,
    specs: &[GatewaySpec],
) -> Result<(), catalog::CatalogError> {
    for spec in specs {
        let existing = app
            .catalog
            .snapshot()
            .gateways()
            .iter()
            .find(|g| g.name == spec.name)
            .cloned();
        match existing {
            Some(g)
                if g.connection == spec.connection
                    && g.description == spec.description
                    && g.tags == spec.tags => {}
            Some(g) => {
                let found = upstream::discover(app.registry.connector(), &spec.connection).await;
                let tools = found.as_ref().ok().map(|f| f.tools.clone());
                let spec = spec.clone();
                let (before, after) = app
                    .catalog
                    .update_gateway(
                        &g.id,
                        move |g| {
                            g.connection = spec.connection;
                            g.description = spec.description;
                            g.tags = spec.tags;
                            match found {
                                Ok(f) => {
                                    g.reachable = true;
                                    g.capabilities = f.capabilities;
                                    g.server_info = f.server_info;
                                    g.protocol_version = Some(f.protocol_version);
                                    g.last_error = None;
                                }
                                Err(e) => {
                                    g.reachable = false;
                                    g.last_error = Some(e.to_string());
                                }
                            }
                        },
                        tools,
                    )
                    .await?;
                if before.connection != after.connection {
                    app.registry
                        .evict_gateway(&after.id, EvictReason::GatewayChanged)
                        .await;
                }
                tracing::info!(gateway = %after.id, name = %after.name, "declared gateway updated");
            }
            None => {
                let found = upstream::discover(app.registry.connector(), &spec.connection)
                    .await
                    .map_err(|e| e.to_string());
                if let Err(e) = &found {
                    tracing::warn!(name = %spec.name, url = %spec.connection.url, error = %e, "declared gateway unreachable; registered without tools");
                }
                let g = app.catalog.create_gateway(spec.clone(), found).await?;
                tracing::info!(gateway = %g.id, name = %g.name, "declared gateway registered");
            }
        }
    }
    Ok(())
}
