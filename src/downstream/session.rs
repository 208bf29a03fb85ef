//! Downstream MCP sessions: created by `initialize`, named by an unguessable
//! `Mcp-Session-Id`, ended by DELETE (or idle expiry).
//!
//! A session belongs to the principal that created it: presented by anyone
//! else it does not exist (404, exactly as an unknown id), so a leaked or
//! guessed id is useless without its owner's credentials.
//!
//! An ended id is removed for good: nothing here can revive it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::catalog::Scope;
use crate::interim;
use crate::jsonrpc::Message;
use crate::registry::SessionSlots;
use crate::upstream::UpstreamSession;
use crate::FastHash;

/// Session ids are 128 random bits as 32 lower-case hex digits.
const ID_LEN: usize = 32;

pub struct DownstreamSession {
    pub id: String,
    /// The endpoint it was created on; it may only be used there.
    pub scope: Scope,
    /// Who created it; only they may use it.
    pub principal: Principal,
    pub protocol_version: &'static str,
    /// The client's `initialize` params, kept for reference.
    pub client_params: Box<RawValue>,
    /// The `initialize` params this session's upstream sessions are opened
    /// with: the client's capabilities and identity, our protocol version.
    pub upstream_init_params: Box<RawValue>,
    /// Requests upstreams sent to this session's client (sampling,
    /// elicitation, roots), by the id the client saw; answered by the
    /// client's response POST.
    pub pending: Mutex<HashMap<String, PendingRequest, FastHash>>,
    /// This session's requests in flight upstream, by the client's id, so a
    /// `notifications/cancelled` can be translated.
    pub inflight: Mutex<HashMap<RequestKey, Inflight, FastHash>>,
    /// The level the client asked for with `logging/setLevel`, if any.
    pub log_level: Mutex<Option<String>>,
    next_relay_id: AtomicU64,
    /// Messages for the client outside any request: they wait here until the
    /// client's GET stream takes them (bounded; overflow is dropped and logged).
    pub outbox: mpsc::Sender<Outgoing>,
    outbox_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    pub created_at: DateTime<Utc>,
    pub initialized: AtomicBool,
    /// Cancelled when the session ends; its GET streams close with it.
    pub ended: CancellationToken,
    /// Slots for its in-flight requests (`limits.rs`).
    pub inflight_slots: Arc<super::limits::Slots>,
    /// Its upstream sessions, one slot per gateway (`registry.rs`).
    pub upstreams: SessionSlots,
    born: Instant,
    /// Milliseconds since `born` at the last request.
    last_active_ms: AtomicU64,
}

/// Something to tell the client on its GET stream.
pub enum Outgoing {
    /// A message an upstream sent on its own (gateway id, message);
    /// translated when delivered. Boxed: the channel allocates slots of this
    /// size for every session.
    Upstream(Box<(String, Message)>),
    /// A message of the gateway's own, ready to send (e.g. `list_changed`).
    Ready(String),
}

/// Bound on messages waiting for a GET stream.
const OUTBOX_CAPACITY: usize = 256;

/// The receiving end of a session's outbox, lent to one GET stream at a time
/// and handed back when that stream ends.
pub struct OutboxLease {
    session: Arc<DownstreamSession>,
    rx: Option<mpsc::Receiver<Outgoing>>,
}

impl OutboxLease {
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.rx.as_mut()?.recv().await
    }
}

impl Drop for OutboxLease {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            *lock(&self.session.outbox_rx) = Some(rx);
        }
    }
}

/// A request an upstream sent that awaits the client's answer.
pub struct PendingRequest {
    pub upstream: UpstreamSession,
    /// The id the upstream gave it.
    pub upstream_id: Box<RawValue>,
}

/// A client request being served by an upstream.
pub struct Inflight {
    pub upstream: UpstreamSession,
    pub upstream_id: u64,
    /// Ends the request's wait for its answer.
    pub cancel: interim::Cancel<Message>,
}

