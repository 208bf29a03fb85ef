//! Catalog records and the validated specs that create them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::credentials::{UpstreamAuth, UpstreamTls};

/// How the gateway talks to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05): GET an event stream, POST to the URL it announces.
    Sse,
    /// A child process speaking newline-delimited JSON-RPC over stdin/stdout.
    Stdio,
}

impl Transport {
    /// ContextForge spellings, case-insensitively.
    pub fn parse(s: &str) -> Option<Transport> {
        match s.to_ascii_uppercase().as_str() {
            "STREAMABLEHTTP" | "STREAMABLE_HTTP" | "STREAMABLE-HTTP" | "HTTP" => {
                Some(Transport::StreamableHttp)
            }
            "SSE" => Some(Transport::Sse),
            "STDIO" => Some(Transport::Stdio),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "STREAMABLEHTTP",
            Transport::Sse => "SSE",
            Transport::Stdio => "STDIO",
        }
    }
}

/// A field that failed validation, named as the API spells it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Everything that shapes how the gateway connects to an upstream. Two
/// gateways with equal `Connection`s would be reached identically; any change
/// to it invalidates live upstream sessions. Compared as a whole, so a field
/// added here can never be forgotten by the eviction check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// For STDIO gateways a synthetic `stdio:` URL naming the program.
    /// Never carries a credential (a `query_param` secret is added per request).
    pub url: reqwest::Url,
    pub transport: Transport,
    /// The child process of a STDIO gateway.
    pub stdio: Option<StdioCommand>,
    /// What the gateway presents to the upstream.
    pub auth: UpstreamAuth,
    /// Trust anchors and client certificate for an https upstream.
    pub tls: UpstreamTls,
}

/// How to start a STDIO upstream: one child process per upstream session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct StdioCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl Connection {
    /// Validates what the API or config file said about reaching an upstream:
    /// HTTP transports need an http(s) URL, STDIO needs a command.
    pub fn build(
        url: Option<&str>,
        transport: Transport,
        command: Option<String>,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    ) -> Result<Connection, FieldError> {
        match transport {
            Transport::StreamableHttp | Transport::Sse => {
                if command.is_some() {
                    return Err(FieldError::new(
                        "command",
                        "only STDIO gateways take a command",
                    ));
                }
                let url = url.ok_or_else(|| FieldError::new("url", "field required"))?;
                Ok(Connection {
                    url: validate_url(url)?,
                    transport,
                    stdio: None,
                    auth: UpstreamAuth::None,
                    tls: UpstreamTls::default(),
                })
            }
            Transport::Stdio => {
                let program = command
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| {
                        FieldError::new("command", "STDIO gateways need a command to run")
                    })?;
                if program.contains('\0') || args.iter().any(|a| a.contains('\0')) {
                    return Err(FieldError::new("command", "must not contain NUL bytes"));
                }
                if env
                    .keys()
                    .any(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
                {
                    return Err(FieldError::new(
                        "env",
                        "variable names must be non-empty, without '=' or NUL",
                    ));
                }
                let url =
                    reqwest::Url::parse(&format!("stdio:///{}", program.trim_start_matches('/')))
                        .map_err(|e| {
                        FieldError::new("command", format!("cannot be named as a URL: {e}"))
                    })?;
                Ok(Connection {
                    url,
                    transport,
                    stdio: Some(StdioCommand { program, args, env }),
                    auth: UpstreamAuth::None,
                    tls: UpstreamTls::default(),
                })
            }
        }
    }

    /// Sets credentials and TLS; a STDIO child gets its credentials through
    /// its environment instead.
    pub fn with_credentials(
        mut self,
        auth: UpstreamAuth,
        tls: UpstreamTls,
    ) -> Result<Connection, FieldError> {
        if self.transport == Transport::Stdio {
            if auth != UpstreamAuth::None {
                return Err(FieldError::new(
                    "auth_type",
                    "STDIO gateways take credentials through env, not auth_type",
                ));
            }
            if !tls.is_default() {
                return Err(FieldError::new(
                    "ca_certificate",
                    "STDIO gateways do not use TLS",
                ));
            }
        }
        if matches!(auth, UpstreamAuth::QueryParam { ref key, .. } if self.url.query_pairs().any(|(k, _)| k == key.as_str()))
        {
            return Err(FieldError::new(
                "auth_query_param_key",
                "the URL already has this query parameter",
            ));
        }
        self.auth = auth;
        self.tls = tls;
        Ok(self)
    }

    /// Whether anything here must be stored encrypted.
    pub fn has_secrets(&self) -> bool {
        self.auth != UpstreamAuth::None
            || self.tls.client_key.is_some()
            || self.stdio.as_ref().is_some_and(|c| !c.env.is_empty())
    }
}

/// A validated gateway definition, from the API or the config file.
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    pub name: String,
    pub connection: Connection,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// Downstream headers forwarded to this gateway; `None` means the global default.
    pub passthrough_headers: Option<Vec<String>>,
    /// Declared in the config file (kept in step with it on reload).
    pub declared: bool,
}

impl GatewaySpec {
    pub fn new(
        name: String,
        connection: Connection,
        description: Option<String>,
        tags: Vec<String>,
    ) -> Result<Self, FieldError> {
        let name = validate_name(name)?;
        let tags = validate_tags(tags)?;
        Ok(Self {
            name,
            connection,
            description,
            tags,
            passthrough_headers: None,
            declared: false,
        })
    }
}

