//! `/tools`: the federated tool catalog, read-only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::ApiError;
use crate::app::App;
use crate::catalog::Tool;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/tools", get(list))
        .route("/tools/{id}", get(read))
}

pub fn tool_json(t: &Tool) -> Value {
    let field = |k: &str| t.definition.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "id": t.id,
        "name": t.name,
        "originalName": t.original_name,
        "title": field("title"),
        "description": field("description"),
        "inputSchema": t.definition.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
        "outputSchema": field("outputSchema"),
        "annotations": t.definition.get("annotations").cloned().unwrap_or_else(|| json!({})),
        "gatewayId": t.gateway.id,
        "gatewaySlug": t.gateway.slug,
        "enabled": t.enabled && t.gateway.enabled,
        "reachable": t.gateway.reachable,
        "createdAt": t.created_at,
        "updatedAt": t.updated_at,
    })
}

async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let snap = app.catalog.snapshot();
    Json(Value::Array(
        snap.tools().iter().map(|t| tool_json(t)).collect(),
    ))
}

async fn read(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = app.catalog.snapshot();
    let t = snap.tool_by_id(&id).ok_or_else(|| ApiError::NotFound {
        what: format!("tool {id}"),
    })?;
    Ok(Json(tool_json(t)))
}
