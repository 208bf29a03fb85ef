//! `/servers`: virtual servers, each a chosen set of tools behind its own
//! MCP endpoint `/servers/{id}/mcp`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_body, ApiError, Body, Id};
use crate::app::App;
use crate::catalog::{self, ServerSpec, VirtualServer};
use crate::downstream;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/servers", get(list).post(create))
        .route("/servers/{id}", get(read).put(update).delete(remove))
}

/// Tool ids as a JSON list or, as ContextForge's form posts send them, one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ids {
    List(Vec<String>),
    Joined(String),
}

impl Ids {
    fn into_vec(self) -> Vec<String> {
        let v = match self {
            Ids::List(v) => v,
            Ids::Joined(s) => s.split(',').map(str::to_owned).collect(),
        };
        let mut out: Vec<String> = Vec::with_capacity(v.len());
        for id in v
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }
}

#[derive(Deserialize)]
struct ServerBody {
    name: Option<String>,
    description: Option<String>,
    icon: Option<String>,
    tags: Option<Vec<String>>,
    #[serde(alias = "associatedTools")]
    associated_tools: Option<Ids>,
    #[serde(alias = "associatedPrompts")]
    associated_prompts: Option<Ids>,
    /// Resource and resource-template ids.
    #[serde(alias = "associatedResources")]
    associated_resources: Option<Ids>,
    #[serde(alias = "isActive", alias = "is_active")]
    enabled: Option<bool>,
    /// Expose names and URIs unchanged (all features must come from one gateway).
    passthrough: Option<bool>,
    /// Expose everything this gateway offers, now and after refreshes.
    #[serde(alias = "gatewayId")]
    gateway_id: Option<String>,
}

/// A server's prompt ids and resource/template ids, from its item ids.
fn split_items(snap: &catalog::Snapshot, ids: &[String]) -> (Vec<String>, Vec<String>) {
    ids.iter().cloned().partition(|id| {
        snap.item_by_id(id)
            .is_some_and(|i| i.kind == catalog::ItemKind::Prompt)
    })
}

/// ContextForge accepts `{"server": {...}}` as well as the bare object.
fn unwrap_envelope(app: &App, body: &Bytes) -> Result<Bytes, ApiError> {
    let v: Value = parse_body(app, body)?;
    match v {
        Value::Object(mut m) if m.len() == 1 && m.get("server").is_some_and(Value::is_object) => {
            let inner = m.remove("server").unwrap_or(Value::Null);
            Ok(Bytes::from(inner.to_string()))
        }
        _ => Ok(body.clone()),
    }
}

fn server_json(snap: &catalog::Snapshot, s: &VirtualServer) -> Value {
    let (prompts, resources) = split_items(snap, &s.item_ids);
    json!({
        "associatedPrompts": prompts,
        "associatedResources": resources,
        "passthrough": s.passthrough,
        "gatewayId": s.gateway_id,
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "icon": s.icon,
        "tags": s.tags,
        "enabled": s.enabled,
        "isActive": s.enabled,
        "associatedTools": s.tool_ids,
        "url": format!("/servers/{}/mcp", s.id),
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
    })
}

async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let snap = app.catalog.snapshot();
    Json(Value::Array(
        snap.servers()
            .iter()
            .map(|s| server_json(&snap, s))
            .collect(),
    ))
}

async fn read(State(app): State<Arc<App>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    let snap = app.catalog.snapshot();
    let s = snap.server(&id).ok_or_else(|| ApiError::NotFound {
        what: format!("server {id}"),
    })?;
    Ok(Json(server_json(&snap, s)))
}

async fn create(
    State(app): State<Arc<App>>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: ServerBody = parse_body(&app, &unwrap_envelope(&app, &body)?)?;
    let name = req.name.ok_or_else(|| ApiError::Invalid {
        path: "name".into(),
        reason: "field required".into(),
    })?;
    let spec = ServerSpec {
        name: catalog::validate_name(name)?,
        description: req.description,
        icon: req.icon,
        tags: catalog::validate_tags(req.tags.unwrap_or_default())?,
        tool_ids: req.associated_tools.map(Ids::into_vec).unwrap_or_default(),
        item_ids: req
            .associated_prompts
            .map(Ids::into_vec)
            .unwrap_or_default()
            .into_iter()
            .chain(
                req.associated_resources
                    .map(Ids::into_vec)
                    .unwrap_or_default(),
            )
            .collect(),
        passthrough: req.passthrough.unwrap_or(false),
        gateway_id: req.gateway_id.filter(|g| !g.is_empty()),
    };
    let server = app.catalog.create_server(spec).await?;
    tracing::info!(server = %server.id, name = %server.name, tools = server.tool_ids.len(), "virtual server created");
    Ok((
        StatusCode::CREATED,
        Json(server_json(&app.catalog.snapshot(), &server)),
    ))
}

async fn update(
    State(app): State<Arc<App>>,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let req: ServerBody = parse_body(&app, &unwrap_envelope(&app, &body)?)?;
    let name = req.name.map(catalog::validate_name).transpose()?;
    let tags = req.tags.map(catalog::validate_tags).transpose()?;
    let snap = app.catalog.snapshot();
    let server = app
        .catalog
        .update_server(&id, |s| {
            if req.associated_prompts.is_some() || req.associated_resources.is_some() {
                let (prompts, resources) = split_items(&snap, &s.item_ids);
                let prompts = req.associated_prompts.map(Ids::into_vec).unwrap_or(prompts);
                let resources = req
                    .associated_resources
                    .map(Ids::into_vec)
                    .unwrap_or(resources);
                s.item_ids = prompts.into_iter().chain(resources).collect();
            }
            if let Some(p) = req.passthrough {
                s.passthrough = p;
            }
            if let Some(g) = req.gateway_id {
                s.gateway_id = Some(g).filter(|g| !g.is_empty());
            }
            if let Some(n) = name {
                s.name = n;
            }
            if let Some(d) = req.description {
                s.description = Some(d);
            }
            if let Some(i) = req.icon {
                s.icon = Some(i);
            }
            if let Some(t) = tags {
                s.tags = t;
            }
            if let Some(ids) = req.associated_tools {
                s.tool_ids = ids.into_vec();
            }
            if let Some(e) = req.enabled {
                s.enabled = e;
            }
        })
        .await?;
    Ok(Json(server_json(&app.catalog.snapshot(), &server)))
}

async fn remove(State(app): State<Arc<App>>, Id(id): Id) -> Result<StatusCode, ApiError> {
    app.catalog.delete_server(&id).await?;
    // Sessions opened on this server's endpoint have nothing left to serve.
    let scope = catalog::Scope::Server(id);
    let doomed: Vec<String> = app
        .sessions
        .ids()
        .into_iter()
        .filter(|sid| app.sessions.get(sid).is_some_and(|s| s.scope == scope))
        .collect();
    for sid in doomed {
        downstream::end_session(&app, &sid, crate::registry::EvictReason::SessionEnded).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
