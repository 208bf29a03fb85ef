//! The HTTP+SSE transport of MCP 2024-11-05, for older clients: `GET /sse`
//! opens an event stream whose first event names the URL to POST to
//! (`/message?session_id=…`); every POST is answered 202 and its answer
//! travels on the stream. The session's life is the stream's: when the
//! client drops it, the session ends and its upstream sessions close.
//! `/servers/{id}/sse` does the same for a virtual server.
//!
//! A stream, and the session it carries, belong to the principal that opened
//! it: a POST naming its session id under another principal gets 404.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use dashmap::DashMap;
use futures_util::stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::limits::{InflightLimits, Permit};
use super::session::{self as sessions, DownstreamSession};
use super::{
    check_content_type, end_session, open_session, read_body, sse_response, HttpError, Refusal,
    KEEPALIVE,
};
use crate::app::App;
use crate::auth::Principal;
use crate::catalog::Scope;
use crate::jsonrpc::{self, code, Message, Parsed};
use crate::mcp;
use crate::registry::EvictReason;
use crate::router::{self, RequestContext};
use crate::sse;

/// Open legacy streams, by the session id their `endpoint` event announced.
#[derive(Default)]
pub struct Streams {
    map: DashMap<String, Arc<Stream>>,
}

impl Streams {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One client's event stream, before and after its `initialize`.
pub struct Stream {
    scope: Scope,
    /// Who opened it; only they may post to it.
    principal: Principal,
    /// Messages for the client, in order.
    to_client: mpsc::UnboundedSender<String>,
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/sse", get(open_all))
        .route("/message", post(message_all))
        .route("/servers/{id}/sse", get(open_server))
        .route("/servers/{id}/message", post(message_server))
}

async fn open_all(State(app): State<Arc<App>>, Extension(who): Extension<Principal>) -> Response {
    open(&app, Scope::All, who, "/message")
}

async fn open_server(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let url = format!("/servers/{id}/message");
    if app
        .catalog
        .snapshot()
        .server(&id)
        .filter(|s| s.enabled)
        .is_none()
    {
        return HttpError::UnknownServer.into_response();
    }
    open(&app, Scope::Server(id), who, &url)
}

/// Ends the session when the client's stream goes away (dropped with it).
struct Disconnect(CancellationToken);

impl Drop for Disconnect {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn open(app: &Arc<App>, scope: Scope, principal: Principal, post_path: &str) -> Response {
    let id = sessions::new_id();
    let (to_client, outbound) = mpsc::unbounded_channel::<String>();
    app.legacy.map.insert(
        id.clone(),
        Arc::new(Stream {
            scope,
            principal,
            to_client,
        }),
    );
    let gone = CancellationToken::new();
    // The watcher, not a Drop impl, does the async teardown.
    {
        let app = Arc::clone(app);
        let gone = gone.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = gone.cancelled() => {}
                _ = app.shutdown.cancelled() => {}
            }
            app.legacy.map.remove(&id);
            end_session(&app, &id, EvictReason::SessionEnded).await;
        });
    }
    let endpoint = format!("event: endpoint\ndata: {post_path}?session_id={id}\n\n");
    let first = stream::once(async move { Ok::<_, Infallible>(Bytes::from(endpoint)) });
    let state = (Disconnect(gone), id, outbound, Arc::clone(app));
    let rest = stream::unfold(state, |(guard, id, mut outbound, app)| async move {
        let chunk = tokio::select! {
            _ = app.shutdown.cancelled() => None,
            _ = tokio::time::sleep(KEEPALIVE) => {
                if let Some(s) = app.sessions.get(&id) {
                    s.touch();
                }
                Some(Bytes::from_static(b": keep-alive\n\n"))
            }
            m = outbound.recv() => m.map(|m| Bytes::from(sse::message_event(&m, None))),
        }?;
        Some((Ok::<_, Infallible>(chunk), (guard, id, outbound, app)))
    });
    sse_response(Body::from_stream(futures_util::StreamExt::chain(
        first, rest,
    )))
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    session_id: Option<String>,
    /// The official SDKs spell it this way.
    #[serde(rename = "sessionId")]
    session_id_camel: Option<String>,
}

