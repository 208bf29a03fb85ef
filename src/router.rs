//! What the gateway does with each MCP request of an open downstream session:
//! answer it locally (`ping`, the `*/list` methods), route it to the upstream
//! that owns the name or URI (`tools/call`, `prompts/get`, `resources/*`,
//! `completion/complete`), fan it out (`logging/setLevel`), or refuse it by name.
//!
//! While an upstream works on a request it may send messages first —
//! progress, log lines, its own requests (sampling, elicitation, roots). They
//! are relayed to the client on the same response stream (see `relay`), with
//! server-request ids remapped so they cannot collide, and the client's
//! answers find their way back (`deliver_response`).
//!
//! [`RouteError::code`] is the one place a JSON-RPC error code is chosen.

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::HeaderMap;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::app::App;
use crate::catalog::{Gateway, Scope, ScopeView};
use crate::downstream::session::{
    lock, DownstreamSession, Inflight, Outgoing, PendingRequest, RequestKey,
};
use crate::interim::{self, Wake};
use crate::jsonrpc::{self, code, Message, Request};
use crate::mcp;
use crate::passthrough;
use crate::registry::RegistryError;
use crate::trace::TraceContext;
use crate::upstream::{self, Call, OnMessage, Reply, UpstreamError, UpstreamSession};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("method not found: {method}")]
    MethodNotFound { method: String },
    #[error("invalid params: {reason}")]
    InvalidParams { reason: String },
    #[error("unknown tool: {name}")]
    UnknownTool { name: String },
    #[error("unknown prompt: {name}")]
    UnknownPrompt { name: String },
    #[error("unknown resource: {uri}")]
    UnknownResource { uri: String },
    #[error("request cancelled by the client")]
    Cancelled,
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
            RouteError::InvalidParams { .. }
            | RouteError::UnknownTool { .. }
            | RouteError::UnknownPrompt { .. } => code::INVALID_PARAMS,
            // Spec (server/resources, "Error Handling"): resource not found is -32002.
            RouteError::UnknownResource { .. } => code::RESOURCE_NOT_FOUND,
            RouteError::Cancelled => code::REQUEST_CANCELLED,
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
                | UpstreamError::Initialize { .. }
                | UpstreamError::Credentials { .. } => code::UPSTREAM_UNAVAILABLE,
            },
        }
    }

    fn into_body(self, id: &RawValue) -> String {
        jsonrpc::error_body(Some(id), self.code(), &self.to_string(), None)
    }
}

/// Methods the gateway answers (everything else gets -32601).
const IMPLEMENTED: [&str; 13] = [
    "ping",
    "initialize",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
];

pub fn implements(method: &str) -> bool {
    IMPLEMENTED.contains(&method)
}

/// Per-request facts from the HTTP layer that routing needs.
#[derive(Default)]
pub struct RequestContext {
    pub trace: Option<TraceContext>,
    /// The downstream request's headers. Only `passthrough::select` reads
    /// them for an upstream request, with the gateway's allow-list.
    pub downstream_headers: HeaderMap,
    /// Where messages for the client go while the request is in progress
    /// (serialized JSON-RPC messages); `None` when the client cannot take them.
    pub relay: Option<ClientSink>,
}

/// Where a request's interim messages for the client go.
pub enum ClientSink {
    /// The request's own response, which turns into an event stream on the first one.
    Response(interim::Sender<String>),
    /// A stream the session's requests share (legacy HTTP+SSE).
    Stream(mpsc::UnboundedSender<String>),
}

impl ClientSink {
    fn send(&self, body: String) {
        match self {
            ClientSink::Response(q) => q.send(body),
            // A client that went away drops the receiver; nothing more to do.
            ClientSink::Stream(tx) => {
                let _ = tx.send(body);
            }
        }
    }
}

