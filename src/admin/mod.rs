//! The REST API operators use: gateways, tools, virtual servers, health.
//!
//! Paths, field names and error shapes follow ContextForge's core contract so
//! its users' scripts keep working; every route is served both bare and under
//! `/v1`. Responses are camelCase, request bodies accept both spellings.

mod error;
mod gateways;
mod items;
mod openapi;
mod servers;
mod sessions;
mod tokens;
mod tools;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use error::ApiError;

use crate::app::App;
use crate::auth::{protect, Access, Flavor};
use crate::body::BodyError;

/// Every route with its access (see README, "Security"): reads for any
/// principal, writes and the admin window for admins; `/tools` (including
/// `invoke`, a tool call like `tools/call` on `/mcp`), `/prompts` and
/// `/resources` for any principal. Only `/health` and `/openapi.json` are open.
pub fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    let catalog = Router::new()
        .merge(gateways::routes())
        .merge(servers::routes());
    let callers = Router::new()
        .merge(tools::routes())
        .merge(items::routes())
        .route("/version", get(version));
    let admin = Router::new()
        .merge(sessions::routes())
        .merge(tokens::routes());
    let api = Router::new()
        .merge(protect(catalog, app, Access::AdminForWrites, Flavor::Rest))
        .merge(protect(callers, app, Access::Any, Flavor::Rest))
        .merge(protect(admin, app, Access::Admin, Flavor::Rest))
        // The same body limit as the MCP endpoints (axum's own default is 2 MB).
        .layer(axum::extract::DefaultBodyLimit::max(
            app.settings.limits.max_body_bytes,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::serve))
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

/// A path's `{id}`, refused like every other API error (axum's own
/// rejection is plain text).
pub(super) struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Id(id)),
            Err(e) => Err(ApiError::BadRequest {
                reason: e.body_text(),
            }),
        }
    }
}

/// A request's body, up to the API's limit; too large is a 413 with a
/// `detail` like every other API error.
pub(super) struct Body(pub Bytes);

impl FromRequest<Arc<App>> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let limit = app.settings.limits.max_body_bytes;
        let (parts, body) = req.into_parts();
        match crate::body::read_limited(&parts.headers, body, limit).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(BodyError::TooLarge) => Err(ApiError::TooLarge { limit }),
            Err(BodyError::Unreadable(reason)) => Err(ApiError::BadRequest {
                reason: format!("cannot read the request body: {reason}"),
            }),
        }
    }
}

/// Parses a JSON body, naming the offending field on failure (422); nesting
/// deeper than the configured limit is refused (400) before parsing.
fn parse_body<T: DeserializeOwned>(app: &App, body: &Bytes) -> Result<T, ApiError> {
    let depth = app.settings.limits.max_json_depth;
    if crate::jsonrpc::nested_deeper_than(body, depth) {
        return Err(ApiError::BadRequest {
            reason: format!("JSON nested deeper than {depth} levels"),
        });
    }
    // serde would read an array into a struct field by field, by position.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(ApiError::Invalid {
            path: String::new(),
            reason: "the body must be a JSON object".into(),
        });
    }
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
