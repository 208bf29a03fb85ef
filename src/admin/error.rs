//! The admin API's one error type and its one mapping to HTTP.
//!
//! Bodies follow ContextForge (FastAPI): `{"detail": "..."}`, and for 422 a
//! list of `{"loc": [...], "msg": "...", "type": "..."}` naming the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::TokenStoreError;
use crate::catalog::{CatalogError, FieldError};
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{reason}")]
    Conflict { reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{reason}")]
    BadRequest { reason: String },
    #[error("request body exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("cannot reach the upstream MCP server: {source}")]
    Unreachable {
        #[source]
        source: UpstreamError,
    },
    #[error("the upstream MCP server answered with an error: {error}")]
    UpstreamRejected { error: String },
    #[error("internal error")]
    Internal { detail: String },
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound { kind, id } => ApiError::NotFound {
                what: format!("{kind} {id}"),
            },
            CatalogError::Conflict { reason } => ApiError::Conflict { reason },
            CatalogError::Invalid(f) => f.into(),
            CatalogError::Store(s) => ApiError::Internal {
                detail: s.to_string(),
            },
        }
    }
}

impl From<TokenStoreError> for ApiError {
    fn from(e: TokenStoreError) -> Self {
        match e {
            TokenStoreError::Invalid { field, reason } => ApiError::Invalid {
                path: field.to_owned(),
                reason,
            },
            TokenStoreError::Sql { .. } | TokenStoreError::Corrupt { .. } => ApiError::Internal {
                detail: e.to_string(),
            },
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(f: FieldError) -> Self {
        ApiError::Invalid {
            path: f.field.to_owned(),
            reason: f.reason,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::NotFound { .. } => {
                (StatusCode::NOT_FOUND, json!({ "detail": self.to_string() }))
            }
            ApiError::Conflict { reason } => (StatusCode::CONFLICT, json!({ "detail": reason })),
            ApiError::BadRequest { reason } => {
                (StatusCode::BAD_REQUEST, json!({ "detail": reason }))
            }
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "detail": self.to_string() }),
            ),
            ApiError::Invalid { path, reason } => {
                let loc: Vec<&str> = std::iter::once("body")
                    .chain(path.split('.').filter(|p| !p.is_empty()))
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "detail": [{ "loc": loc, "msg": reason, "type": "value_error" }] }),
                )
            }
            ApiError::Unreachable { .. } | ApiError::UpstreamRejected { .. } => (
                StatusCode::BAD_GATEWAY,
                json!({ "detail": self.to_string() }),
            ),
            ApiError::Internal { detail } => {
                // The cause is for the operator's log, not for the caller.
                tracing::error!(error = %detail, "admin API internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "detail": "internal error" }),
                )
            }
        };
        (status, axum::Json(body)).into_response()
    }
}
