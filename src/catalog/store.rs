//! Catalog persistence: SQLite through sqlx, migrations embedded in the binary.
//!
//! Only the catalog's write path and its start-up load touch the database;
//! request handling reads the in-memory snapshot instead.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

use super::model::{
    Connection, Features, Gateway, ItemKind, StdioCommand, Transport, VirtualServer,
};

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
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
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
        Ok(Store { pool })
    }

    pub async fn load(&self) -> Result<Loaded, StoreError> {
        let gateways = sqlx::query("SELECT * FROM gateways ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(gateway_from_row)
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO gateways (id, name, slug, url, transport, description, tags, enabled, reachable,
                capabilities, server_info, protocol_version, created_at, updated_at, last_seen, last_error, declared,
                command, args, env, passthrough_headers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
             ON CONFLICT(id) DO UPDATE SET name = ?2, slug = ?3, url = ?4, transport = ?5, description = ?6,
                tags = ?7, enabled = ?8, reachable = ?9, capabilities = ?10, server_info = ?11,
                protocol_version = ?12, updated_at = ?14, last_seen = ?15, last_error = ?16, declared = ?17,
                command = ?18, args = ?19, env = ?20, passthrough_headers = ?21",
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
        .bind(json_text(&g.connection.stdio.as_ref().map(|c| c.env.clone()).unwrap_or_default()))
        .bind(g.passthrough_headers.as_ref().map(json_text))
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

fn gateway_from_row(row: &SqliteRow) -> Result<Gateway, StoreError> {
    let url: String = row.try_get("url")?;
    let transport: String = row.try_get("transport")?;
    Ok(Gateway {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        connection: Connection {
            url: reqwest::Url::parse(&url)
                .map_err(|e| StoreError::Corrupt(format!("url {url:?}: {e}")))?,
            transport: Transport::parse(&transport)
                .ok_or_else(|| StoreError::Corrupt(format!("transport {transport:?}")))?,
            stdio: stdio_from_row(row)?,
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
    })
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