async fn message_all(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    message(&app, Scope::All, &who, q, &headers, body).await
}

async fn message_server(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    message(&app, Scope::Server(id), &who, q, &headers, body).await
}

async fn message(
    app: &Arc<App>,
    scope: Scope,
    who: &Principal,
    q: SessionQuery,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = q.session_id.or(q.session_id_camel) else {
        return HttpError::MissingLegacySession.into_response();
    };
    // A malformed id is answered like any id never issued.
    if !sessions::well_formed(&id) {
        return HttpError::UnknownSession.into_response();
    }
    let Some(stream) = app
        .legacy
        .map
        .get(&id)
        .map(|s| Arc::clone(s.value()))
        .filter(|s| s.scope == scope && s.principal.id == who.id)
    else {
        return HttpError::UnknownSession.into_response();
    };
    // The answer travels on the stream after the 202, so the slots go with
    // the request's task (`answer_on_stream`).
    let principal_slot = match app.inflight.principal(who) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_content_type(headers) {
        return e.into_response();
    }
    let bytes = match read_body(app, headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let msg = match jsonrpc::parse(&bytes) {
        Ok(Parsed::Single(m)) => m,
        Ok(Parsed::Batch(_)) => return HttpError::Batch.into_response(),
        Err(e) => {
            let body = jsonrpc::error_body(e.id(), e.code(), &e.to_string(), None);
            return (
                StatusCode::BAD_REQUEST,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    };
    let session = app.sessions.get_for(&id, who);
    match (msg, session) {
        (Message::Request(req), _) if req.method == "initialize" => {
            let answer = match open_session(
                app,
                scope,
                who,
                req.params.as_deref(),
                Some(id),
                &mcp::LEGACY_SSE_VERSIONS,
            ) {
                Ok((_, result)) => jsonrpc::result_body(&req.id, &result),
                Err(Refusal::Http(e)) => return e.into_response(),
                Err(Refusal::Rpc { code, message }) => {
                    jsonrpc::error_body(Some(&req.id), code, message, None)
                }
            };
            let _ = stream.to_client.send(answer);
        }
        (Message::Request(req), None) => {
            let refusal = jsonrpc::error_body(
                Some(&req.id),
                code::INVALID_REQUEST,
                "send initialize first",
                None,
            );
            let _ = stream.to_client.send(refusal);
        }
        (Message::Request(req), Some(session)) => {
            let session_slot =
                match InflightLimits::session(&session.inflight_slots, app.sessions.max_inflight())
                {
                    Ok(p) => p,
                    Err(e) => return e.into_response(),
                };
            session.touch();
            let slots = (principal_slot, session_slot);
            answer_on_stream(app, session, &stream, req, headers, slots);
        }
        (Message::Notification(n), Some(session)) => match n.method.as_str() {
            "notifications/initialized" => session
                .initialized
                .store(true, std::sync::atomic::Ordering::Relaxed),
            "notifications/cancelled" => {
                router::cancel_request(&session, n.params.as_deref()).await
            }
            _ => {}
        },
        (Message::Response(r), Some(session)) => {
            router::deliver_response(&session, &r.id, r.outcome).await
        }
        (Message::Notification(_) | Message::Response(_), None) => {}
    }
    StatusCode::ACCEPTED.into_response()
}

/// The POST is answered 202 at once; the request runs on and its answer (and
/// anything the upstream sends first) goes down the stream.
fn answer_on_stream(
    app: &Arc<App>,
    session: Arc<DownstreamSession>,
    stream: &Stream,
    req: jsonrpc::Request,
    headers: &HeaderMap,
    slots: (Permit, Permit),
) {
    let mut ctx = RequestContext::from_headers(app, headers);
    ctx.relay = Some(router::ClientSink::Stream(stream.to_client.clone()));
    let to_client = stream.to_client.clone();
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let _slots = slots;
        let answer = router::handle(app, session, req, ctx).await;
        let _ = to_client.send(answer);
    });
}
