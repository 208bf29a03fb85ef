//! The MCP endpoints clients connect to: Streamable HTTP (spec 2025-11-25,
//! basic/transports) at `/mcp` and `/servers/{id}/mcp`.
//!
//! This layer owns HTTP concerns only — status codes, headers, JSON vs SSE
//! framing, session lookup. What a method does is `router`'s business.

mod guard;
pub mod legacy_sse;
pub mod limits;
mod rpc;
pub mod session;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use futures_util::{stream, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::{Access, Flavor, Principal};
use crate::body::BodyError;
use crate::catalog::Scope;
use crate::interim;
use crate::jsonrpc::{self, code, Message, Parsed};
use crate::mcp;
use crate::registry::EvictReason;
use crate::sse;
use session::DownstreamSession;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Comment lines on idle GET streams keep proxies from timing them out.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);

/// The MCP endpoints, behind DNS-rebinding protection and authentication.
pub fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    let routes = Router::new()
        .route("/mcp", post(post_all).get(get_all).delete(delete_all))
        .route("/mcp/", post(post_all).get(get_all).delete(delete_all))
        .route(
            "/servers/{id}/mcp",
            post(post_server).get(get_server).delete(delete_server),
        )
        .route(
            "/servers/{id}/mcp/",
            post(post_server).get(get_server).delete(delete_server),
        )
        .route("/rpc", post(rpc::post))
        .merge(legacy_sse::routes());
    // The rebinding guard is the outer layer: a foreign page is refused
    // before its credentials are even looked at. One layer for both: each
    // `route_layer` would box every request's future again.
    routes.route_layer(tower_layer::Stack::new(
        crate::auth::gate(app, Access::Any, Flavor::JsonRpc),
        guard::GuardLayer::new(app),
    ))
}

// Every handler gets the caller from the auth layer (`auth::protect`).
async fn post_all(State(app): State<Arc<App>>, request: Request) -> Response {
    match into_caller_parts(request) {
        Some((who, headers, body)) => handle_post(&app, Scope::All, &who, &headers, body).await,
        None => unauthenticated(),
    }
}
async fn post_server(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    match into_caller_parts(request) {
        Some((who, headers, body)) => {
            handle_post(&app, Scope::Server(id), &who, &headers, body).await
        }
        None => unauthenticated(),
    }
}

/// The caller, the headers and the body of a POST, taken apart without
/// copies: axum's `HeaderMap` and `Extension` extractors would clone the
/// headers and the principal on every request.
fn into_caller_parts(request: Request) -> Option<(Principal, HeaderMap, Body)> {
    let (mut parts, body) = request.into_parts();
    let who = parts.extensions.remove::<Principal>()?;
    Some((who, parts.headers, body))
}

/// The auth layer puts a principal on every request it lets through; a
/// request without one is a routing mistake, and it is refused.
fn unauthenticated() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "request reached the MCP endpoint without passing authentication",
    )
        .into_response()
}
async fn get_all(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    handle_get(&app, Scope::All, &who, &headers)
}
async fn get_server(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    handle_get(&app, Scope::Server(id), &who, &headers)
}
async fn delete_all(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    handle_delete(&app, Scope::All, &who, &headers).await
}
async fn delete_server(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    handle_delete(&app, Scope::Server(id), &who, &headers).await
}

/// Why a request was refused at the HTTP level. [`HttpError::status`] and
/// [`HttpError::code`] are the only places those are chosen; the body is a
/// JSON-RPC error without an id (spec: an HTTP error MAY carry one).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("Content-Type must be application/json, not {content_type:?}")]
    UnsupportedMediaType { content_type: String },
    #[error("request body exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("JSON nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("cannot read the request body: {reason}")]
    Unreadable { reason: String },
    #[error("too many requests in flight for this {whose} (limit {limit}); retry later")]
    TooBusy { whose: &'static str, limit: usize },
    #[error("JSON-RPC batches are only accepted on 2025-03-26 sessions (later revisions removed them); send one message per POST")]
    Batch,
    #[error("unsupported MCP-Protocol-Version {got:?}; supported: {}", mcp::DOWNSTREAM_VERSIONS.join(", "))]
    BadVersion { got: String },
    #[error("Mcp-Session-Id header is required (send initialize first)")]
    MissingSession,
    #[error("the session_id query parameter is required (open GET /sse first and POST to the endpoint it names)")]
    MissingLegacySession,
    #[error("/rpc takes one JSON-RPC request per POST; batches are not accepted here")]
    SessionlessBatch,
    /// Unknown, ended, malformed, issued on another endpoint or to another
    /// principal: all look alike.
    #[error("session not found")]
    UnknownSession,
    #[error("no such virtual server")]
    UnknownServer,
    #[error("GET needs Accept: text/event-stream")]
    NotAcceptable,
    #[error("this session already has an open GET stream")]
    StreamTaken,
}

