//! `/tools`: the federated tool catalog, read-only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{parse_body, ApiError, Body, Id};
use crate::app::App;
use crate::catalog::Tool;
use crate::router::{self, RequestContext};
use crate::upstream::{self, Reply};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/tools", get(list))
        .route("/tools/{id}", get(read))
        .route("/tools/{id}/invoke", post(invoke))
}

/// Calls one tool on a session of its own (initialize → call → close); the
/// body is the arguments object, bare or as `{"arguments": {...}}`. Answers
/// the upstream's `CallToolResult` as is; an upstream JSON-RPC error is 502.
async fn invoke(
    State(app): State<Arc<App>>,
    Id(id): Id,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let tool = app
        .catalog
        .snapshot()
        .tool_by_id(&id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            what: format!("tool {id}"),
        })?;
    let args: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(&app, &body)?
    };
    let args = match args {
        Value::Object(mut m)
            if m.len() == 1 && m.get("arguments").is_some_and(Value::is_object) =>
        {
            m.remove("arguments").unwrap_or_else(|| json!({}))
        }
        Value::Object(m) => Value::Object(m),
        _ => {
            return Err(ApiError::Invalid {
                path: "arguments".into(),
                reason: "must be an object".into(),
            })
        }
    };
    if !tool.gateway.enabled {
        return Err(ApiError::NotFound {
            what: format!("tool {id} (its gateway is disabled)"),
        });
    }
    let mut params = serde_json::Map::new();
    params.insert("name".into(), Value::String(tool.original_name.clone()));
    params.insert("arguments".into(), args);
    let ctx = RequestContext::from_headers(&app, &headers);
    let headers = router::upstream_headers(&app, &tool.gateway, &ctx, Some(&mut params));
    let Reply(outcome) = upstream::call_once(
        app.registry.connector(),
        &tool.gateway.connection,
        "tools/call",
        Some(crate::jsonrpc::to_raw(&params)),
        headers,
    )
    .await
    .map_err(|source| ApiError::Unreachable { source })?;
    match outcome {
        Ok(result) => {
            serde_json::from_str(result.get())
                .map(Json)
                .map_err(|e| ApiError::Internal {
                    detail: format!("upstream result: {e}"),
                })
        }
        Err(error) => Err(ApiError::UpstreamRejected {
            error: error.get().to_owned(),
        }),
    }
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

async fn read(State(app): State<Arc<App>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    let snap = app.catalog.snapshot();
    let t = snap.tool_by_id(&id).ok_or_else(|| ApiError::NotFound {
        what: format!("tool {id}"),
    })?;
    Ok(Json(tool_json(t)))
}
