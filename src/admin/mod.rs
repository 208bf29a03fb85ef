//! The REST API operators use: gateways, tools, virtual servers, health.
//!
//! Paths, field names and error shapes follow ContextForge's core contract so
//! its users' scripts keep working; every route is served both bare and under
//! `/v1`. Responses are camelCase, request bodies accept both spellings.

mod error;
mod gateways;
mod items;
mod servers;
mod sessions;
mod tools;

use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use error::ApiError;

use crate::app::App;

pub fn routes() -> Router<Arc<App>> {
    let api = Router::new()
        .merge(gateways::routes())
        .merge(tools::routes())
        .merge(items::routes())
        .merge(servers::routes())
        .merge(sessions::routes());
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .nest("/v1", api.clone())
        .merge(api)
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy" }))
}

async fn version(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "name": "switchyard",
        "version": env!("CARGO_PKG_VERSION"),
        "protocolVersions": crate::mcp::DOWNSTREAM_VERSIONS,
        "downstreamSessions": app.sessions.len(),
    }))
}

/// Parses a JSON body, naming the offending field on failure (422).
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            // serde reports a missing field at the parent; name the field itself.
            path = inner
                .split('`')
                .nth(1)
                .filter(|_| inner.starts_with("missing field"))
                .unwrap_or("")
                .to_owned();
        }
        ApiError::Invalid {
            path,
            reason: inner,
        }
    })
}
