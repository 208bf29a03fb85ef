//! `/gateways`: registering, editing and removing upstream MCP servers.
//!
//! Registration and connection edits check the URL against the SSRF guard
//! (`upstream/egress.rs`), then talk to the upstream (initialize +
//! tools/list) and store nothing if it cannot be reached. Edits that change
//! how the gateway connects, removal and disabling close the gateway's live
//! upstream sessions; cosmetic edits close nothing, and neither does a new
//! `passthrough_headers` list (it is applied per request).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_body, ApiError, Body, Id};
use crate::app::App;
use crate::catalog::credentials::{present, CredentialFields, UpstreamAuth};
use crate::catalog::{self, Connection, Gateway, GatewaySpec, Transport};
use crate::passthrough;
use crate::registry::EvictReason;
use crate::secrets::MASK;
use crate::upstream;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/gateways", get(list).post(create))
        .route("/gateways/{id}", get(read).put(update).delete(remove))
        .route("/gateways/{id}/tools/refresh", post(refresh))
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    url: Option<String>,
    transport: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// STDIO gateways: the program to run, its arguments and extra environment.
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    /// Downstream headers forwarded to this gateway; absent or null: the global default.
    #[serde(alias = "passthroughHeaders")]
    passthrough_headers: Option<Vec<String>>,
    /// `auth_type` and friends, `ca_certificate`, `client_cert`, `client_key`.
    #[serde(flatten)]
    credentials: CredentialFields,
}

/// Every field optional: PUT is a partial update.
#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    url: Option<String>,
    transport: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    enabled: Option<bool>,
    /// ContextForge's name for `enabled`; a read sent back carries both.
    #[serde(alias = "isActive")]
    is_active: Option<bool>,
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    /// Absent: unchanged; `null`: back to the global default; a list: this list.
    #[serde(default, alias = "passthroughHeaders", deserialize_with = "present")]
    passthrough_headers: Option<Option<Vec<String>>>,
    /// Absent: unchanged. A secret sent back masked (`*****`) keeps the stored one.
    #[serde(flatten)]
    credentials: CredentialFields,
}

/// The SSRF guard, before any connection: 422 naming `url` and why. STDIO
/// gateways connect nowhere (their URL only names the program).
async fn check_egress(app: &App, connection: &Connection) -> Result<(), ApiError> {
    let egress = &app.registry.connector().egress;
    if let UpstreamAuth::OAuth(o) = &connection.auth {
        let url = reqwest::Url::parse(&o.token_url).map_err(|e| ApiError::Invalid {
            path: "oauth_config".into(),
            reason: format!("token_url: {e}"),
        })?;
        egress
            .check_url(&url)
            .await
            .map_err(|e| ApiError::Invalid {
                path: "oauth_config".into(),
                reason: format!("token_url: {e}"),
            })?;
    }
    if connection.transport == Transport::Stdio {
        return Ok(());
    }
    egress
        .check_url(&connection.url)
        .await
        .map_err(|e| ApiError::Invalid {
            path: "url".into(),
            reason: e.to_string(),
        })
}

/// Applies a body's credential and TLS fields to a connection; what the
/// body does not mention stays as it was in `current`.
fn apply_credentials(
    connection: Connection,
    mut fields: CredentialFields,
    current: Option<&Connection>,
) -> Result<Connection, ApiError> {
    let (auth, tls) = match current {
        Some(c) => (c.auth.clone(), c.tls.clone()),
        None => Default::default(),
    };
    let tls = fields.resolve_tls(&tls)?.unwrap_or(tls);
    let auth = fields.resolve_auth(&auth)?.unwrap_or(auth);
    Ok(connection.with_credentials(auth, tls)?)
}

fn validate_passthrough(list: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    list.map(|l| passthrough::validate_names(&l))
        .transpose()
        .map_err(|reason| ApiError::Invalid {
            path: "passthrough_headers".into(),
            reason,
        })
}

fn parse_transport(t: Option<&str>) -> Result<Transport, ApiError> {
    let transport = match t {
        None => Transport::StreamableHttp,
        Some(t) => Transport::parse(t).ok_or_else(|| ApiError::Invalid {
            path: "transport".into(),
            reason: format!("unknown transport {t:?}; expected STREAMABLEHTTP, SSE or STDIO"),
        })?,
    };
    Ok(transport)
}

