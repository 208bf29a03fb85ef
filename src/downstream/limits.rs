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

/// Held while a request is in flight; gives its slot back when dropped.
///
/// Only that: a principal with nothing in flight is forgotten by
/// [`InflightLimits::forget_idle`], on the idle-session sweep. Forgetting it
/// here, on the request's way out, cost every request a look at the map and
/// two more reference counts, all on cache lines every request of that
/// principal writes, from every thread.
pub struct Permit {
    _taken: Taken,
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
        Ok(Permit { _taken: taken })
    }

    /// Forgets principals with nothing in flight. Safe against a request
    /// taking a slot meanwhile: a lookup clones the slots under the shard
    /// lock this takes, and a cloned entry is kept.
    pub fn forget_idle(&self) {
        self.principals
            .retain(|_, slots| Arc::strong_count(slots) > 1 || slots.in_use() > 0);
    }

    /// A slot among one session's in-flight requests.
    pub(crate) fn session(slots: &Arc<Slots>, limit: usize) -> Result<Permit, HttpError> {
        let taken = slots.take(limit).ok_or(HttpError::TooBusy {
            whose: "session",
            limit,
        })?;
        Ok(Permit { _taken: taken })
    }

    /// Principals the map holds: those with requests in flight, and idle
    /// ones until the next [`forget_idle`](Self::forget_idle).
    #[cfg(test)]
    fn tracked_principals(&self) -> usize {
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
        drop((two, three));
        limits.forget_idle();
        assert_eq!(
            limits.tracked_principals(),
            1,
            "bob still has one in flight"
        );
        let again = limits.principal(&bob).unwrap();
        assert!(
            matches!(limits.principal(&bob), Err(HttpError::TooBusy { .. })),
            "bob's slots survived the sweep: his two requests are counted"
        );
        drop((other, again));
        limits.forget_idle();
        assert_eq!(
            limits.tracked_principals(),
            0,
            "idle principals are dropped"
        );
    }
}
