//! Settings: command-line flags and `SWITCHYARD_*` environment variables
//! (both through clap), over an optional TOML file, over defaults that run on
//! a laptop. Only validated [`Settings`] leave this module.
//!
//! Precedence, highest first: flag, environment variable, config file, default.

mod file;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::secrets::Secret;
pub use file::{FileConfig, FileGateway};

use crate::catalog::{Connection, GatewaySpec, Transport};

/// Validated settings the gateway runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    /// Threads serving client connections, each with its own event loop
    /// (see `server.rs`).
    pub io_threads: usize,
    pub database_url: String,
    pub log_format: LogFormat,
    pub config_file: Option<PathBuf>,
    /// Gateways declared in the config file, registered (or updated) at start.
    pub gateways: Vec<GatewaySpec>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// Joins a gateway's slug and a tool's name into the exposed tool name.
    pub tool_name_separator: String,
    pub lifecycle: Lifecycle,
    pub security: Security,
}

/// Who may reach the gateway, and what of a request may reach an upstream.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Accepted `Origin` values; empty means loopback origins only.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` names accepted while bound to loopback.
    pub allowed_hosts: Vec<String>,
    pub auth: AuthSettings,
    /// Downstream request headers forwarded upstream for gateways that set no
    /// list of their own (lower-cased, validated; never the always-stripped ones).
    pub passthrough_headers: Vec<String>,
    /// Whether gateways may be registered at private, loopback or unique-local
    /// addresses (link-local and cloud-metadata addresses are refused regardless).
    pub allow_private_upstreams: bool,
    /// Key for upstream credentials at rest (32 bytes, hex or base64).
    pub secret_key: Option<Secret>,
    /// Where the key is read from when `secret_key` is unset, and written to
    /// on a first start; `None` for an in-memory catalog (a per-process key).
    pub secret_key_file: Option<PathBuf>,
}

/// How downstream callers prove who they are.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// HS256 shared secret for JWTs.
    pub jwt_secret: Option<Secret>,
    /// JWKS file with the public keys of RS256/ES256 JWT issuers.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of an identity provider, fetched at start and kept fresh.
    pub jwks_url: Option<reqwest::Url>,
    /// Accepted `aud` values; empty means `aud` is not checked.
    pub jwt_audience: Vec<String>,
    /// Accepted `iss` values; empty means `iss` is not checked.
    pub jwt_issuer: Vec<String>,
    /// Where the admin token minted on a first start is written; `None` for
    /// an in-memory catalog with no file configured (printed only).
    pub admin_token_file: Option<PathBuf>,
    /// The gateway's external base URL (scheme, host, port), for the OAuth
    /// protected-resource metadata; `None` derives it from each request's `Host`.
    pub public_url: Option<reqwest::Url>,
    /// OAuth authorization servers advertised in the protected-resource metadata.
    pub authorization_servers: Vec<String>,
}

/// `--auth`: whether requests must carry a bearer token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer tokens required: API tokens, and JWTs when a secret or JWKS is configured.
    #[default]
    Jwt,
    /// No authentication; only accepted while bound to a loopback address.
    None,
}