impl RequestContext {
    /// Trace context and headers from the request; no relay (set it when
    /// the client can take interim messages). The headers are kept only
    /// when some allow-list could let one through: by default none can,
    /// and copying every request's headers would be wasted work per call.
    pub fn from_headers(app: &App, headers: &HeaderMap) -> Self {
        Self {
            trace: TraceContext::from_headers(headers),
            downstream_headers: if app.may_pass_headers() {
                headers.clone()
            } else {
                HeaderMap::new()
            },
            relay: None,
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

/// What a request produced: our result, or an upstream's error object verbatim.
enum Outcome {
    Result(Box<RawValue>),
    UpstreamError(Box<RawValue>),
}

/// Answers one request; the returned string is the whole JSON-RPC response.
pub async fn handle(
    app: Arc<App>,
    session: Arc<DownstreamSession>,
    req: Request,
    ctx: RequestContext,
) -> String {
    let span = tracing::debug_span!("rpc", session = %session.id, method = %req.method);
    let scope = session.scope.clone();
    respond(
        &req,
        dispatch(&app, &scope, Via::Session(&session), &req, &ctx)
            .instrument(span)
            .await,
    )
}

/// Answers one request arriving without a session (`POST /rpc`).
pub async fn handle_sessionless(app: &App, req: Request, ctx: &RequestContext) -> String {
    let span = tracing::debug_span!("rpc", session = "-", method = %req.method);
    respond(
        &req,
        dispatch(app, &Scope::All, Via::PerCall, &req, ctx)
            .instrument(span)
            .await,
    )
}

fn respond(req: &Request, outcome: Result<Outcome, RouteError>) -> String {
    match outcome {
        Ok(Outcome::Result(result)) => jsonrpc::result_body(&req.id, &result),
        // Upstream JSON-RPC errors reach the client exactly as sent.
        Ok(Outcome::UpstreamError(error)) => jsonrpc::error_body_raw(Some(&req.id), error.get()),
        Err(e) => {
            if matches!(
                e,
                RouteError::Upstream { .. } | RouteError::GatewayDown { .. }
            ) {
                tracing::info!(method = %req.method, error = %e, "request failed");
            }
            e.into_body(&req.id)
        }
    }
}

async fn dispatch(
    app: &App,
    scope: &Scope,
    via: Via<'_>,
    req: &Request,
    ctx: &RequestContext,
) -> Result<Outcome, RouteError> {
    let snap = app.catalog.snapshot();
    let view = snap.scope(scope).ok_or(RouteError::ScopeGone)?;
    let listed = |list: &RawValue| Ok(Outcome::Result(list.to_owned()));
    match req.method.as_str() {
        "ping" => Ok(Outcome::Result(jsonrpc::raw("{}".to_owned()))),
        "initialize" => Err(RouteError::AlreadyInitialized),
        // Every list in one page: the catalog holds them in memory already.
        "tools/list" => listed(view.tools_list()),
        "prompts/list" => listed(view.prompts_list()),
        "resources/list" => listed(view.resources_list()),
        "resources/templates/list" => listed(view.templates_list()),
        "tools/call" => {
            let named = Named::read(req)?;
            let tool = view
                .tool(named.name())
                .ok_or_else(|| RouteError::UnknownTool {
                    name: named.name().to_owned(),
                })?;
            let params = named.renamed(&tool.original_name);
            forward(app, view, &via, &tool.gateway, req, params, ctx).await
        }
        "prompts/get" => {
            let named = Named::read(req)?;
            let prompt = view
                .prompt(named.name())
                .ok_or_else(|| RouteError::UnknownPrompt {
                    name: named.name().to_owned(),
                })?;
            let params = named.renamed(&prompt.key);
            forward(app, view, &via, &prompt.gateway, req, params, ctx).await
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let mut params = params_object(req)?;
            let uri = string_param(&params, "uri")?;
            let (gateway, original) = view
                .resolve_uri(&uri)
                .ok_or(RouteError::UnknownResource { uri })?;
            let gateway = Arc::clone(gateway);
            params.insert("uri".into(), Value::String(original));
            let outcome = forward(app, view, &via, &gateway, req, params.into(), ctx).await?;
            match outcome {
                Outcome::Result(result)
                    if req.method == "resources/read" && !view.is_passthrough() =>
                {
                    Ok(Outcome::Result(expose_contents(view, &gateway, &result)))
                }
                other => Ok(other),
            }
        }
        "completion/complete" => {
            let mut params = params_object(req)?;
            let reference = params.get("ref").cloned().unwrap_or(Value::Null);
            let (gateway, rewritten) = match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = reference
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let prompt = view
                        .prompt(&name)
                        .ok_or(RouteError::UnknownPrompt { name })?;
                    (
                        Arc::clone(&prompt.gateway),
                        json!({"type": "ref/prompt", "name": prompt.key}),
                    )
                }
                Some("ref/resource") => {
                    let uri = reference
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let (gateway, original) = view
                        .resolve_uri(&uri)
                        .ok_or(RouteError::UnknownResource { uri })?;
                    (
                        Arc::clone(gateway),
                        json!({"type": "ref/resource", "uri": original}),
                    )
                }
                _ => {
                    return Err(RouteError::InvalidParams {
                        reason: "\"ref\" must be a ref/prompt or ref/resource".into(),
                    })
                }
            };
            params.insert("ref".into(), rewritten);
            forward(app, view, &via, &gateway, req, params.into(), ctx).await
        }
        "logging/setLevel" => {
            let params = params_object(req)?;
            let level = string_param(&params, "level")?;
            if !mcp::LOG_LEVELS.contains(&level.as_str()) {
                return Err(RouteError::InvalidParams {
                    reason: format!("\"level\" must be one of {}", mcp::LOG_LEVELS.join(", ")),
                });
            }
            // Remembered, and told to the upstream sessions this client has
            // now; others hear it before their first request (see
            // `apply_log_level`). Opening sessions just to set a level would
            // cost every client a session on every logging gateway.
            if let Via::Session(session) = &via {
                *lock(&session.log_level) = Some(level);
                for upstream in session.upstreams.live() {
                    apply_log_level(app, session, &upstream).await;
                }
            }
            Ok(Outcome::Result(jsonrpc::raw("{}".to_owned())))
        }
        _ => Err(RouteError::MethodNotFound {
            method: req.method.clone(),
        }),
    }
}

fn params_object(req: &Request) -> Result<Map<String, Value>, RouteError> {
    match req.params.as_deref() {
        Some(p) => serde_json::from_str(p.get()).map_err(|_| RouteError::InvalidParams {
            reason: format!("{} params must be an object", req.method),
        }),
        None => Ok(Map::new()),
    }
}

/// Params on their way upstream: as the client sent them but for one
/// rewritten member (raw text, never re-serialized), or parsed because more
/// had to change.
enum Params {
    Raw(Box<RawValue>),
    Parsed(Map<String, Value>),
}

impl From<Map<String, Value>> for Params {
    fn from(map: Map<String, Value>) -> Self {
        Params::Parsed(map)
    }
}

impl Params {
    /// The parsed form, for adding members (trace context in `_meta`).
    fn parsed_mut(&mut self) -> &mut Map<String, Value> {
        if let Params::Raw(raw) = self {
            // Raw params come from `NamedParams`, which read them as an object.
            let map = serde_json::from_str(raw.get()).unwrap_or_default();
            *self = Params::Parsed(map);
        }
        match self {
            Params::Parsed(map) => map,
            Params::Raw(_) => unreachable!("converted above"),
        }
    }

