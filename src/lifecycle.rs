//! Background upkeep and reload: idle downstream sessions expire, gateways
//! are health-checked, and the config file's gateways are kept in step.
//!
//! Each loop stops when the app's shutdown token is cancelled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::task::TaskTracker;

use tokio::sync::mpsc;

use crate::app::{App, ListChanged};
use crate::catalog::{CatalogError, GatewaySpec};
use crate::downstream;
use crate::downstream::session::Outgoing;
use crate::jsonrpc;
use crate::registry::EvictReason;
use crate::upstream;

/// Starts the background loops on `tracker`.
pub fn spawn(app: &Arc<App>, tracker: &TaskTracker) {
    tracker.spawn(expire_idle_sessions(Arc::clone(app)));
    tracker.spawn(check_gateways(Arc::clone(app)));
    if app.auth.enabled() {
        tracker.spawn(forget_revoked_tokens(Arc::clone(app)));
    }
    if let Some(changes) = app.take_refreshes() {
        tracker.spawn(refresh_on_list_changed(Arc::clone(app), changes));
    }
}

/// An upstream said one of its lists changed: re-read the gateway's lists
/// into the catalog, then tell every client whose endpoint shows that
/// gateway, on its GET stream. Bursts (one notice per upstream session) are
/// gathered for a moment and handled once per gateway.
async fn refresh_on_list_changed(app: Arc<App>, mut changes: mpsc::UnboundedReceiver<ListChanged>) {
    const GATHER: Duration = Duration::from_millis(100);
    loop {
        let first = tokio::select! {
            _ = app.shutdown.cancelled() => return,
            c = changes.recv() => match c {
                Some(c) => c,
                None => return,
            },
        };
        let mut batch = vec![first];
        let gather = tokio::time::sleep(GATHER);
        tokio::pin!(gather);
        loop {
            tokio::select! {
                _ = &mut gather => break,
                Some(c) = changes.recv() => batch.push(c),
            }
        }
        let mut gateways: Vec<String> = batch.iter().map(|c| c.gateway_id.clone()).collect();
        gateways.sort();
        gateways.dedup();
        for gateway_id in gateways {
            let Some(g) = app.catalog.snapshot().gateway(&gateway_id).cloned() else {
                continue;
            };
            let found = match upstream::discover(app.registry.connector(), &g.connection).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::info!(gateway = %gateway_id, error = %e, "list refresh failed");
                    continue;
                }
            };
            let features = found.features.clone();
            if let Err(e) = app
                .catalog
                .update_gateway(&gateway_id, |_| {}, Some(features))
                .await
            {
                tracing::info!(gateway = %gateway_id, error = %e, "list refresh not stored");
                continue;
            }
            let mut methods: Vec<&str> = batch
                .iter()
                .filter(|c| c.gateway_id == gateway_id)
                .map(|c| c.method.as_str())
                .collect();
            methods.sort_unstable();
            methods.dedup();
            let snap = app.catalog.snapshot();
            let mut told = 0usize;
            for session in app.sessions.all() {
                let shows = snap
                    .scope(&session.scope)
                    .is_some_and(|v| v.gateways().iter().any(|g| g.id == gateway_id));
                if shows {
                    for m in &methods {
                        session
                            .post_to_client(Outgoing::Ready(jsonrpc::notification_body(m, None)));
                    }
                    told += 1;
                }
            }
            tracing::info!(gateway = %gateway_id, sessions_told = told, "gateway lists refreshed");
        }
    }
}

/// Ends downstream sessions idle longer than `session_idle_timeout`, exactly
/// as a DELETE would, and forgets principals with nothing in flight.
async fn expire_idle_sessions(app: Arc<App>) {
    let timeout = app.settings.lifecycle.session_idle_timeout;
    // Check a few times per timeout so expiry is late by at most a quarter of it.
    let tick = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        for id in app.sessions.idle_longer_than(timeout) {
            downstream::end_session(&app, &id, EvictReason::SessionExpired).await;
        }
        app.inflight.forget_idle();
    }
}

/// Tokens revoked through the API stop at once; revoked by the CLI (another
/// process, same database) they stop within this long, and their sessions end.
pub const TOKEN_RESYNC: Duration = Duration::from_secs(5);

async fn forget_revoked_tokens(app: Arc<App>) {
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(TOKEN_RESYNC) => {}
        }
        match app.auth.tokens.forget_deleted().await {
            Ok(gone) => {
                for id in gone {
                    let sessions = app
                        .sessions
                        .owned_by(&crate::auth::Principal::api_token_id(&id));
                    for sid in &sessions {
                        downstream::end_session(&app, sid, EvictReason::SessionEnded).await;
                    }
                    tracing::info!(token = %id, sessions_ended = sessions.len(), "API token revoked elsewhere; no longer accepted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot re-read the API tokens"),
        }
    }
}

