//! What the gateway does with each MCP request of an open downstream session:
//! answer it locally (`ping`, `tools/list`), route it to the upstream that owns
//! the name (`tools/call`), or refuse it by name.
//!
//! [`RouteError::code`] is the one place a JSON-RPC error code is chosen.

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::HeaderMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::app::App;
use crate::catalog::{Gateway, Scope};
use crate::downstream::session::DownstreamSession;
use crate::jsonrpc::{self, code, Request};
use crate::passthrough;
use crate::registry::RegistryError;
use crate::trace::TraceContext;
use crate::upstream::{self, Reply, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("method not found: {method}")]
    MethodNotFound { method: String },
    #[error("invalid params: {reason}")]
    InvalidParams { reason: String },
    #[error("unknown tool: {name}")]
    UnknownTool { name: String },
    #[error("this endpoint's virtual server no longer exists")]
    ScopeGone,
    #[error("session is already initialized")]
    AlreadyInitialized,
    #[error("session ended")]
    SessionEnded,
    #[error(
        "gateway {gateway} is unreachable ({last_error}); calls fail until a health check succeeds"
    )]
    GatewayDown { gateway: String, last_error: String },
    #[error("gateway {gateway}: {source}")]
    Upstream {
        gateway: String,
        #[source]
        source: UpstreamError,
    },
}

impl RouteError {
    pub fn code(&self) -> i64 {
        match self {
            RouteError::MethodNotFound { .. } => code::METHOD_NOT_FOUND,
            // Spec (server/tools, "Error Handling"): unknown tools are invalid params.
            RouteError::InvalidParams { .. } | RouteError::UnknownTool { .. } => {
                code::INVALID_PARAMS
            }
            RouteError::AlreadyInitialized => code::INVALID_REQUEST,
            RouteError::ScopeGone | RouteError::SessionEnded => code::INVALID_REQUEST,
            RouteError::GatewayDown { .. } => code::UPSTREAM_UNAVAILABLE,
            RouteError::Upstream { source, .. } => match source {
                UpstreamError::Timeout => code::UPSTREAM_TIMEOUT,
                UpstreamError::SessionExpired => code::UPSTREAM_SESSION_EXPIRED,
                UpstreamError::Transport { .. }
                | UpstreamError::Status { .. }
                | UpstreamError::Protocol { .. }
                | UpstreamError::Closed
                | UpstreamError::Initialize { .. } => code::UPSTREAM_UNAVAILABLE,
            },
        }
    }

    fn into_body(self, id: &RawValue) -> String {
        jsonrpc::error_body(Some(id), self.code(), &self.to_string(), None)
    }
}

/// Methods the gateway answers (everything else gets -32601).
const IMPLEMENTED: [&str; 4] = ["ping", "initialize", "tools/list", "tools/call"];

pub fn implements(method: &str) -> bool {
    IMPLEMENTED.contains(&method)
}

/// Per-request facts from the HTTP layer that routing needs.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub trace: Option<TraceContext>,
    /// The downstream request's headers. Only `passthrough::select` reads
    /// them for an upstream request, with the gateway's allow-list.
    pub downstream_headers: HeaderMap,
}

impl RequestContext {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            trace: TraceContext::from_headers(headers),
            downstream_headers: headers.clone(),
        }
    }
}

/// The headers an upstream request carries besides the gateway's own: the
/// allowed downstream ones (the gateway's list, else the global default)
/// and the trace context, which also goes into `params._meta`.
pub fn upstream_headers(
    app: &App,
    gateway: &Gateway,
    ctx: &RequestContext,
    params: Option<&mut Map<String, Value>>,
) -> HeaderMap {
    let allowed = gateway
        .passthrough_headers
        .as_deref()
        .unwrap_or(&app.settings.security.passthrough_headers);
    let mut headers = passthrough::select(&ctx.downstream_headers, allowed);
    if let Some(t) = &ctx.trace {
        if let Some(params) = params {
            t.annotate(params);
        }
        headers.extend(t.headers());
    }
    headers
}

/// How a routed call reaches its upstream.
pub enum Via<'a> {
    /// The downstream session's own upstream session, from the registry.
    Session(&'a DownstreamSession),
    /// A session opened for this call alone (no downstream session: `/rpc`).
    PerCall,
}

/// Answers one request; the returned string is the whole JSON-RPC response.
pub async fn handle(
    app: &App,
    session: &Arc<DownstreamSession>,
    req: Request,
    ctx: &RequestContext,
) -> String {
    let span = tracing::debug_span!("rpc", session = %session.id, method = %req.method);
    dispatch(app, &session.scope, Via::Session(session), req, ctx)
        .instrument(span)
        .await
}