/// When sessions are checked, expired and gateways probed.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// A downstream session idle this long is ended as if DELETEd.
    pub session_idle_timeout: Duration,
    /// An upstream session idle this long is probed before reuse.
    pub upstream_idle_validation: Duration,
    /// How often every enabled gateway is health-checked.
    pub health_check_interval: Duration,
    /// Consecutive failed checks after which a gateway is marked unreachable.
    pub health_failure_threshold: u32,
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted downstream request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Deepest accepted nesting of JSON arrays/objects in a request body.
    pub max_json_depth: usize,
    /// Requests (POSTs) one downstream session may have in flight; more get 429.
    pub max_inflight_per_session: usize,
    /// Requests one principal may have in flight across its sessions; more get 429.
    pub max_inflight_per_principal: usize,
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    /// Upper bound for one upstream request (initialize, tools/call, ...).
    pub upstream_request: Duration,
    /// Upper bound for an upstream `initialize` handshake.
    pub upstream_connect: Duration,
    /// Grace each upstream session gets to close (DELETE) before its task is aborted.
    pub shutdown: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// What the command line and environment said; `None` where they said nothing.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Binding anything but loopback exposes the gateway to the network.
    #[arg(long, env = "SWITCHYARD_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "SWITCHYARD_PORT")]
    pub port: Option<u16>,
    /// Threads that serve client connections, each running its own event loop; a connection
    /// stays on one [default: the number of CPUs].
    #[arg(long, env = "SWITCHYARD_IO_THREADS")]
    pub io_threads: Option<usize>,
    /// Catalog database. `sqlite://PATH` (created if missing) [default: sqlite://switchyard.db].
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML config file; may declare `[[gateways]]` to register at start. Flags and env override it.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log line format [default: text]. Filter with RUST_LOG or SWITCHYARD_LOG (e.g. "info,switchyard=debug").
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest downstream request body in bytes; larger bodies get HTTP 413 [default: 4194304].
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds one upstream request may take before the caller gets a timeout error [default: 60].
    #[arg(long, env = "SWITCHYARD_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<f64>,
    /// Seconds each upstream session gets to close at shutdown before it is aborted [default: 5].
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<f64>,
    /// Separator between a gateway's slug and a tool's name in exposed names [default: "-"].
    #[arg(long, env = "SWITCHYARD_TOOL_NAME_SEPARATOR")]
    pub tool_name_separator: Option<String>,
    /// Seconds a downstream session may stay idle before it is ended [default: 1800].
    #[arg(long, env = "SWITCHYARD_SESSION_IDLE_TIMEOUT")]
    pub session_idle_timeout: Option<f64>,
    /// Seconds an upstream session may stay idle before it is probed (ping) on reuse [default: 60].
    #[arg(long, env = "SWITCHYARD_UPSTREAM_IDLE_VALIDATION")]
    pub upstream_idle_validation: Option<f64>,
    /// Seconds between health checks of every enabled gateway [default: 60].
    #[arg(long, env = "SWITCHYARD_HEALTH_CHECK_INTERVAL")]
    pub health_check_interval: Option<f64>,
    /// Origins allowed on the MCP endpoints, comma-separated ("*" for any). Default: loopback origins only.
    #[arg(long, env = "SWITCHYARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Extra Host names accepted while bound to loopback (DNS-rebinding protection), comma-separated.
    #[arg(long, env = "SWITCHYARD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Failed health checks in a row before a gateway is marked unreachable [default: 3].
    #[arg(long, env = "SWITCHYARD_HEALTH_FAILURE_THRESHOLD")]
    pub health_failure_threshold: Option<u32>,
    /// Downstream authentication [default: jwt]: "jwt" requires a bearer token (an API token,
    /// or a JWT when --jwt-secret, --jwks-file or --jwks-url is set); "none" is refused unless bound to loopback.
    #[arg(long, env = "SWITCHYARD_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// HS256 secret for JWT bearer tokens (at least 32 bytes). Prefer the environment variable
    /// over the flag: flags are visible to other local users.
    #[arg(long, env = "SWITCHYARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWKS file (JSON) with the public keys of RS256/ES256 JWT issuers; read at start.
    #[arg(long, env = "SWITCHYARD_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of an identity provider (e.g. https://idp.example.com/.well-known/jwks.json):
    /// fetched at start, every 10 minutes, and when a token names an unknown key id.
    #[arg(long, env = "SWITCHYARD_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Accepted JWT audiences (`aud`), comma-separated. Default: `aud` is not checked.
    #[arg(long, env = "SWITCHYARD_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Option<Vec<String>>,
    /// Accepted JWT issuers (`iss`), comma-separated. Default: `iss` is not checked.
    #[arg(long, env = "SWITCHYARD_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Option<Vec<String>>,
    /// Where the admin API token minted on a first start (empty token store) is written,
    /// readable by the owner only (mode 0600). Default: next to the SQLite database,
    /// `<database name>-admin.token` (./switchyard-admin.token for the default database).
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The gateway's external base URL (e.g. https://mcp.example.com), used in the OAuth
    /// protected-resource metadata. Default: http:// and the request's Host.
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// OAuth authorization server advertised in /.well-known/oauth-protected-resource
    /// (repeatable or comma-separated).
    #[arg(
        long = "authorization-server",
        env = "SWITCHYARD_AUTHORIZATION_SERVERS",
        value_delimiter = ','
    )]
    pub authorization_servers: Option<Vec<String>>,
    /// Downstream request headers forwarded to upstreams whose gateway sets no list of its own,
    /// comma-separated. Authorization, Cookie, Host, Mcp-Session-Id and hop-by-hop headers never are.
    #[arg(long, env = "SWITCHYARD_PASSTHROUGH_HEADERS", value_delimiter = ',')]
    pub passthrough_headers: Option<Vec<String>>,
    /// Deepest nesting of JSON arrays/objects accepted in a request body, 2 to 128 [default: 64].
    #[arg(long, env = "SWITCHYARD_MAX_JSON_DEPTH")]
    pub max_json_depth: Option<usize>,
    /// Requests one MCP session may have in flight; more get 429 with Retry-After [default: 32].
    #[arg(long, env = "SWITCHYARD_MAX_INFLIGHT_PER_SESSION")]
    pub max_inflight_per_session: Option<usize>,
    /// Requests one principal (token or JWT subject) may have in flight; more get 429 [default: 256].
    #[arg(long, env = "SWITCHYARD_MAX_INFLIGHT_PER_PRINCIPAL")]
    pub max_inflight_per_principal: Option<usize>,
    /// Allow registering gateways at private, loopback or unique-local addresses through the API.
    /// Link-local and cloud-metadata addresses are refused regardless.
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_upstreams: Option<bool>,
    /// Key that encrypts upstream credentials in the database (AES-256-GCM): 32 bytes as 64 hex
    /// digits or base64, e.g. from `openssl rand -hex 32`. Prefer the environment variable over
    /// the flag: flags are visible to other local users. Overrides --secret-key-file.
    #[arg(long, env = "SWITCHYARD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// File holding that key. Default: next to the SQLite database, `<database name>-secret.key`
    /// (./switchyard-secret.key), generated with mode 0600 on a first start without stored
    /// credentials. Without its key, a database holding credentials is refused at start.
    #[arg(long, env = "SWITCHYARD_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
}

