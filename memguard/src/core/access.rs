//! The state behind a [`LockedBuffer`](crate::LockedBuffer) and the guards that hand out its bytes.
//!
//! One `RwLock` guards the region: readers share it, writers and destroy/purge take it exclusively, so a slice
//! handed out by a guard can never outlive the mapping. Nobody ever blocks on the lock: every taker polls
//! (`try_read`/`try_write`) for a bounded time, so a guard that is never released (leaked with
//! `std::mem::forget` or `Box::leak`, or held by a thread that never returns) cannot hang anything.
//!
//! Invariant: while the region is `Some`, its inner pages are readable (read-only when frozen, read-write when
//! mutable), never no-access, unless a purge *forced* it: an access on another thread outlived the purge's
//! deadline, so the pages were wiped in place and made no-access under that access (see [`Shared::force`]).
//! A forced region is never read again through this module (new accesses are refused once a purge is
//! pending); only a guard that was already held touches it, and faults. Its mapping stays until the lock is
//! free (the last guard ends) or the buffer is dropped, so the fault can never land on somebody else's memory.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::{PoisonError, TryLockError};
use std::time::{Duration, Instant};

use memcall::Protection;

use super::canary;
use super::primitive::{
    fence, pause, thread_local_cell, AtomicBool, Mutex, MutexGuard, Ordering, RwLock,
    RwLockReadGuard, RwLockWriteGuard,
};
use super::region::GuardedRegion;
use super::registry::{PurgeRequest, Purgeable};
use crate::error::{Error, Result};

/// How long an accessor polls for a buffer's lock before it reports [`Error::StillAccessed`]. With
/// `&mut LockedBuffer` no live guard exists, so only a purge finishing the buffer (microseconds) or a guard
/// that was leaked (forever) can hold it. Loom does not model time: there the bound never expires.
#[cfg(not(loom))]
const LOCK_GRACE: Duration = super::registry::PURGE_GRACE;
#[cfg(loom)]
const LOCK_GRACE: Duration = Duration::from_secs(3600);

thread_local_cell! {
    /// The ids of the buffers this thread holds an access to (one entry per guard; a guard cannot move to
    /// another thread). A purge must not wait for an access held by its own thread, which can only end after
    /// the purge returns. A guard leaked with `std::mem::forget` leaves its entry here for good: that buffer
    /// counts as held by this thread forever (which it is), and no other buffer is affected.
    static HELD: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

fn hold(id: u64) {
    HELD.with(|held| held.borrow_mut().push(id));
}

fn unhold(id: u64) {
    // `try_with`: a guard dropped while the thread's locals are torn down has nothing left to update.
    let _ = HELD.try_with(|held| {
        let mut held = held.borrow_mut();
        if let Some(i) = held.iter().rposition(|&h| h == id) {
            held.swap_remove(i);
        }
    });
}

fn held_here(id: u64) -> bool {
    HELD.try_with(|held| held.borrow().contains(&id))
        .unwrap_or(false)
}

/// A process-unique id per buffer (addresses are reused once a buffer is freed, ids never).
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(crate) struct BufferState {
    pub(crate) region: Option<Arc<GuardedRegion>>,
    pub(crate) mutable: bool,
    /// `memcall::fork_epoch()` at creation: a forked child has no mapping for the region (no-fork advice), and
    /// the address range may hold something else there, so the child must neither read nor release it.
    fork_epoch: u64,
}

impl BufferState {
    fn forked(&self) -> bool {
        memcall::fork_epoch() != self.fork_epoch
    }

    /// The region, when alive and in the process that made it.
    pub(crate) fn region(&self) -> Result<&GuardedRegion> {
        if self.forked() {
            return Err(Error::Forked);
        }
        self.region.as_deref().ok_or(Error::Destroyed)
    }
}

/// The second handle on a buffer's region, reachable without the buffer's lock: a purge whose deadline passed
/// wipes the region through it while an access still holds the lock. Whoever releases the region (always
/// under the write lock) empties this slot first, under its mutex, so a forced wipe never runs on released
/// pages. The mutex is only ever held for a few syscalls, never while user code runs.
struct Pages {
    region: Option<Arc<GuardedRegion>>,
    /// The region was wiped in place and made no-access (see [`Shared::force`]).
    forced: bool,
    /// The canary was found corrupted when the region was forced (the wipe clears it, so the final
    /// release cannot tell any more).
    canary_failed: bool,
}

pub(crate) struct Shared {
    state: RwLock<BufferState>,
    purge_pending: AtomicBool,
    pages: Mutex<Pages>,
    id: u64,
    fork_epoch: u64,
}

fn lock_pages(pages: &Mutex<Pages>) -> MutexGuard<'_, Pages> {
    // Every field is set in one step, so a panic elsewhere cannot leave the slot half-updated.
    pages.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `take` until it gets the lock or `LOCK_GRACE` passes.
fn poll_lock<G>(mut take: impl FnMut() -> Option<G>) -> Result<G> {
    // The uncontended case (nearly every call) reads no clock.
    if let Some(guard) = take() {
        return Ok(guard);
    }
    let deadline = Instant::now().checked_add(LOCK_GRACE);
    let mut round = 0u32;
    loop {
        if let Some(guard) = take() {
            return Ok(guard);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::StillAccessed);
        }
        pause(round);
        round = round.saturating_add(1);
    }
}