    fn into_raw(self) -> Box<RawValue> {
        match self {
            Params::Raw(raw) => raw,
            Params::Parsed(map) => jsonrpc::to_raw(&map),
        }
    }
}

/// The `name` param of a `tools/call` or `prompts/get`, and its params.
enum Named<'a> {
    /// The usual request: only the name changes, the rest crosses as sent.
    Raw(NamedParams<'a>),
    /// Anything unusual, read (and refused when invalid) as parsed params.
    Parsed {
        name: String,
        params: Map<String, Value>,
    },
}

impl<'a> Named<'a> {
    fn read(req: &'a Request) -> Result<Named<'a>, RouteError> {
        if let Some(named) = NamedParams::find(req) {
            return Ok(Named::Raw(named));
        }
        let params = params_object(req)?;
        let name = string_param(&params, "name")?;
        if params.get("arguments").is_some_and(|a| !a.is_object()) {
            return Err(RouteError::InvalidParams {
                reason: "\"arguments\" must be an object".into(),
            });
        }
        Ok(Named::Parsed { name, params })
    }

    fn name(&self) -> &str {
        match self {
            Named::Raw(n) => &n.name,
            Named::Parsed { name, .. } => name,
        }
    }

    /// The params to send upstream, with the name replaced by `to`.
    fn renamed(self, to: &str) -> Params {
        match self {
            Named::Raw(n) => n.renamed(to),
            Named::Parsed { mut params, .. } => {
                params.insert("name".into(), Value::String(to.to_owned()));
                params.into()
            }
        }
    }
}

/// A request whose params are an object with exactly one `"name"` member, a
/// string: where that string sits in the raw text, so it can be replaced
/// without parsing and re-serializing everything else (the arguments).
struct NamedParams<'a> {
    raw: &'a str,
    /// Byte range of the name's JSON string (quotes included) in `raw`.
    at: std::ops::Range<usize>,
    name: String,
}

impl<'a> NamedParams<'a> {
    /// `None` for anything unusual (no params, not an object, a repeated or
    /// non-string name, unreadable JSON): the parsed path handles, and
    /// refuses, those exactly as before.
    fn find(req: &'a Request) -> Option<NamedParams<'a>> {
        let raw = req.params.as_deref()?.get();
        let members: NameMember<'a> = serde_json::from_str(raw).ok()?;
        if !members.arguments_object {
            return None;
        }
        let value = members.value.filter(|_| !members.repeated)?;
        let name: String = serde_json::from_str(value.get()).ok()?;
        // `value` borrows from `raw`: its offset is where it sits in the text.
        let start = (value.get().as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
        let at = start..start + value.get().len();
        (raw.get(at.clone()) == Some(value.get())).then_some(NamedParams { raw, at, name })
    }

    /// The params with the name replaced by `name`.
    fn renamed(&self, name: &str) -> Params {
        let mut text = String::with_capacity(self.raw.len() + name.len() + 2);
        text.push_str(&self.raw[..self.at.start]);
        jsonrpc::push_json_string(&mut text, name);
        text.push_str(&self.raw[self.at.end..]);
        Params::Raw(jsonrpc::raw(text))
    }
}

/// The `"name"` member of a JSON object, read without building the rest,
/// and whether its `"arguments"` (if any) are an object.
struct NameMember<'a> {
    value: Option<&'a RawValue>,
    repeated: bool,
    arguments_object: bool,
}

impl<'de> serde::Deserialize<'de> for NameMember<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = NameMember<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut found = NameMember {
                    value: None,
                    repeated: false,
                    arguments_object: true,
                };
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Name => {
                            found.repeated |= found.value.is_some();
                            found.value = Some(map.next_value()?);
                        }
                        Key::Arguments => {
                            let value: &RawValue = map.next_value()?;
                            found.arguments_object &= value.get().starts_with('{');
                        }
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(found)
            }
        }
        d.deserialize_map(Members)
    }
}

