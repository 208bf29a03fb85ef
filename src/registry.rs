//! The upstream session registry: `(downstream session, gateway)` → exactly
//! one live upstream session.
//!
//! Invariants (DESIGN.md 1–5):
//! - an upstream session serves one downstream session and one gateway, never more;
//! - inside a downstream session every call to a gateway reuses one upstream
//!   session; concurrent first calls wait on a per-key lock and share one connect;
//! - no lock wider than one key is held across I/O;
//! - a downstream session that has ended can never get a new upstream session
//!   (its slots are marked closed under the same lock acquire takes);
//! - closing is bounded: each session gets `grace`, then is aborted, all in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::future::join_all;
use serde_json::value::RawValue;

use crate::catalog::Gateway;
use crate::jsonrpc::code;
use crate::metrics::{Acquired, Metrics};
use crate::upstream::{
    CloseOutcome, Connector, OnMessage, Reply, SessionTask, UpstreamError, UpstreamSession,
};
use crate::FastHash;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("downstream session is not open")]
    SessionEnded,
    #[error(transparent)]
    Connect(#[from] UpstreamError),
}

/// Why upstream sessions were closed; logged and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    SessionEnded,
    SessionExpired,
    GatewayChanged,
    GatewayRemoved,
    GatewayUnreachable,
    TransportError,
    ProbeFailed,
    Reload,
    Shutdown,
}

impl EvictReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::SessionEnded => "session_ended",
            EvictReason::SessionExpired => "session_expired",
            EvictReason::GatewayChanged => "gateway_changed",
            EvictReason::GatewayRemoved => "gateway_removed",
            EvictReason::GatewayUnreachable => "gateway_unreachable",
            EvictReason::TransportError => "transport_error",
            EvictReason::ProbeFailed => "probe_failed",
            EvictReason::Reload => "reload",
            EvictReason::Shutdown => "shutdown",
        }
    }
}

/// One row of [`UpstreamSessionRegistry::snapshot`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionEntry {
    pub downstream_session_id: String,
    pub gateway_id: String,
    pub upstream_session_id: Option<String>,
    pub protocol_version: String,
    pub created_at: DateTime<Utc>,
    pub last_used_secs_ago: f64,
    pub use_count: u64,
    pub age_secs: f64,
}

struct Live {
    session: UpstreamSession,
    task: SessionTask,
    /// The gateway, as the catalog had it when this session was built or
    /// last checked against it. Its connection settings are what the session
    /// was built with: a mismatch means the gateway changed under it, and
    /// it is replaced on the next acquire. Holding the catalog's `Arc` (not
    /// a copy of the settings) makes the usual check a pointer comparison
    /// and costs each held session 8 bytes.
    gateway: Arc<Gateway>,
    created_at: DateTime<Utc>,
    created: Instant,
    last_used: Instant,
    uses: u64,
}

impl Live {
    /// The session, for one more call.
    fn lend(&mut self) -> UpstreamSession {
        self.uses += 1;
        self.last_used = Instant::now();
        self.session.clone()
    }

    /// Whether this session can serve a call to `gateway` now, after a
    /// probe, or not at all.
    fn fit(&mut self, gateway: &Arc<Gateway>, idle_validation: Duration) -> Fit {
        if !self.session.is_open() || !self.built_for(gateway) {
            Fit::Unfit
        } else if self.last_used.elapsed() < idle_validation {
            Fit::Fresh
        } else {
            Fit::Idle
        }
    }

    /// Whether this session was built with `gateway`'s connection settings.
    /// The catalog snapshot's `Arc` is the same until the catalog changes;
    /// after a change that left this gateway's connection alone, the new
    /// `Arc` is kept, so the next call is a pointer comparison again.
    fn built_for(&mut self, gateway: &Arc<Gateway>) -> bool {
        if Arc::ptr_eq(&self.gateway, gateway) {
            return true;
        }
        if self.gateway.connection != gateway.connection {
            return false;
        }
        self.gateway = Arc::clone(gateway);
        true
    }
}

/// What [`Live::fit`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// Open, built for the gateway as it is, and used recently: reuse it.
    Fresh,
    /// Fit, but idle past the validation window: probe it first.
    Idle,
    /// Closed, or built for other connection settings: replace it.
    Unfit,
}

enum SlotState {
    Empty,
    Live(Box<Live>),
    Closed,
}

type Slot = tokio::sync::Mutex<SlotState>;

/// The slots of one downstream session, one per gateway it has used.
/// The downstream session holds this handle, so its calls reach their slots
/// without a lookup by session id in the registry's map.
#[derive(Clone, Default)]
pub struct SessionSlots(Arc<Mutex<Slots>>);

