//! Header hygiene: which downstream request headers may reach an upstream.
//!
//! The rule is structural: an upstream request is built from the gateway's
//! own headers (session id, protocol version, content negotiation), the W3C
//! trace context (`trace.rs`), and only those downstream headers an operator
//! named in an allow-list — per gateway, or the global default. Nothing else
//! of the downstream request is copied.
//!
//! Some headers are never forwarded, whatever a list says: credentials meant
//! for the gateway (`Authorization`, `Cookie`), the downstream session id,
//! `Host`, hop-by-hop headers, framing headers the upstream request sets
//! itself, and headers the gateway owns. Lists naming them are refused when
//! configured, and they are stripped again when a request is forwarded.

use axum::http::header::{HeaderMap, HeaderName, CONNECTION};

/// Never forwarded (lower-case). `proxy-*` is refused by prefix as well.
const NEVER: [&str; 22] = [
    // Credentials for the gateway itself.
    "authorization",
    "cookie",
    "set-cookie",
    // The downstream session and protocol belong to the gateway's session, not the upstream's.
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "host",
    // Hop-by-hop (RFC 9110 §7.6.1).
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // Framing and content negotiation of the upstream request are the gateway's.
    "content-length",
    "content-type",
    "content-encoding",
    "accept",
    "accept-encoding",
    "expect",
    "user-agent",
    // Forwarded by `trace.rs` after validation, never raw.
    "traceparent",
    "tracestate",
];

/// Whether `name` (any case) may never reach an upstream.
pub fn never_forwarded(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    NEVER.contains(&name.as_str()) || name.starts_with("proxy-")
}

/// Validates an allow-list as an operator wrote it: lower-cased, trimmed,
/// de-duplicated header names; any always-stripped name is an error naming it.
pub fn validate_names(names: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for raw in names {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{raw:?} is not a valid header name"));
        }
        if never_forwarded(&name) {
            return Err(format!(
                "{raw:?} is never forwarded to upstreams (credentials, session, hop-by-hop and framing headers are stripped)"
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// The headers of `downstream` that `allowed` names, minus the always-stripped
/// ones and any the request's `Connection` header declares hop-by-hop.
/// Everything else of the downstream request stays behind.
pub fn select(downstream: &HeaderMap, allowed: &[String]) -> HeaderMap {
    let mut out = HeaderMap::new();
    if allowed.is_empty() {
        return out;
    }
    let hop_by_hop: Vec<String> = downstream
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for name in allowed {
        if never_forwarded(name) || hop_by_hop.contains(name) {
            continue;
        }
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in downstream.get_all(&header) {
            out.append(header.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn lists_naming_stripped_headers_are_refused() {
        for bad in [
            "Authorization",
            "cookie",
            "Proxy-Authorization",
            "HOST",
            "te",
        ] {
            assert!(validate_names(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(validate_names(&["bad header".to_owned()]).is_err());
        assert_eq!(
            validate_names(&[" X-Tenant ".into(), "x-tenant".into(), "".into()]).unwrap(),
            vec!["x-tenant"]
        );
    }

    #[test]
    fn only_allowed_headers_are_selected() {
        let mut h = HeaderMap::new();
        h.insert("x-tenant", HeaderValue::from_static("acme"));
        h.insert("x-other", HeaderValue::from_static("no"));
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("connection", HeaderValue::from_static("keep-alive, X-Hop"));
        assert!(select(&h, &[]).is_empty());
        let out = select(
            &h,
            &["x-tenant".into(), "authorization".into(), "x-hop".into()],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out["x-tenant"], "acme");
    }
}
