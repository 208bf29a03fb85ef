//! Catalog persistence: SQLite through sqlx, migrations embedded in the binary.
//!
//! Only the catalog's write path and its start-up load touch the database;
//! request handling reads the in-memory snapshot instead.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

use super::credentials::{UpstreamAuth, UpstreamTls};
use super::model::{
    Connection, Features, Gateway, ItemKind, StdioCommand, Transport, VirtualServer,
};
use crate::secrets::{Cipher, Secret};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {url:?}: only sqlite:// is supported so far")]
    UnsupportedUrl { url: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt catalog row: {0}")]
    Corrupt(String),
    #[error("gateway {gateway}: stored credentials cannot be read: {source}")]
    Secrets {
        gateway: String,
        #[source]
        source: crate::secrets::CryptoError,
    },
    #[error("no secret key is configured, so credentials cannot be stored")]
    NoKey,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Encrypts the `secrets` column; set once the key is known (the key's
    /// resolution depends on whether secrets are stored, hence not at open).
    cipher: Option<Arc<Cipher>>,
}

/// The encrypted part of a gateway row.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SecretPart {
    #[serde(default)]
    auth: UpstreamAuth,
    #[serde(default)]
    client_key: Option<Secret>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn secrets_context(gateway_id: &str) -> String {
    format!("switchyard/gateways/{gateway_id}/secrets")
}

/// A tool row as stored, before the catalog joins it to its gateway.
pub struct ToolRow {
    pub id: String,
    pub gateway_id: String,
    pub original_name: String,
    pub definition: Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A prompt, resource or template row, before the catalog joins it to its gateway.
pub struct ItemRow {
    pub id: String,
    pub gateway_id: String,
    pub kind: ItemKind,
    pub key: String,
    pub definition: Value,
}

pub struct Loaded {
    pub gateways: Vec<Gateway>,
    pub tools: Vec<ToolRow>,
    pub items: Vec<ItemRow>,
    pub servers: Vec<VirtualServer>,
}

impl Store {
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl {
                url: url.to_owned(),
            });
        }
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            });
        // An in-memory database lives and dies with its one connection.
        let pool = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await?
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await?
        };
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool, cipher: None })
    }

    /// Whether any row holds encrypted secrets (then only their key may open it).
    pub async fn secrets_stored(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateways WHERE secrets IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub fn with_cipher(mut self, cipher: Cipher) -> Store {
        self.cipher = Some(Arc::new(cipher));
        self
    }

    fn seal(&self, g: &Gateway) -> Result<Option<String>, StoreError> {
        if !g.connection.has_secrets() {
            return Ok(None);
        }
        let cipher = self.cipher.as_ref().ok_or(StoreError::NoKey)?;
        let part = SecretPart {
            auth: g.connection.auth.clone(),
            client_key: g.connection.tls.client_key.clone(),
            env: g
                .connection
                .stdio
                .as_ref()
                .map(|c| c.env.clone())
                .unwrap_or_default(),
        };
        let plain =
            serde_json::to_vec(&part).map_err(|e| StoreError::Corrupt(format!("secrets: {e}")))?;
        Ok(Some(cipher.encrypt(&plain, &secrets_context(&g.id))))
    }

    fn open_secrets(&self, gateway_id: &str, blob: &str) -> Result<SecretPart, StoreError> {
        let cipher = self.cipher.as_ref().ok_or(StoreError::NoKey)?;
        let plain = cipher
            .decrypt(blob, &secrets_context(gateway_id))
            .map_err(|source| StoreError::Secrets {
                gateway: gateway_id.to_owned(),
                source,
            })?;
        serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("gateway {gateway_id} secrets: {e}")))
    }

    pub async fn load(&self) -> Result<Loaded, StoreError> {
        let gateways = sqlx::query("SELECT * FROM gateways ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| self.gateway_from_row(row))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = sqlx::query("SELECT * FROM tools ORDER BY gateway_id, original_name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(tool_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let items = sqlx::query("SELECT * FROM gateway_items ORDER BY gateway_id, kind, key")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut servers = sqlx::query("SELECT * FROM servers ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(server_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let links =
            sqlx::query("SELECT server_id, tool_id FROM server_tools ORDER BY server_id, position")
                .fetch_all(&self.pool)
                .await?;
        for link in &links {
            let server_id: String = link.try_get("server_id")?;
            let tool_id: String = link.try_get("tool_id")?;
            if let Some(s) = servers.iter_mut().find(|s| s.id == server_id) {
                s.tool_ids.push(tool_id);
            }
        }
        let item_links =
            sqlx::query("SELECT server_id, item_id FROM server_items ORDER BY server_id, position")
                .fetch_all(&self.pool)
                .await?;
        for link in &item_links {
            let server_id: String = link.try_get("server_id")?;
            let item_id: String = link.try_get("item_id")?;
            if let Some(s) = servers.iter_mut().find(|s| s.id == server_id) {
                s.item_ids.push(item_id);
            }
        }
        Ok(Loaded {
            gateways,
            tools,
            items,
            servers,
        })
    }

    /// Inserts or updates a gateway row and replaces its tools, prompts and
    /// resources, in one transaction. Ids survive a refresh for features that
    /// keep their name or URI, so virtual servers that reference them stay intact.
    pub async fn save_gateway(
        &self,
        g: &Gateway,
        features: Option<&Features>,
    ) -> Result<(), StoreError> {
        let tools = features.map(|f| f.tools.as_slice());
        let sealed = self.seal(g)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO gateways (id, name, slug, url, transport, description, tags, enabled, reachable,
                capabilities, server_info, protocol_version, created_at, updated_at, last_seen, last_error, declared,
                command, args, env, passthrough_headers, secrets, ca_certificate, client_cert)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)
             ON CONFLICT(id) DO UPDATE SET name = ?2, slug = ?3, url = ?4, transport = ?5, description = ?6,
                tags = ?7, enabled = ?8, reachable = ?9, capabilities = ?10, server_info = ?11,
                protocol_version = ?12, updated_at = ?14, last_seen = ?15, last_error = ?16, declared = ?17,
                command = ?18, args = ?19, env = ?20, passthrough_headers = ?21, secrets = ?22,
                ca_certificate = ?23, client_cert = ?24",
        )
        .bind(&g.id)
        .bind(&g.name)
        .bind(&g.slug)
        .bind(g.connection.url.as_str())
        .bind(g.connection.transport.as_str())
        .bind(&g.description)
        .bind(json_text(&g.tags))
        .bind(g.enabled)
        .bind(g.reachable)
        .bind(g.capabilities.to_string())
        .bind(g.server_info.to_string())
        .bind(&g.protocol_version)
        .bind(g.created_at.to_rfc3339())
        .bind(g.updated_at.to_rfc3339())
        .bind(g.last_seen.map(|t| t.to_rfc3339()))
        .bind(&g.last_error)
        .bind(g.declared)
        .bind(g.connection.stdio.as_ref().map(|c| c.program.clone()))
        .bind(json_text(&g.connection.stdio.as_ref().map(|c| c.args.clone()).unwrap_or_default()))
        // The environment is in `secrets`; this column only holds rows from before it existed.
        .bind("{}")
        .bind(g.passthrough_headers.as_ref().map(json_text))
        .bind(sealed)
        .bind(&g.connection.tls.ca_certificate)
        .bind(&g.connection.tls.client_cert)
        .execute(&mut *tx)
        .await?;
        if let Some(tools) = tools {
            let now = Utc::now().to_rfc3339();
            let mut keep: Vec<String> = Vec::with_capacity(tools.len());
            for def in tools {
                let Some(name) = def.get("name").and_then(Value::as_str) else {
                    continue;
                };
                keep.push(name.to_owned());
                sqlx::query(
                    "INSERT INTO tools (id, gateway_id, original_name, definition, enabled, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)
                     ON CONFLICT(gateway_id, original_name) DO UPDATE SET definition = ?4, updated_at = ?5",
                )
                .bind(new_id())
                .bind(&g.id)
                .bind(name)
                .bind(def.to_string())
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            let existing = sqlx::query("SELECT id, original_name FROM tools WHERE gateway_id = ?1")
                .bind(&g.id)
                .fetch_all(&mut *tx)
                .await?;
            for row in existing {
                let original: String = row.try_get("original_name")?;
                if !keep.contains(&original) {
                    let id: String = row.try_get("id")?;
                    sqlx::query("DELETE FROM tools WHERE id = ?1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        if let Some(f) = features {
            let now = Utc::now().to_rfc3339();
            for kind in [ItemKind::Prompt, ItemKind::Resource, ItemKind::Template] {
                let mut keep: Vec<&str> = Vec::new();
                for def in f.of(kind) {
                    let Some(key) = def.get(kind.key_field()).and_then(Value::as_str) else {
                        continue;
                    };
                    keep.push(key);
                    sqlx::query(
                        "INSERT INTO gateway_items (id, gateway_id, kind, key, definition, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                         ON CONFLICT(gateway_id, kind, key) DO UPDATE SET definition = ?5, updated_at = ?6",
                    )
                    .bind(new_id())
                    .bind(&g.id)
                    .bind(kind.as_str())
                    .bind(key)
                    .bind(def.to_string())
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                }
                let existing = sqlx::query(
                    "SELECT id, key FROM gateway_items WHERE gateway_id = ?1 AND kind = ?2",
                )
                .bind(&g.id)
                .bind(kind.as_str())
                .fetch_all(&mut *tx)
                .await?;
                for row in existing {
                    let key: String = row.try_get("key")?;
                    if !keep.contains(&key.as_str()) {
                        let id: String = row.try_get("id")?;
                        sqlx::query("DELETE FROM gateway_items WHERE id = ?1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_gateway(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM gateways WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn save_server(&self, s: &VirtualServer) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO servers (id, name, description, icon, tags, enabled, created_at, updated_at, passthrough, gateway_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(id) DO UPDATE SET name = ?2, description = ?3, icon = ?4, tags = ?5, enabled = ?6,
                updated_at = ?8, passthrough = ?9, gateway_id = ?10",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.description)
        .bind(&s.icon)
        .bind(json_text(&s.tags))
        .bind(s.enabled)
        .bind(s.created_at.to_rfc3339())
        .bind(s.updated_at.to_rfc3339())
        .bind(s.passthrough)
        .bind(&s.gateway_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM server_items WHERE server_id = ?1")
            .bind(&s.id)
            .execute(&mut *tx)
            .await?;
        for (pos, item_id) in s.item_ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO server_items (server_id, item_id, position) VALUES (?1, ?2, ?3)",
            )
            .bind(&s.id)
            .bind(item_id)
            .bind(pos as i64)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM server_tools WHERE server_id = ?1")
            .bind(&s.id)
            .execute(&mut *tx)
            .await?;
        for (pos, tool_id) in s.tool_ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO server_tools (server_id, tool_id, position) VALUES (?1, ?2, ?3)",
            )
            .bind(&s.id)
            .bind(tool_id)
            .bind(pos as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_server(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM servers WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The pool, for stores that keep their own tables in the catalog
    /// database (API tokens); migrations for all of them run in [`Store::open`].
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Catalog ids: 32 lower-case hex digits of a random UUID, as ContextForge spells them.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn time(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
    let s: String = row.try_get(col)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("{col} {s:?}: {e}")))
}

fn opt_time(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("{col} {s:?}: {e}")))
    })
    .transpose()
}

fn json(row: &SqliteRow, col: &str) -> Result<Value, StoreError> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn tags(row: &SqliteRow) -> Result<Vec<String>, StoreError> {
    let s: String = row.try_get("tags")?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))
}

fn stdio_from_row(row: &SqliteRow) -> Result<Option<StdioCommand>, StoreError> {
    let Some(program) = row.try_get::<Option<String>, _>("command")? else {
        return Ok(None);
    };
    let args: String = row.try_get("args")?;
    let env: String = row.try_get("env")?;
    Ok(Some(StdioCommand {
        program,
        args: serde_json::from_str(&args).map_err(|e| StoreError::Corrupt(format!("args: {e}")))?,
        env: serde_json::from_str(&env).map_err(|e| StoreError::Corrupt(format!("env: {e}")))?,
    }))
}

impl Store {
    fn gateway_from_row(&self, row: &SqliteRow) -> Result<Gateway, StoreError> {
        let url: String = row.try_get("url")?;
        let transport: String = row.try_get("transport")?;
        let id: String = row.try_get("id")?;
        let sealed: Option<String> = row.try_get("secrets")?;
        let secrets = match sealed {
            Some(blob) => Some(self.open_secrets(&id, &blob)?),
            None => None,
        };
        let mut stdio = stdio_from_row(row)?;
        if let (Some(cmd), Some(part)) = (stdio.as_mut(), secrets.as_ref()) {
            if !part.env.is_empty() {
                cmd.env = part.env.clone();
            }
        }
        let (auth, client_key) = secrets.map(|p| (p.auth, p.client_key)).unwrap_or_default();
        Ok(Gateway {
            id,
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            connection: Connection {
                url: reqwest::Url::parse(&url)
                    .map_err(|e| StoreError::Corrupt(format!("url {url:?}: {e}")))?,
                transport: Transport::parse(&transport)
                    .ok_or_else(|| StoreError::Corrupt(format!("transport {transport:?}")))?,
                stdio,
                auth,
                tls: UpstreamTls {
                    ca_certificate: row.try_get("ca_certificate")?,
                    client_cert: row.try_get("client_cert")?,
                    client_key,
                },
            },
            description: row.try_get("description")?,
            tags: tags(row)?,
            enabled: row.try_get("enabled")?,
            reachable: row.try_get("reachable")?,
            capabilities: json(row, "capabilities")?,
            server_info: json(row, "server_info")?,
            protocol_version: row.try_get("protocol_version")?,
            created_at: time(row, "created_at")?,
            updated_at: time(row, "updated_at")?,
            last_seen: opt_time(row, "last_seen")?,
            last_error: row.try_get("last_error")?,
            passthrough_headers: {
                let s: Option<String> = row.try_get("passthrough_headers")?;
                s.map(|s| serde_json::from_str(&s))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("passthrough_headers: {e}")))?
            },
            declared: row.try_get("declared")?,
            latency: Default::default(),
        })
    }
}

fn tool_from_row(row: &SqliteRow) -> Result<ToolRow, StoreError> {
    Ok(ToolRow {
        id: row.try_get("id")?,
        gateway_id: row.try_get("gateway_id")?,
        original_name: row.try_get("original_name")?,
        definition: json(row, "definition")?,
        enabled: row.try_get("enabled")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

fn item_from_row(row: &SqliteRow) -> Result<ItemRow, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(ItemRow {
        id: row.try_get("id")?,
        gateway_id: row.try_get("gateway_id")?,
        kind: ItemKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("item kind {kind:?}")))?,
        key: row.try_get("key")?,
        definition: json(row, "definition")?,
    })
}

fn server_from_row(row: &SqliteRow) -> Result<VirtualServer, StoreError> {
    Ok(VirtualServer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        icon: row.try_get("icon")?,
        tags: tags(row)?,
        enabled: row.try_get("enabled")?,
        tool_ids: Vec::new(),
        item_ids: Vec::new(),
        passthrough: row.try_get("passthrough")?,
        gateway_id: row.try_get("gateway_id")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}
