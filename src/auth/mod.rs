//! Downstream authentication and authorization: who is calling, and may they.
//!
//! - `principal.rs`: [`Principal`], the caller as handlers and sessions see it.
//! - `tokens.rs`: API tokens (`sy_…`), stored as SHA-256 digests in the catalog database.
//! - `jwt.rs`: JWT bearer tokens (HS256 secret, RS256/ES256 from a JWKS file or URL).
//! - `middleware.rs`: the layer that authenticates each request and checks its route's [`Access`].
//! - `error.rs`: [`AuthError`], and its one mapping to 401/403 responses.
//! - `bootstrap.rs`: the admin token minted on a first start.
//! - `metadata.rs`: `/.well-known/oauth-protected-resource` (RFC 9728).
//!
//! Every request but `/health` and `/.well-known/*` needs a bearer token
//! unless the gateway runs with `--auth none` (accepted on loopback only).

mod bootstrap;
mod error;
mod jwt;
pub mod metadata;
mod middleware;
mod principal;
pub mod tokens;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use sqlx::SqlitePool;

pub use bootstrap::{mint_first_admin_token, BootstrapError, BOOTSTRAP_TOKEN_NAME};
pub use error::{AuthError, Flavor};
pub use jwt::{JwksError, ADMIN_SCOPE};
pub use middleware::{gate, protect, Access};
pub use principal::Principal;
pub use tokens::{Minted, TokenInfo, TokenStore, TokenStoreError};

use crate::app::App;
use crate::config::{AuthMode, AuthSettings};
use jwt::JwtVerifier;
use tokens::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    #[error(transparent)]
    Tokens {
        #[from]
        source: TokenStoreError,
    },
    #[error(transparent)]
    Jwks {
        #[from]
        source: JwksError,
    },
}

/// Everything needed to authenticate a request.
pub struct Auth {
    mode: AuthMode,
    pub tokens: TokenStore,
    /// Swapped whole on SIGHUP (rotated JWT secret or JWKS file).
    jwt: ArcSwapOption<JwtVerifier>,
}

impl Auth {
    /// Loads the API tokens and the JWT keys. A bad JWKS file stops the start:
    /// running without the keys an operator configured would lock callers out
    /// in a way that is hard to diagnose.
    pub async fn new(settings: &AuthSettings, pool: SqlitePool) -> Result<Auth, AuthStartError> {
        Ok(Auth {
            mode: settings.mode,
            tokens: TokenStore::open(pool).await?,
            jwt: ArcSwapOption::new(JwtVerifier::from_settings(settings).await?.map(Arc::new)),
        })
    }

    /// Applies re-read JWT settings (secret, JWKS file or URL, audience,
    /// issuer). On error the keys in use stay, so a botched edit cannot
    /// lock every JWT caller out.
    pub async fn reload_jwt(&self, settings: &AuthSettings) -> Result<(), AuthStartError> {
        let verifier = JwtVerifier::from_settings(settings).await?;
        self.jwt.store(verifier.map(Arc::new));
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.mode != AuthMode::None
    }

    /// Who sent these headers, when memory alone can tell: `--auth none`,
    /// a malformed header, or an API token this process knows (or knows to
    /// be unknown). `None` means [`authenticate`](Self::authenticate) must
    /// finish the job (JWTs, tokens minted elsewhere since the start).
    pub fn authenticate_now(&self, headers: &HeaderMap) -> Option<Result<Principal, AuthError>> {
        if !self.enabled() {
            return Some(Ok(Principal::anonymous()));
        }
        let token = match bearer(headers) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if token.starts_with(tokens::PREFIX) {
            return self.tokens.verify_cached(token).map(api_token_verdict);
        }
        None
    }

    /// Who sent these headers. With `--auth none` everyone is [`Principal::anonymous`].
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let token = bearer(headers)?;
        if token.starts_with(tokens::PREFIX) {
            return match self.tokens.verify(token).await {
                Ok(v) => api_token_verdict(v),
                Err(e) => Err(AuthError::Unavailable {
                    detail: e.to_string(),
                }),
            };
        }
        let jwt = self.jwt.load_full();
        match jwt {
            Some(jwt) => jwt.verify(token).await,
            None => Err(AuthError::InvalidToken {
                reason: format!(
                    "not an API token ({}…), and JWTs are not configured",
                    tokens::PREFIX
                ),
            }),
        }
    }
}

/// The bearer token of the one `Authorization` header.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let (scheme, token) = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

fn api_token_verdict(verdict: Verdict) -> Result<Principal, AuthError> {
    match verdict {
        Verdict::Valid(p) => Ok(p),
        Verdict::Expired => Err(AuthError::Expired),
        Verdict::Unknown => Err(AuthError::InvalidToken {
            reason: "unknown or revoked API token".into(),
        }),
    }
}

/// The gateway's external base URL: `--public-url`, else `http://` and the
/// request's `Host` (a gateway behind a TLS proxy should set `--public-url`).
pub(crate) fn base_url(app: &App, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings.security.auth.public_url {
        return url.as_str().trim_end_matches('/').to_owned();
    }
    let host = middleware::host_authority(headers)
        .unwrap_or_else(|| format!("{}:{}", app.settings.host, app.settings.port));
    format!("http://{host}")
}