impl Shared {
    /// Marks the buffer for purge. With [`Shared::purge_seen`] on the other side this is a store-buffering
    /// pair (mark, then try the lock / take or release the lock, then read the mark): the fences make sure
    /// at least one side sees the other, so a purge is never lost between a purger that finds the lock taken
    /// and a holder that releases it without seeing the mark.
    fn mark_for_purge(&self) {
        self.purge_pending.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Whether a purge has marked the buffer; called after taking or releasing the lock (see
    /// [`Shared::mark_for_purge`]).
    fn purge_seen(&self) -> bool {
        fence(Ordering::SeqCst);
        self.purge_pending.load(Ordering::SeqCst)
    }

    pub(crate) fn new(region: GuardedRegion) -> Shared {
        let region = Arc::new(region);
        let fork_epoch = memcall::fork_epoch();
        Shared {
            state: RwLock::new(BufferState {
                region: Some(Arc::clone(&region)),
                mutable: true,
                fork_epoch,
            }),
            purge_pending: AtomicBool::new(false),
            pages: Mutex::new(Pages {
                region: Some(region),
                forced: false,
                canary_failed: false,
            }),
            id: next_id(),
            fork_epoch,
        }
    }

    fn read_lock(&self) -> Result<RwLockReadGuard<'_, BufferState>> {
        // A panic while a writer held the lock leaves the state consistent (every field is set in one step).
        poll_lock(|| match self.state.try_read() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, BufferState>> {
        poll_lock(|| self.try_write_lock())
    }

    fn try_write_lock(&self) -> Option<RwLockWriteGuard<'_, BufferState>> {
        match self.state.try_write() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Exclusive access to the state, for freeze/melt/destroy/write. Callers hold `&mut LockedBuffer`, so no
    /// live guard of this buffer exists on any thread: only a purge finishing the buffer (briefly) or a guard
    /// that was leaked (forever) can hold the lock, and after `LOCK_GRACE` that is [`Error::StillAccessed`].
    /// A purge that arrived meanwhile is finished here.
    pub(crate) fn state_mut(&self) -> Result<RwLockWriteGuard<'_, BufferState>> {
        let mut state = self.write_lock()?;
        if self.purge_seen() {
            self.destroy_logged(&mut state);
        }
        Ok(state)
    }

    /// Shared view of the state, for flags and sizes; [`Error::StillAccessed`] when a leaked write guard
    /// holds the lock.
    pub(crate) fn state(&self) -> Result<RwLockReadGuard<'_, BufferState>> {
        self.read_lock()
    }

    /// Read access to the data.
    pub(crate) fn read(&self) -> Result<ReadGuard<'_>> {
        let state = self.read_lock()?;
        state.region()?;
        if self.purge_seen() {
            drop(state);
            self.finish_pending_purge();
            return Err(Error::Destroyed);
        }
        hold(self.id);
        Ok(ReadGuard {
            state,
            _release: Release(self),
        })
    }