impl SessionSlots {
    /// Every live upstream session of this downstream session (none once it
    /// has ended: eviction drains the slots). The session holds this handle,
    /// so no lookup by id in the registry's map.
    pub fn live(&self) -> Vec<UpstreamSession> {
        let slots: Vec<Arc<Slot>> = lock(&self.0).map.values().cloned().collect();
        slots
            .iter()
            .filter_map(|slot| match &*slot.try_lock().ok()? {
                SlotState::Live(l) if l.session.is_open() => Some(l.session.clone()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Default)]
struct Slots {
    /// Set when the session ends; guarded by `map`'s lock so acquire cannot
    /// add a slot after eviction collected them.
    closed: bool,
    map: HashMap<String, Arc<Slot>, FastHash>,
}

pub struct UpstreamSessionRegistry {
    sessions: DashMap<String, SessionSlots, FastHash>,
    connector: Connector,
    grace: Duration,
    /// Reuse after this much idleness is preceded by a probe.
    idle_validation: Duration,
    metrics: Arc<Metrics>,
}

/// What an idle-validation probe found.
enum Probe {
    /// The upstream answered (possibly with a JSON-RPC error: it is alive).
    Healthy,
    /// The upstream implements none of the probe methods.
    Skipped,
    /// Transport failure or timeout: the session is dead; build a new one.
    Dead(UpstreamError),
    /// Something else (e.g. an auth failure): retrying would fail the same way.
    Refused(UpstreamError),
}

/// ping first; a server without ping is asked for a list it does support.
const PROBE_METHODS: [&str; 4] = ["ping", "tools/list", "prompts/list", "resources/list"];

async fn probe(session: &UpstreamSession, limit: Duration) -> Probe {
    for method in PROBE_METHODS {
        match tokio::time::timeout(limit, session.request(method, None)).await {
            Err(_) => return Probe::Dead(UpstreamError::Timeout),
            Ok(Ok(Reply(Err(error)))) if error_code(&error) == Some(code::METHOD_NOT_FOUND) => {
                continue
            }
            Ok(Ok(Reply(_))) => return Probe::Healthy,
            Ok(Err(e)) if e.ends_session() || matches!(e, UpstreamError::Timeout) => {
                return Probe::Dead(e)
            }
            Ok(Err(e)) => return Probe::Refused(e),
        }
    }
    Probe::Skipped
}

fn error_code(error: &RawValue) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Code {
        code: i64,
    }
    serde_json::from_str::<Code>(error.get())
        .ok()
        .map(|c| c.code)
}

/// A plain map guarded by a std mutex held only for a lookup or insert, never
/// across an await; poisoning would only follow a panic inside those few lines.
fn lock(m: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UpstreamSessionRegistry {
    pub fn new(
        connector: Connector,
        grace: Duration,
        idle_validation: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sessions: DashMap::with_hasher(FastHash::default()),
            connector,
            grace,
            idle_validation,
            metrics,
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Registers a new downstream session; only registered sessions can
    /// acquire. The handle is for the session to pass to [`Self::acquire`].
    pub fn open(&self, downstream_sid: &str) -> SessionSlots {
        let slots = SessionSlots::default();
        self.sessions
            .insert(downstream_sid.to_owned(), slots.clone());
        slots
    }

    /// The upstream session for `(downstream_sid, gateway)`, connecting on
    /// first use with `init_params` as the upstream `initialize` params and
    /// `on_message` (called only then) receiving what the upstream sends on
    /// its own.
    pub async fn acquire(
        &self,
        downstream_sid: &str,
        slots: &SessionSlots,
        gateway: &Arc<Gateway>,
        init_params: &RawValue,
        on_message: impl FnOnce() -> Option<OnMessage>,
    ) -> Result<UpstreamSession, RegistryError> {
        let slot = {
            let mut s = lock(&slots.0);
            if s.closed {
                return Err(RegistryError::SessionEnded);
            }
            // Looked up before `entry`, which would copy the id on every call.
            match s.map.get(&gateway.id) {
                Some(slot) => Arc::clone(slot),
                None => Arc::clone(
                    s.map
                        .entry(gateway.id.clone())
                        .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(SlotState::Empty))),
                ),
            }
        };
        // The usual case, a live session reused: no lock future to build,
        // poll and drop. A slot busy (connecting, probing, being closed)
        // takes the waiting path.
        if let Ok(mut state) = slot.try_lock() {
            if let SlotState::Live(live) = &mut *state {
                if live.fit(gateway, self.idle_validation) == Fit::Fresh {
                    self.metrics.acquire(Acquired::Reused);
                    return Ok(live.lend());
                }
            }
        }
        let mut state = slot.lock().await;
        let mut replaced = None;
        let fit = match &mut *state {
            SlotState::Live(live) => live.fit(gateway, self.idle_validation),
            SlotState::Empty | SlotState::Closed => Fit::Unfit,
        };
        match &mut *state {
            SlotState::Closed => return Err(RegistryError::SessionEnded),
            SlotState::Live(live) if fit == Fit::Fresh => {
                self.metrics.acquire(Acquired::Reused);
                return Ok(live.lend());
            }
            SlotState::Live(live) if fit == Fit::Idle => {
                let limit = self.connector.request_timeout.min(Duration::from_secs(10));
                // Boxed, like the connect below: rare paths, and inlined
                // they would grow every call's future (see `forward`).
                match Box::pin(probe(&live.session, limit)).await {
                    found @ (Probe::Healthy | Probe::Skipped) => {
                        self.metrics.probe(if matches!(found, Probe::Healthy) {
                            "healthy"
                        } else {
                            "skipped"
                        });
                        self.metrics.acquire(Acquired::Probed);
                        return Ok(live.lend());
                    }
                    Probe::Dead(e) => {
                        self.metrics.probe("failed");
                        tracing::info!(downstream_session = downstream_sid, gateway = %gateway.id, error = %e, "idle upstream session failed its probe; reconnecting");
                        replaced = Some(EvictReason::ProbeFailed);
                    }
                    Probe::Refused(e) => {
                        self.metrics.probe("refused");
                        return Err(RegistryError::Connect(e));
                    }
                }
            }
            SlotState::Live(_) | SlotState::Empty => {}
        }
        if let SlotState::Live(stale) = std::mem::replace(&mut *state, SlotState::Empty) {
            let reason = replaced.unwrap_or(if stale.session.is_open() {
                EvictReason::GatewayChanged
            } else {
                EvictReason::TransportError
            });
            self.close_in_background(*stale, downstream_sid, reason);
        }
        let (session, task) = Box::pin(UpstreamSession::connect(
            &self.connector,
            &gateway.id,
            &gateway.connection,
            init_params,
            on_message(),
        ))
        .await?;
        tracing::debug!(
            downstream_session = downstream_sid,
            gateway = %gateway.id,
            upstream_session = session.info().upstream_session_id.as_deref().unwrap_or("-"),
            "upstream session created"
        );
        self.metrics.acquire(Acquired::Created);
        let now = Instant::now();
        *state = SlotState::Live(Box::new(Live {
            session: session.clone(),
            task,
            gateway: Arc::clone(gateway),
            created_at: Utc::now(),
            created: now,
            last_used: now,
            uses: 1,
        }));
        Ok(session)
    }

    /// Drops `session` from its slot if it is still the one there: the caller
    /// saw it fail at the transport level. The next acquire builds a new one.
    pub async fn discard(
        &self,
        downstream_sid: &str,
        slots: &SessionSlots,
        session: &UpstreamSession,
    ) {
        let slot = lock(&slots.0).map.get(&session.info().gateway_id).cloned();
        let Some(slot) = slot else { return };
        let mut state = slot.lock().await;
        if matches!(&*state, SlotState::Live(l) if l.session.same_session(session)) {
            if let SlotState::Live(live) = std::mem::replace(&mut *state, SlotState::Empty) {
                drop(state);
                close_live(
                    *live,
                    downstream_sid,
                    EvictReason::TransportError,
                    self.grace,
                    &self.metrics,
                )
                .await;
            }
        }
    }

    /// Ends every upstream session of a downstream session; later acquires for
    /// it fail. Returns how many were closed.
    pub async fn evict_session(&self, downstream_sid: &str, reason: EvictReason) -> usize {
        let Some((_, slots)) = self.sessions.remove(downstream_sid) else {
            return 0;
        };
        let taken: Vec<(String, Arc<Slot>)> = {
            let mut s = lock(&slots.0);
            s.closed = true;
            s.map.drain().collect()
        };
        let closing = taken.into_iter().map(|(_, slot)| {
            let sid = downstream_sid.to_owned();
            async move { self.close_slot(&slot, &sid, reason, true).await }
        });
        join_all(closing)
            .await
            .into_iter()
            .filter(|closed| *closed)
            .count()
    }

    /// Closes every upstream session bound to `gateway_id`, in every
    /// downstream session. The downstream sessions stay open.
    pub async fn evict_gateway(&self, gateway_id: &str, reason: EvictReason) -> usize {
        let mut taken: Vec<(String, Arc<Slot>)> = Vec::new();
        for entry in self.sessions.iter() {
            if let Some(slot) = lock(&entry.value().0).map.remove(gateway_id) {
                taken.push((entry.key().clone(), slot));
            }
        }
        self.close_taken(&taken, reason).await
    }

    /// Ends everything, in parallel, each session bounded by the grace period.
    pub async fn close_all(&self) -> usize {
        let sids: Vec<String> = self.sessions.iter().map(|e| e.key().clone()).collect();
        let closing = sids
            .iter()
            .map(|sid| self.evict_session(sid, EvictReason::Shutdown));
        join_all(closing).await.into_iter().sum()
    }

    /// Closes every upstream session but keeps the downstream sessions open:
    /// their next calls connect afresh (used on reload, when credentials,
    /// TLS material or gateway definitions may have changed).
    pub async fn close_all_upstreams(&self, reason: EvictReason) -> usize {
        let mut taken: Vec<(String, Arc<Slot>)> = Vec::new();
        for entry in self.sessions.iter() {
            let mut slots = lock(&entry.value().0);
            taken.extend(
                slots
                    .map
                    .drain()
                    .map(|(_, slot)| (entry.key().clone(), slot)),
            );
        }
        self.close_taken(&taken, reason).await
    }

    /// Live upstream sessions right now (for the metrics gauge).
    pub fn live_count(&self) -> usize {
        self.sessions
            .iter()
            .map(|e| lock(&e.value().0).map.len())
            .sum()
    }

    /// Closes slots taken out of their maps, in parallel; the count closed.
    async fn close_taken(&self, taken: &[(String, Arc<Slot>)], reason: EvictReason) -> usize {
        let closing = taken
            .iter()
            .map(|(sid, slot)| self.close_slot(slot, sid, reason, false));
        join_all(closing)
            .await
            .into_iter()
            .filter(|closed| *closed)
            .count()
    }

    /// Takes the slot's live session (waiting for an in-flight connect to
    /// finish) and closes it. `seal` marks the slot closed so a caller still
    /// holding it cannot reconnect.
    async fn close_slot(&self, slot: &Slot, sid: &str, reason: EvictReason, seal: bool) -> bool {
        let mut state = slot.lock().await;
        let next = if seal {
            SlotState::Closed
        } else {
            SlotState::Empty
        };
        match std::mem::replace(&mut *state, next) {
            SlotState::Live(live) => {
                drop(state);
                close_live(*live, sid, reason, self.grace, &self.metrics).await;
                true
            }
            SlotState::Empty | SlotState::Closed => false,
        }
    }

    fn close_in_background(&self, live: Live, sid: &str, reason: EvictReason) {
        let sid = sid.to_owned();
        let grace = self.grace;
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move { close_live(live, &sid, reason, grace, &metrics).await });
    }

    /// The live upstream session of `(downstream_sid, gateway_id)`, if there
    /// is one and it is not busy connecting; never connects.
    pub fn peek(&self, downstream_sid: &str, gateway_id: &str) -> Option<UpstreamSession> {
        let slots = self
            .sessions
            .get(downstream_sid)
            .map(|e| e.value().clone())?;
        let slot = lock(&slots.0).map.get(gateway_id).cloned()?;
        let state = slot.try_lock().ok()?;
        match &*state {
            SlotState::Live(l) if l.session.is_open() => Some(l.session.clone()),
            _ => None,
        }
    }

    /// Number of downstream sessions known to the registry.
    pub fn downstream_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every live upstream session. Slots busy connecting are skipped rather
    /// than waited for, so the snapshot never blocks on I/O.
    pub fn snapshot(&self) -> Vec<SessionEntry> {
        let now = Instant::now();
        let mut out = Vec::new();
        for entry in self.sessions.iter() {
            let slots: Vec<Arc<Slot>> = lock(&entry.value().0).map.values().cloned().collect();
            for slot in slots {
                let Ok(state) = slot.try_lock() else { continue };
                if let SlotState::Live(l) = &*state {
                    let info = l.session.info();
                    out.push(SessionEntry {
                        downstream_session_id: entry.key().clone(),
                        gateway_id: info.gateway_id.clone(),
                        upstream_session_id: info.upstream_session_id.clone(),
                        protocol_version: info.protocol_version.clone(),
                        created_at: l.created_at,
                        last_used_secs_ago: now.duration_since(l.last_used).as_secs_f64(),
                        use_count: l.uses,
                        age_secs: now.duration_since(l.created).as_secs_f64(),
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            a.downstream_session_id
                .cmp(&b.downstream_session_id)
                .then_with(|| a.gateway_id.cmp(&b.gateway_id))
        });
        out
    }
}

async fn close_live(
    live: Live,
    sid: &str,
    reason: EvictReason,
    grace: Duration,
    metrics: &Metrics,
) {
    metrics.evicted(reason.as_str(), 1);
    let gateway = live.session.info().gateway_id.clone();
    drop(live.session);
    match live.task.close(grace).await {
        CloseOutcome::Closed => {
            tracing::debug!(downstream_session = sid, gateway = %gateway, reason = reason.as_str(), "upstream session closed");
        }
        CloseOutcome::Aborted => {
            tracing::warn!(
                downstream_session = sid,
                gateway = %gateway,
                reason = reason.as_str(),
                grace_ms = grace.as_millis() as u64,
                "upstream session did not close within its grace period; aborted"
            );
        }
    }
}
