//! MCP protocol constants: versions and the handful of method names the
//! gateway acts on (everything else is relayed or refused by name), and the
//! media-type check both sides of the Streamable HTTP transport make.

/// The newest handshake-era revision; offered upstream and preferred downstream.
pub const LATEST_VERSION: &str = "2025-11-25";

/// Revisions a downstream client may negotiate on `/mcp` (all use sessions and `initialize`).
pub const DOWNSTREAM_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// Revisions we accept from an upstream's `initialize` answer. 2024-11-05
/// servers reached over Streamable HTTP exist in the wild and speak a subset
/// we handle.
pub const UPSTREAM_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Revisions a legacy HTTP+SSE client may negotiate on `/sse`.
pub const LEGACY_SSE_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The syslog severities `logging/setLevel` takes (spec 2025-11-25,
/// server/utilities/logging). The fixtures crate keeps its own copy: it
/// plays an upstream written by somebody else, so it shares no code with
/// the gateway it tests.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Spec, lifecycle: answer with the requested version if supported, else our latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    negotiate_among(&DOWNSTREAM_VERSIONS, requested)
}

/// [`negotiate`] over a given set, whose first entry is the preferred one.
pub fn negotiate_among(supported: &[&'static str], requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| supported.iter().find(|v| **v == r))
        .or(supported.first())
        .copied()
        .unwrap_or(LATEST_VERSION)
}

/// Whether a `Content-Type` value is `media_type`: any case, parameters
/// (`; charset=utf-8`) allowed. Compared in place, without a lower-cased
/// copy: it runs on every request and every upstream answer.
pub fn is_media_type(content_type: &str, media_type: &str) -> bool {
    content_type
        .get(..media_type.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(media_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_match_in_any_case_with_parameters() {
        assert!(is_media_type(
            "Application/JSON; charset=utf-8",
            "application/json"
        ));
        assert!(is_media_type("text/event-stream", "text/event-stream"));
        assert!(!is_media_type("text/plain", "application/json"));
        assert!(!is_media_type("app", "application/json"));
        assert!(!is_media_type("", "application/json"));
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2099-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(Some("2026-07-28")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
    }
}