    /// Write access to the data; fails when the buffer is frozen.
    pub(crate) fn write(&self) -> Result<WriteGuard<'_>> {
        let state = self.state_mut()?;
        match state.region() {
            Err(err) => Err(err),
            Ok(_) if !state.mutable => Err(Error::Immutable),
            Ok(_) => {
                hold(self.id);
                Ok(WriteGuard {
                    state,
                    _release: Release(self),
                })
            }
        }
    }

    /// Changes the protection of an alive buffer to match `mutable`.
    pub(crate) fn set_mutable(&self, mutable: bool) -> Result<()> {
        let mut state = self.state_mut()?;
        let region = state.region()?;
        if state.mutable != mutable {
            let prot = if mutable {
                Protection::ReadWrite
            } else {
                Protection::ReadOnly
            };
            // Under the pages mutex, so a forced wipe (which changes the protection too) cannot interleave.
            let pages = lock_pages(&self.pages);
            if pages.forced {
                return Err(Error::Destroyed);
            }
            region.protect(prot)?;
            drop(pages);
            state.mutable = mutable;
        }
        Ok(())
    }

    /// Destroys the region (wipe, canary check, release), waiting at most `LOCK_GRACE` for the lock.
    ///
    /// When the lock is still held after that (a leaked guard), the buffer is marked for purge and its data is
    /// forced (wiped in place, made no-access), and the error is [`Error::StillAccessed`]: the pages are
    /// released when the lock is freed or when the buffer is dropped.
    pub(crate) fn destroy(&self) -> Result<()> {
        match self.state_mut() {
            Ok(mut state) => destroy(&mut state, &self.pages),
            Err(err) => {
                self.mark_for_purge();
                self.force();
                Err(err)
            }
        }
    }

    /// Destroys the region at once when the lock is free. Otherwise it is held by a leaked guard (no live guard
    /// exists: the caller is dropping the buffer) or by a purge that is finishing it: the buffer is marked and
    /// the last owner of this state releases the region (see `Drop`), so nothing waits here.
    pub(crate) fn release(&self) {
        match self.try_write_lock() {
            Some(mut state) => {
                if let Err(err) = destroy(&mut state, &self.pages) {
                    log::error!("destroying a dropped locked buffer failed: {err}");
                }
            }
            None => self.mark_for_purge(),
        }
    }

    /// Destroys the region if nobody holds the lock; returns false when someone does (that holder's guard
    /// finishes the purge when released).
    fn finish_pending_purge(&self) -> bool {
        match self.try_write_lock() {
            Some(mut state) => {
                self.destroy_logged(&mut state);
                true
            }
            None => false,
        }
    }

    /// Destroys the region; used where no caller can receive the error (purge, `Drop`).
    fn destroy_logged(&self, state: &mut BufferState) {
        if let Err(err) = destroy(state, &self.pages) {
            log::error!("destroying a locked buffer failed: {err}");
        }
    }

    /// Wipes the data in place and makes the inner pages no-access, without the buffer's lock: an access
    /// outlived a purge's deadline (or holds the lock for good). The mapping is kept, so the late access
    /// faults and can never see other data; it is released when the lock is free, or when the buffer is
    /// dropped. Runs once; does nothing once the region is released, or in a forked child (the pages are
    /// not ours there).
    pub(crate) fn force(&self) {
        if memcall::fork_epoch() != self.fork_epoch {
            return;
        }
        let mut pages = lock_pages(&self.pages);
        if pages.forced {
            return;
        }
        let Some(region) = pages.region.as_deref() else {
            return;
        };
        let len = region.len();
        match wipe_in_place(region) {
            Ok(intact) => {
                pages.forced = true;
                pages.canary_failed = !intact;
                log::error!(
                    "an access to a {len}-byte locked buffer did not end in time: its data was wiped in place \
                     and made no-access under it; the pages are released when the access ends or the buffer \
                     is dropped, and stay mapped (leaked, no-access) if the guard was leaked"
                );
            }
            Err(err) => log::error!(
                "wiping a {len}-byte locked buffer under a late access failed ({err}); it is released when \
                 the access ends"
            ),
        }
    }
}

