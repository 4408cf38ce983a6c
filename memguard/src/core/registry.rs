//! The process-wide registry of everything [`purge`](crate::purge) must wipe.
//!
//! A slab of weak references behind one mutex: registering and deregistering are O(1) (a free list reuses
//! slots), and purge takes a snapshot of the live items so that an item's own `purge` can deregister it
//! without deadlocking.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use memcall::PerProcess;
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

/// The registry of one process. A forked child starts with an empty one ([`PerProcess`]): the parent's items
/// are not the child's to purge (their pages are not mapped there), and the parent's lock may have been held by
/// a thread that does not exist in the child.
static REGISTRY: PerProcess<Mutex<Slab>> = PerProcess::new(|| {
    Mutex::new(Slab {
        slots: Vec::new(),
        free: Vec::new(),
        live: 0,
    })
});

fn lock(slab: &Mutex<Slab>) -> MutexGuard<'_, Slab> {
    // The slab is consistent after every statement, so a panic elsewhere cannot leave it half-updated.
    slab.lock().unwrap_or_else(PoisonError::into_inner)
}

fn registry() -> MutexGuard<'static, Slab> {
    lock(REGISTRY.get())
}

/// Keeps an item registered for [`purge`](crate::purge); deregisters it when dropped.
///
/// A registration made by a parent process and dropped in a forked child does nothing: its slot is in the
/// parent's registry, which the child never touches, so it cannot free a slot of the child's own registry.
#[must_use = "the item is deregistered when the Registration is dropped"]
#[derive(Debug)]
pub struct Registration {
    slot: usize,
    /// [`memcall::fork_epoch`] when registered: the registry the slot belongs to.
    epoch: u64,
}

/// Registers `item` so that [`purge`](crate::purge) reaches it while it is alive. O(1).
pub fn register(item: Weak<dyn Purgeable>) -> Registration {
    let epoch = memcall::fork_epoch();
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
    Registration { slot, epoch }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if memcall::fork_epoch() != self.epoch {
            // Registered by the parent: not in this process's registry.
            return;
        }
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

/// Strong references to every item this process registered that is still alive, taken under the lock and
/// returned without it. In a forked child, the parent's items are not among them.
pub(crate) fn live_items() -> Vec<Arc<dyn Purgeable>> {
    let Some(slab) = REGISTRY.get_if_built() else {
        return Vec::new();
    };
    let slab = lock(slab);
    slab.slots
        .iter()
        .filter_map(|slot| slot.as_ref().and_then(Weak::upgrade))
        .collect()
}

/// How many items are registered now (live or not yet deregistered) in this process: a forked child does not
/// count its parent's.
pub fn registered_count() -> usize {
    REGISTRY.get_if_built().map_or(0, |slab| lock(slab).live)
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

    #[cfg(unix)]
    #[test]
    fn a_forked_child_sees_none_of_the_parents_items_and_their_registrations_leave_its_own_alone() {
        let parent_item = Arc::new(Counter(AtomicUsize::new(0)));
        let parent_reg = register(Arc::downgrade(&parent_item) as Weak<dyn Purgeable>);
        // SAFETY: the child only uses the registry (std mutex and allocations, which glibc keeps usable after
        // fork) and `_exit`s; nothing else in this test binary runs in it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = (|| {
                if registered_count() != 0 || !live_items().is_empty() {
                    return false;
                }
                let own = Arc::new(Counter(AtomicUsize::new(0)));
                let own_reg = register(Arc::downgrade(&own) as Weak<dyn Purgeable>);
                // The parent's registration names a slot of the parent's registry, whose number may well be the
                // child's own item's: dropping it must not free the child's slot.
                drop(parent_reg);
                let still_there = contains(&own) && registered_count() == 1;
                for item in live_items() {
                    item.purge(&PurgeRequest::new(PURGE_GRACE, false));
                }
                let purged_own_only =
                    own.0.load(Ordering::SeqCst) == 1 && parent_item.0.load(Ordering::SeqCst) == 0;
                drop(own_reg);
                still_there && purged_own_only && registered_count() == 0
            })();
            // SAFETY: `_exit` is always safe; it skips the harness's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-parameter.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(contains(&parent_item), "the parent's registry is unchanged");
        drop(parent_reg);
    }
}
