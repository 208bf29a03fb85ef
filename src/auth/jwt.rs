//! JWT bearer tokens: HS256 with the configured secret, RS256/ES256 against
//! the keys of a JWKS file or URL. Only those three algorithms are accepted, each
//! only with a key of its own kind, so a token cannot pick its verification
//! (no `none`, no HS256 keyed with a public key).
//!
//! Checked: the signature, `exp` (required) and `nbf` (when present) with 30
//! seconds of leeway, `sub` (required), and `aud` / `iss` when accepted values
//! are configured.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::error::AuthError;
use super::principal::Principal;
use crate::config::AuthSettings;

/// A JWT principal is an admin when its `scope` contains this, or when it
/// carries `"is_admin": true` (as ContextForge's tokens do).
pub const ADMIN_SCOPE: &str = "switchyard:admin";
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read JWKS file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JWKS file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Keys are fetched again this often (identity providers rotate keys with
/// overlap, so minutes of staleness are harmless) …
const REMOTE_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// … or when a token names a key id we do not know, but not more often than
/// this: random key ids must not turn the gateway into a fetch amplifier.
const REMOTE_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A JWKS served by an identity provider, kept fresh.
struct RemoteKeys {
    url: reqwest::Url,
    client: reqwest::Client,
    keys: ArcSwap<Vec<Key>>,
    /// When the last fetch started, successful or not.
    last_attempt: Mutex<Option<Instant>>,
    /// When the current keys were fetched.
    fetched: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl RemoteKeys {
    /// Fetches unless one was attempted within `min_interval`; returns
    /// whether new keys were installed.
    async fn refresh(&self, min_interval: Duration) -> bool {
        let _one = self.fetching.lock().await;
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < min_interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "JWKS fetched");
                self.keys.store(Arc::new(keys));
                *self.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                true
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "cannot fetch the JWKS; keeping the keys already known");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let resp = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
        parse_jwks(&text)
    }

    fn stale(&self) -> bool {
        self.fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() > REMOTE_MAX_AGE)
    }
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    keys: Vec<Key>,
    remote: Option<Arc<RemoteKeys>>,
    audience: Vec<String>,
    issuer: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    // Optional here so a missing `sub` is reported as such by the
    // required-claims check, not as a malformed token.
    sub: Option<String>,
    iss: Option<String>,
    scope: Option<String>,
    is_admin: Option<bool>,
}

impl JwtVerifier {
    /// `None` when neither a secret nor a JWKS is configured. A JWKS URL
    /// that cannot be fetched now does not stop the start (the identity
    /// provider may come up later); it is retried when tokens need it.
    pub async fn from_settings(s: &AuthSettings) -> Result<Option<JwtVerifier>, JwksError> {
        let keys = match &s.jwks_file {
            Some(path) => load_jwks(path)?,
            None => Vec::new(),
        };
        let hs256 = s
            .jwt_secret
            .as_ref()
            .map(|secret| DecodingKey::from_secret(secret.expose().as_bytes()));
        let remote = match &s.jwks_url {
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| JwksError::Invalid {
                        path: PathBuf::from(url.as_str()),
                        reason: format!("cannot build an HTTP client: {e}"),
                    })?;
                let remote = Arc::new(RemoteKeys {
                    url: url.clone(),
                    client,
                    keys: ArcSwap::from_pointee(Vec::new()),
                    last_attempt: Mutex::new(None),
                    fetched: Mutex::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                });
                remote.refresh(Duration::ZERO).await;
                Some(remote)
            }
            None => None,
        };
        if hs256.is_none() && keys.is_empty() && remote.is_none() {
            return Ok(None);
        }
        Ok(Some(JwtVerifier {
            hs256,
            keys,
            remote,
            audience: s.jwt_audience.clone(),
            issuer: s.jwt_issuer.clone(),
        }))
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid = |reason: &str| AuthError::InvalidToken {
            reason: reason.to_owned(),
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a JWT"))?;
        if !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256
        ) {
            return Err(invalid("only HS256, RS256 and ES256 JWTs are accepted"));
        }
        if let Some(remote) = &self.remote {
            if header.alg != Algorithm::HS256 {
                let known = |keys: &[Key]| {
                    keys.iter().any(|k| {
                        k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid)
                    })
                };
                if !known(&self.keys) && !known(&remote.keys.load()) {
                    // Perhaps a key the provider rotated in since the last fetch.
                    remote.refresh(REMOTE_MIN_INTERVAL).await;
                } else if remote.stale() {
                    let remote = Arc::clone(remote);
                    tokio::spawn(async move { remote.refresh(REMOTE_MIN_INTERVAL).await });
                }
            }
        }
        let remote_keys = self.remote.as_ref().map(|r| r.keys.load_full());
        let candidates: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().collect(),
            _ => self
                .keys
                .iter()
                .chain(remote_keys.iter().flat_map(|k| k.iter()))
                .filter(|k| k.alg == header.alg)
                .filter(|k| header.kid.is_none() || k.kid == header.kid)
                .map(|k| &k.key)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(invalid(
                "no configured key for this JWT's algorithm and key id",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
        }
        if !self.issuer.is_empty() {
            validation.set_issuer(&self.issuer);
        }
        let mut last = ErrorKind::InvalidSignature;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    let c = data.claims;
                    let sub = c
                        .sub
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| invalid("missing claim \"sub\""))?;
                    let admin = c.is_admin == Some(true)
                        || c.scope
                            .as_deref()
                            .is_some_and(|s| s.split_whitespace().any(|s| s == ADMIN_SCOPE));
                    return Ok(Principal::jwt(c.iss.as_deref(), &sub, admin));
                }
                // Another key of the set may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => {
                    last = e.into_kind();
                    break;
                }
            }
        }
        Err(match last {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)"),
            ErrorKind::InvalidAudience => invalid("audience (aud) not accepted"),
            ErrorKind::InvalidIssuer => invalid("issuer (iss) not accepted"),
            ErrorKind::InvalidSignature => invalid("signature does not verify"),
            ErrorKind::MissingRequiredClaim(claim) => AuthError::InvalidToken {
                reason: format!("missing claim {claim:?}"),
            },
            _ => invalid("malformed JWT"),
        })
    }
}

/// Reads the RS256 and ES256 signing keys of a JWKS file; keys for other
/// algorithms or for encryption are skipped (logged), none at all is an error.
fn load_jwks(path: &Path) -> Result<Vec<Key>, JwksError> {
    let text = std::fs::read_to_string(path).map_err(|source| JwksError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_jwks(&text).map_err(|reason| JwksError::Invalid {
        path: path.to_owned(),
        reason,
    })
}

fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            tracing::warn!(
                kid = kid.as_deref().unwrap_or("-"),
                "JWKS key for encryption skipped"
            );
            continue;
        }
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_))
            | (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(p))
            | (None, AlgorithmParameters::EllipticCurve(p))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(
                    kid = kid.as_deref().unwrap_or("-"),
                    "JWKS key skipped: only RS256 (RSA) and ES256 (P-256) keys are used"
                );
                continue;
            }
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| format!("key {}: {e}", kid.as_deref().unwrap_or("without kid")))?;
        keys.push(Key { kid, alg, key });
    }
    if keys.is_empty() {
        return Err("no RS256 or ES256 key in it".into());
    }
    Ok(keys)
}