/// An object key of interest (escaped spellings included).
enum Key {
    Name,
    Arguments,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "name" => Key::Name,
                    "arguments" => Key::Arguments,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(Visitor)
    }
}

fn string_param(params: &Map<String, Value>, key: &str) -> Result<String, RouteError> {
    match params.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(RouteError::InvalidParams {
            reason: format!("\"{key}\" must be a string"),
        }),
    }
}

/// `resources/read` contents carry the upstream's URIs; clients see ours.
fn expose_contents(view: &ScopeView, gateway: &Gateway, result: &RawValue) -> Box<RawValue> {
    let Ok(mut parsed) = serde_json::from_str::<Value>(result.get()) else {
        return result.to_owned();
    };
    if let Some(contents) = parsed.get_mut("contents").and_then(Value::as_array_mut) {
        for c in contents {
            if let Some(Value::String(uri)) = c.get_mut("uri") {
                *uri = view.expose_uri(gateway, uri);
            }
        }
    }
    jsonrpc::to_raw(&parsed)
}

/// Sends a request to `gateway` — on the session's own upstream session, or
/// a per-call one — relaying whatever the upstream sends before its answer.
async fn forward(
    app: &App,
    view: &ScopeView,
    via: &Via<'_>,
    gateway: &Arc<Gateway>,
    req: &Request,
    mut params: Params,
    ctx: &RequestContext,
) -> Result<Outcome, RouteError> {
    if !gateway.reachable {
        return Err(RouteError::GatewayDown {
            gateway: gateway.name.clone(),
            last_error: gateway
                .last_error
                .clone()
                .unwrap_or_else(|| "no successful health check yet".into()),
        });
    }
    // Only a trace context adds to the params (`_meta`); parse them just then.
    let annotate = ctx.trace.is_some().then(|| params.parsed_mut());
    let headers = upstream_headers(app, gateway, ctx, annotate);
    let upstream_error = |source| RouteError::Upstream {
        gateway: gateway.name.clone(),
        source,
    };
    let started = Instant::now();
    let reply = match via {
        Via::PerCall => Box::pin(upstream::call_once(
            app.registry.connector(),
            &gateway.connection,
            &req.method,
            Some(params.into_raw()),
            headers,
        ))
        .await
        .map_err(upstream_error),
        Via::Session(session) => {
            let upstream = app
                .registry
                .acquire(
                    &session.id,
                    &session.upstreams,
                    gateway,
                    &session.upstream_init_params,
                    || Some(deliver_to_outbox(session, &gateway.id)),
                )
                .await
                .map_err(|e| match e {
                    RegistryError::SessionEnded => RouteError::SessionEnded,
                    RegistryError::Connect(source) => upstream_error(source),
                })?;
            // A level the client set before this upstream session existed.
            apply_log_level(app, session, &upstream).await;
            let hop = Hop {
                app,
                session,
                view,
                upstream: &upstream,
            };
            let sent = call_relayed(hop, req, params, headers, ctx).await;
            if let Err(RouteError::Upstream { source, .. }) = &sent {
                if source.ends_session() {
                    Box::pin(
                        app.registry
                            .discard(&session.id, &session.upstreams, &upstream),
                    )
                    .await;
                }
            }
            sent.map_err(|e| match e {
                RouteError::Upstream { source, .. } => upstream_error(source),
                other => other,
            })
        }
    };
    app.metrics.upstream_latency(
        &gateway.id,
        &gateway.latency,
        started.elapsed().as_secs_f64(),
    );
    match reply? {
        Reply(Ok(result)) => Ok(Outcome::Result(result)),
        Reply(Err(error)) => Ok(Outcome::UpstreamError(error)),
    }
}

