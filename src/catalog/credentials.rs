//! How the gateway authenticates to an upstream, and whom it trusts there:
//! the credential and TLS parts of a [`super::Connection`].
//!
//! The API spells these with ContextForge's field names (`auth_type`,
//! `auth_token`, `auth_headers`, `oauth_config`, `ca_certificate`, …) so that
//! its users' scripts keep working. Secrets live in [`Secret`]s: never
//! printed, masked in API answers, encrypted in the database.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::FieldError;
use crate::secrets::{Secret, MASK};

/// Credentials the gateway presents to one upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpstreamAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// `Authorization: Basic …`.
    Basic { username: String, password: Secret },
    /// Fixed headers, e.g. `X-API-Key`.
    Headers { headers: Vec<AuthHeader> },
    /// A query parameter added to every request URL (and kept out of logs).
    QueryParam { key: String, value: Secret },
    /// OAuth 2.0 client credentials grant: a token fetched from `token_url`,
    /// cached, and fetched again shortly before it expires.
    #[serde(rename = "oauth")]
    OAuth(OAuthClient),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthHeader {
    pub name: String,
    pub value: Secret,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
}

/// TLS towards one upstream: whom to trust, and which client certificate
/// to present (mTLS). PEM text as given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// When set, the only trust anchors for this upstream (pinned: a public
    /// CA cannot vouch for it).
    pub ca_certificate: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<Secret>,
}

impl UpstreamTls {
    pub fn is_default(&self) -> bool {
        *self == UpstreamTls::default()
    }
}

/// Headers the gateway itself sets per session or request; credentials may
/// not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "mcp-session-id",
    "mcp-protocol-version",
    "content-type",
    "content-length",
    "accept",
    "host",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "last-event-id",
];

impl UpstreamAuth {
    /// ContextForge's name for the kind, as `auth_type` takes it.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            UpstreamAuth::None => None,
            UpstreamAuth::Bearer { .. } => Some("bearer"),
            UpstreamAuth::Basic { .. } => Some("basic"),
            UpstreamAuth::Headers { .. } => Some("authheaders"),
            UpstreamAuth::QueryParam { .. } => Some("query_param"),
            UpstreamAuth::OAuth(_) => Some("oauth"),
        }
    }

    /// The API's view: every secret masked, every other field as given.
    pub fn to_api(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        out.insert("authType".into(), json!(self.kind()));
        match self {
            UpstreamAuth::None => {}
            UpstreamAuth::Bearer { .. } => {
                out.insert("authToken".into(), json!(MASK));
            }
            UpstreamAuth::Basic { username, .. } => {
                out.insert("authUsername".into(), json!(username));
                out.insert("authPassword".into(), json!(MASK));
            }
            UpstreamAuth::Headers { headers } => {
                out.insert(
                    "authHeaders".into(),
                    headers
                        .iter()
                        .map(|h| json!({"key": h.name, "value": MASK}))
                        .collect(),
                );
            }
            UpstreamAuth::QueryParam { key, .. } => {
                out.insert("authQueryParamKey".into(), json!(key));
                out.insert("authQueryParamValue".into(), json!(MASK));
            }
            UpstreamAuth::OAuth(o) => {
                out.insert(
                    "oauthConfig".into(),
                    json!({
                        "grant_type": "client_credentials",
                        "token_url": o.token_url,
                        "client_id": o.client_id,
                        "client_secret": MASK,
                        "scopes": o.scopes,
                    }),
                );
            }
        }
        out
    }
}

