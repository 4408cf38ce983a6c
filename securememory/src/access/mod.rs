//! The access/close state machine shared by both flavours.
//!
//! One word of state: the number of closures running on the secret (readers) plus a CLOSING and a CLOSED bit.
//! - Entering while readers > 0 is one compare-and-swap: the pages are already read-only.
//! - The 0 → 1 transition takes the mutex, makes the pages read-only, then publishes 1. The 1 → 0 transition
//!   takes the mutex, takes 1 → 0, then makes the pages no-access. The mutex orders the two protection changes,
//!   so a page is never made no-access while a reader is inside, and never read before it is read-only.
//! - Hand-over: a thread that called `with_bytes` while readers was 0 counts itself in `waiting` before it
//!   queues for the mutex. A last leaver that sees such a thread leaves the pages read-only (the READABLE bit
//!   stays set) and the waiter enters without a protection change. The pages are therefore readable exactly
//!   while at least one `with_bytes` call on the secret is in progress, never when none is: the waiter always
//!   proceeds (to enter, or to fail with `Closed`, after which `close` destroys the pages). Two threads taking
//!   turns on one secret then pay no protection change per access.
//! - `close` sets CLOSING under the mutex (from then on every entry fails with [`Error::Closed`]), waits on a
//!   condition variable until the readers drain, destroys the pages, and sets CLOSED. A failed destroy leaves
//!   CLOSING without CLOSED, so `close` can be called again.
//! - Purge ([`AccessState::purge_by`]) is a close that does not wait forever: past its deadline, or at once
//!   for a closure running on the purging thread, it sets CLOSING and DESTROY_ON_LEAVE, and the last reader
//!   to leave destroys the pages under the mutex. Past the deadline (or when the process is exiting) the pages
//!   are also wiped in place and made no-access right away, under the readers' feet: a late read faults.
//! - A quarantined secret's pages are retired instead of destroyed: wiped, no-access, kept mapped until the
//!   last [`Quarantine`] handle is gone, never pooled.
//!
//! This module and its `pages` submodule hold all of the crate's `unsafe` code: reading the pages inside the
//! access window, and writing them before they are shared.

mod pages;
mod quarantine;
pub(crate) mod scratch;
mod sealed;

use std::cell::Cell;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

#[cfg_attr(not(loom), allow(unused_imports))]
pub use pages::{DestroyFailed, GuardedPages, Pages, ProtectedPages};
pub(crate) use pages::{Resting, Unsealed};
use quarantine::Hold;
pub use quarantine::Quarantine;
pub use sealed::SealedPages;

use memcall::Protection;

use crate::error::{Error, Result};
use crate::primitive::{
    lock, thread_local_cell, wait, wait_until, AtomicU32, AtomicUsize, Condvar, Mutex, MutexGuard,
    Ordering, UnsafeCell,
};

const CLOSING: usize = 1 << (usize::BITS - 1);
const CLOSED: usize = 1 << (usize::BITS - 2);
/// Readers live in the low bits. Each reader is a stack frame, so the count cannot come near this mask.
/// Set while the pages are read-only; outlives the last reader only during a hand-over to a waiting thread.
const READABLE: usize = 1 << (usize::BITS - 3);
/// Set (with CLOSING) by a purge that could not wait for the readers: the last reader to leave destroys.
const DESTROY_ON_LEAVE: usize = 1 << (usize::BITS - 4);
/// Set by a quarantine while a window is open: closing that window retires what it showed instead of reusing it.
const RETIRE_WINDOW: usize = 1 << (usize::BITS - 5);
const READERS: usize = RETIRE_WINDOW - 1;

/// Shared state of one secret: its pages and who is using them.
pub struct AccessState<P: Pages> {
    state: AtomicUsize,
    /// Held only around the protection changes of the 0 → 1 and 1 → 0 transitions and by `close`.
    transition: Mutex<()>,
    /// Threads inside `with_bytes` queued for `transition` to take readers 0 → 1. 32 bits (a thread count)
    /// so it shares a word with `drained`: the state of a sealed secret is most of what it costs.
    waiting: AtomicU32,
    /// Signalled by the 1 → 0 transition while closing.
    drained: Condvar,
    /// `Some` until `close` destroys the pages. Read only by readers (readers > 0), written only by `close`
    /// under `transition` with CLOSING set and no readers.
    pages: UnsafeCell<Option<P>>,
    /// `memcall::fork_epoch()` at creation: a different value means we are a forked child.
    epoch: u64,
    /// Bytes of locked memory released on close (for the locked-bytes gauge).
    locked_bytes: usize,
    /// Set by [`AccessState::quarantine`]: where the pages go instead of being destroyed.
    quarantine: std::sync::Mutex<Option<Arc<Hold>>>,
}

