//! Downstream MCP sessions: created by `initialize`, named by an unguessable
//! `Mcp-Session-Id`, ended by DELETE (or idle expiry).
//!
//! A session belongs to the principal that created it: presented by anyone
//! else it does not exist (404, exactly as an unknown id), so a leaked or
//! guessed id is useless without its owner's credentials.
//!
//! An ended id is removed for good: nothing here can revive it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::catalog::Scope;

/// Session ids are 128 random bits as 32 lower-case hex digits.
const ID_LEN: usize = 32;

pub struct DownstreamSession {
    pub id: String,
    /// The endpoint it was created on; it may only be used there.
    pub scope: Scope,
    /// Who created it; only they may use it.
    pub principal: Principal,
    pub protocol_version: &'static str,
    /// The client's `initialize` params, kept for forwarding upstream.
    pub client_params: Box<RawValue>,
    pub created_at: DateTime<Utc>,
    pub initialized: AtomicBool,
    /// Cancelled when the session ends; its GET streams close with it.
    pub ended: CancellationToken,
    /// Slots for its in-flight requests (`limits.rs`).
    pub inflight: Arc<Semaphore>,
    born: Instant,
    /// Milliseconds since `born` at the last request.
    last_active_ms: AtomicU64,
}

impl DownstreamSession {
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
    map: DashMap<String, Arc<DownstreamSession>>,
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
            map: DashMap::new(),
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
    ) -> Arc<DownstreamSession> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let session = Arc::new(DownstreamSession {
            id: id.clone(),
            scope,
            principal,
            protocol_version,
            client_params,
            created_at: Utc::now(),
            initialized: AtomicBool::new(false),
            ended: CancellationToken::new(),
            inflight: Arc::new(Semaphore::new(self.max_inflight)),
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
        let a = store.create(Scope::All, alice.clone(), "2025-11-25", raw.clone());
        let b = store.create(Scope::All, alice.clone(), "2025-11-25", raw);
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
}