/// Wipes the inner pages (canary and data) of `region` and leaves them no-access; returns whether the canary
/// was intact first. Runs while another thread may hold a guard on the region (see [`Shared::force`]).
fn wipe_in_place(region: &GuardedRegion) -> Result<bool> {
    region.protect(Protection::ReadWrite)?;
    let canary_len = region.canary_len();
    let inner = region.as_ptr().wrapping_sub(canary_len);
    // SAFETY:
    // - `inner..inner + canary_len` is the canary slack inside the region's inner pages, which are mapped (the
    //   caller holds the pages slot, so nobody releases the region meanwhile) and readable (just made
    //   read-write);
    // - nobody writes the slack: guards hand out the data only, and protection changes are serialised by the
    //   pages mutex the caller holds.
    let intact = canary::intact(unsafe { std::slice::from_raw_parts(inner, canary_len) });
    // SAFETY:
    // - `inner..inner + inner_len` is exactly the region's inner pages: mapped (as above), read-write (just
    //   made so), page-aligned and a whole number of pages, so every `u64` write is aligned and in bounds;
    // - the writes go through raw pointers, no reference is created; a guard on another thread may still hold
    //   a shared slice of the data: that guard outlived the purge's deadline, and the purge contract is that
    //   its bytes are wiped under it (it reads zeros, then faults once the pages are no-access below, and never
    //   sees other memory since the mapping is kept).
    unsafe { wipe_raw(inner, region.inner_len()) };
    region.protect(Protection::NoAccess)?;
    Ok(intact)
}