// SAFETY:
// - `P: Send + Sync`; the only non-thread-safe field is the `UnsafeCell`, whose accesses follow the protocol above:
//   shared reads while readers > 0, the one mutable access in `close` with the mutex held, CLOSING set and no
//   readers (so no shared read can exist or start).
unsafe impl<P: Pages> Sync for AccessState<P> {}
// SAFETY: every field is `Send` given `P: Send`.
unsafe impl<P: Pages> Send for AccessState<P> {}

impl<P: Pages> AccessState<P> {
    /// Takes over sealed (no-access) pages.
    pub fn new(pages: P, locked_bytes: usize) -> Self {
        AccessState {
            state: AtomicUsize::new(0),
            transition: Mutex::new(()),
            waiting: AtomicU32::new(0),
            drained: Condvar::new(),
            pages: UnsafeCell::new(Some(pages)),
            epoch: memcall::fork_epoch(),
            locked_bytes,
            quarantine: std::sync::Mutex::new(None),
        }
    }

    /// Marks the pages for quarantine (see [`Quarantine`]) and returns a handle that keeps them mapped.
    pub fn quarantine(&self) -> Quarantine {
        let _guard = lock(&self.transition);
        if self.is_closed() {
            return Quarantine::empty();
        }
        if self.readers() > 0 {
            // A window is open: what it shows (a sealed secret's scratch copy) must not be reused either.
            self.state.fetch_or(RETIRE_WINDOW, Ordering::AcqRel);
        }
        Quarantine::new(self.hold())
    }

