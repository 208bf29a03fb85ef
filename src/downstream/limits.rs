//! In-flight limits on the MCP endpoints: how many POSTs one session, and one
//! principal across all its sessions, may have open at once. Over the limit
//! the request is refused at once with 429 and `Retry-After` — before it
//! touches a session, the registry or an upstream — rather than queued, so a
//! flooding client cannot make itself or anyone else wait.
//!
//! Long-lived GET streams are not counted: they are one per session and hold
//! no upstream request.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::HttpError;
use crate::auth::Principal;

/// One semaphore per principal with requests in flight, by principal id.
type PrincipalSlots = Arc<DashMap<Arc<str>, Arc<Semaphore>>>;

pub struct InflightLimits {
    per_principal: usize,
    principals: PrincipalSlots,
}

/// What a principal permit needs to drop its semaphore once idle.
struct Cleanup {
    map: PrincipalSlots,
    id: Arc<str>,
    full: usize,
}

/// Held for the life of a request; dropping it frees the slot.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    /// For the principal map's cleanup, set on principal permits.
    cleanup: Option<Cleanup>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(Cleanup { map, id, full }) = self.cleanup.take() {
            // Our permit is still held here, so "idle" means all but ours are
            // back. The check runs under the entry's shard lock, which
            // `principal` also takes to clone the semaphore: an entry another
            // request is about to use is never removed.
            map.remove_if(&id, |_, sem| {
                Arc::strong_count(sem) <= 2 && sem.available_permits() + 1 >= full
            });
        }
    }
}

impl InflightLimits {
    pub fn new(per_principal: usize) -> Self {
        Self {
            per_principal,
            principals: Arc::new(DashMap::new()),
        }
    }

    /// A slot among the principal's in-flight requests, or 429.
    pub(crate) fn principal(&self, who: &Principal) -> Result<Permit, HttpError> {
        let sem = Arc::clone(
            self.principals
                .entry(Arc::clone(&who.id))
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_principal)))
                .value(),
        );
        let permit = sem.try_acquire_owned().map_err(|_| HttpError::TooBusy {
            whose: "principal",
            limit: self.per_principal,
        })?;
        Ok(Permit {
            _permit: permit,
            cleanup: Some(Cleanup {
                map: Arc::clone(&self.principals),
                id: Arc::clone(&who.id),
                full: self.per_principal,
            }),
        })
    }

    /// A slot among the session's in-flight requests, or 429.
    pub(crate) fn session(sem: &Arc<Semaphore>, limit: usize) -> Result<Permit, HttpError> {
        let permit = Arc::clone(sem)
            .try_acquire_owned()
            .map_err(|_| HttpError::TooBusy {
                whose: "session",
                limit,
            })?;
        Ok(Permit {
            _permit: permit,
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