impl Settings {
    /// Merges flags/env over the config file over defaults, and validates.
    pub fn load(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    pub fn merge(args: &ServeArgs, file: FileConfig) -> Result<Settings, ConfigError> {
        let secs = |field: &str, v: f64| -> Result<Duration, ConfigError> {
            Duration::try_from_secs_f64(v).map_err(|_| ConfigError::Invalid {
                field: field.to_owned(),
                reason: format!("{v} is not a non-negative number of seconds"),
            })
        };
        let upstream_request = secs(
            "upstream_timeout",
            args.upstream_timeout
                .or(file.upstream_timeout)
                .unwrap_or(60.0),
        )?;
        let shutdown = secs(
            "shutdown_timeout",
            args.shutdown_timeout
                .or(file.shutdown_timeout)
                .unwrap_or(5.0),
        )?;
        let lifecycle = Lifecycle {
            session_idle_timeout: secs(
                "session_idle_timeout",
                args.session_idle_timeout
                    .or(file.session_idle_timeout)
                    .unwrap_or(1800.0),
            )?,
            upstream_idle_validation: secs(
                "upstream_idle_validation",
                args.upstream_idle_validation
                    .or(file.upstream_idle_validation)
                    .unwrap_or(60.0),
            )?,
            health_check_interval: secs(
                "health_check_interval",
                args.health_check_interval
                    .or(file.health_check_interval)
                    .unwrap_or(60.0),
            )?,
            health_failure_threshold: args
                .health_failure_threshold
                .or(file.health_failure_threshold)
                .unwrap_or(3)
                .max(1),
        };
        if lifecycle.health_check_interval < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                field: "health_check_interval".into(),
                reason: "must be at least 0.01 seconds".into(),
            });
        }
        let separator = args
            .tool_name_separator
            .clone()
            .or(file.tool_name_separator)
            .unwrap_or_else(|| "-".to_owned());
        if separator.is_empty() || separator.len() > 8 {
            return Err(ConfigError::Invalid {
                field: "tool_name_separator".into(),
                reason: "must be 1 to 8 characters".into(),
            });
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(4 * 1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "max_body_bytes".into(),
                reason: "must be at least 1024".into(),
            });
        }
        let limits = Limits {
            max_body_bytes,
            max_json_depth: json_depth(args.max_json_depth.or(file.max_json_depth).unwrap_or(64))?,
            max_inflight_per_session: at_least(
                "max_inflight_per_session",
                args.max_inflight_per_session
                    .or(file.max_inflight_per_session)
                    .unwrap_or(32),
                1,
            )?,
            max_inflight_per_principal: at_least(
                "max_inflight_per_principal",
                args.max_inflight_per_principal
                    .or(file.max_inflight_per_principal)
                    .unwrap_or(256),
                1,
            )?,
        };
        let host = args
            .host
            .or(file.host)
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let database_url = args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| "sqlite://switchyard.db".to_owned());
        let secret_key_file = args
            .secret_key_file
            .clone()
            .or(file.secret_key_file)
            .or_else(|| sibling_file(&database_url, "secret.key"));
        let auth = AuthSettings {
            mode: args.auth.or(file.auth).unwrap_or_default(),
            jwt_secret: args.jwt_secret.clone().or(file.jwt_secret).map(Secret::new),
            jwks_file: args.jwks_file.clone().or(file.jwks_file),
            jwks_url: args
                .jwks_url
                .clone()
                .or(file.jwks_url)
                .map(|u| {
                    reqwest::Url::parse(u.trim())
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                        .ok_or_else(|| ConfigError::Invalid {
                            field: "jwks_url".into(),
                            reason: format!("{u:?} is not an http(s) URL"),
                        })
                })
                .transpose()?,
            jwt_audience: clean_list(args.jwt_audience.clone().or(file.jwt_audience)),
            jwt_issuer: clean_list(args.jwt_issuer.clone().or(file.jwt_issuer)),
            admin_token_file: args
                .admin_token_file
                .clone()
                .or(file.admin_token_file)
                .or_else(|| sibling_file(&database_url, "admin.token")),
            public_url: args
                .public_url
                .clone()
                .or(file.public_url)
                .map(|u| base_url("public_url", &u))
                .transpose()?,
            authorization_servers: clean_list(
                args.authorization_servers
                    .clone()
                    .or(file.authorization_servers),
            ),
        };
        // Without authentication anyone who reaches the port controls the
        // gateway (registers upstreams, calls every tool); on loopback that is
        // only this machine's users.
        if auth.mode == AuthMode::None && !host.is_loopback() {
            return Err(ConfigError::Invalid {
                field: "auth".into(),
                reason: format!(
                    "\"none\" is only accepted while bound to a loopback address, and host is {host}: \
                     anyone who can reach the port would control the gateway; use bearer tokens (--auth jwt)"
                ),
            });
        }
        if auth
            .jwt_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            return Err(ConfigError::Invalid {
                field: "jwt_secret".into(),
                reason: "must be at least 32 bytes (256 bits) for HS256".into(),
            });
        }
        for url in &auth.authorization_servers {
            base_url("authorization_servers", url)?;
        }
        let passthrough_headers = crate::passthrough::validate_names(
            &args
                .passthrough_headers
                .clone()
                .or(file.passthrough_headers)
                .unwrap_or_default(),
        )
        .map_err(|reason| ConfigError::Invalid {
            field: "passthrough_headers".into(),
            reason,
        })?;
        let mut gateways = Vec::with_capacity(file.gateways.len());
        for (i, g) in file.gateways.into_iter().enumerate() {
            let spec = g
                .into_spec()
                .map_err(|(field, reason)| ConfigError::Invalid {
                    field: format!("gateways[{i}].{field}"),
                    reason,
                })?;
            if gateways.iter().any(|s: &GatewaySpec| s.name == spec.name) {
                return Err(ConfigError::Invalid {
                    field: format!("gateways[{i}].name"),
                    reason: format!("duplicate gateway name {:?}", spec.name),
                });
            }
            gateways.push(spec);
        }
        let io_threads = match args.io_threads.or(file.io_threads) {
            Some(n) if !(1..=MAX_IO_THREADS).contains(&n) => {
                return Err(ConfigError::Invalid {
                    field: "io_threads".into(),
                    reason: format!("must be between 1 and {MAX_IO_THREADS}"),
                })
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_IO_THREADS)),
        };
        Ok(Settings {
            host,
            port: args.port.or(file.port).unwrap_or(4444),
            io_threads,
            database_url,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            config_file: args.config.clone(),
            gateways,
            limits,
            timeouts: Timeouts {
                upstream_request,
                upstream_connect: upstream_request.min(Duration::from_secs(30)),
                shutdown,
            },
            tool_name_separator: separator,
            lifecycle,
            security: Security {
                allowed_origins: clean_list(args.allowed_origins.clone().or(file.allowed_origins)),
                allowed_hosts: clean_list(args.allowed_hosts.clone().or(file.allowed_hosts)),
                auth,
                passthrough_headers,
                allow_private_upstreams: args
                    .allow_private_upstreams
                    .or(file.allow_private_upstreams)
                    .unwrap_or(false),
                secret_key: args.secret_key.clone().map(Secret::new),
                secret_key_file,
            },
        })
    }

    /// Defaults for tests and embedding: loopback, ephemeral port, in-memory catalog.
    pub fn for_tests() -> Settings {
        let args = ServeArgs {
            port: Some(0),
            database_url: Some("sqlite::memory:".into()),
            // Test upstreams listen on loopback.
            allow_private_upstreams: Some(true),
            ..ServeArgs::default()
        };
        // Defaults are valid by construction; fall back to field-by-field if that ever changes.
        Settings::merge(&args, FileConfig::default())
            .unwrap_or_else(|e| panic!("default settings invalid: {e}"))
    }
}

