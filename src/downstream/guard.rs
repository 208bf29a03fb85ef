//! DNS-rebinding protection for the MCP endpoints (spec 2025-11-25,
//! basic/transports, "Security Warning"): a browser page on another origin
//! must not reach a gateway on localhost.
//!
//! - `Origin`, when present, must be in the allow-list; with no list
//!   configured, only loopback origins are accepted.
//! - `Host`, when the gateway listens on a loopback address, must name a
//!   loopback host (or an allowed host): a rebound DNS name is refused.
//!
//! Refusals are 403 with a JSON-RPC error body.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;

use crate::app::App;
use crate::jsonrpc::{self, code};

/// The check as a layer of its own rather than `axum::middleware::from_fn`:
/// it never waits, so it needs neither from_fn's boxed future nor its clone
/// of the inner service on every request.
#[derive(Clone)]
pub struct GuardLayer {
    app: Arc<App>,
}

impl GuardLayer {
    pub fn new(app: &Arc<App>) -> Self {
        Self {
            app: Arc::clone(app),
        }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            app: Arc::clone(&self.app),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    app: Arc<App>,
    inner: S,
}

impl<S> tower_service::Service<Request> for Guard<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match refusal(&self.app, req.headers()) {
            Some(refused) => Either::Left(ready(Ok(refused))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

/// The 403 for a request from a foreign page, or `None` to let it through.
fn refusal(app: &App, headers: &HeaderMap) -> Option<Response> {
    let security = &app.settings.security;
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let allowed = if security.allowed_origins.is_empty() {
            origin_is_loopback(origin)
        } else {
            security
                .allowed_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        };
        if !allowed {
            return Some(forbidden(&format!("Origin {origin:?} is not allowed")));
        }
    }
    if app.settings.host.is_loopback() {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = strip_port(host);
        let allowed = is_loopback_name(name)
            || security
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name));
        if !allowed {
            return Some(forbidden(&format!(
                "Host {host:?} is not allowed for a gateway bound to loopback"
            )));
        }
    }
    None
}

fn forbidden(message: &str) -> Response {
    let body = jsonrpc::error_body(None, code::INVALID_REQUEST, message, None);
    (
        StatusCode::FORBIDDEN,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn origin_is_loopback(origin: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(origin) else {
        return false;
    };
    url.host_str().is_some_and(is_loopback_name)
}

/// `host[:port]`, with IPv6 literals in brackets.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|at| name.get(at..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        assert_eq!(strip_port("127.0.0.1:4444"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:4444"), "::1");
        assert_eq!(strip_port("localhost"), "localhost");
        assert!(
            is_loopback_name("localhost")
                && is_loopback_name("127.0.0.2")
                && is_loopback_name("::1")
        );
        assert!(is_loopback_name("app.LocalHost") && !is_loopback_name("localhost.evil"));
        assert!(!is_loopback_name("evil.example") && !is_loopback_name("10.0.0.1"));
        assert!(
            origin_is_loopback("http://localhost:3000") && origin_is_loopback("http://[::1]:1")
        );
        assert!(!origin_is_loopback("https://evil.example") && !origin_is_loopback("null"));
    }
}
