//! [`PerProcess`]: a lazily made value owned by the process that made it.
//!
//! After `fork()` the child sees a fresh value: the parent's is leaked, never dropped, locked or otherwise
//! touched (a parent thread may have held its mutex at fork time, and the pages it refers to may not be
//! mapped in the child).

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

struct Slot<T> {
    epoch: u64,
    value: T,
}

/// A value made on first use in each process (per `memcall::fork_epoch()`).
pub(crate) struct PerProcess<T: 'static> {
    slot: AtomicPtr<Slot<T>>,
    init: fn() -> T,
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    pub(crate) const fn new(init: fn() -> T) -> PerProcess<T> {
        PerProcess {
            slot: AtomicPtr::new(ptr::null_mut()),
            init,
        }
    }

    /// This process's value, made now if this process has none yet.
    pub(crate) fn get(&self) -> &T {
        let epoch = memcall::fork_epoch();
        let current = self.slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot pointer always comes from `Box::into_raw` and is never freed once published.
        if let Some(slot) = unsafe { current.as_ref() } {
            if slot.epoch == epoch {
                return &slot.value;
            }
        }
        let fresh = Box::into_raw(Box::new(Slot {
            epoch,
            value: (self.init)(),
        }));
        match self
            .slot
            .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // The previous slot (a parent's) is leaked on purpose.
            // SAFETY: `fresh` is published now and never freed.
            Ok(_) => unsafe { &(*fresh).value },
            Err(winner) => {
                // SAFETY: `fresh` was never published: this is its only owner.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: published slots are never freed. Another thread of this process published it after
                // the fork, so it belongs to this epoch.
                unsafe { &(*winner).value }
            }
        }
    }

    /// This process's value if it has been made, without making it.
    // Only the private-stack cache uses it, which exists on x86_64 and aarch64 Unix.
    #[cfg_attr(
        not(all(unix, any(target_arch = "x86_64", target_arch = "aarch64"))),
        allow(dead_code)
    )]
    pub(crate) fn get_if_made(&self) -> Option<&T> {
        let current = self.slot.load(Ordering::Acquire);
        // SAFETY: as in `get`.
        let slot = unsafe { current.as_ref() }?;
        (slot.epoch == memcall::fork_epoch()).then_some(&slot.value)
    }
}
