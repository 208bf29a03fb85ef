//! Talking to upstream MCP servers.
//!
//! - `http`: the Streamable HTTP client wire protocol (POST, SSE answers, DELETE).
//! - `egress`: the SSRF guard: which addresses upstream connections may reach.
//! - `session`: one live upstream MCP session, owned by its own task.
//! - `wire`: stdio and legacy HTTP+SSE, the transports with one inbound stream.
//! - [`discover`]: a short-lived session to learn what an upstream offers.
//!
//! Why not `rmcp`'s client: the gateway relays messages it does not model,
//! byte for byte, and needs per-request headers (trace context) on a reused
//! session and the raw 404 of an expired session. rmcp's client is typed end
//! to end and owns its session recovery, so we keep a thin client of our own
//! over reqwest; rmcp would still fit a future typed admin client.

pub mod egress;
pub mod http;
pub mod link;
mod plain;
mod session;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{json, Value};

pub use session::{Call, CloseOutcome, OnMessage, SessionInfo, SessionTask, UpstreamSession};

use crate::catalog::{Connection, Discovery, Features};
use crate::mcp;

/// A JSON-RPC answer from an upstream: its `result`, or its `error` object, verbatim.
#[derive(Debug)]
pub struct Reply(pub Result<Box<RawValue>, Box<RawValue>>);

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {reason}")]
    Transport { reason: String },
    #[error("upstream answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { status: u16, body: String },
    #[error("upstream session expired (the upstream answered 404)")]
    SessionExpired,
    #[error("upstream broke the protocol: {reason}")]
    Protocol { reason: String },
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream session is closed")]
    Closed,
    #[error("upstream initialize failed: {message}")]
    Initialize { message: String },
    /// The gateway could not produce its credentials for the upstream (e.g.
    /// the OAuth token endpoint refused).
    #[error("upstream credentials unavailable: {reason}")]
    Credentials { reason: String },
}

impl UpstreamError {
    /// Whether the session that produced this error is unusable from now on.
    /// Tool-level failures never get here (they are `Reply`s), and an HTTP
    /// error status or a timeout says nothing about the session itself.
    pub fn ends_session(&self) -> bool {
        match self {
            UpstreamError::Transport { .. }
            | UpstreamError::SessionExpired
            | UpstreamError::Protocol { .. }
            | UpstreamError::Closed
            | UpstreamError::Initialize { .. } => true,
            UpstreamError::Status { .. }
            | UpstreamError::Timeout
            | UpstreamError::Credentials { .. } => false,
        }
    }
}

/// Shared by every upstream session: the HTTP client and the time limits.
#[derive(Clone)]
pub struct Connector {
    /// The client for this connection: the shared one, or after [`Connector::link`]
    /// one with the gateway's TLS settings.
    pub client: reqwest::Client,
    /// Keep-alive connections for POSTs to `http://` upstreams (`plain.rs`);
    /// `None` when a proxy is configured.
    pub plain: Option<plain::Pool>,
    /// Per-connection clients and OAuth token caches.
    pub links: Arc<link::Links>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long a closing session may spend on its DELETE.
    pub close_timeout: Duration,
    /// Which addresses may be connected to; `client` resolves names under it.
    pub egress: egress::Policy,
}

impl Connector {
    pub fn new(
        client: reqwest::Client,
        egress: egress::Policy,
        request_timeout: Duration,
        connect_timeout: Duration,
        close_timeout: Duration,
        io_threads: usize,
    ) -> Connector {
        Connector {
            links: Arc::new(link::Links::new(client.clone(), egress, connect_timeout)),
            client,
            plain: plain::Pool::new(egress, io_threads),
            request_timeout,
            connect_timeout,
            close_timeout,
            egress,
        }
    }

    /// The clients a request goes out on.
    pub fn via(&self) -> http::Via<'_> {
        http::Via {
            client: &self.client,
            plain: self.plain.as_ref(),
        }
    }

    /// This connector, with the client for `connection`, and the endpoint
    /// carrying its credentials.
    pub fn link(
        &self,
        connection: &Connection,
    ) -> Result<(Connector, http::Endpoint), UpstreamError> {
        let (client, endpoint) = self.links.resolve(connection)?;
        Ok((
            Connector {
                client,
                ..self.clone()
            },
            endpoint,
        ))
    }
}

/// The `initialize` params the gateway sends upstream.
pub fn initialize_params() -> Box<RawValue> {
    crate::jsonrpc::to_raw(&json!({
        "protocolVersion": mcp::LATEST_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "switchyard", "version": env!("CARGO_PKG_VERSION")},
    }))
}