/// Answers one request arriving without a session (`POST /rpc`).
pub async fn handle_sessionless(app: &App, req: Request, ctx: &RequestContext) -> String {
    let span = tracing::debug_span!("rpc", session = "-", method = %req.method);
    dispatch(app, &Scope::All, Via::PerCall, req, ctx)
        .instrument(span)
        .await
}

async fn dispatch(
    app: &App,
    scope: &Scope,
    via: Via<'_>,
    req: Request,
    ctx: &RequestContext,
) -> String {
    let outcome = match req.method.as_str() {
        "ping" => Ok(empty_result()),
        "initialize" => Err(RouteError::AlreadyInitialized),
        "tools/list" => tools_list(app, scope),
        "tools/call" => match call_tool(app, scope, via, req.params.as_deref(), ctx).await {
            Ok(Reply(Ok(result))) => Ok(result),
            // Upstream JSON-RPC errors reach the client exactly as sent.
            Ok(Reply(Err(error))) => return jsonrpc::error_body_raw(Some(&req.id), error.get()),
            Err(e) => {
                tracing::info!(error = %e, "tools/call failed");
                Err(e)
            }
        },
        _ => Err(RouteError::MethodNotFound {
            method: req.method.clone(),
        }),
    };
    match outcome {
        Ok(result) => jsonrpc::result_body(&req.id, &result),
        Err(e) => e.into_body(&req.id),
    }
}

fn empty_result() -> Box<RawValue> {
    jsonrpc::raw("{}".to_owned())
}

fn tools_list(app: &App, scope: &Scope) -> Result<Box<RawValue>, RouteError> {
    let snap = app.catalog.snapshot();
    let view = snap.scope(scope).ok_or(RouteError::ScopeGone)?;
    // All tools in one page: the catalog holds them in memory already.
    Ok(view.tools_list().to_owned())
}

/// Routes `tools/call` to the gateway that owns the exposed name, under the
/// tool's original name.
pub async fn call_tool(
    app: &App,
    scope: &Scope,
    via: Via<'_>,
    params: Option<&RawValue>,
    ctx: &RequestContext,
) -> Result<Reply, RouteError> {
    let mut params: Map<String, Value> = match params {
        Some(p) => serde_json::from_str(p.get()).map_err(|_| RouteError::InvalidParams {
            reason: "tools/call params must be an object".into(),
        })?,
        None => {
            return Err(RouteError::InvalidParams {
                reason: "tools/call needs params with a \"name\"".into(),
            })
        }
    };
    let name = match params.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => {
            return Err(RouteError::InvalidParams {
                reason: "\"name\" must be a string".into(),
            })
        }
    };
    let snap = app.catalog.snapshot();
    let view = snap.scope(scope).ok_or(RouteError::ScopeGone)?;
    let tool = view.tool(&name).ok_or(RouteError::UnknownTool { name })?;
    let gateway = &tool.gateway;
    if !gateway.reachable {
        return Err(RouteError::GatewayDown {
            gateway: gateway.name.clone(),
            last_error: gateway
                .last_error
                .clone()
                .unwrap_or_else(|| "no successful health check yet".into()),
        });
    }
    params.insert("name".to_owned(), Value::String(tool.original_name.clone()));
    let headers = upstream_headers(app, gateway, ctx, Some(&mut params));
    let upstream_params = jsonrpc::to_raw(&params);
    let upstream_error = |source| RouteError::Upstream {
        gateway: gateway.name.clone(),
        source,
    };
    let started = Instant::now();
    let result = match via {
        Via::PerCall => upstream::call_once(
            app.registry.connector(),
            &gateway.connection,
            "tools/call",
            Some(upstream_params),
            headers,
        )
        .await
        .map_err(upstream_error),
        Via::Session(session) => {
            let upstream = app
                .registry
                .acquire(&session.id, gateway, &app.upstream_init_params)
                .await
                .map_err(|e| match e {
                    RegistryError::SessionEnded => RouteError::SessionEnded,
                    RegistryError::Connect(source) => upstream_error(source),
                })?;
            match upstream
                .request_with_headers("tools/call", Some(upstream_params), headers)
                .await
            {
                Ok(reply) => Ok(reply),
                Err(source) => {
                    if source.ends_session() {
                        app.registry.discard(&session.id, &upstream).await;
                    }
                    Err(upstream_error(source))
                }
            }
        }
    };
    app.metrics
        .upstream_latency(&gateway.id, started.elapsed().as_secs_f64());
    result
}