/// Zeroes `len` bytes at `start` with volatile writes.
///
/// # Safety
/// - `start` must be 8-byte aligned and `start..start + len` mapped and writable, `len` a multiple of 8.
/// - Nothing may release the memory while this runs.
unsafe fn wipe_raw(start: *mut u8, len: usize) {
    let words = start.cast::<u64>();
    for i in 0..len / 8 {
        // SAFETY: `i * 8 < len`, in bounds and aligned per the function's contract.
        unsafe { words.add(i).write_volatile(0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Destroys the region. A failure that hands the region back keeps it in the state, so a later call can retry
/// and nothing is leaked.
fn destroy(state: &mut BufferState, pages: &Mutex<Pages>) -> Result<()> {
    let forked = state.forked();
    let Some(region) = state.region.take() else {
        return Ok(());
    };
    state.mutable = false;
    // Empty the second handle first: once it is gone no forced wipe can reach the pages.
    let (forced, canary_failed) = {
        let mut pages = lock_pages(pages);
        drop(pages.region.take());
        (pages.forced, pages.canary_failed)
    };
    let Some(region) = Arc::into_inner(region) else {
        // Unreachable: the state and the slot held the only two handles, and the slot's is gone.
        log::error!("a locked buffer's region is still referenced at release; it is left mapped");
        return Ok(());
    };
    if forked {
        // Not ours to release: the parent owns the pages, and here the range may be mapped to something else.
        std::mem::forget(region);
        return Ok(());
    }
    match region.destroy() {
        Ok(()) => Ok(()),
        Err(err) => match err.region {
            Some(region) => {
                let region = Arc::new(region);
                lock_pages(pages).region = Some(Arc::clone(&region));
                state.region = Some(region);
                Err(err.error)
            }
            // A forced wipe cleared the canary; what counts is whether it was intact before.
            None if forced
                && !canary_failed
                && matches!(err.error, Error::CanaryCorrupted { .. }) =>
            {
                Ok(())
            }
            None => Err(err.error),
        },
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // No guard can exist any more: each borrows the `LockedBuffer` that owned this state. So the lock's
        // state does not matter (a guard leaked with `std::mem::forget` left it locked for good), and the
        // region, if still there, is released now.
        let Shared { state, pages, .. } = self;
        let state = state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = destroy(state, pages) {
            log::error!("releasing a locked buffer failed: {err}");
        }
    }
}

impl Purgeable for Shared {
    /// Marks the buffer, then destroys it once no access holds it. New accesses are refused from the moment
    /// it is marked, and the last access to end finishes the job.
    ///
    /// It never blocks on the lock: a blocked writer would stop new readers, and a thread that already holds a
    /// read guard and reads again (say `size()` inside `with_bytes`) would deadlock. When the calling thread
    /// holds an access to this buffer it does not wait (the access ends only after the purge returns): the
    /// access finishes the purge when it ends, or, when the process is exiting, the data is forced at once.
    /// Otherwise it polls until the other threads' accesses end or the request's deadline passes, and then
    /// forces the data (see [`Shared::force`]).
    fn purge(&self, request: &PurgeRequest) {
        self.mark_for_purge();
        if memcall::fork_epoch() != self.fork_epoch {
            // A forked child: the pages are not mapped here, and the lock may be held by a parent thread that
            // does not exist here. Marked, every access is refused; nothing to wipe or wait for.
            return;
        }
        if held_here(self.id) {
            if request.is_exiting() {
                self.force();
            }
            return;
        }
        let mut round = 0u32;
        while !self.finish_pending_purge() {
            if request.expired() {
                self.force();
                return;
            }
            pause(round);
            round = round.saturating_add(1);
        }
    }
}

/// Read access to a buffer's bytes; the buffer cannot be destroyed, purged or written while it lives (a purge
/// whose deadline passes wipes it under the guard instead: reading then faults, see [`purge`](crate::purge)).
#[must_use = "the bytes are readable only while the guard lives"]
pub struct ReadGuard<'a> {
    state: RwLockReadGuard<'a, BufferState>,
    _release: Release<'a>,
}

/// Write access to a mutable buffer's bytes; nothing else can read or destroy the buffer while it lives (a
/// purge whose deadline passes wipes it under the guard instead, see [`purge`](crate::purge)).
#[must_use = "the bytes are writable only while the guard lives"]
pub struct WriteGuard<'a> {
    state: RwLockWriteGuard<'a, BufferState>,
    _release: Release<'a>,
}

impl BufferState {
    /// The region of a guard's buffer: alive, checked when the guard was made, and kept alive by its lock.
    fn guarded_region(&self) -> &GuardedRegion {
        self.region
            .as_deref()
            .expect("checked when the guard was made")
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY:
        // - the read lock is held for the guard's lifetime, so the region is neither released nor written
        //   (writers and destroy take the write lock);
        // - an alive buffer's inner pages are readable (module invariant), except after a forced purge: then
        //   the mapping is still there (it is released only under the write lock), wiped and no-access, so a
        //   read faults and never sees other memory.
        unsafe { self.state.guarded_region().data() }
    }
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the write lock is held, the region is alive and mutable, hence read-write (or forced: wiped,
        // no-access, still mapped, see `ReadGuard`).
        unsafe { self.state.guarded_region().data() }
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY:
        // - the write lock is held, so this is the only access to the data, and `&mut self` makes the slice
        //   unique among this guard's borrows;
        // - the region is alive and mutable, hence read-write (checked when the guard was made; protection is
        //   only changed under the write lock), or forced (wiped, no-access, still mapped: a write faults).
        unsafe { self.state.guarded_region().data_mut() }
    }
}

impl AsRef<[u8]> for ReadGuard<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Runs after a guard's lock field is dropped (fields drop in declaration order): counts the guard out and
/// finishes a purge that arrived while the guard was held.
struct Release<'a>(&'a Shared);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        unhold(self.0.id);
        if self.0.purge_seen() {
            self.0.finish_pending_purge();
        }
    }
}

macro_rules! redacted_debug {
    ($guard:ident) => {
        impl std::fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("len", &self.state.guarded_region().len())
                    .finish_non_exhaustive()
            }
        }
    };
}
redacted_debug!(ReadGuard);
redacted_debug!(WriteGuard);

