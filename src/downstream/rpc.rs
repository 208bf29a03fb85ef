//! `POST /rpc`: plain JSON-RPC over HTTP, one request per POST, no session.
//! Each routed call gets an upstream session of its own (initialize → call →
//! close); the session registry is never involved.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{check_content_type, read_body, HttpError};
use crate::app::App;
use crate::auth::Principal;
use crate::jsonrpc::{self, code, Message, Parsed};
use crate::router::{self, RequestContext};

pub async fn post(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = check_content_type(&headers) {
        return e.into_response();
    }
    let _principal_slot = match app.inflight.principal(&who) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let bytes = match read_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let req = match jsonrpc::parse(&bytes) {
        Ok(Parsed::Single(Message::Request(req))) => req,
        Ok(Parsed::Single(_)) => return StatusCode::ACCEPTED.into_response(),
        Ok(Parsed::Batch(_)) => return HttpError::SessionlessBatch.into_response(),
        Err(e) => {
            let body = jsonrpc::error_body(e.id(), e.code(), &e.to_string(), None);
            return json(StatusCode::BAD_REQUEST, body);
        }
    };
    if req.method == "initialize" {
        let body = jsonrpc::error_body(
            Some(&req.id),
            code::INVALID_REQUEST,
            "/rpc is sessionless; use /mcp for MCP sessions",
            None,
        );
        return json(StatusCode::OK, body);
    }
    let ctx = RequestContext::from_headers(&app, &headers);
    json(
        StatusCode::OK,
        router::handle_sessionless(&app, req, &ctx).await,
    )
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
