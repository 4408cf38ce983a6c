//! Detecting that we are running in a forked child, and process-wide state that a forked child gets fresh.
//!
//! After `fork()` the child holds a copy of every process-wide cache, pool and registry, but not the pages they
//! point to (regions are mapped no-fork), and the addresses may soon hold the child's own, unrelated mappings.
//! [`PerProcess`] makes such state belong to the process that built it: the child sees a fresh, empty value on
//! first use and never touches the parent's.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Once;

static EPOCH: AtomicU64 = AtomicU64::new(0);

#[cfg(unix)]
extern "C" fn bump_epoch_in_child() {
    // Async-signal-safe: a single atomic add.
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        #[cfg(unix)]
        // SAFETY: registers a child handler that only performs an atomic add, which is async-signal-safe; the
        // handler is a plain `extern "C" fn` with static lifetime. A failure (ENOMEM) leaves the epoch at 0
        // forever, which `fork_epoch` documents as "cannot tell".
        unsafe {
            libc::pthread_atfork(None, None, Some(bump_epoch_in_child));
        }
    });
}

/// A number that changes in the child after every `fork()`.
///
/// Remember it when a secret is created and compare on use: a different value means this process is a forked
/// child that inherited the secret's handle (regions are also not inherited, see
/// [`Hardening::no_fork`](crate::Hardening)). The first call installs a `pthread_atfork` child handler; forks
/// that bypass libc (raw `clone`/`vfork` syscalls) are not seen. Always 0 on Windows, which has no fork.
///
/// Every constructor in this crate that creates state a child must not inherit ([`Region::alloc`](crate::Region),
/// [`PerProcess`] on first use) calls it first, so the handler is in place before any such state exists. A
/// fork that happens before the first call is therefore harmless: there is nothing yet to tell apart, and the
/// parent and child each install the handler for their own later forks (both start counting from the same
/// value, which is fine because an epoch is only ever compared within one process).
pub fn fork_epoch() -> u64 {
    install();
    EPOCH.load(Ordering::Relaxed)
}

/// One generation of a [`PerProcess`] value: the value and the epoch it belongs to.
struct Generation<T> {
    epoch: u64,
    value: T,
}

/// Process-wide state that belongs to the process that built it.
///
/// [`PerProcess::get`] builds the value on first use. In a forked child the first `get` sees that the value
/// was built by another process ([`fork_epoch`] differs) and builds a fresh one; the parent's value is never
/// dropped, locked or otherwise touched there (its locks may have been held by a thread that does not exist in
/// the child, and its handles name pages the child does not have), it is simply abandoned. So a cache of
/// regions, a registry or a key held here starts empty in every child, by construction.
///
/// Each process abandons at most one value per fork it went through (the small allocation is the cost).
/// Dropping a `PerProcess` drops the value only when the current process built it.
pub struct PerProcess<T> {
    current: AtomicPtr<Generation<T>>,
    init: fn() -> T,
}

impl<T> PerProcess<T> {
    /// A holder that builds its value with `init` on first use in each process.
    pub const fn new(init: fn() -> T) -> PerProcess<T> {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
            init,
        }
    }

    /// The value of this process, built now if this process has none yet.
    pub fn get(&self) -> &T {
        let epoch = fork_epoch();
        let mut seen = self.current.load(Ordering::Acquire);
        loop {
            // SAFETY: a non-null pointer was published by `Box::into_raw` below with release ordering (paired
            // with the acquire loads) and is never freed while `self` is borrowed: generations are only freed
            // by `Drop`, which has `&mut self`.
            if let Some(generation) = unsafe { seen.as_ref() } {
                if generation.epoch == epoch {
                    return &generation.value;
                }
            }
            let fresh = Box::into_raw(Box::new(Generation {
                epoch,
                value: (self.init)(),
            }));
            match self
                .current
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // The previous generation (if any) belonged to the parent: it is abandoned, never dropped.
                // SAFETY: `fresh` was just published and lives until `Drop`.
                Ok(_) => return unsafe { &(*fresh).value },
                Err(now) => {
                    // Another thread of this process installed its generation first; ours was never shared.
                    // SAFETY: `fresh` came from `Box::into_raw` above and nobody else has seen it.
                    drop(unsafe { Box::from_raw(fresh) });
                    seen = now;
                }
            }
        }
    }

    /// The value of this process if it was built already; never builds one.
    pub fn get_if_built(&self) -> Option<&T> {
        let epoch = fork_epoch();
        // SAFETY: as in `get`: a published generation lives until `Drop`.
        let generation = unsafe { self.current.load(Ordering::Acquire).as_ref() }?;
        (generation.epoch == epoch).then_some(&generation.value)
    }
}

impl<T> Drop for PerProcess<T> {
    fn drop(&mut self) {
        let ptr = *self.current.get_mut();
        if ptr.is_null() {
            return;
        }
        // SAFETY: published by `get`; `&mut self` means no reference into it is alive.
        let generation = unsafe { Box::from_raw(ptr) };
        if generation.epoch != fork_epoch() {
            // Built by the parent: its contents are not ours to release.
            std::mem::forget(generation);
        }
    }
}

// SAFETY: the value is shared between threads through `&T` (needs `T: Sync`) and may be built on one thread
// and dropped on another (needs `T: Send`); the holder itself is an atomic pointer.
unsafe impl<T: Send + Sync> Sync for PerProcess<T> {}
// SAFETY: moving the holder moves ownership of the value (`T: Send`).
unsafe impl<T: Send> Send for PerProcess<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for PerProcess<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerProcess")
            .field("value", &self.get_if_built())
            .finish()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::PerProcess;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Forks; the child computes an exit code with `f` and `_exit`s with it; returns whether it exited 0.
    fn child_ok(f: impl FnOnce() -> bool) -> bool {
        // SAFETY: the child only runs `f` (atomics and a small allocation; glibc keeps malloc usable in a
        // forked child) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if f() { 0 } else { 1 };
            // SAFETY: `_exit` is always safe to call; it skips atexit handlers the test harness owns.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-parameter.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }

    #[test]
    fn epoch_changes_in_forked_child_only() {
        let before = super::fork_epoch();
        assert!(child_ok(|| super::fork_epoch() == before + 1));
        assert_eq!(super::fork_epoch(), before);
    }

    #[test]
    fn a_forked_child_gets_a_fresh_value_and_the_parent_keeps_its_own() {
        static HOLDER: PerProcess<AtomicUsize> = PerProcess::new(|| AtomicUsize::new(0));
        HOLDER.get().store(7, Ordering::SeqCst);
        let parent_value = HOLDER.get() as *const AtomicUsize;
        assert!(child_ok(|| {
            let fresh = HOLDER.get_if_built().is_none();
            let value = HOLDER.get();
            let ok =
                fresh && value.load(Ordering::SeqCst) == 0 && !std::ptr::eq(value, parent_value);
            value.store(9, Ordering::SeqCst);
            // The child's value is stable across calls.
            ok && HOLDER.get().load(Ordering::SeqCst) == 9
        }));
        assert_eq!(HOLDER.get().load(Ordering::SeqCst), 7);
        assert!(std::ptr::eq(HOLDER.get(), parent_value));
    }

    #[test]
    fn a_value_is_built_once_per_process_even_under_contention() {
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        let holder: PerProcess<usize> = PerProcess::new(|| BUILT.fetch_add(1, Ordering::SeqCst));
        let seen: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| *holder.get())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "one value: {seen:?}");
    }
}