/// The credential fields of a gateway create or update body, as sent.
/// camelCase aliases accept a gateway read back from `GET /gateways`.
#[derive(Debug, Default, Deserialize)]
pub struct CredentialFields {
    #[serde(default, alias = "authType", deserialize_with = "present")]
    pub auth_type: Option<Option<String>>,
    #[serde(alias = "authToken")]
    pub auth_token: Option<String>,
    #[serde(alias = "authUsername")]
    pub auth_username: Option<String>,
    #[serde(alias = "authPassword")]
    pub auth_password: Option<String>,
    #[serde(alias = "authHeaders")]
    pub auth_headers: Option<Vec<HeaderField>>,
    /// ContextForge's older single-header form.
    #[serde(alias = "authHeaderKey")]
    pub auth_header_key: Option<String>,
    #[serde(alias = "authHeaderValue")]
    pub auth_header_value: Option<String>,
    #[serde(alias = "authQueryParamKey")]
    pub auth_query_param_key: Option<String>,
    #[serde(alias = "authQueryParamValue")]
    pub auth_query_param_value: Option<String>,
    #[serde(alias = "oauthConfig")]
    pub oauth_config: Option<Value>,
    #[serde(default, alias = "caCertificate", deserialize_with = "present")]
    pub ca_certificate: Option<Option<String>>,
    #[serde(default, alias = "clientCert", deserialize_with = "present")]
    pub client_cert: Option<Option<String>>,
    #[serde(default, alias = "clientKey", deserialize_with = "present")]
    pub client_key: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
pub struct HeaderField {
    pub key: String,
    pub value: String,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A secret as sent: the mask (echoed back from a read) keeps `current`.
fn secret(
    field: &'static str,
    sent: Option<String>,
    current: Option<&Secret>,
) -> Result<Secret, FieldError> {
    match sent {
        Some(s) if s == MASK => current.cloned().ok_or_else(|| {
            FieldError::new(field, "\"*****\" keeps a stored secret, and none is stored")
        }),
        Some(s) if !s.is_empty() => Ok(Secret::new(s)),
        _ => Err(FieldError::new(field, "field required for this auth_type")),
    }
}

fn required(field: &'static str, v: Option<String>) -> Result<String, FieldError> {
    v.map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FieldError::new(field, "field required for this auth_type"))
}

impl CredentialFields {
    fn names_auth(&self) -> bool {
        self.auth_token.is_some()
            || self.auth_username.is_some()
            || self.auth_password.is_some()
            || self.auth_headers.is_some()
            || self.auth_header_key.is_some()
            || self.auth_header_value.is_some()
            || self.auth_query_param_key.is_some()
            || self.auth_query_param_value.is_some()
            || self.oauth_config.is_some()
    }

    /// The credentials these fields describe, given the stored ones; `None`
    /// when the body says nothing about credentials (unchanged).
    pub fn resolve_auth(self, current: &UpstreamAuth) -> Result<Option<UpstreamAuth>, FieldError> {
        let kind = match &self.auth_type {
            Some(Some(t)) => t.trim().to_ascii_lowercase(),
            Some(None) => String::new(),
            None if !self.names_auth() => return Ok(None),
            None => match current.kind() {
                Some(k) => k.to_owned(),
                None => return Err(FieldError::new(
                    "auth_type",
                    "required with auth fields: bearer, basic, authheaders, query_param or oauth",
                )),
            },
        };
        let auth = match kind.as_str() {
            "" | "none" => UpstreamAuth::None,
            "bearer" => UpstreamAuth::Bearer {
                token: secret(
                    "auth_token",
                    self.auth_token,
                    match current {
                        UpstreamAuth::Bearer { token } => Some(token),
                        _ => None,
                    },
                )?,
            },
            "basic" => {
                let stored = match current {
                    UpstreamAuth::Basic { password, .. } => Some(password),
                    _ => None,
                };
                let username = required("auth_username", self.auth_username)?;
                if username.contains(':') {
                    return Err(FieldError::new("auth_username", "must not contain ':'"));
                }
                UpstreamAuth::Basic {
                    username,
                    password: secret("auth_password", self.auth_password, stored)?,
                }
            }
            "authheaders" | "headers" | "authheader" => {
                let stored = match current {
                    UpstreamAuth::Headers { headers } => headers.as_slice(),
                    _ => &[],
                };
                let mut sent = self.auth_headers.unwrap_or_default();
                if let Some(key) = self.auth_header_key {
                    sent.push(HeaderField {
                        key,
                        value: self.auth_header_value.unwrap_or_default(),
                    });
                }
                if sent.is_empty() {
                    return Err(FieldError::new(
                        "auth_headers",
                        "at least one {\"key\", \"value\"} pair required for authheaders",
                    ));
                }
                let mut headers: Vec<AuthHeader> = Vec::with_capacity(sent.len());
                for h in sent {
                    let name = h.key.trim().to_ascii_lowercase();
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(FieldError::new(
                            "auth_headers",
                            format!("{:?} is not a valid header name", h.key),
                        ));
                    }
                    if RESERVED_HEADERS.contains(&name.as_str()) {
                        return Err(FieldError::new(
                            "auth_headers",
                            format!("{name} is set by the gateway itself"),
                        ));
                    }
                    if headers.iter().any(|x| x.name == name) {
                        return Err(FieldError::new(
                            "auth_headers",
                            format!("{name} given twice"),
                        ));
                    }
                    let old = stored.iter().find(|x| x.name == name).map(|x| &x.value);
                    let value = secret("auth_headers", Some(h.value), old)?;
                    if http::HeaderValue::from_str(value.expose()).is_err() {
                        return Err(FieldError::new(
                            "auth_headers",
                            format!("the value of {name} is not a valid header value"),
                        ));
                    }
                    headers.push(AuthHeader { name, value });
                }
                UpstreamAuth::Headers { headers }
            }
            "query_param" | "queryparam" => {
                let stored = match current {
                    UpstreamAuth::QueryParam { value, .. } => Some(value),
                    _ => None,
                };
                UpstreamAuth::QueryParam {
                    key: required("auth_query_param_key", self.auth_query_param_key)?,
                    value: secret("auth_query_param_value", self.auth_query_param_value, stored)?,
                }
            }
            "oauth" => {
                let stored = match current {
                    UpstreamAuth::OAuth(o) => Some(o),
                    _ => None,
                };
                UpstreamAuth::OAuth(oauth_client(self.oauth_config, stored)?)
            }
            other => {
                return Err(FieldError::new(
                    "auth_type",
                    format!(
                        "unknown auth_type {other:?}; expected bearer, basic, authheaders, query_param or oauth"
                    ),
                ))
            }
        };
        Ok(Some(auth))
    }

