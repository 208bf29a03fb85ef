//! What the gateway does with each MCP request of an open downstream session:
//! answer it locally (`ping`, `tools/list`), route it to the upstream that owns
//! the name (`tools/call`), or refuse it by name.
//!
//! [`RouteError::code`] is the one place a JSON-RPC error code is chosen.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::app::App;
use crate::downstream::session::DownstreamSession;
use crate::jsonrpc::{self, code, Request};
use crate::registry::RegistryError;
use crate::upstream::{Reply, UpstreamError};

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

/// Answers one request; the returned string is the whole JSON-RPC response.
pub async fn handle(app: &App, session: &Arc<DownstreamSession>, req: Request) -> String {
    let span = tracing::debug_span!("rpc", session = %session.id, method = %req.method);
    dispatch(app, session, req).instrument(span).await
}

async fn dispatch(app: &App, session: &Arc<DownstreamSession>, req: Request) -> String {
    let outcome = match req.method.as_str() {
        "ping" => Ok(empty_result()),
        "initialize" => Err(RouteError::AlreadyInitialized),
        "tools/list" => tools_list(app, session),
        "tools/call" => return tools_call(app, session, &req).await,
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

fn tools_list(app: &App, session: &DownstreamSession) -> Result<Box<RawValue>, RouteError> {
    let snap = app.catalog.snapshot();
    let scope = snap.scope(&session.scope).ok_or(RouteError::ScopeGone)?;
    // All tools in one page: the catalog holds them in memory already.
    Ok(scope.tools_list().to_owned())
}

async fn tools_call(app: &App, session: &Arc<DownstreamSession>, req: &Request) -> String {
    match route_tool_call(app, session, req).await {
        Ok(Reply(Ok(result))) => jsonrpc::result_body(&req.id, &result),
        // Upstream JSON-RPC errors reach the client exactly as sent.
        Ok(Reply(Err(error))) => jsonrpc::error_body_raw(Some(&req.id), error.get()),
        Err(e) => {
            tracing::info!(error = %e, "tools/call failed");
            e.into_body(&req.id)
        }
    }
}

async fn route_tool_call(
    app: &App,
    session: &Arc<DownstreamSession>,
    req: &Request,
) -> Result<Reply, RouteError> {
    let mut params: Map<String, Value> = match req.params.as_deref() {
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
    let scope = snap.scope(&session.scope).ok_or(RouteError::ScopeGone)?;
    let tool = scope.tool(&name).ok_or(RouteError::UnknownTool { name })?;
    params.insert("name".to_owned(), Value::String(tool.original_name.clone()));
    let upstream_params = jsonrpc::to_raw(&params);
    let gateway = &tool.gateway;
    let upstream = app
        .registry
        .acquire(&session.id, gateway, &app.upstream_init_params)
        .await
        .map_err(|e| match e {
            RegistryError::SessionEnded => RouteError::SessionEnded,
            RegistryError::Connect(source) => RouteError::Upstream {
                gateway: gateway.name.clone(),
                source,
            },
        })?;
    match upstream.request("tools/call", Some(upstream_params)).await {
        Ok(reply) => Ok(reply),
        Err(source) => {
            if source.ends_session() {
                app.registry.discard(&session.id, &upstream).await;
            }
            Err(RouteError::Upstream {
                gateway: gateway.name.clone(),
                source,
            })
        }
    }
}