/// Connects, lists every tool, prompt, resource and resource template
/// (following `nextCursor`), and closes: what registration and refresh need,
/// without touching the session registry.
pub async fn discover(
    connector: &Connector,
    connection: &Connection,
) -> Result<Discovery, UpstreamError> {
    let (session, task) = UpstreamSession::connect(
        connector,
        "(discovery)",
        connection,
        &discovery_params(),
        None,
    )
    .await?;
    let result = list_features(&session).await;
    let info = session.info().clone();
    drop(session);
    task.close(connector.close_timeout).await;
    let features = result?;
    let init: Value = serde_json::from_str(info.init_result.get()).unwrap_or(Value::Null);
    Ok(Discovery {
        protocol_version: info.protocol_version.clone(),
        capabilities: init
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
        server_info: init.get("serverInfo").cloned().unwrap_or_else(|| json!({})),
        features,
    })
}

/// Discovery declares every client capability the gateway can relay, so
/// servers that offer some tools only to capable clients list them all.
fn discovery_params() -> Box<RawValue> {
    crate::jsonrpc::to_raw(&json!({
        "protocolVersion": mcp::LATEST_VERSION,
        "capabilities": {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {"listChanged": true}},
        "clientInfo": {"name": "switchyard", "version": env!("CARGO_PKG_VERSION")},
    }))
}

async fn list_features(session: &UpstreamSession) -> Result<Features, UpstreamError> {
    let init: Value = serde_json::from_str(session.info().init_result.get()).unwrap_or(Value::Null);
    let offers = |key: &str| {
        init.pointer(&format!("/capabilities/{key}"))
            .is_some_and(|v| !v.is_null())
    };
    let mut features = Features {
        tools: list_all(session, "tools/list", "tools", "name").await?,
        ..Features::default()
    };
    if offers("prompts") {
        features.prompts = list_all(session, "prompts/list", "prompts", "name").await?;
    }
    if offers("resources") {
        features.resources = list_all(session, "resources/list", "resources", "uri").await?;
        features.templates = list_all(
            session,
            "resources/templates/list",
            "resourceTemplates",
            "uriTemplate",
        )
        .await?;
    }
    Ok(features)
}

/// Pages through a list method; items without their key field are dropped.
async fn list_all(
    session: &UpstreamSession,
    method: &str,
    field: &str,
    key: &str,
) -> Result<Vec<Value>, UpstreamError> {
    const MAX_PAGES: usize = 100;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor
            .as_ref()
            .map(|c| crate::jsonrpc::to_raw(&json!({ "cursor": c })));
        let Reply(outcome) = session.request(method, params).await?;
        let result = outcome.map_err(|e| UpstreamError::Initialize {
            message: format!("{method} failed: {}", e.get()),
        })?;
        let page: Value =
            serde_json::from_str(result.get()).map_err(|e| UpstreamError::Protocol {
                reason: format!("{method} result: {e}"),
            })?;
        if let Some(list) = page.get(field).and_then(Value::as_array) {
            out.extend(
                list.iter()
                    .filter(|t| t.get(key).and_then(Value::as_str).is_some())
                    .cloned(),
            );
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return Ok(out),
        }
    }
    Err(UpstreamError::Protocol {
        reason: format!("{method} did not end after {MAX_PAGES} pages"),
    })
}

/// One call on a session of its own: initialize, the request (with
/// `headers` on it alone), close. For callers without a downstream session
/// (`/rpc`, `/tools/{id}/invoke`); the registry never sees it.
pub async fn call_once(
    connector: &Connector,
    connection: &Connection,
    method: &str,
    params: Option<Box<RawValue>>,
    headers: reqwest::header::HeaderMap,
) -> Result<Reply, UpstreamError> {
    let (session, task) = UpstreamSession::connect(
        connector,
        "(per-call)",
        connection,
        &initialize_params(),
        None,
    )
    .await?;
    let mut call = Call::new(method, params);
    call.headers = headers;
    let result = session.call(session.next_request_id(), call).await;
    drop(session);
    task.close(connector.close_timeout).await;
    result
}

/// A health check: can a session be opened (initialize) and closed?
pub async fn check(connector: &Connector, connection: &Connection) -> Result<(), UpstreamError> {
    let (session, task) = UpstreamSession::connect(
        connector,
        "(health)",
        connection,
        &initialize_params(),
        None,
    )
    .await?;
    drop(session);
    task.close(connector.close_timeout).await;
    Ok(())
}
