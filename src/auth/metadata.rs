//! `GET /.well-known/oauth-protected-resource` (RFC 9728), unauthenticated:
//! tells an MCP client which authorization servers issue tokens for this
//! gateway and how to present them.
//!
//! Served at the root and path-specific (`/.well-known/oauth-protected-resource/mcp`
//! describes `https://host/mcp`), since the MCP authorization spec has
//! clients try the path-specific document first. `resource` is the URL the
//! document describes, as RFC 9728 §3.3 requires.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::App;

pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(WELL_KNOWN, get(root))
        .route(&format!("{WELL_KNOWN}/{{*resource}}"), get(for_path))
}

async fn root(State(app): State<Arc<App>>, headers: HeaderMap) -> Json<Value> {
    let base = super::base_url(&app, &headers);
    Json(document(&app, base))
}

async fn for_path(
    State(app): State<Arc<App>>,
    Path(resource): Path<String>,
    headers: HeaderMap,
) -> Json<Value> {
    let base = super::base_url(&app, &headers);
    let path = resource.trim_matches('/');
    Json(document(&app, format!("{base}/{path}")))
}

fn document(app: &App, resource: String) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": app.settings.security.auth.authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Switchyard MCP gateway",
    })
}