/// More threads than this would only be a typo: each holds a runtime and
/// its own keep-alive connections to every upstream.
const MAX_IO_THREADS: usize = 256;

/// serde_json refuses nesting beyond 128 levels on its own; a larger limit
/// would only turn our clear answer into a parse error.
fn json_depth(v: usize) -> Result<usize, ConfigError> {
    if !(2..=128).contains(&v) {
        return Err(ConfigError::Invalid {
            field: "max_json_depth".into(),
            reason: "must be between 2 and 128".into(),
        });
    }
    Ok(v)
}

fn at_least(field: &str, v: usize, min: usize) -> Result<usize, ConfigError> {
    if v < min {
        return Err(ConfigError::Invalid {
            field: field.to_owned(),
            reason: format!("must be at least {min}"),
        });
    }
    Ok(v)
}

/// An absolute http(s) URL without query or fragment; a trailing `/` is dropped.
fn base_url(field: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: field.to_owned(),
        reason,
    };
    let url = reqwest::Url::parse(raw.trim().trim_end_matches('/'))
        .map_err(|e| invalid(format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "{raw:?} must be an http(s) URL with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{raw:?} must not have a query or fragment"
        )));
    }
    Ok(url)
}

/// `<dir>/<database stem>-admin.token` for a file-backed SQLite catalog:
/// the token lives with the database it unlocks. `None` for an in-memory one.
/// `<database stem>-<suffix>` next to a SQLite database file; `None` for an
/// in-memory one.
fn sibling_file(database_url: &str, suffix: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.contains(":memory:") || database_url.contains("mode=memory") {
        return None;
    }
    let path = Path::new(path);
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    Some(path.with_file_name(format!("{stem}-{suffix}")))
}