/// Where a relayed request travels: from this client session, through this
/// endpoint's view, to this upstream session.
struct Hop<'a> {
    app: &'a App,
    session: &'a DownstreamSession,
    view: &'a ScopeView,
    upstream: &'a UpstreamSession,
}

/// Tells an upstream session the client's log level, once per level, if its
/// gateway logs at all. Failures are the upstream's business, not the
/// request's: the level is advice.
async fn apply_log_level(app: &App, session: &DownstreamSession, upstream: &UpstreamSession) {
    let Some(level) = lock(&session.log_level).clone() else {
        return;
    };
    if upstream.log_level().as_deref() == Some(level.as_str()) {
        return;
    }
    let logs = app
        .catalog
        .snapshot()
        .gateway(&upstream.info().gateway_id)
        .is_some_and(|g| g.capabilities.get("logging").is_some_and(|v| !v.is_null()));
    if !logs {
        return;
    }
    upstream.set_log_level(&level);
    let params = jsonrpc::to_raw(&json!({ "level": level }));
    // Boxed: rare, and inlined it would grow every call's future.
    if let Err(e) = Box::pin(upstream.request("logging/setLevel", Some(params))).await {
        tracing::debug!(error = %e, "logging/setLevel not applied upstream");
    }
}

/// Sends one request on the session's upstream session and waits for its
/// answer, relaying interim messages to the client and honouring a
/// cancellation from the client.
async fn call_relayed(
    hop: Hop<'_>,
    req: &Request,
    params: Params,
    headers: HeaderMap,
    ctx: &RequestContext,
) -> Result<Reply, RouteError> {
    let Hop {
        app,
        session,
        view,
        upstream,
    } = hop;
    let id = upstream.next_request_id();
    let (interim_tx, interim) = interim::queue();
    let key = RequestKey::of(&req.id);
    if let Some(key) = &key {
        lock(&session.inflight).insert(
            key.clone(),
            Inflight {
                upstream: upstream.clone(),
                upstream_id: id,
                cancel: interim.canceller(),
            },
        );
    }
    let call = Call {
        method: req.method.clone(),
        params: Some(params.into_raw()),
        headers,
        interim: Some(interim_tx),
    };
    let answer = upstream.call(id, call);
    tokio::pin!(answer);
    let result = loop {
        tokio::select! {
            // A cancellation wins over whatever the upstream does about it
            // (ending its stream without an answer, as the spec lets it),
            // and interim messages go out before the answer.
            biased;
            woke = interim.wait() => match woke {
                // Boxed: most calls have no interim messages, and inlined the
                // relay would grow every call's future (see `forward`).
                Wake::Item(m) => Box::pin(relay(app, session, view, upstream, m, ctx)).await,
                Wake::Cancelled => break Err(RouteError::Cancelled),
            },
            r = &mut answer => break r.map_err(|source| RouteError::Upstream { gateway: String::new(), source }),
        }
    };
    // Messages sent just before the answer are still queued: they go first.
    while let Some(m) = interim.try_recv() {
        Box::pin(relay(app, session, view, upstream, m, ctx)).await;
    }
    if let Some(key) = &key {
        lock(&session.inflight).remove(key);
    }
    result
}

