//! `/tokens`: minting, listing and revoking API tokens (admin only).
//!
//! A token's secret appears once, in the answer to `POST /tokens`; listings
//! never carry it (the catalog holds only its digest). Revoking a token also
//! ends the MCP sessions it opened.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_body, ApiError, Body, Id};
use crate::app::App;
use crate::auth::{tokens, Principal, TokenInfo};
use crate::downstream;
use crate::registry::EvictReason;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

/// `expires`: a duration (`"30d"`, `"12h"`) or a number of seconds; absent
/// means the token never expires.
#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    admin: bool,
    expires: Option<Expiry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expiry {
    Seconds(u64),
    Text(String),
}

async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateBody = parse_body(&app, &body)?;
    let lifetime = match req.expires {
        None => None,
        Some(Expiry::Seconds(s)) => Some(std::time::Duration::from_secs(s)),
        Some(Expiry::Text(t)) => {
            Some(
                tokens::parse_duration(&t).map_err(|reason| ApiError::Invalid {
                    path: "expires".into(),
                    reason,
                })?,
            )
        }
    };
    let minted = app
        .auth
        .tokens
        .create(&req.name, req.admin, lifetime)
        .await?;
    tracing::info!(token = %minted.info.id, name = %minted.info.name, admin = minted.info.admin, by = %caller.id, "API token created");
    let mut out = token_json(&minted.info);
    out["token"] = Value::String(minted.token);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let all = app.auth.tokens.list().await?;
    Ok(Json(Value::Array(all.iter().map(token_json).collect())))
}

async fn revoke(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Principal>,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    if !app.auth.tokens.revoke(&id).await? {
        return Err(ApiError::NotFound {
            what: format!("token {id}"),
        });
    }
    // Its sessions go with it: whoever held the token keeps nothing open.
    let sessions = app.sessions.owned_by(&Principal::api_token_id(&id));
    for sid in &sessions {
        downstream::end_session(&app, sid, EvictReason::SessionEnded).await;
    }
    tracing::info!(token = %id, by = %caller.id, sessions_ended = sessions.len(), "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

fn token_json(t: &TokenInfo) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "admin": t.admin,
        "createdAt": t.created_at,
        "expiresAt": t.expires_at,
        "lastUsed": t.last_used,
    })
}