    /// The quarantine hold, made on first use.
    fn hold(&self) -> Arc<Hold> {
        let mut slot = self
            .quarantine
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slot.get_or_insert_with(Arc::default))
    }

    /// Runs `f` on the pages at rest: under the mutex, with no access window open and the secret not closing.
    ///
    /// # Errors
    /// [`Error::Closed`] when the secret is closed or closing, or a window is open.
    fn at_rest<R>(&self, f: impl FnOnce(&P) -> R) -> Result<R> {
        let _guard = lock(&self.transition);
        if self.state.load(Ordering::Acquire) & (CLOSING | CLOSED | READABLE | READERS) != 0 {
            return Err(Error::Closed);
        }
        self.pages.with(|slot| {
            // SAFETY: we hold the mutex with CLOSING clear and no reader or window: nothing else reads or writes
            // the slot or the pages meanwhile (readers need the window, which opens under this mutex).
            match unsafe { &*slot } {
                Some(pages) => Ok(f(pages)),
                None => Err(Error::Closed),
            }
        })
    }

    /// True when this process is a forked child of the one that created the secret.
    pub fn is_forked(&self) -> bool {
        memcall::fork_epoch() != self.epoch
    }

    /// True once `close` has destroyed the pages.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closures running on the secret right now.
    pub fn readers(&self) -> usize {
        self.state.load(Ordering::Acquire) & READERS
    }

    /// Runs `action` on the bytes, readable (read-only) for exactly as long as it runs.
    ///
    /// # Errors
    /// [`Error::Closed`] or [`Error::ReadOnly`] without running `action`; [`Error::Forked`] in a forked child;
    /// [`Error::Released`] when the pages could not be made no-access afterwards (with `action`'s own error);
    /// otherwise whatever `action` returned.
    pub fn with_bytes<R>(&self, action: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        if self.is_forked() {
            return Err(Error::Forked);
        }
        self.enter()?;
        let unwind = LeaveOnUnwind { state: self };
        let result = self.pages.with(|slot| {
            // SAFETY: `enter` succeeded, so readers > 0 until our `leave`: `close` cannot reach its mutable
            // access to the slot (it needs readers == 0 with CLOSING set).
            let pages = match unsafe { &*slot } {
                Some(pages) => pages,
                None => return Err(Error::Closed),
            };
            // SAFETY:
            // - The pages are read-only: made so before readers became non-zero, made no-access only after
            //   readers returns to zero, both ordered by the mutex and the acquire/release counter.
            // - Nothing writes them while readers > 0 (writes happen only before sealing and in `destroy`).
            // - `action` borrows the slice for this call only; it cannot outlive the access window.
            action(unsafe { pages.data() })
        });
        std::mem::forget(unwind);
        let released = self.leave();
        match (result, released) {
            (result, Ok(())) => result,
            (Ok(_), Err(protect)) => Err(Error::Released {
                protect,
                action: None,
            }),
            (Err(action), Err(protect)) => Err(Error::Released {
                protect,
                action: Some(Box::new(action)),
            }),
        }
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn enter(&self) -> Result<()> {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & (CLOSING | CLOSED) != 0 {
                return Err(Error::Closed);
            }
            if current & READERS == 0 {
                return self.enter_first();
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        on_this_thread::entered(self.id());
        Ok(())
    }

    #[cold]
    fn enter_first(&self) -> Result<()> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _guard = lock(&self.transition);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let current = self.state.load(Ordering::Acquire);
        if current & (CLOSING | CLOSED) != 0 {
            return Err(Error::Closed);
        }
        // Under the mutex nobody else can take 0 → 1 or 1 → 0, nor set CLOSING: readers > 0 stays > 0 and
        // readers == 0 stays 0 until we publish, so `current` stays accurate.
        let add = if current & READABLE != 0 {
            1
        } else {
            self.pages.with(|slot| {
                // SAFETY: as in `with_pages`: we hold the mutex with CLOSING clear, so `close` is not inside its
                // mutable access to the slot.
                match unsafe { &*slot } {
                    Some(pages) => pages.open_window(),
                    None => Err(Error::Closed),
                }
            })?;
            // Adding READABLE to a word where it is clear sets it.
            READABLE + 1
        };
        self.state.fetch_add(add, Ordering::AcqRel);
        on_this_thread::entered(self.id());
        Ok(())
    }

    fn leave(&self) -> memcall::Result<()> {
        on_this_thread::left();
        let mut current = self.state.load(Ordering::Relaxed);
        while current & READERS > 1 {
            match self.state.compare_exchange_weak(
                current,
                current - 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
        self.leave_last()
    }

    #[cold]
    fn leave_last(&self) -> memcall::Result<()> {
        let _guard = lock(&self.transition);
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let last = current & READERS == 1;
            match self.state.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if last => break,
                // Someone entered through the fast path meanwhile: we were not the last after all.
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
        // A thread already inside `with_bytes` is queued for the mutex: hand the read-only pages over to it.
        if current & CLOSING == 0 && self.waiting.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        // Readers is 0 and we hold the mutex: no one can be reading, and the next entry waits for us. Go's
        // semantics: the counter stays decremented even if this fails.
        let retire = self.state.fetch_and(!RETIRE_WINDOW, Ordering::AcqRel) & RETIRE_WINDOW != 0;
        let protected = self
            .with_pages(|pages| pages.close_window(retire))
            .map(|retired| {
                if let Some(retired) = retired {
                    self.hold().keep(retired);
                }
            });
        // Cleared even when the switch failed: the next entry then makes the pages read-only explicitly, as Go
        // does, rather than trusting a state the failed call leaves unknown.
        self.state.fetch_and(!READABLE, Ordering::AcqRel);
        if current & CLOSING != 0 {
            if current & DESTROY_ON_LEAVE != 0 && current & CLOSED == 0 {
                // A purge came while we were inside: finish it now that nobody reads.
                if let Err(e) = self.destroy_locked() {
                    log::error!("purge could not release a secret after its last closure: {e}");
                }
            }
            self.drained.notify_all();
        }
        protected
    }

    /// Runs `f` on the pages; only for callers that hold the mutex with CLOSING clear or readers > 0.
    fn with_pages<R>(&self, f: impl FnOnce(&P) -> memcall::Result<R>) -> memcall::Result<R> {
        self.pages.with(|slot| {
            // SAFETY: the caller holds the mutex, and either readers > 0 or CLOSING is clear, so `close` is not
            // inside its mutable access (it needs the mutex, CLOSING and no readers) and the slot is not borrowed
            // mutably. The pages themselves are only handed to `protect`, which does not touch their bytes.
            match unsafe { &*slot } {
                Some(pages) => f(pages),
                None => Err(memcall::Error::InvalidLength { len: 0 }),
            }
        })
    }

    /// Refuses new accessors, waits for the active ones, then destroys the pages. Idempotent; after a failure
    /// the secret stays closing (unusable) and `close` can be retried.
    ///
    /// # Errors
    /// [`Error::Forked`] in a forked child; [`Error::CloseInsideAccess`] from inside this secret's own closure;
    /// the failed destroy step otherwise.
    pub fn close(&self) -> Result<()> {
        if self.is_forked() {
            return Err(Error::Forked);
        }
        if on_this_thread::maybe_inside(self.id(), self.readers()) {
            return Err(Error::CloseInsideAccess);
        }
        self.close_by(None).map(drop)
    }

    /// Closes for a purge (see the module docs): waits for closures on other threads until `deadline`, then
    /// wipes the pages in place under them; a closure on this thread is finished off when it ends, or wiped
    /// under it at once when `exiting`. Never waits past `deadline`.
    ///
    /// # Errors
    /// As [`close`](Self::close), except that a closure on this thread is no error.
    pub fn purge_by(&self, deadline: Instant, exiting: bool) -> Result<()> {
        if self.is_forked() {
            // Not this process's pages: nothing to wipe here.
            return Ok(());
        }
        if on_this_thread::maybe_inside(self.id(), self.readers()) {
            let guard = lock(&self.transition);
            self.state.fetch_or(CLOSING, Ordering::AcqRel);
            return self.finish_later(guard, exiting);
        }
        self.close_by(Some(deadline)).map(drop)
    }

    /// Sets CLOSING, waits for the readers (until `deadline`, if any) and destroys the pages. Returns false
    /// when readers were still inside at the deadline: their pages are wiped and the last one destroys them.
    fn close_by(&self, deadline: Option<Instant>) -> Result<bool> {
        let mut guard = lock(&self.transition);
        if self.state.fetch_or(CLOSING, Ordering::AcqRel) & CLOSED != 0 {
            return Ok(true);
        }
        loop {
            let current = self.state.load(Ordering::Acquire);
            if current & CLOSED != 0 {
                // Another `close` (or the last reader of a purged secret) finished while we waited.
                return Ok(true);
            }
            if current & READERS == 0 {
                break;
            }
            guard = match deadline {
                None => wait(&self.drained, guard),
                Some(deadline) if Instant::now() >= deadline => {
                    return self.finish_later(guard, true).map(|()| false);
                }
                Some(deadline) => wait_until(&self.drained, guard, deadline),
            };
        }
        self.destroy_locked().map(|()| true)
    }

    /// With the mutex held and CLOSING set while readers may be inside: the last reader to leave destroys the
    /// pages; with `wipe_now` they are also wiped and made no-access at once, under the readers.
    fn finish_later(&self, guard: MutexGuard<'_, ()>, wipe_now: bool) -> Result<()> {
        let current = self.state.fetch_or(DESTROY_ON_LEAVE, Ordering::AcqRel);
        if current & CLOSED != 0 {
            return Ok(());
        }
        if current & READERS == 0 {
            // The readers left between the caller's check and the mutex: nothing to wait for.
            return self.destroy_locked();
        }
        let wiped = if wipe_now {
            self.with_pages(|pages| {
                // SAFETY: the caller is a purge past its grace or a process about to exit; the readers inside
                // may see zeros or fault, which `Pages::wipe_in_place` allows, and nobody else writes the pages
                // (writes happen only before sealing and in destroy, which needs readers == 0).
                unsafe { pages.wipe_in_place() }
            })
            .map_err(Error::Memory)
        } else {
            Ok(())
        };
        drop(guard);
        wiped
    }

    /// Destroys (or retires into quarantine) the pages and sets CLOSED. Only with the mutex held, CLOSING set
    /// and no readers.
    fn destroy_locked(&self) -> Result<()> {
        let hold = self
            .quarantine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (result, freed) = self.pages.with_mut(|slot| {
            // SAFETY: the caller holds the mutex, CLOSING is set and readers is 0: no reader holds or can take a
            // shared borrow (entry fails on CLOSING, the slow path checks it under this mutex), and no other
            // `close` can run concurrently.
            let slot = unsafe { &mut *slot };
            match (slot.take(), hold) {
                // Unreachable: CLOSED is set whenever the slot is emptied, and checked under the mutex.
                (None, _) => (Ok(()), false),
                (Some(pages), Some(hold)) => (retire(pages, &hold), true),
                (Some(pages), None) => match pages.destroy() {
                    Ok(()) => (Ok(()), true),
                    Err(failed) => {
                        *slot = failed.pages;
                        let freed = slot.is_none();
                        (Err(failed.error), freed)
                    }
                },
            }
        });
        if freed {
            self.state.fetch_or(CLOSED, Ordering::AcqRel);
            crate::metrics::secret_closed(self.locked_bytes);
        }
        result
    }
}

/// Wipes quarantined pages and leaves them no-access in `hold`, which unmaps them with its last handle. The
/// pages go to the hold even when a step fails (they must never be reused); the first failure is returned.
fn retire<P: Pages>(mut pages: P, hold: &Hold) -> Result<()> {
    let result = pages.protect(Protection::ReadWrite).map(|()| {
        // SAFETY: the pages are read-write now and `pages` is owned here: no other slice of them exists.
        memcall::wipe_bytes(unsafe { pages.data_mut() });
    });
    let sealed = pages.protect(Protection::NoAccess);
    hold.keep(Box::new(pages));
    result.and(sealed).map_err(Error::Memory)
}

impl<P: Pages> Drop for AccessState<P> {
    fn drop(&mut self) {
        if self.is_forked() {
            // In a forked child the pages are not mapped (no-fork advice) or belong to the parent: unmapping the
            // range could hit an unrelated mapping made since. Forget the handle instead.
            let pages = self.pages.with_mut(|slot| {
                // SAFETY: `&mut self`: no other borrow of the slot exists.
                unsafe { &mut *slot }.take()
            });
            std::mem::forget(pages);
        }
    }
}

/// Re-protects the pages when the closure panics; the normal path calls `leave` itself to return its result.
struct LeaveOnUnwind<'a, P: Pages> {
    state: &'a AccessState<P>,
}

impl<P: Pages> Drop for LeaveOnUnwind<'_, P> {
    fn drop(&mut self) {
        if let Err(e) = self.state.leave() {
            // Unwinding already: the error cannot be returned, so it is reported.
            log::error!(
                "secret closure panicked and the pages could not be made no-access again: {e}"
            );
        }
    }
}

