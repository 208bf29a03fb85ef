//! In-flight limits on the MCP endpoints: how many POSTs one session, and one
//! principal across all its sessions, may have open at once. Over the limit
//! the request is refused at once with 429 and `Retry-After` — before it
//! touches a session, the registry or an upstream — rather than queued, so a
//! flooding client cannot make itself or anyone else wait.
//!
//! Long-lived GET streams are not counted: they are one per session and hold
//! no upstream request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::HttpError;
use crate::auth::Principal;
use crate::FastHash;

/// Requests in flight against one limit. One atomic rather than a
/// semaphore: nothing ever waits for a slot (over the limit is refused), and
/// a semaphore's release takes a lock — on every request, shared by every
/// request of a principal on every thread.
#[derive(Default)]
pub struct Slots(AtomicUsize);

impl Slots {
    /// A slot, or `None` when `limit` are taken.
    fn take(self: &Arc<Self>, limit: usize) -> Option<Taken> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Taken(Arc::clone(self)))
    }

    fn in_use(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

struct Taken(Arc<Slots>);

impl Drop for Taken {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

type PrincipalSlots = Arc<DashMap<Arc<str>, Arc<Slots>, FastHash>>;

pub struct InflightLimits {
    per_principal: usize,
    principals: PrincipalSlots,
}

struct Cleanup {
    map: PrincipalSlots,
    id: Arc<str>,
}

/// Held while a request is in flight; gives its slot back when dropped.
pub struct Permit {
    taken: Option<Taken>,
    cleanup: Option<Cleanup>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(taken) = self.taken.take() else {
            return;
        };
        let slots = Arc::clone(&taken.0);
        drop(taken);
        if let Some(Cleanup { map, id }) = self.cleanup.take() {
            // Forget a principal with nothing in flight, unless someone else
            // holds its slots (the map's reference and ours are two; a
            // lookup clones under the shard lock this takes, so cannot race).
            if slots.in_use() == 0 {
                map.remove_if(&id, |_, s| {
                    Arc::ptr_eq(s, &slots) && Arc::strong_count(s) <= 2 && s.in_use() == 0
                });
            }
        }
    }
}

impl InflightLimits {
    pub fn new(per_principal: usize) -> Self {
        Self {
            per_principal,
            principals: Arc::new(DashMap::with_hasher(FastHash::default())),
        }
    }

    /// A slot among the principal's in-flight requests (all its sessions).
    pub(crate) fn principal(&self, who: &Principal) -> Result<Permit, HttpError> {
        // A shared lookup first: `entry` would take the shard's write lock
        // on every request.
        let existing = self.principals.get(&who.id).map(|e| Arc::clone(e.value()));
        let slots = existing.unwrap_or_else(|| {
            Arc::clone(
                self.principals
                    .entry(Arc::clone(&who.id))
                    .or_default()
                    .value(),
            )
        });
        let taken = slots.take(self.per_principal).ok_or(HttpError::TooBusy {
            whose: "principal",
            limit: self.per_principal,
        })?;
        Ok(Permit {
            taken: Some(taken),
            cleanup: Some(Cleanup {
                map: Arc::clone(&self.principals),
                id: Arc::clone(&who.id),
            }),
        })
    }

    /// A slot among one session's in-flight requests.
    pub(crate) fn session(slots: &Arc<Slots>, limit: usize) -> Result<Permit, HttpError> {
        let taken = slots.take(limit).ok_or(HttpError::TooBusy {
            whose: "session",
            limit,
        })?;
        Ok(Permit {
            taken: Some(taken),
            cleanup: None,
        })
    }

    /// Principals with requests in flight (for tests and the admin window).
    pub fn tracked_principals(&self) -> usize {
        self.principals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_slots_are_refused_over_the_limit_and_forgotten_when_idle() {
        let limits = InflightLimits::new(2);
        let alice = Principal::api_token("a", "alice", false);
        let bob = Principal::api_token("b", "bob", false);
        let one = limits.principal(&alice).unwrap();
        let two = limits.principal(&alice).unwrap();
        assert!(matches!(
            limits.principal(&alice),
            Err(HttpError::TooBusy {
                whose: "principal",
                ..
            })
        ));
        let other = limits.principal(&bob).unwrap();
        drop(one);
        let three = limits.principal(&alice).unwrap();
        drop((two, three, other));
        assert_eq!(
            limits.tracked_principals(),
            0,
            "idle principals are dropped"
        );
    }
}