fn clean_list(v: Option<Vec<String>>) -> Vec<String> {
    v.unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().trim_end_matches('/').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl FileConfig {
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

impl FileGateway {
    fn into_spec(self) -> Result<GatewaySpec, (String, String)> {
        if let Some(key) = self.unknown.keys().next() {
            return Err((key.clone(), "unknown field".to_owned()));
        }
        let transport = match self.transport.as_deref() {
            None => Transport::StreamableHttp,
            Some(t) => Transport::parse(t)
                .ok_or_else(|| ("transport".to_owned(), format!("unknown transport {t:?}")))?,
        };
        let connection = Connection::build(
            self.url.as_deref(),
            transport,
            self.command,
            self.args,
            self.env,
        )
        .and_then(|c| {
            let mut fields = self.credentials;
            let tls = fields.resolve_tls(&Default::default())?.unwrap_or_default();
            let auth = fields
                .resolve_auth(&Default::default())?
                .unwrap_or_default();
            c.with_credentials(auth, tls)
        })
        .map_err(|e| (e.field.to_owned(), e.reason))?;
        let mut spec = GatewaySpec::new(
            self.name,
            connection,
            self.description,
            self.tags.unwrap_or_default(),
        )
        .map_err(|e| (e.field.to_owned(), e.reason))?;
        spec.passthrough_headers = self
            .passthrough_headers
            .map(|h| crate::passthrough::validate_names(&h))
            .transpose()
            .map_err(|reason| ("passthrough_headers".to_owned(), reason))?;
        spec.declared = true;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let file: FileConfig = toml::from_str(
            r#"
            port = 9000
            host = "127.0.0.2"
            [[gateways]]
            name = "counter"
            url = "http://127.0.0.1:9100/mcp"
            "#,
        )
        .unwrap();
        let args = ServeArgs {
            port: Some(9001),
            ..Default::default()
        };
        let s = Settings::merge(&args, file).unwrap();
        assert_eq!(s.port, 9001);
        assert_eq!(s.host.to_string(), "127.0.0.2");
        assert_eq!(s.database_url, "sqlite://switchyard.db");
        assert_eq!(s.gateways.len(), 1);
        assert_eq!(
            s.gateways[0].connection.transport,
            Transport::StreamableHttp
        );
    }

    #[test]
    fn io_threads_default_to_the_cpus_and_refuse_zero_and_absurd_counts() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let s = Settings::merge(&ServeArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(s.io_threads, cpus.min(MAX_IO_THREADS));
        let file: FileConfig = toml::from_str("io_threads = 3").unwrap();
        assert_eq!(
            Settings::merge(&ServeArgs::default(), file)
                .unwrap()
                .io_threads,
            3
        );
        for bad in [0, MAX_IO_THREADS + 1] {
            let args = ServeArgs {
                io_threads: Some(bad),
                ..Default::default()
            };
            let err = Settings::merge(&args, FileConfig::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("io_threads: must be between 1 and"),
                "{err}"
            );
        }
    }

    #[test]
    fn auth_none_is_refused_off_loopback_and_the_token_file_follows_the_database() {
        let args = ServeArgs {
            auth: Some(AuthMode::None),
            host: Some(IpAddr::from([0, 0, 0, 0])),
            ..Default::default()
        };
        let err = Settings::merge(&args, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("auth:") && err.contains("loopback"),
            "{err}"
        );
        let args = ServeArgs {
            auth: Some(AuthMode::None),
            ..Default::default()
        };
        assert!(Settings::merge(&args, FileConfig::default()).is_ok());

        assert_eq!(
            sibling_file("sqlite://switchyard.db", "admin.token"),
            Some(PathBuf::from("switchyard-admin.token"))
        );
        assert_eq!(
            sibling_file("sqlite:///var/lib/sy/catalog.db?mode=rwc", "admin.token"),
            Some(PathBuf::from("/var/lib/sy/catalog-admin.token"))
        );
        assert_eq!(sibling_file("sqlite::memory:", "admin.token"), None);
        let short = ServeArgs {
            jwt_secret: Some("too short".into()),
            ..Default::default()
        };
        let err = Settings::merge(&short, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("jwt_secret"), "{err}");
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }

    #[test]
    fn authorization_servers_are_repeatable_and_comma_separated() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = Cli::try_parse_from([
            "switchyard",
            "--authorization-server",
            "https://a.example,https://b.example/",
            "--authorization-server",
            "https://c.example",
        ])
        .unwrap();
        let s = Settings::merge(&cli.serve, FileConfig::default()).unwrap();
        assert_eq!(
            s.security.auth.authorization_servers,
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        let bad = ServeArgs {
            authorization_servers: Some(vec!["ftp://x".into()]),
            ..Default::default()
        };
        assert!(Settings::merge(&bad, FileConfig::default()).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_gateways_are_rejected_with_their_path() {
        assert!(toml::from_str::<FileConfig>("prot = 1").is_err());
        let file: FileConfig =
            toml::from_str("[[gateways]]\nname = \"x\"\nurl = \"ftp://nope\"").unwrap();
        let err = Settings::merge(&ServeArgs::default(), file)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateways[0].url"), "{err}");
        let file: FileConfig = toml::from_str(
            "[[gateways]]\nname = \"x\"\nurl = \"http://h/mcp\"\npassthrough_headers = [\"Cookie\"]",
        )
        .unwrap();
        let err = Settings::merge(&ServeArgs::default(), file)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateways[0].passthrough_headers"), "{err}");
        let file: FileConfig = toml::from_str(
            "passthrough_headers = [\"X-Tenant\"]\n[[gateways]]\nname = \"x\"\nurl = \"http://h/mcp\"\npassthrough_headers = []",
        )
        .unwrap();
        let s = Settings::merge(&ServeArgs::default(), file).unwrap();
        assert_eq!(s.security.passthrough_headers, ["x-tenant"]);
        assert_eq!(s.gateways[0].passthrough_headers, Some(vec![]));
    }

    #[test]
    fn declared_gateways_take_the_apis_credential_fields_and_refuse_typos() {
        let file: FileConfig = toml::from_str(
            "[[gateways]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth_typ = \"bearer\"",
        )
        .unwrap();
        let err = Settings::merge(&ServeArgs::default(), file)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateways[0].auth_typ"), "{err}");
        let file: FileConfig = toml::from_str(
            "[[gateways]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth_type = \"oauth\"\n\
             [gateways.oauth_config]\ntoken_url = \"https://idp/token\"\nclient_id = \"c\"\nclient_secret = \"s\"",
        )
        .unwrap();
        let s = Settings::merge(&ServeArgs::default(), file).unwrap();
        assert_eq!(s.gateways[0].connection.auth.kind(), Some("oauth"));
        let file: FileConfig = toml::from_str(
            "[[gateways]]\nname = \"x\"\nurl = \"http://h/mcp\"\nauth_type = \"bearer\"",
        )
        .unwrap();
        let err = Settings::merge(&ServeArgs::default(), file)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateways[0].auth_token"), "{err}");
    }
}
