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

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::jsonrpc::{self, code};

pub async fn check(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
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
            return forbidden(&format!("Origin {origin:?} is not allowed"));
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
            return forbidden(&format!(
                "Host {host:?} is not allowed for a gateway bound to loopback"
            ));
        }
    }
    next.run(req).await
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
        || name.to_ascii_lowercase().ends_with(".localhost")
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
        assert!(!is_loopback_name("evil.example") && !is_loopback_name("10.0.0.1"));
        assert!(
            origin_is_loopback("http://localhost:3000") && origin_is_loopback("http://[::1]:1")
        );
        assert!(!origin_is_loopback("https://evil.example") && !origin_is_loopback("null"));
    }
}
