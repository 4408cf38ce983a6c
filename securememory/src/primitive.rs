//! The synchronisation primitives of the access state machine, swapped for loom's models under `--cfg loom`
//! so `tests/loom.rs` can explore every interleaving.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` behind loom's closure-based interface, so the same code runs in both worlds.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Declares a thread-local with the primitive of the current world (loom models thread-locals per modelled
/// thread; std's would be shared by all of them).
macro_rules! thread_local_cell {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(loom)]
        loom::thread_local! { $(#[$attr])* static $name: $ty = $init; }
        #[cfg(not(loom))]
        std::thread_local! { $(#[$attr])* static $name: $ty = const { $init }; }
    };
}
pub(crate) use thread_local_cell;

/// Locks, ignoring poisoning: the state the mutex guards is a plain `()`; every invariant lives in atomics that
/// are updated before any code that could panic.
pub(crate) fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar`, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a>(condvar: &Condvar, guard: MutexGuard<'a, ()>) -> MutexGuard<'a, ()> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` until woken or until `deadline`, ignoring poisoning. loom does not model time, so its
/// build waits untimed (the models never let a deadline pass).
pub(crate) fn wait_until<'a>(
    condvar: &Condvar,
    guard: MutexGuard<'a, ()>,
    deadline: std::time::Instant,
) -> MutexGuard<'a, ()> {
    #[cfg(loom)]
    {
        let _ = deadline;
        wait(condvar, guard)
    }
    #[cfg(not(loom))]
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        condvar
            .wait_timeout(guard, left)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0)
    }
}