pub fn validate_name(name: String) -> Result<String, FieldError> {
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    if name.len() > 255 {
        return Err(FieldError::new("name", "must be at most 255 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "must not contain control characters",
        ));
    }
    if super::naming::slugify(&name).is_empty() {
        return Err(FieldError::new(
            "name",
            "must contain at least one letter or digit",
        ));
    }
    Ok(name)
}

pub fn validate_url(url: &str) -> Result<reqwest::Url, FieldError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| FieldError::new("url", format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FieldError::new("url", "scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new("url", "must name a host"));
    }
    // A URL is shown by the API and written to logs; credentials are not.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(FieldError::new(
            "url",
            "must not carry credentials (user:password@); use auth_type \"basic\" with auth_username and auth_password, which are stored encrypted and never shown",
        ));
    }
    Ok(parsed)
}

pub fn validate_tags(tags: Vec<String>) -> Result<Vec<String>, FieldError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    // A set, not `out.contains`: a body may carry tens of thousands of tags.
    let mut seen = std::collections::HashSet::with_capacity(tags.len());
    for t in tags {
        let t = t.trim().to_owned();
        if t.is_empty() || t.len() > 64 {
            return Err(FieldError::new(
                "tags",
                "each tag must be 1 to 64 characters",
            ));
        }
        if seen.insert(t.clone()) {
            out.push(t);
        }
    }
    Ok(out)
}

/// A registered upstream MCP server.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub connection: Connection,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub reachable: bool,
    pub capabilities: Value,
    pub server_info: Value,
    pub protocol_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Downstream headers forwarded to it; `None` means the global default.
    /// Applied per request, hence deliberately not part of [`Connection`]:
    /// changing it closes no upstream session.
    pub passthrough_headers: Option<Vec<String>>,
    pub declared: bool,
    /// Where its calls' latency is recorded, found once per catalog version.
    pub latency: crate::metrics::LatencySlot,
}

/// A tool as the catalog exposes it.
#[derive(Clone, Debug)]
pub struct Tool {
    pub id: String,
    pub gateway: Arc<Gateway>,
    /// The name clients see: `<gateway slug><separator><original name>`.
    pub name: String,
    /// The name the upstream knows it by.
    pub original_name: String,
    /// The upstream's tool object, verbatim.
    pub definition: Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A virtual server: its own MCP endpoint exposing a chosen set of tools,
/// prompts and resources.
#[derive(Clone, Debug)]
pub struct VirtualServer {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Tool ids, in the order they were associated.
    pub tool_ids: Vec<String>,
    /// Prompt, resource and template ids, in the order they were associated.
    pub item_ids: Vec<String>,
    /// Names and URIs exposed unchanged (all features from one gateway).
    pub passthrough: bool,
    /// When set, the server exposes everything this gateway offers.
    pub gateway_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated virtual-server definition.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub tags: Vec<String>,
    pub tool_ids: Vec<String>,
    pub item_ids: Vec<String>,
    pub passthrough: bool,
    pub gateway_id: Option<String>,
}

/// The kinds of feature besides tools that a gateway can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Prompt,
    Resource,
    Template,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Prompt => "prompt",
            ItemKind::Resource => "resource",
            ItemKind::Template => "template",
        }
    }

    pub fn parse(s: &str) -> Option<ItemKind> {
        match s {
            "prompt" => Some(ItemKind::Prompt),
            "resource" => Some(ItemKind::Resource),
            "template" => Some(ItemKind::Template),
            _ => None,
        }
    }

    /// The field of the upstream's object that names it.
    pub fn key_field(self) -> &'static str {
        match self {
            ItemKind::Prompt => "name",
            ItemKind::Resource => "uri",
            ItemKind::Template => "uriTemplate",
        }
    }
}

/// A prompt, resource or resource template as the catalog exposes it.
#[derive(Clone, Debug)]
pub struct Item {
    pub id: String,
    pub gateway: Arc<Gateway>,
    pub kind: ItemKind,
    /// The name, URI or URI template the upstream knows it by.
    pub key: String,
    /// The upstream's object, verbatim.
    pub definition: Value,
}

/// Everything a gateway offers, as listed by the upstream.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
}

impl Features {
    pub fn of(&self, kind: ItemKind) -> &[Value] {
        match kind {
            ItemKind::Prompt => &self.prompts,
            ItemKind::Resource => &self.resources,
            ItemKind::Template => &self.templates,
        }
    }
}

/// What an upstream said about itself during discovery.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub protocol_version: String,
    pub capabilities: Value,
    pub server_info: Value,
    /// Objects as the upstream listed them.
    pub features: Features,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_and_deduplicated_in_order() {
        let tags = [" b ", "a", "b", "c", "a"].map(String::from).to_vec();
        assert_eq!(validate_tags(tags).unwrap(), ["b", "a", "c"]);
        assert!(validate_tags(vec![" ".into()]).is_err());
        assert!(validate_tags(vec!["x".repeat(65)]).is_err());
        // Many tags at once (a set, not a scan of the list per tag).
        let many: Vec<String> = (0..100_000).map(|i| format!("t{}", i % 50_000)).collect();
        assert_eq!(validate_tags(many).unwrap().len(), 50_000);
    }

    #[test]
    fn urls_with_credentials_are_refused() {
        for url in [
            "http://u:p@127.0.0.1/mcp",
            "http://u@127.0.0.1/mcp",
            "https://:p@h/mcp",
        ] {
            let err = validate_url(url).unwrap_err();
            assert_eq!(err.field, "url", "{url}");
            assert!(!err.reason.contains(url), "{url}: {}", err.reason);
        }
        assert!(validate_url("http://127.0.0.1:9/mcp").is_ok());
    }
}
