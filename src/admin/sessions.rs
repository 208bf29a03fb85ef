//! `/admin/sessions`: a window into the session registry, and a way to end
//! one session by force. `/metrics`: Prometheus text.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, Id};
use crate::app::App;
use crate::catalog::Scope;
use crate::downstream;
use crate::registry::EvictReason;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/sessions", get(list))
        .route("/admin/sessions/{id}", axum::routing::delete(end))
        .route("/metrics", get(metrics))
}

async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let downstream: Vec<Value> = app
        .sessions
        .all()
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "endpoint": match &s.scope {
                    Scope::All => "/mcp".to_owned(),
                    Scope::Server(id) => format!("/servers/{id}/mcp"),
                },
                "principal": {"id": &*s.principal.id, "name": &*s.principal.name},
                "protocolVersion": s.protocol_version,
                "createdAt": s.created_at,
                "idleSecs": s.idle_for().as_secs_f64(),
            })
        })
        .collect();
    Json(json!({
        "downstreamSessions": downstream,
        "upstreamSessions": app.registry.snapshot(),
    }))
}

async fn end(State(app): State<Arc<App>>, Id(id): Id) -> Result<StatusCode, ApiError> {
    if downstream::end_session(&app, &id, EvictReason::SessionEnded).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            what: format!("session {id}"),
        })
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app
        .metrics
        .render(app.registry.live_count(), app.sessions.len());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