    /// The TLS settings these fields describe, given the stored ones; `None`
    /// when the body names no TLS field. `null` or `""` removes one.
    pub fn resolve_tls(
        &mut self,
        current: &UpstreamTls,
    ) -> Result<Option<UpstreamTls>, FieldError> {
        if self.ca_certificate.is_none() && self.client_cert.is_none() && self.client_key.is_none()
        {
            return Ok(None);
        }
        let text = |v: Option<Option<String>>, old: &Option<String>| match v {
            None => old.clone(),
            Some(v) => v.filter(|s| !s.trim().is_empty()),
        };
        let client_key = match self.client_key.take() {
            None => current.client_key.clone(),
            Some(None) => None,
            Some(Some(s)) if s.trim().is_empty() => None,
            Some(Some(s)) if s == MASK => Some(current.client_key.clone().ok_or_else(|| {
                FieldError::new(
                    "client_key",
                    "\"*****\" keeps a stored key, and none is stored",
                )
            })?),
            Some(Some(s)) => Some(Secret::new(s)),
        };
        let tls = UpstreamTls {
            ca_certificate: text(self.ca_certificate.take(), &current.ca_certificate),
            client_cert: text(self.client_cert.take(), &current.client_cert),
            client_key,
        };
        validate_tls(&tls)?;
        Ok(Some(tls))
    }
}

fn oauth_client(
    config: Option<Value>,
    stored: Option<&OAuthClient>,
) -> Result<OAuthClient, FieldError> {
    const F: &str = "oauth_config";
    let Some(Value::Object(cfg)) = config else {
        return match (config, stored) {
            (None, Some(s)) => Ok(s.clone()),
            _ => Err(FieldError::new(
                F,
                "an object with token_url, client_id, client_secret (and optional scopes) required for oauth",
            )),
        };
    };
    let text = |k: &str| cfg.get(k).and_then(Value::as_str).map(str::to_owned);
    match text("grant_type").as_deref() {
        None | Some("client_credentials") => {}
        Some(other) => {
            return Err(FieldError::new(
                F,
                format!(
                "grant_type {other:?} is not supported: the gateway has no user to send through \
                     an authorization code flow; use client_credentials"
            ),
            ))
        }
    }
    let token_url = text("token_url").ok_or_else(|| FieldError::new(F, "token_url required"))?;
    let parsed = reqwest::Url::parse(token_url.trim())
        .map_err(|e| FieldError::new(F, format!("token_url is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(FieldError::new(
            F,
            "token_url must be an http(s) URL with a host",
        ));
    }
    let client_id = text("client_id")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| FieldError::new(F, "client_id required"))?;
    let client_secret = match text("client_secret") {
        Some(s) if s == MASK => stored.map(|s| s.client_secret.clone()).ok_or_else(|| {
            FieldError::new(
                F,
                "client_secret \"*****\" keeps a stored secret, and none is stored",
            )
        })?,
        Some(s) if !s.is_empty() => Secret::new(s),
        _ => return Err(FieldError::new(F, "client_secret required")),
    };
    let scopes = match cfg.get("scopes").or_else(|| cfg.get("scope")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| FieldError::new(F, "scopes must be strings"))?,
        Some(_) => return Err(FieldError::new(F, "scopes must be a list of strings")),
    };
    Ok(OAuthClient {
        token_url: parsed.to_string(),
        client_id,
        client_secret,
        scopes,
    })
}

/// Parses the PEM now, so a bad certificate is a 422 at registration rather
/// than a failure on the first call.
fn validate_tls(tls: &UpstreamTls) -> Result<(), FieldError> {
    if let Some(ca) = &tls.ca_certificate {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes()).map_err(|e| {
            FieldError::new(
                "ca_certificate",
                format!("not a PEM certificate bundle: {e}"),
            )
        })?;
        if certs.is_empty() {
            return Err(FieldError::new(
                "ca_certificate",
                "no certificate found in the PEM text",
            ));
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (None, None) => Ok(()),
        (Some(cert), Some(key)) => identity(cert, key.expose())
            .map(|_| ())
            .map_err(|e| FieldError::new("client_cert", e)),
        (Some(_), None) => Err(FieldError::new(
            "client_key",
            "required with client_cert (mTLS)",
        )),
        (None, Some(_)) => Err(FieldError::new(
            "client_cert",
            "required with client_key (mTLS)",
        )),
    }
}

