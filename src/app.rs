//! The shared state every handler sees, and the assembly of the HTTP service.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::{Json, Router};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, AuthStartError};
use crate::catalog::{Catalog, CatalogError, Store};
use crate::config::Settings;
use crate::downstream::limits::InflightLimits;
use crate::downstream::session::SessionStore;
use crate::metrics::Metrics;
use crate::registry::UpstreamSessionRegistry;
use crate::secrets::KeyOrigin;
use crate::upstream::{self, Connector};

pub struct App {
    pub settings: Settings,
    pub auth: Auth,
    pub catalog: Catalog,
    pub registry: UpstreamSessionRegistry,
    pub sessions: SessionStore,
    /// In-flight request slots per principal.
    pub inflight: InflightLimits,
    /// Open legacy HTTP+SSE streams (`GET /sse`).
    pub legacy: crate::downstream::legacy_sse::Streams,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the gateway shuts down; long-lived streams end with it.
    pub shutdown: CancellationToken,
    /// The `initialize` params sent to upstreams, built once.
    pub upstream_init_params: Box<RawValue>,
    /// Gateways whose lists changed (an upstream said `*/list_changed`),
    /// for the refresher in `lifecycle`.
    refreshes: mpsc::UnboundedSender<ListChanged>,
    refreshes_rx: Mutex<Option<mpsc::UnboundedReceiver<ListChanged>>>,
}

/// An upstream announced that one of its lists changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListChanged {
    pub gateway_id: String,
    /// The notification it sent, e.g. `notifications/tools/list_changed`.
    pub method: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("cannot build the upstream HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("cannot set up the secret key: {0}")]
    SecretKey(#[from] crate::secrets::KeyError),
    #[error("cannot set up authentication: {source}")]
    Auth {
        #[from]
        source: AuthStartError,
    },
}

/// Gives the store its key for upstream credentials (see `secrets`).
async fn with_secret_key(store: Store, settings: &Settings) -> Result<Store, StartError> {
    let stored = store.secrets_stored().await.map_err(CatalogError::from)?;
    let (cipher, origin) = crate::secrets::resolve_key(
        settings.security.secret_key.as_ref().map(|k| k.expose()),
        settings.security.secret_key_file.as_deref(),
        stored,
    )?;
    match origin {
        KeyOrigin::Generated(path) => tracing::info!(
            path = %path.display(),
            "generated the key that encrypts upstream credentials; back it up with the database, which is unreadable without it"
        ),
        KeyOrigin::File(path) => {
            tracing::debug!(path = %path.display(), "secret key read from file")
        }
        KeyOrigin::Environment => tracing::debug!("secret key from SWITCHYARD_SECRET_KEY"),
        KeyOrigin::Ephemeral => {
            tracing::debug!(
                "in-memory catalog: upstream credentials encrypted with a per-process key"
            )
        }
    }
    Ok(store.with_cipher(cipher))
}

impl App {
    pub async fn new(
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Arc<App>, StartError> {
        let store = Store::open(&settings.database_url)
            .await
            .map_err(CatalogError::from)?;
        let store = with_secret_key(store, &settings).await?;
        let auth = Auth::new(&settings.security.auth, store.pool()).await?;
        let catalog = Catalog::open(store, settings.tool_name_separator.clone()).await?;
        let egress = upstream::egress::Policy {
            allow_private: settings.security.allow_private_upstreams,
        };
        let connector = Connector::new(
            upstream::http::client(egress)?,
            egress,
            settings.timeouts.upstream_request,
            settings.timeouts.upstream_connect,
            settings.timeouts.shutdown,
            settings.io_threads,
        );
        let metrics = Arc::new(Metrics::new());
        let (refreshes, refreshes_rx) = mpsc::unbounded_channel();
        let registry = UpstreamSessionRegistry::new(
            connector,
            settings.timeouts.shutdown,
            settings.lifecycle.upstream_idle_validation,
            Arc::clone(&metrics),
        );
        let sessions = SessionStore::new(settings.limits.max_inflight_per_session);
        let inflight = InflightLimits::new(settings.limits.max_inflight_per_principal);
        Ok(Arc::new(App {
            settings,
            auth,
            catalog,
            registry,
            sessions,
            inflight,
            legacy: Default::default(),
            metrics,
            shutdown,
            upstream_init_params: upstream::initialize_params(),
            refreshes,
            refreshes_rx: Mutex::new(Some(refreshes_rx)),
        }))
    }

    /// Asks the refresher to re-read a gateway's lists and tell clients.
    pub fn request_refresh(&self, gateway_id: &str, method: &str) {
        let _ = self.refreshes.send(ListChanged {
            gateway_id: gateway_id.to_owned(),
            method: method.to_owned(),
        });
    }

    /// The refresher's end of the queue; there is one refresher per app.
    pub fn take_refreshes(&self) -> Option<mpsc::UnboundedReceiver<ListChanged>> {
        self.refreshes_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether any allow-list (the global default, or a gateway's) could let
    /// a downstream header reach an upstream.
    pub fn may_pass_headers(&self) -> bool {
        !self.settings.security.passthrough_headers.is_empty()
            || self.catalog.snapshot().gateways().iter().any(|g| {
                g.passthrough_headers
                    .as_ref()
                    .is_some_and(|h| !h.is_empty())
            })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .merge(crate::downstream::routes(self))
            .merge(crate::admin::routes(self))
            .merge(crate::auth::metadata::routes())
            // ContextForge (FastAPI) answers these with a JSON `detail`, and
            // its users' scripts read it; axum's own are empty.
            .method_not_allowed_fallback(|| async {
                detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            })
            .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
            .with_state(Arc::clone(self))
    }
}

fn detail(status: StatusCode, detail: &'static str) -> (StatusCode, Json<serde_json::Value>) {
    (status, Json(serde_json::json!({ "detail": detail })))
}
