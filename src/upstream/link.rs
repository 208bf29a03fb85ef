//! What it takes to reach one upstream beyond its URL: the HTTP client that
//! trusts its certificate (and presents ours, for mTLS), the credentials on
//! every request, and the URL with a query-parameter credential.
//!
//! Built when a session (or a discovery, health check, per-call session)
//! connects, never per call. Clients with their own TLS settings and OAuth
//! token caches are shared by every session of the same [`Connection`], so
//! a token is fetched once per gateway, not once per session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use super::egress;
use super::http::{self, Endpoint};
use super::UpstreamError;
use crate::catalog::credentials::{identity, OAuthClient, UpstreamAuth, UpstreamTls};
use crate::catalog::Connection;

/// Per-connection clients and token caches, shared across sessions.
pub struct Links {
    default_client: reqwest::Client,
    egress: egress::Policy,
    token_timeout: Duration,
    shared: Mutex<HashMap<Connection, Cached>>,
}

struct Cached {
    link: Arc<Shared>,
    last_used: Instant,
}

/// The parts of a link worth sharing: a TLS-specific client, a token cache.
struct Shared {
    client: reqwest::Client,
    oauth: Option<Arc<TokenSource>>,
}

/// Entries no session holds are dropped after this long unused, so edited
/// or removed gateways do not pin their clients forever.
const IDLE_EVICTION: Duration = Duration::from_secs(15 * 60);

impl Links {
    pub fn new(
        default_client: reqwest::Client,
        egress: egress::Policy,
        token_timeout: Duration,
    ) -> Self {
        Self {
            default_client,
            egress,
            token_timeout,
            shared: Mutex::new(HashMap::new()),
        }
    }

    /// The client and base endpoint for `connection`.
    pub fn resolve(
        &self,
        connection: &Connection,
    ) -> Result<(reqwest::Client, Endpoint), UpstreamError> {
        let mut url = connection.url.clone();
        let mut headers = HeaderMap::new();
        match &connection.auth {
            UpstreamAuth::None | UpstreamAuth::OAuth(_) => {}
            UpstreamAuth::Bearer { token } => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(&format!("Bearer {}", token.expose()))?,
                );
            }
            UpstreamAuth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                headers.insert(AUTHORIZATION, sensitive(&format!("Basic {encoded}"))?);
            }
            UpstreamAuth::Headers { headers: list } => {
                for h in list {
                    let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                        UpstreamError::Credentials {
                            reason: format!("{:?} is not a valid header name", h.name),
                        }
                    })?;
                    headers.insert(name, sensitive(h.value.expose())?);
                }
            }
            UpstreamAuth::QueryParam { key, value } => {
                url.query_pairs_mut().append_pair(key, value.expose());
            }
        }
        let needs_shared =
            !connection.tls.is_default() || matches!(connection.auth, UpstreamAuth::OAuth(_));
        if !needs_shared {
            return Ok((
                self.default_client.clone(),
                Endpoint::new(url, headers, None),
            ));
        }
        let shared = self.shared_for(connection)?;
        Ok((
            shared.client.clone(),
            Endpoint::new(url, headers, shared.oauth.clone()),
        ))
    }

    fn shared_for(&self, connection: &Connection) -> Result<Arc<Shared>, UpstreamError> {
        let now = Instant::now();
        let mut map = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(connection) {
            c.last_used = now;
            return Ok(Arc::clone(&c.link));
        }
        map.retain(|_, c| {
            Arc::strong_count(&c.link) > 1 || now.duration_since(c.last_used) < IDLE_EVICTION
        });
        let client = if connection.tls.is_default() {
            self.default_client.clone()
        } else {
            tls_client(self.egress, &connection.tls)?
        };
        let oauth = match &connection.auth {
            UpstreamAuth::OAuth(cfg) => Some(Arc::new(TokenSource {
                config: cfg.clone(),
                // The token endpoint is an identity provider, not the upstream:
                // its certificate is checked against the usual roots.
                client: self.default_client.clone(),
                egress: self.egress,
                timeout: self.token_timeout,
                current: tokio::sync::Mutex::new(None),
            })),
            _ => None,
        };
        let link = Arc::new(Shared { client, oauth });
        map.insert(
            connection.clone(),
            Cached {
                link: Arc::clone(&link),
                last_used: now,
            },
        );
        Ok(link)
    }
}