impl HttpError {
    fn status(&self) -> StatusCode {
        match self {
            HttpError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Batch
            | HttpError::SessionlessBatch
            | HttpError::BadVersion { .. }
            | HttpError::MissingSession
            | HttpError::MissingLegacySession
            | HttpError::TooDeep { .. }
            | HttpError::Unreadable { .. } => StatusCode::BAD_REQUEST,
            HttpError::TooBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::UnknownSession | HttpError::UnknownServer => StatusCode::NOT_FOUND,
            HttpError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            HttpError::StreamTaken => StatusCode::CONFLICT,
        }
    }

    fn code(&self) -> i64 {
        match self {
            HttpError::UnknownSession => code::UPSTREAM_SESSION_EXPIRED,
            HttpError::TooBusy { .. } => code::TOO_BUSY,
            HttpError::UnsupportedMediaType { .. }
            | HttpError::TooDeep { .. }
            | HttpError::Unreadable { .. }
            | HttpError::TooLarge { .. }
            | HttpError::Batch
            | HttpError::SessionlessBatch
            | HttpError::BadVersion { .. }
            | HttpError::MissingSession
            | HttpError::MissingLegacySession
            | HttpError::UnknownServer
            | HttpError::NotAcceptable
            | HttpError::StreamTaken => code::INVALID_REQUEST,
        }
    }
}

/// In-flight requests of a busy client finish in about an upstream round
/// trip; a second is a fair first wait.
const RETRY_AFTER_SECS: &str = "1";

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = jsonrpc::error_body(None, self.code(), &self.to_string(), None);
        let mut resp = (
            self.status(),
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
        if matches!(self, HttpError::TooBusy { .. }) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

/// How the client wants a request answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Json,
    Sse,
}

fn framing(headers: &HeaderMap) -> Framing {
    // JSON when the client takes it (cheaper for both sides); SSE only for a
    // client that accepts nothing else.
    if accept_mentions(headers, "application/json")
        || accept_mentions(headers, "*/*")
        || !accept_mentions(headers, "text/event-stream")
    {
        Framing::Json
    } else {
        Framing::Sse
    }
}

fn respond(framing: Framing, body: String) -> Response {
    match framing {
        Framing::Json => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response(),
        Framing::Sse => (
            [
                (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (
                    axum::http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                ),
            ],
            sse::message_event(&body, None),
        )
            .into_response(),
    }
}

/// Reads the body up to the configured limits: larger gets 413, deeper
/// nesting 400 — both before anything parses it.
pub(crate) async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, HttpError> {
    let limit = app.settings.limits.max_body_bytes;
    let bytes = crate::body::read_limited(headers, body, limit)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => HttpError::TooLarge { limit },
            BodyError::Unreadable(reason) => HttpError::Unreadable { reason },
        })?;
    let depth = app.settings.limits.max_json_depth;
    if jsonrpc::nested_deeper_than(&bytes, depth) {
        return Err(HttpError::TooDeep { limit: depth });
    }
    Ok(bytes)
}

pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    match headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<invalid>"))
    {
        None => Ok(()),
        Some(ct) if mcp::is_media_type(ct, "application/json") => Ok(()),
        Some(ct) => Err(HttpError::UnsupportedMediaType {
            content_type: ct.to_owned(),
        }),
    }
}