/// Every interleaving of accesses and purges on one buffer (run with `RUSTFLAGS="--cfg loom" cargo test -p
/// securememory-memguard --lib --release loom`): no access sees freed or half-wiped memory, no purge is lost,
/// a forced wipe never touches released pages, and nothing deadlocks.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::core::region::Locking;
    use loom::sync::Arc;
    use loom::thread;

    fn shared(byte: u8) -> Arc<Shared> {
        let region = GuardedRegion::new(16, Locking::Required).expect("allocate");
        // SAFETY: the region is fresh, read-write, and nothing else refers to it yet.
        unsafe { region.data_mut() }.fill(byte);
        Arc::new(Shared::new(region))
    }

    fn destroyed(shared: &Shared) -> bool {
        shared.state().expect("lock").region.is_none()
    }

    fn forced(shared: &Shared) -> bool {
        lock_pages(&shared.pages).forced
    }

    /// A deadline that never passes within a model run (loom does not model time).
    fn patient() -> PurgeRequest {
        PurgeRequest::new(Duration::from_secs(3600), false)
    }

    #[test]
    fn a_read_racing_a_purge_sees_intact_bytes_or_destroyed() {
        loom::model(|| {
            let s = shared(7);
            let reader = {
                let s = Arc::clone(&s);
                thread::spawn(move || match s.read() {
                    Ok(bytes) => assert!(bytes.iter().all(|&b| b == 7)),
                    Err(err) => assert!(matches!(err, Error::Destroyed)),
                })
            };
            s.purge(&patient());
            assert!(destroyed(&s), "purge returns only once the buffer is gone");
            reader.join().unwrap();
            assert!(destroyed(&s));
            assert!(!forced(&s), "an access that ends in time is never forced");
        });
    }

    // Not modelled: a purge whose `try_write` fails while the lock is held. loom 0.7 marks a thread whose next
    // step is `try_write` as blocked whenever another thread holds the lock, and only wakes it when the lock is
    // free, so an expired deadline can never be observed with the lock held. The forced wipe itself is
    // modelled directly below; `tests/purge.rs` and `tests/purge_forgotten.rs` cover the timing with real
    // threads.

    #[test]
    fn a_purge_waits_for_an_access_held_on_another_thread() {
        loom::model(|| {
            let s = shared(1);
            let bytes = s.read().expect("alive");
            let purger = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    s.purge(&patient());
                    assert!(destroyed(&s));
                })
            };
            // A scheduling point while the access is held, so the purger can run inside the window.
            let _ = s.purge_pending.load(Ordering::SeqCst);
            assert_eq!(bytes[0], 1, "the access stays valid while the purge waits");
            drop(bytes);
            purger.join().unwrap();
            assert!(destroyed(&s));
        });
    }

    #[test]
    fn concurrent_purges_and_a_writer() {
        loom::model(|| {
            let s = shared(3);
            let purger = {
                let s = Arc::clone(&s);
                thread::spawn(move || s.purge(&patient()))
            };
            if let Ok(mut data) = s.write() {
                data[0] = 4;
            }
            s.purge(&patient());
            purger.join().unwrap();
            assert!(destroyed(&s));
        });
    }

    /// A forced wipe racing the release of the last access: either the wipe runs on the still-mapped pages
    /// and the release then frees them, or the release frees them first and the wipe finds nothing to do. A
    /// wipe of released pages would fault the model.
    #[test]
    fn a_forced_wipe_racing_the_last_release_never_touches_released_pages() {
        loom::model(|| {
            let s = shared(5);
            let bytes = s.read().expect("alive");
            s.purge_pending.store(true, Ordering::SeqCst);
            let forcer = {
                let s = Arc::clone(&s);
                thread::spawn(move || s.force())
            };
            drop(bytes);
            forcer.join().unwrap();
            assert!(destroyed(&s), "the release finishes the pending purge");
            assert!(lock_pages(&s.pages).region.is_none());
        });
    }

    /// The exit path forces an access held by the purging thread itself at once, and the release of that
    /// access (if it ever came) frees the pages; a reader on another thread is refused or sees intact bytes.
    #[test]
    fn an_exiting_purge_inside_an_access_forces_it_and_the_release_frees_it() {
        loom::model(|| {
            let s = shared(9);
            let reader = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    if let Ok(bytes) = s.read() {
                        // This read may overlap the forced wipe: the slice is read only before the purge
                        // started (then its lock kept the purge from finishing) or not at all.
                        drop(bytes);
                    }
                })
            };
            let bytes = s.read().expect("alive");
            s.purge(&PurgeRequest::new(Duration::from_secs(3600), true));
            assert!(
                forced(&s),
                "an exiting purge does not wait for its own thread's access"
            );
            drop(bytes);
            reader.join().unwrap();
            assert!(destroyed(&s));
        });
    }
}
