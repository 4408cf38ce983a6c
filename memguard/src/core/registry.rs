//! The process-wide registry of everything [`purge`](crate::purge) must wipe.
//!
//! A slab of weak references behind one mutex: registering and deregistering are O(1) (a free list reuses
//! slots), and purge takes a snapshot of the live items so that an item's own `purge` can deregister it
//! without deadlocking.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long a purge waits for accesses in progress on other threads before it wipes their memory anyway.
pub const PURGE_GRACE: Duration = Duration::from_millis(500);

/// What a purge asks of each item: until when it may wait for accesses on other threads, and whether the
/// process is about to exit (then accesses on the calling thread are wiped at once too, since they will
/// never end).
#[derive(Clone, Copy, Debug)]
pub struct PurgeRequest {
    deadline: Instant,
    exiting: bool,
}

impl PurgeRequest {
    /// A request that allows `grace` from now for accesses on other threads to end.
    pub fn new(grace: Duration, exiting: bool) -> PurgeRequest {
        let now = Instant::now();
        PurgeRequest {
            deadline: now.checked_add(grace).unwrap_or(now),
            exiting,
        }
    }

    /// Until when the item may wait for accesses on other threads to end.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// True when the process exits right after the purge ([`safe_exit`](crate::safe_exit), a caught signal).
    pub fn is_exiting(&self) -> bool {
        self.exiting
    }
}

/// Something holding secret memory that [`purge`](crate::purge) must wipe and release.
pub trait Purgeable: Send + Sync {
    /// Wipes and releases the item's memory. Later use of the item must fail cleanly, not touch freed memory.
    ///
    /// Accesses in progress on other threads may be waited for until [`PurgeRequest::deadline`]; after it the
    /// memory is wiped in place and left no-access (a late read faults, it never sees other data). An access
    /// in progress on the calling thread is finished off when it ends, or at once when
    /// [`PurgeRequest::is_exiting`].
    fn purge(&self, request: &PurgeRequest);
}

struct Slab {
    slots: Vec<Option<Weak<dyn Purgeable>>>,
    free: Vec<usize>,
    live: usize,
}

static REGISTRY: Mutex<Slab> = Mutex::new(Slab {
    slots: Vec::new(),
    free: Vec::new(),
    live: 0,
});

fn registry() -> MutexGuard<'static, Slab> {
    // The slab is consistent after every statement, so a panic elsewhere cannot leave it half-updated.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps an item registered for [`purge`](crate::purge); deregisters it when dropped.
#[must_use = "the item is deregistered when the Registration is dropped"]
#[derive(Debug)]
pub struct Registration {
    slot: usize,
}

/// Registers `item` so that [`purge`](crate::purge) reaches it while it is alive. O(1).
pub fn register(item: Weak<dyn Purgeable>) -> Registration {
    let mut slab = registry();
    slab.live += 1;
    let slot = match slab.free.pop() {
        Some(slot) => {
            slab.slots[slot] = Some(item);
            slot
        }
        None => {
            slab.slots.push(Some(item));
            slab.slots.len() - 1
        }
    };
    Registration { slot }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slab = registry();
        // Take the weak reference out and drop it after the lock is released: dropping the last weak of a
        // dead `Arc` frees its allocation, which must not run under the registry lock for no reason.
        let weak = slab.slots[self.slot].take();
        slab.free.push(self.slot);
        slab.live -= 1;
        drop(slab);
        drop(weak);
    }
}

/// Strong references to every registered item still alive, taken under the lock and returned without it.
pub(crate) fn live_items() -> Vec<Arc<dyn Purgeable>> {
    let slab = registry();
    slab.slots
        .iter()
        .filter_map(|slot| slot.as_ref().and_then(Weak::upgrade))
        .collect()
}

/// How many items are registered now (live or not yet deregistered).
pub fn registered_count() -> usize {
    registry().live
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter(AtomicUsize);
    impl Purgeable for Counter {
        fn purge(&self, _: &PurgeRequest) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn contains(item: &Arc<Counter>) -> bool {
        live_items()
            .iter()
            .any(|i| std::ptr::addr_eq(Arc::as_ptr(i), Arc::as_ptr(item)))
    }

    #[test]
    fn registered_items_are_reachable_until_deregistered_or_dropped() {
        let a = Arc::new(Counter(AtomicUsize::new(0)));
        let reg_a = register(Arc::downgrade(&a) as Weak<dyn Purgeable>);
        assert!(contains(&a));
        drop(reg_a);
        assert!(!contains(&a));

        let b = Arc::new(Counter(AtomicUsize::new(0)));
        let reg_b = register(Arc::downgrade(&b) as Weak<dyn Purgeable>);
        let b_ptr = Arc::as_ptr(&b) as *const ();
        drop(b);
        assert!(!live_items()
            .iter()
            .any(|i| std::ptr::addr_eq(Arc::as_ptr(i), b_ptr)));
        drop(reg_b);
    }

    #[test]
    fn freed_slots_are_reused() {
        let items: Vec<_> = (0..64)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let regs: Vec<_> = items
            .iter()
            .map(|i| register(Arc::downgrade(i) as Weak<dyn Purgeable>))
            .collect();
        let before = registry().slots.len();
        drop(regs);
        // Registering as many again must not grow the slab by more than other tests could have added.
        let regs: Vec<_> = items
            .iter()
            .map(|i| register(Arc::downgrade(i) as Weak<dyn Purgeable>))
            .collect();
        assert!(registry().slots.len() < before + 64);
        drop(regs);
    }
}
