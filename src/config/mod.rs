//! Settings: command-line flags and `SWITCHYARD_*` environment variables
//! (both through clap), over an optional TOML file, over defaults that run on
//! a laptop. Only validated [`Settings`] leave this module.
//!
//! Precedence, highest first: flag, environment variable, config file, default.

mod file;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{FileConfig, FileGateway};

use crate::catalog::{Connection, GatewaySpec, Transport};

/// Validated settings the gateway runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
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

/// Who may reach the MCP endpoints from a browser.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Accepted `Origin` values; empty means loopback origins only.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` names accepted while bound to loopback.
    pub allowed_hosts: Vec<String>,
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
        Ok(Settings {
            host: args
                .host
                .or(file.host)
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: args.port.or(file.port).unwrap_or(4444),
            database_url: args
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| "sqlite://switchyard.db".to_owned()),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            config_file: args.config.clone(),
            gateways,
            limits: Limits { max_body_bytes },
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
            },
        })
    }

    /// Defaults for tests and embedding: loopback, ephemeral port, in-memory catalog.
    pub fn for_tests() -> Settings {
        let args = ServeArgs {
            port: Some(0),
            database_url: Some("sqlite::memory:".into()),
            ..ServeArgs::default()
        };
        // Defaults are valid by construction; fall back to field-by-field if that ever changes.
        Settings::merge(&args, FileConfig::default())
            .unwrap_or_else(|e| panic!("default settings invalid: {e}"))
    }
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
        .map_err(|e| (e.field.to_owned(), e.reason))?;
        let mut spec = GatewaySpec::new(
            self.name,
            connection,
            self.description,
            self.tags.unwrap_or_default(),
        )
        .map_err(|e| (e.field.to_owned(), e.reason))?;
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
    fn unknown_keys_and_bad_gateways_are_rejected_with_their_path() {
        assert!(toml::from_str::<FileConfig>("prot = 1").is_err());
        let file: FileConfig =
            toml::from_str("[[gateways]]\nname = \"x\"\nurl = \"ftp://nope\"").unwrap();
        let err = Settings::merge(&ServeArgs::default(), file)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateways[0].url"), "{err}");
    }
}
