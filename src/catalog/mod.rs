//! The catalog: registered gateways, their tools, virtual servers.
//!
//! The database is the record; an immutable [`Snapshot`] built from it is what
//! requests read, swapped atomically after every write. `tools/list` answers
//! are serialized once per snapshot, so listing costs a pointer copy and a
//! `tools/call` lookup costs one hash probe — no database on the hot path.

pub mod credentials;
mod model;
pub mod naming;
mod store;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::Utc;
use serde_json::Value;

pub use model::{
    validate_name, validate_tags, validate_url, Connection, Discovery, Features, FieldError,
    Gateway, GatewaySpec, Item, ItemKind, ServerSpec, Tool, Transport, VirtualServer,
};
pub use store::{new_id, Store, StoreError};
pub use view::{ScopeView, URI_SCHEME};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{reason}")]
    Conflict { reason: String },
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which features an MCP endpoint exposes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `/mcp`: every enabled gateway's features.
    All,
    /// `/servers/{id}/mcp`: the virtual server's.
    Server(String),
}

/// One consistent view of the catalog.
pub struct Snapshot {
    gateways: Vec<Arc<Gateway>>,
    tools: Vec<Arc<Tool>>,
    items: Vec<Arc<Item>>,
    servers: Vec<Arc<VirtualServer>>,
    all: ScopeView,
    by_server: HashMap<String, ScopeView>,
}

impl Snapshot {
    pub fn gateways(&self) -> &[Arc<Gateway>] {
        &self.gateways
    }

    pub fn gateway(&self, id: &str) -> Option<&Arc<Gateway>> {
        self.gateways.iter().find(|g| g.id == id)
    }

    /// All tools, enabled or not, ordered by exposed name.
    pub fn tools(&self) -> &[Arc<Tool>] {
        &self.tools
    }

    pub fn tool_by_id(&self, id: &str) -> Option<&Arc<Tool>> {
        self.tools.iter().find(|t| t.id == id)
    }

    /// All prompts, resources and templates.
    pub fn items(&self) -> &[Arc<Item>] {
        &self.items
    }

    pub fn item_by_id(&self, id: &str) -> Option<&Arc<Item>> {
        self.items.iter().find(|i| i.id == id)
    }

    pub fn servers(&self) -> &[Arc<VirtualServer>] {
        &self.servers
    }

    pub fn server(&self, id: &str) -> Option<&Arc<VirtualServer>> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// The view an endpoint serves; `None` for an unknown or disabled virtual server.
    pub fn scope(&self, scope: &Scope) -> Option<&ScopeView> {
        match scope {
            Scope::All => Some(&self.all),
            Scope::Server(id) => self.by_server.get(id),
        }
    }
}

pub struct Catalog {
    store: Store,
    snapshot: ArcSwap<Snapshot>,
    /// Serializes writers so each snapshot reflects every write before it.
    write: tokio::sync::Mutex<()>,
    separator: String,
}