/// What an upstream session sends on its own goes to its downstream
/// session's outbox, tagged with the gateway, for the client's GET stream.
fn deliver_to_outbox(session: &DownstreamSession, gateway_id: &str) -> OnMessage {
    let outbox = session.outbox.clone();
    let session_id = session.id.clone();
    let gateway_id = gateway_id.to_owned();
    Arc::new(move |message| {
        let item = Outgoing::Upstream(Box::new((gateway_id.clone(), message)));
        if outbox.try_send(item).is_err() {
            tracing::warn!(session = %session_id, "client message dropped: outbox full (no GET stream reading it?)");
        }
    })
}

/// Passes one message an upstream sent during a request to the client, on
/// that request's response stream.
async fn relay(
    app: &App,
    session: &DownstreamSession,
    view: &ScopeView,
    upstream: &UpstreamSession,
    m: Message,
    ctx: &RequestContext,
) {
    if let Some(body) = to_client(app, session, view, upstream, m, ctx.relay.is_some()).await {
        if let Some(sink) = &ctx.relay {
            sink.send(body);
        }
    }
}

/// A message an upstream sent on its own (its GET stream), on its way to the
/// client's GET stream: the JSON to send, or `None`.
pub async fn unsolicited(
    app: &App,
    session: &DownstreamSession,
    gateway_id: &str,
    m: Message,
) -> Option<String> {
    let snap = app.catalog.snapshot();
    let view = snap.scope(&session.scope)?;
    let Some(upstream) = app.registry.peek(&session.id, gateway_id) else {
        tracing::debug!(session = %session.id, gateway = gateway_id, "message from an upstream session that is gone; dropped");
        return None;
    };
    to_client(app, session, view, &upstream, m, true).await
}

