//! The TOML config file as written by an operator. Unknown keys are errors:
//! a typo must not silently fall back to a default.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{AuthMode, LogFormat};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub io_threads: Option<usize>,
    pub database_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub max_body_bytes: Option<usize>,
    pub upstream_timeout: Option<f64>,
    pub shutdown_timeout: Option<f64>,
    pub tool_name_separator: Option<String>,
    pub session_idle_timeout: Option<f64>,
    pub upstream_idle_validation: Option<f64>,
    pub health_check_interval: Option<f64>,
    pub health_failure_threshold: Option<u32>,
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_hosts: Option<Vec<String>>,
    pub auth: Option<AuthMode>,
    pub jwt_secret: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwt_audience: Option<Vec<String>>,
    pub jwt_issuer: Option<Vec<String>>,
    pub admin_token_file: Option<PathBuf>,
    pub public_url: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub passthrough_headers: Option<Vec<String>>,
    pub max_json_depth: Option<usize>,
    pub max_inflight_per_session: Option<usize>,
    pub max_inflight_per_principal: Option<usize>,
    pub allow_private_upstreams: Option<bool>,
    /// The key itself is deliberately not accepted here: config files get
    /// copied around; use SWITCHYARD_SECRET_KEY or the key file.
    pub secret_key_file: Option<PathBuf>,
    #[serde(default)]
    pub gateways: Vec<FileGateway>,
}

/// A gateway declared in the file; same fields as `POST /gateways`.
/// (`deny_unknown_fields` does not work with `flatten`; `unknown` collects
/// what no field took, and any key there is refused.)
#[derive(Debug, Deserialize)]
pub struct FileGateway {
    pub name: String,
    pub url: Option<String>,
    pub transport: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Downstream headers forwarded to this gateway; absent means the global default.
    pub passthrough_headers: Option<Vec<String>>,
    /// Upstream credentials and TLS, as in the API. The file then holds
    /// secrets in plain text: keep it owner-readable, or register through the API.
    #[serde(flatten)]
    pub credentials: crate::catalog::credentials::CredentialFields,
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, toml::Value>,
}