/// Spec: a request with an unsupported `MCP-Protocol-Version` gets 400.
fn check_version_header(headers: &HeaderMap) -> Result<(), HttpError> {
    match headers.get(VERSION_HEADER).map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok(v)) if mcp::DOWNSTREAM_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(HttpError::BadVersion {
            got: v.unwrap_or("<invalid>").to_owned(),
        }),
    }
}

/// Finds the session a request names. Missing header → 400; an unknown id,
/// or one created on another endpoint or by another principal → 404, like
/// any id we never issued.
fn find_session(
    app: &App,
    scope: &Scope,
    who: &Principal,
    headers: &HeaderMap,
) -> Result<Arc<DownstreamSession>, HttpError> {
    let raw = headers
        .get(SESSION_HEADER)
        .ok_or(HttpError::MissingSession)?;
    raw.to_str()
        .ok()
        .and_then(|id| app.sessions.get_for(id, who))
        .filter(|s| &s.scope == scope)
        .ok_or(HttpError::UnknownSession)
}

async fn handle_post(
    app: &Arc<App>,
    scope: Scope,
    who: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = check_content_type(headers) {
        return e.into_response();
    }
    // Held until the answer is built: reading the body is already in flight.
    let principal_slot = match app.inflight.principal(who) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let bytes = match read_body(app, headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let message = match jsonrpc::parse(&bytes) {
        Ok(Parsed::Single(m)) => m,
        Ok(Parsed::Batch(items)) => return handle_batch(app, &scope, who, headers, items).await,
        Err(e) => {
            let body = jsonrpc::error_body(e.id(), e.code(), &e.to_string(), None);
            return (
                StatusCode::BAD_REQUEST,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response();
        }
    };
    let framing = framing(headers);
    if let Message::Request(req) = &message {
        if req.method == "initialize" {
            return initialize(app, scope, who, framing, &req.id, req.params.as_deref());
        }
    }
    // A 2026-07-28 client opens with `server/discover`, without a session and
    // with a protocol version we do not speak; -32601 tells it to fall back
    // to `initialize`, as the official SDK clients do on any JSON-RPC error.
    if let Message::Request(req) = &message {
        if !headers.contains_key(SESSION_HEADER) && !crate::router::implements(&req.method) {
            let body = jsonrpc::error_body(
                Some(&req.id),
                code::METHOD_NOT_FOUND,
                &format!("method not found: {}", req.method),
                None,
            );
            return respond(framing, body);
        }
    }
    if let Err(e) = check_version_header(headers) {
        return e.into_response();
    }
    let session = match find_session(app, &scope, who, headers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let session_slot =
        match limits::InflightLimits::session(&session.inflight_slots, app.sessions.max_inflight())
        {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
    session.touch();
    match message {
        Message::Request(req) => {
            let mut ctx = crate::router::RequestContext::from_headers(app, headers);
            // Interim messages need an event stream; a JSON-only client gets none.
            let interim = if accepts_sse(headers) {
                let (sink, interim) = interim::queue();
                ctx.relay = Some(crate::router::ClientSink::Response(sink));
                Some(interim)
            } else {
                None
            };
            let app = Arc::clone(app);
            // The slots go with the answer: it may outlive this function
            // (streamed as SSE), and it is in flight until it is done.
            let answer = Box::pin(async move {
                let _slots = (principal_slot, session_slot);
                crate::router::handle(app, session, req, ctx).await
            });
            answer_request(answer, interim, framing).await
        }
        Message::Notification(n) => {
            match n.method.as_str() {
                "notifications/initialized" => session
                    .initialized
                    .store(true, std::sync::atomic::Ordering::Relaxed),
                "notifications/cancelled" => {
                    crate::router::cancel_request(&session, n.params.as_deref()).await
                }
                // The client's roots changed: every upstream serving it must hear it.
                "notifications/roots/list_changed" => {
                    let body = jsonrpc::notification_body(&n.method, n.params.as_deref());
                    for upstream in session.upstreams.live() {
                        if let Err(e) = upstream.post(body.clone()).await {
                            tracing::debug!(error = %e, "roots/list_changed not delivered upstream");
                        }
                    }
                }
                _ => {}
            }
            StatusCode::ACCEPTED.into_response()
        }
        // The client answers a request an upstream sent it.
        Message::Response(r) => {
            crate::router::deliver_response(&session, &r.id, r.outcome).await;
            StatusCode::ACCEPTED.into_response()
        }
    }
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    accept_mentions(headers, "text/event-stream")
}

/// Whether some `Accept` value names `media_type` (ASCII case-insensitive),
/// without copying the header: this runs on every request.
fn accept_mentions(headers: &HeaderMap, media_type: &str) -> bool {
    let needle = media_type.as_bytes();
    headers.get_all(ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// Answers plain JSON (or one SSE event) when the upstream answers without
/// interim messages — the common case — and switches to an SSE stream as
/// soon as one arrives first: the interim messages as they come, then the
/// answer, then the end of the stream.
async fn answer_request<F>(
    mut answer: Pin<Box<F>>,
    interim: Option<interim::Receiver<String>>,
    framing: Framing,
) -> Response
where
    F: Future<Output = String> + Send + 'static,
{
    let Some(interim) = interim else {
        return respond(framing, answer.await);
    };
    let first = tokio::select! {
        biased;
        body = &mut answer => {
            let mut early = String::new();
            while let Some(m) = interim.try_recv() {
                early.push_str(&sse::message_event(&m, None));
            }
            if early.is_empty() {
                return respond(framing, body);
            }
            early.push_str(&sse::message_event(&body, None));
            return sse_response(Body::from(early));
        }
        first = interim.recv() => first,
    };
    let state = (Some(first), Some((answer, interim)));
    let events = stream::unfold(state, |(first, rest)| async move {
        if let Some(m) = first {
            return Some((
                Ok::<_, Infallible>(Bytes::from(sse::message_event(&m, None))),
                (None, rest),
            ));
        }
        let (mut answer, interim) = rest?;
        tokio::select! {
            biased;
            m = interim.recv() => Some((Ok(Bytes::from(sse::message_event(&m, None))), (None, Some((answer, interim))))),
            body = &mut answer => {
                let mut tail = String::new();
                while let Some(m) = interim.try_recv() {
                    tail.push_str(&sse::message_event(&m, None));
                }
                tail.push_str(&sse::message_event(&body, None));
                Some((Ok(Bytes::from(tail)), (None, None)))
            }
        }
    });
    sse_response(Body::from_stream(events))
}

pub(crate) fn sse_response(body: Body) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A 2025-03-26 batch: each message handled as if POSTed alone (requests
/// concurrently), the responses returned together in request order. The
/// 2025-03-26 spec forbids `initialize` inside a batch, and later revisions
/// removed batches, so other sessions are refused.
async fn handle_batch(
    app: &Arc<App>,
    scope: &Scope,
    who: &Principal,
    headers: &HeaderMap,
    items: Vec<Box<RawValue>>,
) -> Response {
    if items.is_empty() {
        let body = jsonrpc::error_body(None, code::INVALID_REQUEST, "empty batch", None);
        return (
            StatusCode::BAD_REQUEST,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
    }
    let session = match find_session(app, scope, who, headers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if session.protocol_version != "2025-03-26" {
        return HttpError::Batch.into_response();
    }
    let _session_slot =
        match limits::InflightLimits::session(&session.inflight_slots, app.sessions.max_inflight())
        {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
    session.touch();
    let answers = items.into_iter().map(|item| {
        let session = Arc::clone(&session);
        // No interim relay inside a batch: its answer is one JSON array.
        let ctx = crate::router::RequestContext::from_headers(app, headers);
        let app = Arc::clone(app);
        async move {
            match jsonrpc::parse_one(item.get().as_bytes()) {
                Ok(Message::Request(req)) if req.method == "initialize" => {
                    Some(jsonrpc::error_body(
                        Some(&req.id),
                        code::INVALID_REQUEST,
                        "initialize must not be part of a batch",
                        None,
                    ))
                }
                Ok(Message::Request(req)) => {
                    Some(crate::router::handle(app, session, req, ctx).await)
                }
                Ok(Message::Notification(n)) => {
                    if n.method == "notifications/initialized" {
                        session
                            .initialized
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    None
                }
                Ok(Message::Response(_)) => None,
                Err(e) => Some(jsonrpc::error_body(e.id(), e.code(), &e.to_string(), None)),
            }
        }
    });
    // The batch holds one of the session's slots; its requests run at most
    // as many at a time as a session may have in flight, in request order.
    let bodies: Vec<String> =
        futures_util::StreamExt::buffered(stream::iter(answers), app.sessions.max_inflight())
            .filter_map(|b| async move { b })
            .collect()
            .await;
    if bodies.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let body = format!("[{}]", bodies.join(","));
    respond(framing(headers), body)
}

fn initialize(
    app: &App,
    scope: Scope,
    who: &Principal,
    framing: Framing,
    id: &RawValue,
    params: Option<&RawValue>,
) -> Response {
    match open_session(app, scope, who, params, None, &mcp::DOWNSTREAM_VERSIONS) {
        Ok((session, result)) => {
            let mut resp = respond(framing, jsonrpc::result_body(id, &result));
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                resp.headers_mut().insert(SESSION_HEADER, v);
            }
            resp
        }
        Err(Refusal::Http(e)) => e.into_response(),
        Err(Refusal::Rpc { code, message }) => {
            respond(framing, jsonrpc::error_body(Some(id), code, message, None))
        }
    }
}

/// Why `initialize` did not open a session.
pub(crate) enum Refusal {
    /// At the HTTP level (unknown virtual server).
    Http(HttpError),
    /// As a JSON-RPC error to the request.
    Rpc { code: i64, message: &'static str },
}

/// Opens a downstream session for an `initialize` (with `id` chosen already,
/// for legacy SSE, or a fresh one), owned by `who`, and builds the result to
/// answer with: the negotiated version among `versions` and what the
/// endpoint's gateways can do.
pub(crate) fn open_session(
    app: &App,
    scope: Scope,
    who: &Principal,
    params: Option<&RawValue>,
    id: Option<String>,
    versions: &[&'static str],
) -> Result<(Arc<DownstreamSession>, Box<RawValue>), Refusal> {
    let parsed: Value = params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null);
    if let Err(message) = check_initialize_params(&parsed) {
        return Err(Refusal::Rpc {
            code: code::INVALID_PARAMS,
            message,
        });
    }
    let snap = app.catalog.snapshot();
    let server_name = match &scope {
        Scope::All => "switchyard".to_owned(),
        Scope::Server(server_id) => match snap.server(server_id).filter(|s| s.enabled) {
            Some(s) => s.name.clone(),
            None => return Err(Refusal::Http(HttpError::UnknownServer)),
        },
    };
    let Some(view) = snap.scope(&scope) else {
        return Err(Refusal::Http(HttpError::UnknownServer));
    };
    let capabilities: Value =
        serde_json::from_str(view.capabilities().get()).unwrap_or_else(|_| json!({"tools": {}}));
    let version = mcp::negotiate_among(
        versions,
        parsed.get("protocolVersion").and_then(Value::as_str),
    );
    let client_params = params
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| jsonrpc::raw("{}".into()));
    let id = id.unwrap_or_else(session::new_id);
    let upstreams = app.registry.open(&id);
    let session = app
        .sessions
        .create(scope, who.clone(), version, client_params, id, upstreams);
    session.touch();
    let client = parsed
        .pointer("/clientInfo/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    tracing::info!(
        session = %session.id,
        principal = %who.id,
        protocol_version = version,
        client,
        "downstream session created"
    );
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": server_name, "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Switchyard MCP gateway: tools of the registered upstream servers, named <gateway>-<tool>.",
    });
    Ok((session, jsonrpc::to_raw(&result)))
}

/// What `initialize` params must look like (spec 2025-11-25, lifecycle):
/// checked here because the client's capabilities and clientInfo go on to
/// every upstream session opened for it, where a malformed value would fail
/// each one. Absent capabilities and clientInfo are tolerated (the upstream
/// sessions get defaults); present, they must have their types.
fn check_initialize_params(params: &Value) -> Result<(), &'static str> {
    let Some(params) = params.as_object() else {
        return Err("initialize needs params with protocolVersion, capabilities and clientInfo");
    };
    if params
        .get("protocolVersion")
        .is_some_and(|v| !v.is_string())
    {
        return Err("initialize: protocolVersion must be a string");
    }
    if params.get("capabilities").is_some_and(|v| !v.is_object()) {
        return Err("initialize: capabilities must be an object");
    }
    if let Some(info) = params.get("clientInfo") {
        let is_string = |key| info.get(key).is_some_and(Value::is_string);
        if !(info.is_object() && is_string("name") && is_string("version")) {
            return Err("initialize: clientInfo must be an object with string name and version");
        }
    }
    Ok(())
}

fn handle_get(app: &Arc<App>, scope: Scope, who: &Principal, headers: &HeaderMap) -> Response {
    if !accepts_sse(headers) {
        return HttpError::NotAcceptable.into_response();
    }
    if let Err(e) = check_version_header(headers) {
        return e.into_response();
    }
    let session = match find_session(app, &scope, who, headers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    session.touch();
    // One GET stream per session carries its server-initiated messages (each
    // message goes to one stream only); a second gets 409.
    let Some(outbox) = session.lease_outbox() else {
        return HttpError::StreamTaken.into_response();
    };
    let first =
        stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b": stream open\n\n")) });
    let state = GetStream {
        app: Arc::clone(app),
        session,
        outbox,
    };
    let rest = stream::unfold(state, |mut st| async move {
        let chunk = st.next().await?;
        Some((Ok::<_, Infallible>(chunk), st))
    });
    sse_response(Body::from_stream(futures_util::StreamExt::chain(
        first, rest,
    )))
}

/// A session's GET stream: its outbox (translated on the way out) and
/// keep-alives, until the session ends or the gateway shuts down.
struct GetStream {
    app: Arc<App>,
    session: Arc<DownstreamSession>,
    outbox: session::OutboxLease,
}

impl GetStream {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let item = tokio::select! {
                _ = self.session.ended.cancelled() => return None,
                _ = self.app.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    // An open stream is a session in use: it counts as activity for idle expiry.
                    self.session.touch();
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                item = self.outbox.recv() => item?,
            };
            let body = match item {
                session::Outgoing::Ready(body) => Some(body),
                session::Outgoing::Upstream(item) => {
                    let (gateway_id, message) = *item;
                    crate::router::unsolicited(&self.app, &self.session, &gateway_id, message).await
                }
            };
            if let Some(body) = body {
                return Some(Bytes::from(sse::message_event(&body, None)));
            }
        }
    }
}

async fn handle_delete(app: &App, scope: Scope, who: &Principal, headers: &HeaderMap) -> Response {
    let session = match find_session(app, &scope, who, headers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    end_session(app, &session.id, EvictReason::SessionEnded).await;
    StatusCode::OK.into_response()
}

/// Ends a downstream session: the id is gone at once (later use gets 404),
/// then its upstream sessions close, bounded by the shutdown grace.
pub async fn end_session(app: &App, id: &str, reason: EvictReason) -> bool {
    let Some(session) = app.sessions.remove(id) else {
        return false;
    };
    let closed = app.registry.evict_session(&session.id, reason).await;
    tracing::info!(session = %session.id, reason = reason.as_str(), upstream_sessions_closed = closed, "downstream session ended");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accept_headers_are_read_case_insensitively_across_values() {
        let both = accept(&["application/json, text/event-stream"]);
        assert!(framing(&both) == Framing::Json && accepts_sse(&both));
        let sse_only = accept(&["Text/Event-Stream"]);
        assert!(framing(&sse_only) == Framing::Sse && accepts_sse(&sse_only));
        let split = accept(&["text/plain", "TEXT/EVENT-STREAM;q=0.5", "Application/JSON"]);
        assert!(framing(&split) == Framing::Json && accepts_sse(&split));
        let anything = accept(&["*/*"]);
        assert!(framing(&anything) == Framing::Json && !accepts_sse(&anything));
        let none = HeaderMap::new();
        assert!(framing(&none) == Framing::Json && !accepts_sse(&none));
        assert!(!accepts_sse(&accept(&["text/event"])));
    }
}