pub fn gateway_json(app: &App, g: &Gateway) -> Value {
    let snap = app.catalog.snapshot();
    let tool_count = snap.tools().iter().filter(|t| t.gateway.id == g.id).count();
    let mut out = json!({
        "id": g.id,
        "name": g.name,
        "slug": g.slug,
        "url": g.connection.url.as_str(),
        "transport": g.connection.transport.as_str(),
        "command": g.connection.stdio.as_ref().map(|c| c.program.clone()),
        "args": g.connection.stdio.as_ref().map(|c| c.args.clone()),
        // Values often hold API keys for the child: names only.
        "env": g.connection.stdio.as_ref().map(|c| c.env.keys().map(|k| (k.clone(), json!("*****"))).collect::<serde_json::Map<_, _>>()),
        "description": g.description,
        "tags": g.tags,
        "enabled": g.enabled,
        "isActive": g.enabled,
        "reachable": g.reachable,
        "capabilities": g.capabilities,
        "serverInfo": g.server_info,
        "protocolVersion": g.protocol_version,
        "toolCount": tool_count,
        "passthroughHeaders": g.passthrough_headers,
        "createdAt": g.created_at,
        "updatedAt": g.updated_at,
        "lastSeen": g.last_seen,
        "lastError": g.last_error,
        "caCertificate": g.connection.tls.ca_certificate,
        "clientCert": g.connection.tls.client_cert,
        "clientKey": g.connection.tls.client_key.as_ref().map(|_| MASK),
    });
    if let Value::Object(map) = &mut out {
        map.extend(g.connection.auth.to_api());
    }
    out
}

async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let snap = app.catalog.snapshot();
    Json(Value::Array(
        snap.gateways()
            .iter()
            .map(|g| gateway_json(&app, g))
            .collect(),
    ))
}

async fn read(State(app): State<Arc<App>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    let snap = app.catalog.snapshot();
    let g = snap.gateway(&id).ok_or_else(|| ApiError::NotFound {
        what: format!("gateway {id}"),
    })?;
    Ok(Json(gateway_json(&app, g)))
}

async fn create(
    State(app): State<Arc<App>>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateBody = parse_body(&app, &body)?;
    let transport = parse_transport(req.transport.as_deref())?;
    let connection = Connection::build(
        req.url.as_deref(),
        transport,
        req.command,
        req.args.unwrap_or_default(),
        req.env.unwrap_or_default(),
    )?;
    let connection = apply_credentials(connection, req.credentials, None)?;
    let mut spec = GatewaySpec::new(
        req.name,
        connection,
        req.description,
        req.tags.unwrap_or_default(),
    )?;
    spec.passthrough_headers = validate_passthrough(req.passthrough_headers)?;
    check_egress(&app, &spec.connection).await?;
    // A cheap 409 before spending a round trip on the upstream; the catalog checks again under its lock.
    if app
        .catalog
        .snapshot()
        .gateways()
        .iter()
        .any(|g| g.name == spec.name)
    {
        return Err(ApiError::Conflict {
            reason: format!("a gateway named {:?} already exists", spec.name),
        });
    }
    let found = upstream::discover(app.registry.connector(), &spec.connection)
        .await
        .map_err(|source| ApiError::Unreachable { source })?;
    let tool_count = found.features.tools.len();
    let gateway = app.catalog.create_gateway(spec, Ok(found)).await?;
    tracing::info!(gateway = %gateway.id, name = %gateway.name, url = %gateway.connection.url, tools = tool_count, "gateway registered");
    Ok((StatusCode::CREATED, Json(gateway_json(&app, &gateway))))
}