/// Turns one upstream message into what the client gets: notifications as
/// they are (resource URIs and cancelled request ids translated), requests
/// under a fresh id remembered in `pending`. `list_changed` is the gateway's
/// business: it re-reads the upstream's lists and tells clients itself. A
/// request the client cannot receive now is refused at once so the upstream
/// does not wait for an answer that cannot come.
async fn to_client(
    app: &App,
    session: &DownstreamSession,
    view: &ScopeView,
    upstream: &UpstreamSession,
    m: Message,
    deliverable: bool,
) -> Option<String> {
    let gateway_id = &upstream.info().gateway_id;
    match m {
        Message::Notification(n) => {
            if n.method.ends_with("/list_changed") && n.method != "notifications/roots/list_changed"
            {
                app.request_refresh(gateway_id, &n.method);
                return None;
            }
            let gateway = view.gateways().iter().find(|g| &g.id == gateway_id);
            let mut params: Option<Value> = n
                .params
                .as_deref()
                .and_then(|p| serde_json::from_str(p.get()).ok());
            if let (Some(p), Some(g)) = (params.as_mut(), gateway) {
                translate_notification(session, view, upstream, g, &n.method, p);
            }
            let params = params.map(|p| jsonrpc::to_raw(&p));
            Some(jsonrpc::notification_body(&n.method, params.as_deref()))
        }
        Message::Request(r) => {
            if !deliverable {
                let refusal = jsonrpc::error_body(
                    Some(&r.id),
                    code::METHOD_NOT_FOUND,
                    "the client cannot receive requests here",
                    None,
                );
                if let Err(e) = upstream.post(refusal).await {
                    tracing::debug!(error = %e, "could not refuse an upstream request");
                }
                return None;
            }
            let relay_id = session.next_relay_id();
            lock(&session.pending).insert(
                relay_id.clone(),
                PendingRequest {
                    upstream: upstream.clone(),
                    upstream_id: r.id,
                },
            );
            let id = jsonrpc::to_raw(&Value::String(relay_id));
            let method = Value::String(r.method);
            Some(match r.params {
                Some(p) => format!(
                    r#"{{"jsonrpc":"2.0","id":{},"method":{method},"params":{}}}"#,
                    id.get(),
                    p.get()
                ),
                None => format!(r#"{{"jsonrpc":"2.0","id":{},"method":{method}}}"#, id.get()),
            })
        }
        Message::Response(_) => None,
    }
}

fn translate_notification(
    session: &DownstreamSession,
    view: &ScopeView,
    upstream: &UpstreamSession,
    gateway: &Gateway,
    method: &str,
    params: &mut Value,
) {
    match method {
        "notifications/resources/updated" => {
            if let Some(Value::String(uri)) = params.get_mut("uri") {
                *uri = view.expose_uri(gateway, uri);
            }
        }
        "notifications/cancelled" => {
            // The upstream withdrew one of its requests to the client: name it as the client knows it.
            let Some(upstream_id) = params.get("requestId").map(Value::to_string) else {
                return;
            };
            let pending = lock(&session.pending);
            let found = pending.iter().find(|(_, p)| {
                p.upstream.same_session(upstream) && p.upstream_id.get() == upstream_id
            });
            if let Some((relay_id, _)) = found {
                params["requestId"] = Value::String(relay_id.clone());
            }
        }
        _ => {}
    }
}

/// The client answered a request an upstream sent it: pass the answer to
/// that upstream under the upstream's own id. Unknown ids are ignored.
pub async fn deliver_response(
    session: &DownstreamSession,
    id: &RawValue,
    outcome: Result<Box<RawValue>, Box<RawValue>>,
) {
    let Ok(Value::String(relay_id)) = serde_json::from_str::<Value>(id.get()) else {
        return;
    };
    let Some(pending) = lock(&session.pending).remove(&relay_id) else {
        tracing::debug!(session = %session.id, id = %relay_id, "response to no pending request ignored");
        return;
    };
    let body = match outcome {
        Ok(result) => jsonrpc::result_body(&pending.upstream_id, &result),
        Err(error) => jsonrpc::error_body_raw(Some(&pending.upstream_id), error.get()),
    };
    if let Err(e) = pending.upstream.post(body).await {
        tracing::info!(session = %session.id, error = %e, "could not pass the client's answer upstream");
    }
}

/// The client cancelled one of its requests: tell the upstream serving it
/// (under the upstream's id) and stop waiting.
pub async fn cancel_request(session: &DownstreamSession, params: Option<&RawValue>) {
    let Some(params) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else {
        return;
    };
    let Some(request_id) = params.get("requestId") else {
        return;
    };
    let Some(key) = RequestKey::of_value(request_id) else {
        return;
    };
    let Some(inflight) = lock(&session.inflight).remove(&key) else {
        return;
    };
    // Before the upstream hears of it: it may end the request's stream
    // without an answer, and that must not reach the client as a failure.
    inflight.cancel.cancel();
    let mut forwarded = params.clone();
    forwarded["requestId"] = json!(inflight.upstream_id);
    let body = jsonrpc::notification_body(
        "notifications/cancelled",
        Some(&jsonrpc::to_raw(&forwarded)),
    );
    if let Err(e) = inflight.upstream.post(body).await {
        tracing::debug!(error = %e, "could not forward a cancellation upstream");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: &str) -> Request {
        Request {
            id: jsonrpc::raw("1".to_owned()),
            method: "tools/call".to_owned(),
            params: Some(jsonrpc::raw(params.to_owned())),
        }
    }

    fn renamed(params: &str, to: &str) -> Option<(String, String)> {
        let req = request(params);
        let named = NamedParams::find(&req)?;
        let out = named.renamed(to).into_raw().get().to_owned();
        Some((named.name, out))
    }

    #[test]
    fn the_name_is_replaced_and_every_other_byte_kept() {
        let params = r#"{ "arguments" : {"n": 1.50, "big": 123456789012345678901234567890, "name": "inner"},
            "name":"gw-echo", "_meta": {"progressToken": "t"} }"#;
        let (name, out) = renamed(params, "ech\"o").unwrap();
        assert_eq!(name, "gw-echo");
        assert_eq!(out, params.replace(r#""gw-echo""#, r#""ech\"o""#));
    }

    #[test]
    fn escaped_names_and_keys_are_read_as_json() {
        let (name, out) = renamed(r#"{"na\u006de":"gw-\u00e9"}"#, "x").unwrap();
        assert_eq!(name, "gw-é");
        assert_eq!(out, r#"{"na\u006de":"x"}"#);
    }

    #[test]
    fn unusual_params_are_left_to_the_parsed_path() {
        for params in [
            r#"{"name":"a","name":"b"}"#,
            r#"{"name":7}"#,
            r#"{"arguments":{}}"#,
            r#"["name"]"#,
        ] {
            assert!(NamedParams::find(&request(params)).is_none(), "{params}");
        }
        let mut no_params = request("{}");
        no_params.params = None;
        assert!(NamedParams::find(&no_params).is_none());
    }

    #[test]
    fn raw_params_can_still_take_a_trace_context() {
        let req = request(r#"{"name":"gw-echo","arguments":{}}"#);
        let mut params = NamedParams::find(&req).unwrap().renamed("echo");
        params
            .parsed_mut()
            .insert("_meta".into(), json!({"traceparent": "x"}));
        let out: Value = serde_json::from_str(params.into_raw().get()).unwrap();
        assert_eq!(
            out,
            json!({"name": "echo", "arguments": {}, "_meta": {"traceparent": "x"}})
        );
    }
}