/// The client identity for mTLS from a PEM certificate (chain) and key.
pub fn identity(cert: &str, key: &str) -> Result<reqwest::Identity, String> {
    let mut pem = String::with_capacity(cert.len() + key.len() + 1);
    pem.push_str(key.trim());
    pem.push('\n');
    pem.push_str(cert.trim());
    pem.push('\n');
    reqwest::Identity::from_pem(pem.as_bytes())
        .map_err(|e| format!("client certificate and key do not form a usable identity: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> CredentialFields {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn masked_secrets_round_trip_and_cannot_be_invented() {
        let auth = fields(json!({"auth_type": "bearer", "auth_token": "t0k"}))
            .resolve_auth(&UpstreamAuth::None)
            .unwrap()
            .unwrap();
        assert_eq!(
            auth,
            UpstreamAuth::Bearer {
                token: Secret::new("t0k")
            }
        );
        let api = Value::Object(auth.to_api());
        assert!(!api.to_string().contains("t0k"));
        // A read sent back unchanged keeps the secret.
        let again = fields(api).resolve_auth(&auth).unwrap().unwrap();
        assert_eq!(again, auth);
        // The mask is never stored as if it were the secret.
        assert!(
            fields(json!({"auth_type": "bearer", "auth_token": "*****"}))
                .resolve_auth(&UpstreamAuth::None)
                .is_err()
        );
    }

    #[test]
    fn every_kind_validates_its_fields() {
        let none = UpstreamAuth::None;
        assert!(fields(json!({})).resolve_auth(&none).unwrap().is_none());
        assert_eq!(
            fields(json!({"auth_type": null}))
                .resolve_auth(&none)
                .unwrap(),
            Some(UpstreamAuth::None)
        );
        let err = fields(json!({"auth_type": "basic", "auth_username": "u"}))
            .resolve_auth(&none)
            .unwrap_err();
        assert_eq!(err.field, "auth_password");
        let err = fields(json!({"auth_type": "authheaders", "auth_headers": [{"key": "Mcp-Session-Id", "value": "x"}]}))
            .resolve_auth(&none)
            .unwrap_err();
        assert!(err.reason.contains("set by the gateway"));
        let h = fields(json!({"auth_type": "authheaders", "auth_header_key": "X-Api-Key", "auth_header_value": "k"}))
            .resolve_auth(&none)
            .unwrap()
            .unwrap();
        assert_eq!(h.kind(), Some("authheaders"));
        let err = fields(json!({"auth_type": "oauth", "oauth_config": {"grant_type": "authorization_code", "token_url": "http://a/t", "client_id": "c", "client_secret": "s"}}))
            .resolve_auth(&none)
            .unwrap_err();
        assert!(err.reason.contains("client_credentials"));
        let o = fields(json!({"auth_type": "oauth", "oauth_config": {"token_url": "http://a/t", "client_id": "c", "client_secret": "s", "scopes": "a b"}}))
            .resolve_auth(&none)
            .unwrap()
            .unwrap();
        let UpstreamAuth::OAuth(o) = o else { panic!() };
        assert_eq!(o.scopes, vec!["a", "b"]);
        assert_eq!(
            fields(json!({"auth_type": "kerberos"}))
                .resolve_auth(&none)
                .unwrap_err()
                .field,
            "auth_type"
        );
        // Rotating a token without restating the type.
        let b = UpstreamAuth::Bearer {
            token: Secret::new("old"),
        };
        assert_eq!(
            fields(json!({"auth_token": "new"}))
                .resolve_auth(&b)
                .unwrap(),
            Some(UpstreamAuth::Bearer {
                token: Secret::new("new")
            })
        );
    }

    #[test]
    fn tls_fields_are_parsed_up_front() {
        let mut f = fields(json!({"ca_certificate": "not pem"}));
        assert_eq!(
            f.resolve_tls(&UpstreamTls::default()).unwrap_err().field,
            "ca_certificate"
        );
        let mut f = fields(json!({"client_key": "k"}));
        assert_eq!(
            f.resolve_tls(&UpstreamTls::default()).unwrap_err().field,
            "client_cert"
        );
        let mut f = fields(json!({"ca_certificate": null}));
        assert_eq!(
            f.resolve_tls(&UpstreamTls::default()).unwrap(),
            Some(UpstreamTls::default())
        );
    }
}
