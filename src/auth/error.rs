//! Why a request was not let in, and the one mapping of that to HTTP.
//!
//! 401 carries `WWW-Authenticate: Bearer` with `resource_metadata` pointing at
//! the OAuth protected-resource metadata (MCP authorization spec, 2025-11-25;
//! RFC 9728 §5.1) and, for a bad token, `error="invalid_token"` (RFC 6750);
//! 403 says `error="insufficient_scope"`. Bodies are JSON-RPC errors on the
//! MCP endpoints and `{"detail": ...}` on the REST API. No body ever carries
//! the presented token or an internal error.

use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::jsonrpc::{self, code};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send \"Authorization: Bearer <token>\"")]
    Missing,
    #[error("malformed Authorization header: expected \"Bearer <token>\"")]
    Malformed,
    #[error("invalid token: {reason}")]
    InvalidToken { reason: String },
    #[error("token expired")]
    Expired,
    #[error("{action} needs an admin token")]
    Forbidden { action: String },
    /// The token store could not be read; the cause is logged, not returned.
    #[error("authentication is temporarily unavailable")]
    Unavailable { detail: String },
}

/// Which error body an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/mcp`, `/servers/{id}/mcp`, `/rpc`: a JSON-RPC error without an id.
    JsonRpc,
    /// The REST API: `{"detail": "..."}`.
    Rest,
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing
            | AuthError::Malformed
            | AuthError::InvalidToken { .. }
            | AuthError::Expired => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 error code, when the challenge should carry one.
    fn challenge_error(&self) -> Option<&'static str> {
        match self {
            // RFC 6750 §3.1: no error code when the request had no credentials.
            AuthError::Missing | AuthError::Unavailable { .. } => None,
            AuthError::Malformed => Some("invalid_request"),
            AuthError::InvalidToken { .. } | AuthError::Expired => Some("invalid_token"),
            AuthError::Forbidden { .. } => Some("insufficient_scope"),
        }
    }

    /// The response for an endpoint of `flavor`; `resource_metadata` is the
    /// absolute URL of this resource's protected-resource metadata.
    pub fn respond(self, flavor: Flavor, resource_metadata: &str) -> Response {
        if let AuthError::Unavailable { detail } = &self {
            tracing::error!(error = %detail, "token store unavailable; request refused");
        }
        let status = self.status();
        let message = self.to_string();
        let mut resp = match flavor {
            Flavor::JsonRpc => {
                let code = match self {
                    AuthError::Unavailable { .. } => code::INTERNAL_ERROR,
                    _ => code::INVALID_REQUEST,
                };
                (
                    status,
                    [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    jsonrpc::error_body(None, code, &message, None),
                )
                    .into_response()
            }
            Flavor::Rest => {
                (status, axum::Json(serde_json::json!({ "detail": message }))).into_response()
            }
        };
        if !matches!(self, AuthError::Unavailable { .. }) {
            let mut challenge = String::from("Bearer");
            let mut params = Vec::new();
            if let Some(error) = self.challenge_error() {
                params.push(format!("error=\"{error}\""));
                params.push(format!("error_description=\"{}\"", quoted(&message)));
            }
            params.push(format!(
                "resource_metadata=\"{}\"",
                quoted(resource_metadata)
            ));
            challenge.push(' ');
            challenge.push_str(&params.join(", "));
            let value = HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
            resp.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        resp
    }
}

/// Fit for a quoted-string: no quotes, backslashes or control characters.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750() {
        let url = "http://gw/.well-known/oauth-protected-resource";
        let r = AuthError::Missing.respond(Flavor::Rest, url);
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            format!("Bearer resource_metadata=\"{url}\"").as_str()
        );
        let r = AuthError::InvalidToken {
            reason: "bad \"sig\"".into(),
        }
        .respond(Flavor::JsonRpc, url);
        let h = r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
        assert!(
            h.starts_with(
                "Bearer error=\"invalid_token\", error_description=\"invalid token: bad 'sig'\""
            ),
            "{h}"
        );
        let r = AuthError::Forbidden {
            action: "POST /gateways".into(),
        }
        .respond(Flavor::Rest, url);
        assert_eq!(r.status(), 403);
        assert!(r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
        let r = AuthError::Unavailable {
            detail: "disk on fire".into(),
        }
        .respond(Flavor::Rest, url);
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