/// A client's request id as the in-flight map knows it: an integer without
/// an allocation (the usual id, and this is on every call), a string by its
/// value, so `"a"` and `"\u0061"` name the same request, as JSON says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestKey {
    Integer(i64),
    Text(Box<str>),
    /// An integer beyond `i64`, by its JSON text.
    Wide(Box<str>),
}

impl RequestKey {
    /// The key of a request's `id` as it arrived (a string or an integer;
    /// anything else has no key).
    pub fn of(id: &RawValue) -> Option<RequestKey> {
        let text = id.get();
        if text.starts_with('"') {
            return serde_json::from_str::<String>(text)
                .ok()
                .map(|s| RequestKey::Text(s.into()));
        }
        match text.parse::<i64>() {
            Ok(n) => Some(RequestKey::Integer(n)),
            Err(_) if text.parse::<u64>().is_ok() => Some(RequestKey::Wide(text.into())),
            Err(_) => None,
        }
    }

    /// The key of a `requestId` read from a notification's params.
    pub fn of_value(id: &serde_json::Value) -> Option<RequestKey> {
        match id {
            serde_json::Value::String(s) => Some(RequestKey::Text(s.as_str().into())),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Some(RequestKey::Integer(i)),
                (None, Some(u)) => Some(RequestKey::Wide(u.to_string().into())),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A std mutex around a small map, never held across an await.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DownstreamSession {
    /// Lends the outbox to a GET stream; `None` while another stream holds it
    /// (each message goes to exactly one stream).
    pub fn lease_outbox(self: &Arc<Self>) -> Option<OutboxLease> {
        let rx = lock(&self.outbox_rx).take()?;
        Some(OutboxLease {
            session: Arc::clone(self),
            rx: Some(rx),
        })
    }

    /// Queues a message for the client's GET stream.
    pub fn post_to_client(&self, item: Outgoing) {
        if self.outbox.try_send(item).is_err() {
            tracing::warn!(session = %self.id, "client message dropped: outbox full or closed (no GET stream reading it?)");
        }
    }

    /// A fresh id for a request relayed to the client; the prefix keeps it
    /// apart from any id space an upstream uses.
    pub fn next_relay_id(&self) -> String {
        format!("sy-{}", self.next_relay_id.fetch_add(1, Ordering::Relaxed))
    }

    pub fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }
}

pub struct SessionStore {
    map: DashMap<String, Arc<DownstreamSession>, FastHash>,
    /// Requests one session may have in flight.
    max_inflight: usize,
}

impl Default for SessionStore {
    fn default() -> Self {
        Self::new(32)
    }
}

impl SessionStore {
    pub fn new(max_inflight: usize) -> Self {
        Self {
            map: DashMap::with_hasher(FastHash::default()),
            max_inflight,
        }
    }

    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    pub fn create(
        &self,
        scope: Scope,
        principal: Principal,
        protocol_version: &'static str,
        client_params: Box<RawValue>,
        id: String,
        upstreams: SessionSlots,
    ) -> Arc<DownstreamSession> {
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let session = Arc::new(DownstreamSession {
            id: id.clone(),
            scope,
            principal,
            protocol_version,
            upstream_init_params: upstream_init_params(&client_params),
            client_params,
            pending: Mutex::new(HashMap::default()),
            inflight: Mutex::new(HashMap::default()),
            log_level: Mutex::new(None),
            next_relay_id: AtomicU64::new(1),
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            created_at: Utc::now(),
            initialized: AtomicBool::new(false),
            ended: CancellationToken::new(),
            inflight_slots: Arc::default(),
            upstreams,
            born: Instant::now(),
            last_active_ms: AtomicU64::new(0),
        });
        self.map.insert(id, Arc::clone(&session));
        session
    }

    /// The session `id` if `principal` owns it; `None` alike for ids never
    /// issued, ended, malformed, or owned by someone else.
    pub fn get_for(&self, id: &str, principal: &Principal) -> Option<Arc<DownstreamSession>> {
        self.get(id).filter(|s| s.principal.id == principal.id)
    }

    /// Ids of the sessions `principal_id` owns.
    pub fn owned_by(&self, principal_id: &str) -> Vec<String> {
        self.map
            .iter()
            .filter(|e| &*e.value().principal.id == principal_id)
            .map(|e| e.key().clone())
            .collect()
    }

    /// Looks an id up; ids that are not of our shape are rejected before the lookup.
    pub fn get(&self, id: &str) -> Option<Arc<DownstreamSession>> {
        if !well_formed(id) {
            return None;
        }
        self.map.get(id).map(|e| Arc::clone(e.value()))
    }

    pub fn remove(&self, id: &str) -> Option<Arc<DownstreamSession>> {
        let (_, s) = self.map.remove(id)?;
        s.ended.cancel();
        Some(s)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Ids of sessions idle for longer than `limit`.
    pub fn idle_longer_than(&self, limit: std::time::Duration) -> Vec<String> {
        self.map
            .iter()
            .filter(|e| e.value().idle_for() > limit)
            .map(|e| e.key().clone())
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<DownstreamSession>> {
        self.map.iter().map(|e| Arc::clone(e.value())).collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.map.iter().map(|e| e.key().clone()).collect()
    }
}

/// The client's capabilities and `clientInfo`, at the protocol version the
/// gateway speaks upstream: each upstream session serves exactly this client,
/// so servers that tailor their offer to the client see the real one.
fn upstream_init_params(client: &RawValue) -> Box<RawValue> {
    let parsed: serde_json::Value = serde_json::from_str(client.get()).unwrap_or_default();
    let capabilities = parsed
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let client_info = parsed.get("clientInfo").cloned().unwrap_or_else(
        || serde_json::json!({"name": "switchyard", "version": env!("CARGO_PKG_VERSION")}),
    );
    crate::jsonrpc::to_raw(&serde_json::json!({
        "protocolVersion": crate::mcp::LATEST_VERSION,
        "capabilities": capabilities,
        "clientInfo": client_info,
    }))
}

/// A fresh session id: 128 random bits from the OS-seeded CSPRNG, as hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub fn well_formed(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let store = SessionStore::default();
        let raw = crate::jsonrpc::to_raw(&serde_json::json!({}));
        let alice = Principal::api_token("a", "alice", false);
        let bob = Principal::api_token("b", "bob", false);
        let open = |raw| {
            let slots = SessionSlots::default();
            store.create(
                Scope::All,
                alice.clone(),
                "2025-11-25",
                raw,
                new_id(),
                slots,
            )
        };
        let a = open(raw.clone());
        let b = open(raw);
        assert_ne!(a.id, b.id);
        assert!(well_formed(&a.id));
        assert!(store.get(&a.id).is_some());
        assert!(store.get_for(&a.id, &alice).is_some());
        assert!(store.get_for(&a.id, &bob).is_none());
        assert_eq!(store.owned_by(&alice.id).len(), 2);
        assert!(store.get("../../etc/passwd").is_none());
        assert!(store.remove(&a.id).is_some());
        assert!(a.ended.is_cancelled());
        assert!(store.get(&a.id).is_none());
        assert!(store.remove(&a.id).is_none());
    }

    #[test]
    fn a_request_id_has_one_key_however_it_is_written() {
        let key = |raw: &str| RequestKey::of(&crate::jsonrpc::raw(raw.to_owned()));
        let value = |v: serde_json::Value| RequestKey::of_value(&v);
        assert_eq!(key("7"), Some(RequestKey::Integer(7)));
        assert_eq!(key("7"), value(serde_json::json!(7)));
        assert_eq!(key("-3"), value(serde_json::json!(-3)));
        // A string and an integer with the same digits are two requests.
        assert_ne!(key("\"7\""), key("7"));
        assert_eq!(key("\"7\""), value(serde_json::json!("7")));
        // Escapes name the same string.
        assert_eq!(key("\"\\u0061\""), value(serde_json::json!("a")));
        assert_eq!(
            key("18446744073709551615"),
            value(serde_json::json!(u64::MAX))
        );
        assert_eq!(key("null"), None);
        assert_eq!(key("1.5"), None);
        assert_eq!(value(serde_json::json!(null)), None);
    }
}
