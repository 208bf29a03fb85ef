//! W3C Trace Context (`traceparent`, `tracestate`) carried from a downstream
//! request to the upstream request it causes — per request, on the reused
//! upstream session, so tracing never costs session reuse.

use axum::http::HeaderMap;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Reads the headers; a malformed `traceparent` is ignored, as the W3C
    /// spec tells a receiver to do.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let traceparent = headers.get("traceparent")?.to_str().ok()?.trim();
        if !valid_traceparent(traceparent) {
            return None;
        }
        let tracestate = headers
            .get("tracestate")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .map(str::to_owned);
        Some(TraceContext {
            traceparent: traceparent.to_owned(),
            tracestate,
        })
    }

    /// Headers for the upstream POST.
    pub fn headers(&self) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&self.traceparent) {
            h.insert(HeaderName::from_static("traceparent"), v);
        }
        if let Some(v) = self
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            h.insert(HeaderName::from_static("tracestate"), v);
        }
        h
    }

    /// Adds the context to `params._meta`, for upstreams that read it there.
    pub fn annotate(&self, params: &mut Map<String, Value>) {
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert(
                "traceparent".into(),
                Value::String(self.traceparent.clone()),
            );
            if let Some(ts) = &self.tracestate {
                meta.insert("tracestate".into(), Value::String(ts.clone()));
            }
        }
    }
}

/// `version-traceid-parentid-flags`: 2, 32, 16 and 2 lower-case hex digits;
/// all-zero ids and version ff are invalid.
fn valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
        && (parts[0] != "00" || parts.len() == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_validation() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!valid_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent("garbage"));
    }
}
