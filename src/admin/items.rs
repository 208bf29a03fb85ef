//! `/prompts` and `/resources`: the federated prompts, resources and
//! resource templates, read-only, shaped like `/tools`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, Id};
use crate::app::App;
use crate::catalog::{naming, Item, ItemKind, URI_SCHEME};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/prompts", get(list_prompts))
        .route("/prompts/{id}", get(read_prompt))
        .route("/resources", get(list_resources))
        .route("/resources/{id}", get(read_resource))
}

fn item_json(app: &App, i: &Item) -> Value {
    let field = |k: &str| i.definition.get(k).cloned().unwrap_or(Value::Null);
    let common = json!({
        "id": i.id,
        "description": field("description"),
        "gatewayId": i.gateway.id,
        "gatewaySlug": i.gateway.slug,
        "enabled": i.gateway.enabled,
        "reachable": i.gateway.reachable,
    });
    let specific = match i.kind {
        ItemKind::Prompt => json!({
            "name": naming::exposed_name(&i.gateway.slug, app.catalog.separator(), &i.key),
            "originalName": i.key,
            "title": field("title"),
            "arguments": i.definition.get("arguments").cloned().unwrap_or_else(|| json!([])),
        }),
        ItemKind::Resource => json!({
            "uri": format!("{URI_SCHEME}{}/{}", i.gateway.slug, i.key),
            "originalUri": i.key,
            "name": field("name"),
            "mimeType": field("mimeType"),
            "isTemplate": false,
        }),
        ItemKind::Template => json!({
            "uriTemplate": format!("{URI_SCHEME}{}/{}", i.gateway.slug, i.key),
            "originalUriTemplate": i.key,
            "name": field("name"),
            "mimeType": field("mimeType"),
            "isTemplate": true,
        }),
    };
    let mut out = common;
    if let (Value::Object(o), Value::Object(s)) = (&mut out, specific) {
        o.extend(s);
    }
    out
}

fn listed(app: &App, kinds: &[ItemKind]) -> Json<Value> {
    let snap = app.catalog.snapshot();
    let mut items: Vec<&Arc<Item>> = snap
        .items()
        .iter()
        .filter(|i| kinds.contains(&i.kind))
        .collect();
    items.sort_by(|a, b| (&a.gateway.slug, &a.key).cmp(&(&b.gateway.slug, &b.key)));
    Json(Value::Array(
        items.iter().map(|i| item_json(app, i)).collect(),
    ))
}

fn one(app: &App, id: &str, kinds: &[ItemKind], what: &str) -> Result<Json<Value>, ApiError> {
    let snap = app.catalog.snapshot();
    let item = snap
        .item_by_id(id)
        .filter(|i| kinds.contains(&i.kind))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("{what} {id}"),
        })?;
    Ok(Json(item_json(app, item)))
}

async fn list_prompts(State(app): State<Arc<App>>) -> Json<Value> {
    listed(&app, &[ItemKind::Prompt])
}

async fn read_prompt(State(app): State<Arc<App>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    one(&app, &id, &[ItemKind::Prompt], "prompt")
}

/// Resources and resource templates together; `isTemplate` tells them apart.
async fn list_resources(State(app): State<Arc<App>>) -> Json<Value> {
    listed(&app, &[ItemKind::Resource, ItemKind::Template])
}

async fn read_resource(State(app): State<Arc<App>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    one(
        &app,
        &id,
        &[ItemKind::Resource, ItemKind::Template],
        "resource",
    )
}