impl Catalog {
    pub async fn open(store: Store, separator: String) -> Result<Catalog, CatalogError> {
        let loaded = store.load().await?;
        let snapshot = build_snapshot(loaded, &separator);
        Ok(Catalog {
            store,
            snapshot: ArcSwap::from_pointee(snapshot),
            write: tokio::sync::Mutex::new(()),
            separator,
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// The exposed name a tool of `slug` would get.
    pub fn exposed_name(&self, slug: &str, original: &str) -> String {
        naming::exposed_name(slug, &self.separator, original)
    }

    async fn reload(&self) -> Result<(), CatalogError> {
        let loaded = self.store.load().await?;
        self.snapshot
            .store(Arc::new(build_snapshot(loaded, &self.separator)));
        Ok(())
    }

    /// Checks that `name`/`slug` are free (ignoring gateway `except`) and that
    /// `tools` would not collide with another gateway's exposed tool names.
    /// (Prompts and resource URIs carry the slug, which is unique, so only a
    /// slug clash could make them collide.)
    fn check_gateway_conflicts(
        &self,
        snap: &Snapshot,
        except: Option<&str>,
        name: &str,
        slug: &str,
        tools: &[Value],
    ) -> Result<(), CatalogError> {
        for g in snap
            .gateways
            .iter()
            .filter(|g| Some(g.id.as_str()) != except)
        {
            if g.name == name {
                return Err(CatalogError::Conflict {
                    reason: format!("a gateway named {name:?} already exists"),
                });
            }
            if g.slug == slug {
                return Err(CatalogError::Conflict {
                    reason: format!("gateway {:?} already uses the slug {slug:?}", g.name),
                });
            }
        }
        for def in tools {
            let Some(original) = def.get("name").and_then(Value::as_str) else {
                continue;
            };
            let exposed = self.exposed_name(slug, original);
            if let Some(t) = snap
                .tools
                .iter()
                .find(|t| t.name == exposed && Some(t.gateway.id.as_str()) != except)
            {
                return Err(CatalogError::Conflict {
                    reason: format!(
                        "tool name {exposed:?} is already exposed by gateway {:?}",
                        t.gateway.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Stores a new gateway. `found` is what discovery learned, or why it
    /// failed (then the gateway is stored unreachable, with no tools — used
    /// for gateways declared in the config file, which must not block start-up).
    pub async fn create_gateway(
        &self,
        spec: GatewaySpec,
        found: Result<Discovery, String>,
    ) -> Result<Arc<Gateway>, CatalogError> {
        let _w = self.write.lock().await;
        let slug = naming::slugify(&spec.name);
        let tools: &[Value] = match &found {
            Ok(f) => &f.features.tools,
            Err(_) => &[],
        };
        self.check_gateway_conflicts(&self.snapshot(), None, &spec.name, &slug, tools)?;
        let now = Utc::now();
        let mut gateway = Gateway {
            id: new_id(),
            name: spec.name,
            slug,
            connection: spec.connection,
            description: spec.description,
            tags: spec.tags,
            enabled: true,
            reachable: false,
            capabilities: Value::Object(Default::default()),
            server_info: Value::Object(Default::default()),
            protocol_version: None,
            created_at: now,
            updated_at: now,
            last_seen: None,
            last_error: None,
            passthrough_headers: spec.passthrough_headers,
            declared: spec.declared,
            latency: Default::default(),
        };
        let features = match found {
            Ok(f) => {
                gateway.reachable = true;
                gateway.capabilities = f.capabilities;
                gateway.server_info = f.server_info;
                gateway.protocol_version = Some(f.protocol_version);
                gateway.last_seen = Some(now);
                f.features
            }
            Err(e) => {
                gateway.last_error = Some(e);
                Features::default()
            }
        };
        self.store.save_gateway(&gateway, Some(&features)).await?;
        self.reload().await?;
        let id = gateway.id.clone();
        self.snapshot()
            .gateway(&id)
            .cloned()
            .ok_or(CatalogError::NotFound {
                kind: "gateway",
                id,
            })
    }

    /// Applies `edit` to the gateway and, when given, replaces its features.
    /// Returns the gateway before and after.
    pub async fn update_gateway(
        &self,
        id: &str,
        edit: impl FnOnce(&mut Gateway),
        features: Option<Features>,
    ) -> Result<(Arc<Gateway>, Arc<Gateway>), CatalogError> {
        let _w = self.write.lock().await;
        let snap = self.snapshot();
        let before = find(&snap.gateways, "gateway", id, |g| &g.id)?;
        let mut after = (*before).clone();
        edit(&mut after);
        after.slug = naming::slugify(&after.name);
        after.updated_at = Utc::now();
        let check_tools: Vec<Value> = match &features {
            Some(f) => f.tools.clone(),
            None => snap
                .tools
                .iter()
                .filter(|t| t.gateway.id == id)
                .map(|t| t.definition.clone())
                .collect(),
        };
        self.check_gateway_conflicts(&snap, Some(id), &after.name, &after.slug, &check_tools)?;
        self.store.save_gateway(&after, features.as_ref()).await?;
        self.reload().await?;
        let after = find(&self.snapshot().gateways, "gateway", id, |g| &g.id)?;
        Ok((before, after))
    }

    /// Records a health-check result without touching `updated_at`.
    pub async fn record_health(
        &self,
        id: &str,
        edit: impl FnOnce(&mut Gateway),
    ) -> Result<Arc<Gateway>, CatalogError> {
        let _w = self.write.lock().await;
        let before = find(&self.snapshot().gateways, "gateway", id, |g| &g.id)?;
        let mut after = (*before).clone();
        edit(&mut after);
        self.store.save_gateway(&after, None).await?;
        self.reload().await?;
        find(&self.snapshot().gateways, "gateway", id, |g| &g.id)
    }

    pub async fn delete_gateway(&self, id: &str) -> Result<Arc<Gateway>, CatalogError> {
        let _w = self.write.lock().await;
        let gone = find(&self.snapshot().gateways, "gateway", id, |g| &g.id)?;
        self.store.delete_gateway(id).await?;
        self.reload().await?;
        Ok(gone)
    }

    fn check_server(
        &self,
        snap: &Snapshot,
        except: Option<&str>,
        spec: &ServerSpec,
    ) -> Result<(), CatalogError> {
        if let Some(s) = snap
            .servers
            .iter()
            .find(|s| s.name == spec.name && Some(s.id.as_str()) != except)
        {
            return Err(CatalogError::Conflict {
                reason: format!("a server named {:?} already exists ({})", spec.name, s.id),
            });
        }
        let mut owners: Vec<&str> = Vec::new();
        for tool_id in &spec.tool_ids {
            let tool = snap.tool_by_id(tool_id).ok_or_else(|| {
                FieldError::new("associated_tools", format!("unknown tool id {tool_id:?}"))
            })?;
            owners.push(&tool.gateway.id);
        }
        for item_id in &spec.item_ids {
            let item = snap.item_by_id(item_id).ok_or_else(|| {
                FieldError::new(
                    "associated_resources",
                    format!("unknown prompt or resource id {item_id:?}"),
                )
            })?;
            owners.push(&item.gateway.id);
        }
        if let Some(g) = &spec.gateway_id {
            if snap.gateway(g).is_none() {
                return Err(
                    FieldError::new("gateway_id", format!("unknown gateway id {g:?}")).into(),
                );
            }
            owners.push(g);
        }
        owners.sort_unstable();
        owners.dedup();
        if spec.passthrough && owners.len() > 1 {
            return Err(FieldError::new(
                "passthrough",
                "a passthrough server exposes names unchanged, so all its features must come from one gateway",
            )
            .into());
        }
        Ok(())
    }

    pub async fn create_server(
        &self,
        spec: ServerSpec,
    ) -> Result<Arc<VirtualServer>, CatalogError> {
        let _w = self.write.lock().await;
        self.check_server(&self.snapshot(), None, &spec)?;
        let now = Utc::now();
        let server = VirtualServer {
            id: new_id(),
            name: spec.name,
            description: spec.description,
            icon: spec.icon,
            tags: spec.tags,
            enabled: true,
            tool_ids: spec.tool_ids,
            item_ids: spec.item_ids,
            passthrough: spec.passthrough,
            gateway_id: spec.gateway_id,
            created_at: now,
            updated_at: now,
        };
        self.store.save_server(&server).await?;
        self.reload().await?;
        let id = server.id;
        self.snapshot()
            .server(&id)
            .cloned()
            .ok_or(CatalogError::NotFound { kind: "server", id })
    }

    pub async fn update_server(
        &self,
        id: &str,
        edit: impl FnOnce(&mut VirtualServer),
    ) -> Result<Arc<VirtualServer>, CatalogError> {
        let _w = self.write.lock().await;
        let snap = self.snapshot();
        let before = find(&snap.servers, "server", id, |s| &s.id)?;
        let mut after = (*before).clone();
        edit(&mut after);
        after.updated_at = Utc::now();
        let spec = ServerSpec {
            name: after.name.clone(),
            description: None,
            icon: None,
            tags: Vec::new(),
            tool_ids: after.tool_ids.clone(),
            item_ids: after.item_ids.clone(),
            passthrough: after.passthrough,
            gateway_id: after.gateway_id.clone(),
        };
        self.check_server(&snap, Some(id), &spec)?;
        self.store.save_server(&after).await?;
        self.reload().await?;
        find(&self.snapshot().servers, "server", id, |s| &s.id)
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), CatalogError> {
        let _w = self.write.lock().await;
        if !self.store.delete_server(id).await? {
            return Err(CatalogError::NotFound {
                kind: "server",
                id: id.to_owned(),
            });
        }
        self.reload().await
    }

    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// The record with `id`, or the NotFound error the API turns into a 404.
fn find<T>(
    items: &[Arc<T>],
    kind: &'static str,
    id: &str,
    key: impl Fn(&T) -> &String,
) -> Result<Arc<T>, CatalogError> {
    items
        .iter()
        .find(|t| key(t) == id)
        .cloned()
        .ok_or_else(|| CatalogError::NotFound {
            kind,
            id: id.to_owned(),
        })
}

fn build_snapshot(loaded: store::Loaded, separator: &str) -> Snapshot {
    let mut gateways: Vec<Arc<Gateway>> = loaded.gateways.into_iter().map(Arc::new).collect();
    gateways.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let by_gateway: HashMap<&str, &Arc<Gateway>> =
        gateways.iter().map(|g| (g.id.as_str(), g)).collect();
    let mut tools: Vec<Arc<Tool>> = Vec::with_capacity(loaded.tools.len());
    for row in loaded.tools {
        let Some(gateway) = by_gateway.get(row.gateway_id.as_str()) else {
            continue;
        };
        tools.push(Arc::new(Tool {
            name: naming::exposed_name(&gateway.slug, separator, &row.original_name),
            id: row.id,
            gateway: Arc::clone(gateway),
            original_name: row.original_name,
            definition: row.definition,
            enabled: row.enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }));
    }
    tools.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let items: Vec<Arc<Item>> = loaded
        .items
        .into_iter()
        .filter_map(|row| {
            let gateway = by_gateway.get(row.gateway_id.as_str())?;
            Some(Arc::new(Item {
                id: row.id,
                gateway: Arc::clone(gateway),
                kind: row.kind,
                key: row.key,
                definition: row.definition,
            }))
        })
        .collect();

    let live_tools: Vec<&Arc<Tool>> = tools
        .iter()
        .filter(|t| t.enabled && t.gateway.enabled)
        .collect();
    let live_items: Vec<&Arc<Item>> = items.iter().filter(|i| i.gateway.enabled).collect();
    let enabled: Vec<Arc<Gateway>> = gateways.iter().filter(|g| g.enabled).cloned().collect();
    let all = view::build(enabled, &live_tools, &live_items, false, separator);

    let servers: Vec<Arc<VirtualServer>> = loaded.servers.into_iter().map(Arc::new).collect();
    let mut by_server = HashMap::new();
    for s in servers.iter().filter(|s| s.enabled) {
        let whole = |g: &Gateway| s.gateway_id.as_deref() == Some(g.id.as_str());
        let chosen_tools: Vec<&Arc<Tool>> = live_tools
            .iter()
            .filter(|t| whole(&t.gateway) || s.tool_ids.contains(&t.id))
            .copied()
            .collect();
        let chosen_items: Vec<&Arc<Item>> = live_items
            .iter()
            .filter(|i| whole(&i.gateway) || s.item_ids.contains(&i.id))
            .copied()
            .collect();
        let mut behind: Vec<Arc<Gateway>> = Vec::new();
        let owners = chosen_tools
            .iter()
            .map(|t| &t.gateway)
            .chain(chosen_items.iter().map(|i| &i.gateway));
        for g in owners.chain(gateways.iter().filter(|g| g.enabled && whole(g))) {
            if !behind.iter().any(|b| b.id == g.id) {
                behind.push(Arc::clone(g));
            }
        }
        by_server.insert(
            s.id.clone(),
            view::build(
                behind,
                &chosen_tools,
                &chosen_items,
                s.passthrough,
                separator,
            ),
        );
    }
    Snapshot {
        gateways,
        tools,
        items,
        servers,
        all,
        by_server,
    }
}