/// Opens and closes a session on every enabled gateway each interval,
/// recording `reachable`, `last_seen`, `last_error`. A gateway that fails
/// `health_failure_threshold` checks in a row is marked unreachable (its
/// tools stay listed, calls fail fast); on recovery its tools are re-listed.
async fn check_gateways(app: Arc<App>) {
    let interval = app.settings.lifecycle.health_check_interval;
    let threshold = app.settings.lifecycle.health_failure_threshold;
    let mut failures: HashMap<String, u32> = HashMap::new();
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let gateways: Vec<_> = app
            .catalog
            .snapshot()
            .gateways()
            .iter()
            .filter(|g| g.enabled)
            .cloned()
            .collect();
        failures.retain(|id, _| gateways.iter().any(|g| &g.id == id));
        for g in gateways {
            let checked = tokio::select! {
                _ = app.shutdown.cancelled() => return,
                r = upstream::check(app.registry.connector(), &g.connection) => r,
            };
            let result = match checked {
                Ok(()) => {
                    failures.remove(&g.id);
                    if g.reachable {
                        app.catalog
                            .record_health(&g.id, |g| {
                                g.last_seen = Some(Utc::now());
                                g.last_error = None;
                            })
                            .await
                            .map(|_| ())
                    } else {
                        recover(&app, &g.id).await
                    }
                }
                Err(e) => {
                    let n = failures.entry(g.id.clone()).or_insert(0);
                    *n += 1;
                    let down = *n >= threshold;
                    if down && g.reachable {
                        tracing::warn!(gateway = %g.id, name = %g.name, error = %e, failures = *n, "gateway marked unreachable");
                    }
                    let message = e.to_string();
                    let recorded = app
                        .catalog
                        .record_health(&g.id, |g| {
                            g.last_error = Some(message);
                            if down {
                                g.reachable = false;
                            }
                        })
                        .await
                        .map(|_| ());
                    if down && g.reachable {
                        // Its live sessions died with it; a restarted upstream would only answer 404 to them.
                        app.registry
                            .evict_gateway(&g.id, EvictReason::GatewayUnreachable)
                            .await;
                    }
                    recorded
                }
            };
            if let Err(e) = result {
                // The gateway may have been deleted meanwhile; nothing to record then.
                tracing::debug!(gateway = %g.id, error = %e, "health result not recorded");
            }
        }
    }
}

/// A gateway answered again: re-list its tools (it may have had none, if it
/// was unreachable when declared) and mark it reachable.
async fn recover(app: &App, id: &str) -> Result<(), CatalogError> {
    let Some(g) = app.catalog.snapshot().gateway(id).cloned() else {
        return Ok(());
    };
    match upstream::discover(app.registry.connector(), &g.connection).await {
        Ok(found) => {
            let features = found.features.clone();
            app.catalog
                .update_gateway(
                    id,
                    |g| {
                        g.reachable = true;
                        g.last_seen = Some(Utc::now());
                        g.last_error = None;
                        g.capabilities = found.capabilities;
                        g.server_info = found.server_info;
                        g.protocol_version = Some(found.protocol_version);
                    },
                    Some(features),
                )
                .await?;
            tracing::info!(gateway = %id, "gateway reachable again");
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            app.catalog
                .record_health(id, |g| g.last_error = Some(message))
                .await
                .map(|_| ())
        }
    }
}

/// Brings the catalog in step with the config file's `[[gateways]]`: adds the
/// new, updates the changed (closing their sessions if the connection
/// changed), and, when `remove_missing`, removes declared gateways no longer
/// in the file. API-registered gateways are never touched. An unreachable
/// gateway is recorded as such rather than failing.
pub async fn sync_declared_gateways(
    app: &App,
    specs: &[GatewaySpec],
    remove_missing: bool,
) -> Result<(), CatalogError> {
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
                    && g.tags == spec.tags
                    && g.passthrough_headers == spec.passthrough_headers => {}
            Some(g) => {
                let found = upstream::discover(app.registry.connector(), &spec.connection).await;
                let features = found.as_ref().ok().map(|f| f.features.clone());
                let spec = spec.clone();
                let (before, after) = app
                    .catalog
                    .update_gateway(
                        &g.id,
                        move |g| {
                            g.connection = spec.connection;
                            g.description = spec.description;
                            g.tags = spec.tags;
                            g.passthrough_headers = spec.passthrough_headers;
                            g.declared = true;
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
                        features,
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
    if remove_missing {
        let gone: Vec<_> = app
            .catalog
            .snapshot()
            .gateways()
            .iter()
            .filter(|g| g.declared && !specs.iter().any(|s| s.name == g.name))
            .cloned()
            .collect();
        for g in gone {
            app.catalog.delete_gateway(&g.id).await?;
            app.registry
                .evict_gateway(&g.id, EvictReason::GatewayRemoved)
                .await;
            tracing::info!(gateway = %g.id, name = %g.name, "declared gateway removed (no longer in the config file)");
        }
    }
    Ok(())
}

/// SIGHUP: apply the re-read config file's gateways, then close every
/// upstream session so each rebuilds on next use with current settings.
/// Downstream sessions stay open; the process keeps serving throughout.
pub async fn reload(app: &App, declared: &[GatewaySpec]) -> Result<usize, CatalogError> {
    sync_declared_gateways(app, declared, true).await?;
    let closed = app.registry.close_all_upstreams(EvictReason::Reload).await;
    tracing::info!(
        upstream_sessions_closed = closed,
        gateways = declared.len(),
        "reloaded"
    );
    Ok(closed)
}