/// Marked sensitive so that HTTP libraries leave it out of their debug output.
fn sensitive(value: &str) -> Result<HeaderValue, UpstreamError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| UpstreamError::Credentials {
        reason: "a credential is not a valid header value".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A client that trusts only the gateway's CA bundle (when given) and
/// presents its client certificate (when given).
fn tls_client(egress: egress::Policy, tls: &UpstreamTls) -> Result<reqwest::Client, UpstreamError> {
    let invalid = |reason: String| UpstreamError::Credentials { reason };
    let mut builder = http::client_builder(egress);
    if let Some(ca) = &tls.ca_certificate {
        builder = builder.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|e| invalid(format!("ca_certificate: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        builder = builder.identity(identity(cert, key.expose()).map_err(invalid)?);
    }
    builder
        .build()
        .map_err(|e| invalid(format!("cannot build the TLS client: {e}")))
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4): one cached access token per
/// gateway, fetched again shortly before it expires or after the upstream
/// rejects it.
pub struct TokenSource {
    config: OAuthClient,
    client: reqwest::Client,
    /// The client's resolver checks names; IP literals are checked here.
    egress: egress::Policy,
    timeout: Duration,
    /// An async lock: concurrent callers wait for one fetch instead of each
    /// asking the token endpoint.
    current: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    header: HeaderValue,
    refresh_at: Instant,
}

/// Without `expires_in` the server did not say; refetch on this schedule.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

impl TokenSource {
    /// `Authorization` for the next request.
    pub async fn header(&self) -> Result<HeaderValue, UpstreamError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.header.clone());
        }
        let token = self.fetch().await?;
        let header = token.header.clone();
        *current = Some(token);
        Ok(header)
    }

    /// Forgets `rejected` (an upstream answered 401 to it) so the next
    /// request fetches a new token; a newer token is kept.
    pub async fn reject(&self, rejected: &HeaderValue) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.header == rejected) {
            *current = None;
        }
    }

    async fn fetch(&self) -> Result<Token, UpstreamError> {
        let failed = |reason: String| UpstreamError::Credentials {
            reason: format!(
                "OAuth token request to {} failed: {reason}",
                self.config.token_url
            ),
        };
        let url = reqwest::Url::parse(&self.config.token_url).map_err(|e| failed(e.to_string()))?;
        self.egress
            .check_host(url.host_str().unwrap_or_default())
            .map_err(|e| failed(format!("refused by the SSRF guard: {e}")))?;
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", self.config.client_id.clone()),
            (
                "client_secret",
                self.config.client_secret.expose().to_owned(),
            ),
        ];
        if !self.config.scopes.is_empty() {
            form.push(("scope", self.config.scopes.join(" ")));
        }
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| failed(http::describe(e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| failed(http::describe(e)))?;
        if !status.is_success() {
            // RFC 6749 §5.2: `error` and `error_description` say why; the
            // rest of the body is not echoed (it might hold anything).
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?.as_str()?.to_owned();
                    Some(match v.get("error_description").and_then(|d| d.as_str()) {
                        Some(d) => format!("{e}: {d}"),
                        None => e,
                    })
                })
                .unwrap_or_default();
            return Err(failed(format!("HTTP {} {why}", status.as_u16())));
        }
        #[derive(serde::Deserialize)]
        struct Grant {
            access_token: String,
            token_type: Option<String>,
            expires_in: Option<f64>,
        }
        let grant: Grant =
            serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))?;
        if grant
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(failed(format!(
                "token_type {:?} is not supported (only Bearer)",
                grant.token_type.unwrap_or_default()
            )));
        }
        let lifetime = grant
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_LIFETIME, |s| {
                Duration::from_secs_f64(s.min(86_400.0 * 365.0))
            });
        // Refresh ahead of expiry: a fifth of the lifetime, at most a minute,
        // so a request is never sent with a token about to lapse in flight.
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        tracing::debug!(token_url = %self.config.token_url, lifetime_s = lifetime.as_secs(), "fetched an upstream OAuth access token");
        Ok(Token {
            header: sensitive(&format!("Bearer {}", grant.access_token))?,
            refresh_at: Instant::now() + lifetime - margin,
        })
    }
}