/// Which secrets the current thread is inside of, so `close` from inside a closure can be refused instead of
/// waiting for itself. Fixed-size and allocation-free; deeper nesting than it tracks is remembered as a count.
mod on_this_thread {
    use super::{thread_local_cell, Cell};

    const TRACKED: usize = 16;

    pub(super) struct Active {
        ids: [Cell<usize>; TRACKED],
        depth: Cell<usize>,
    }

    impl Active {
        #[allow(clippy::declare_interior_mutable_const)]
        const NEW: Active = Active {
            ids: [const { Cell::new(0) }; TRACKED],
            depth: Cell::new(0),
        };
    }

    thread_local_cell! {
        static ACTIVE: Active = Active::NEW;
    }

    pub(super) fn entered(id: usize) {
        let _ = ACTIVE.try_with(|a| {
            let depth = a.depth.get();
            if let Some(slot) = a.ids.get(depth) {
                slot.set(id);
            }
            a.depth.set(depth + 1);
        });
    }

    pub(super) fn left() {
        let _ = ACTIVE.try_with(|a| a.depth.set(a.depth.get().saturating_sub(1)));
    }

    /// True when this thread is (or, past the tracked depth, may be) inside a closure of secret `id`.
    pub(super) fn maybe_inside(id: usize, readers: usize) -> bool {
        ACTIVE
            .try_with(|a| {
                let depth = a.depth.get();
                let tracked = depth.min(TRACKED);
                a.ids[..tracked].iter().any(|slot| slot.get() == id)
                    || (depth > TRACKED && readers > 0)
            })
            .unwrap_or(false)
    }
}

impl AccessState<SealedPages> {
    /// The sealed secret's identity and a copy of `tag || ciphertext`.
    pub(crate) fn sealed_parts(&self) -> Result<(u64, Vec<u8>)> {
        // SAFETY: `at_rest` holds the mutex with no window open: no writer of the sealed bytes runs.
        self.at_rest(|pages| (pages.id(), unsafe { pages.sealed_copy() }))
    }

    /// Runs `f` on the sealed secret's `tag || ciphertext`, writable.
    pub(crate) fn tamper(&self, f: impl FnOnce(&mut [u8])) -> Result<()> {
        // SAFETY: `at_rest` holds the mutex with no window open: nothing else touches the sealed bytes.
        self.at_rest(|pages| unsafe { pages.tamper(f) })
    }
}
/// A sealed secret's state is most of what it costs (no page of its own): keep it in a 112-byte allocation.
#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod size {
    #[test]
    fn a_sealed_secrets_state_stays_small() {
        assert_eq!(std::mem::size_of::<Option<super::SealedPages>>(), 32);
        assert!(std::mem::size_of::<super::AccessState<super::SealedPages>>() <= 88);
    }
}