async fn update(
    State(app): State<Arc<App>>,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let req: UpdateBody = parse_body(&app, &body)?;
    let current = app
        .catalog
        .snapshot()
        .gateway(&id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            what: format!("gateway {id}"),
        })?;
    let name = req.name.map(catalog::validate_name).transpose()?;
    let tags = req.tags.map(catalog::validate_tags).transpose()?;
    let passthrough_headers = req
        .passthrough_headers
        .map(validate_passthrough)
        .transpose()?;
    let transport = match &req.transport {
        Some(t) => parse_transport(Some(t))?,
        None => current.connection.transport,
    };
    let old_stdio = current.connection.stdio.clone().unwrap_or_default();
    let connection = Connection::build(
        Some(
            req.url
                .as_deref()
                .unwrap_or(current.connection.url.as_str()),
        ),
        transport,
        req.command
            .or(current.connection.stdio.as_ref().map(|c| c.program.clone())),
        req.args.unwrap_or(old_stdio.args),
        req.env.unwrap_or(old_stdio.env),
    )?;
    let connection = apply_credentials(connection, req.credentials, Some(&current.connection))?;
    if connection.url != current.connection.url || connection.auth != current.connection.auth {
        check_egress(&app, &connection).await?;
    }
    if let (Some(a), Some(b)) = (req.enabled, req.is_active) {
        if a != b {
            return Err(ApiError::Invalid {
                path: "enabled".into(),
                reason: "enabled and isActive disagree".into(),
            });
        }
    }
    let enabled = req.enabled.or(req.is_active).unwrap_or(current.enabled);
    // A new way of connecting must work before it replaces the old one.
    let found = if connection != current.connection || (enabled && !current.enabled) {
        Some(
            upstream::discover(app.registry.connector(), &connection)
                .await
                .map_err(|source| ApiError::Unreachable { source })?,
        )
    } else {
        None
    };
    let features = found.as_ref().map(|f| f.features.clone());
    let (before, after) = app
        .catalog
        .update_gateway(
            &id,
            |g| {
                if let Some(n) = name {
                    g.name = n;
                }
                if let Some(d) = req.description {
                    g.description = Some(d);
                }
                if let Some(t) = tags {
                    g.tags = t;
                }
                if let Some(p) = passthrough_headers {
                    g.passthrough_headers = p;
                }
                g.connection = connection;
                g.enabled = enabled;
                if let Some(f) = found {
                    g.capabilities = f.capabilities;
                    g.server_info = f.server_info;
                    g.protocol_version = Some(f.protocol_version);
                    g.reachable = true;
                    g.last_seen = Some(Utc::now());
                    g.last_error = None;
                }
            },
            features,
        )
        .await?;
    // Disabling hides the tools; its sessions would only pin a gateway nobody may call.
    if before.connection != after.connection || (before.enabled && !after.enabled) {
        let closed = app
            .registry
            .evict_gateway(&id, EvictReason::GatewayChanged)
            .await;
        tracing::info!(gateway = %id, upstream_sessions_closed = closed, "gateway connection changed");
    }
    Ok(Json(gateway_json(&app, &after)))
}

async fn remove(State(app): State<Arc<App>>, Id(id): Id) -> Result<StatusCode, ApiError> {
    let gone = app.catalog.delete_gateway(&id).await?;
    let closed = app
        .registry
        .evict_gateway(&id, EvictReason::GatewayRemoved)
        .await;
    tracing::info!(gateway = %id, name = %gone.name, upstream_sessions_closed = closed, "gateway removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn refresh(State(app): State<Arc<App>>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    let current = app
        .catalog
        .snapshot()
        .gateway(&id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            what: format!("gateway {id}"),
        })?;
    let before: Vec<String> = app
        .catalog
        .snapshot()
        .tools()
        .iter()
        .filter(|t| t.gateway.id == id)
        .map(|t| t.original_name.clone())
        .collect();
    let found = upstream::discover(app.registry.connector(), &current.connection)
        .await
        .map_err(|source| ApiError::Unreachable { source })?;
    let names: Vec<String> = found
        .features
        .tools
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let features = found.features.clone();
    let (_, after) = app
        .catalog
        .update_gateway(
            &id,
            |g| {
                g.capabilities = found.capabilities;
                g.server_info = found.server_info;
                g.protocol_version = Some(found.protocol_version);
                g.reachable = true;
                g.last_seen = Some(Utc::now());
                g.last_error = None;
            },
            Some(features),
        )
        .await?;
    let added = names.iter().filter(|n| !before.contains(n)).count();
    let removed = before.iter().filter(|n| !names.contains(n)).count();
    Ok(Json(json!({
        "success": true,
        "gatewayId": id,
        "toolsAdded": added,
        "toolsRemoved": removed,
        "toolsUpdated": names.len() - added,
        "toolCount": names.len(),
        "gateway": gateway_json(&app, &after),
    })))
}
