//! The coffer: a 32-byte key kept split in two locked halves, `key = BLAKE2b-256(right) XOR left`, re-split on
//! a timer so that neither half stays put. Every intermediate (the random mask, both hashes, the assembled key)
//! lives in a locked scratch region and is wiped right after use (Go leaves one hash behind), and every
//! computation on the halves or the key runs on a private stack in locked, no-dump, no-fork pages
//! ([`secure_stack`]).

use std::mem::ManuallyDrop;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::crypto::{blake2b_256, Cipher, KEY_LEN};
use super::region::{GuardedRegion, Locking};
use super::registry::{register, PurgeRequest, Purgeable, Registration};
use super::secure_stack::{self, Depth};
use crate::error::{Error, Result};

/// How often the enclave key is re-split (Go: 500 ms).
pub const REKEY_INTERVAL: Duration = Duration::from_millis(500);

// Scratch layout: three 32-byte slots in one guarded region (the assembled key itself lives on the private
// stack of the operation that needs it).
const RAND: usize = 0;
const HASH_A: usize = 32;
const SCRATCH_LEN: usize = 96;

struct Halves {
    left: GuardedRegion,
    right: GuardedRegion,
    scratch: GuardedRegion,
}

/// Mutable views of the halves and the scratch slots. The regions are read-write for life and only touched
/// under the coffer's mutex, which the `&mut Halves` borrow proves is held.
struct Parts<'a> {
    left: &'a mut [u8; KEY_LEN],
    right: &'a mut [u8; KEY_LEN],
    scratch: &'a mut [u8; SCRATCH_LEN],
}

fn slot(scratch: &mut [u8; SCRATCH_LEN], at: usize) -> &mut [u8; KEY_LEN] {
    (&mut scratch[at..at + KEY_LEN])
        .try_into()
        .expect("32-byte slot")
}

fn xor_into(dst: &mut [u8; KEY_LEN], src: &[u8; KEY_LEN]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d ^= s);
}

impl Halves {
    fn new() -> Result<Halves> {
        let mut halves = Halves {
            left: GuardedRegion::new(KEY_LEN, Locking::Required)?,
            right: GuardedRegion::new(KEY_LEN, Locking::Required)?,
            scratch: GuardedRegion::new(SCRATCH_LEN, Locking::Required)?,
        };
        let p = halves.parts();
        getrandom::fill(p.left)?;
        getrandom::fill(p.right)?;
        let hash = slot(p.scratch, HASH_A);
        blake2b_256(p.right, hash);
        xor_into(p.left, hash);
        memcall::wipe_bytes(hash);
        Ok(halves)
    }

    fn parts(&mut self) -> Parts<'_> {
        // SAFETY:
        // - the three regions are distinct mappings, read-write since `GuardedRegion::new` (the coffer never
        //   changes their protection), of exactly 32, 32 and 96 bytes;
        // - `&mut self` makes these the only live references to their data until `Parts` is dropped.
        unsafe {
            Parts {
                left: self.left.data_mut().try_into().expect("32 bytes"),
                right: self.right.data_mut().try_into().expect("32 bytes"),
                scratch: self.scratch.data_mut().try_into().expect("96 bytes"),
            }
        }
    }

    /// `right ^= rand; left ^= H(old right) ^ H(new right)`: the key is unchanged, both halves are new.
    fn rekey(&mut self) -> Result<()> {
        let p = self.parts();
        let (rand, rest) = p.scratch.split_at_mut(HASH_A);
        let (hash_a, rest) = rest.split_at_mut(KEY_LEN);
        let hash_b = &mut rest[..KEY_LEN];
        let rand: &mut [u8; KEY_LEN] = rand.try_into().expect("32");
        let hash_a: &mut [u8; KEY_LEN] = hash_a.try_into().expect("32");
        let hash_b: &mut [u8; KEY_LEN] = hash_b.try_into().expect("32");
        let res = getrandom::fill(rand).map_err(Error::from).map(|()| {
            blake2b_256(p.right, hash_a);
            xor_into(p.right, rand);
            blake2b_256(p.right, hash_b);
            xor_into(p.left, hash_a);
            xor_into(p.left, hash_b);
        });
        memcall::wipe_bytes(&mut p.scratch[RAND..]);
        res
    }

    /// Assembles the key into `out`, which must be on the private stack.
    fn assemble(&mut self, out: &mut [u8; KEY_LEN]) {
        let p = self.parts();
        blake2b_256(p.right, out);
        xor_into(out, p.left);
    }

    fn destroy(self) -> Result<()> {
        let mut first = None;
        for region in [self.left, self.right, self.scratch] {
            if let Err(err) = region.destroy() {
                // A region handed back is dropped here, which still wipes and unmaps it.
                first.get_or_insert(err.error);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

struct Rekeyer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

struct Inner {
    halves: Mutex<Option<Halves>>,
    rekeyer: Mutex<Option<Rekeyer>>,
    /// `memcall::fork_epoch()` at creation. In a forked child the halves are not mapped (no-fork pages), the
    /// rekeying thread does not exist and a parent thread may have held either mutex at fork time: the child
    /// touches none of it.
    epoch: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything that can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn forked(&self) -> bool {
        memcall::fork_epoch() != self.epoch
    }

    fn check(&self) -> Result<()> {
        if self.forked() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    fn stop_rekeying(&self) {
        if self.forked() {
            return;
        }
        let Some(rekeyer) = lock(&self.rekeyer).take() else {
            return;
        };
        *lock(&rekeyer.stop.0) = true;
        rekeyer.stop.1.notify_all();
        if rekeyer.thread.thread().id() != thread::current().id() {
            let _ = rekeyer.thread.join();
        }
    }

    fn destroy(&self) -> Result<()> {
        if self.forked() {
            return Ok(());
        }
        self.stop_rekeying();
        let halves = lock(&self.halves).take();
        match halves {
            Some(halves) => halves.destroy(),
            None => Ok(()),
        }
    }
}

impl Purgeable for Inner {
    fn purge(&self, _request: &PurgeRequest) {
        if self.forked() {
            return;
        }
        if let Err(err) = self.destroy() {
            log::error!("purging a coffer failed: {err}");
        }
    }
}

/// A 32-byte key split across two locked buffers and re-split on a timer (Go's `core.Coffer`).
///
/// The process-wide enclave key is one of these, created on first use and destroyed by
/// [`purge`](crate::purge); a `Coffer` of your own holds any other key the same way, and [`purge`](crate::purge)
/// destroys it too (as Go's purge wipes every coffer's buffers).
///
/// The assembled key, and anything [`with_key`](Self::with_key) computes from it, exist only in locked,
/// no-dump, no-fork pages (a scratch slot and a private stack), which are wiped right after.
///
/// # Fork
/// A coffer belongs to the process that made it. In a forked child its pages are not mapped: every method
/// that needs the key fails with [`Error::Forked`], [`destroy`](Self::destroy) and drop do nothing (the
/// parent's pages and rekeying thread are forgotten, never released or joined), and
/// [`is_destroyed`](Self::is_destroyed) is true.
pub struct Coffer {
    inner: ManuallyDrop<Arc<Inner>>,
    registration: ManuallyDrop<Option<Registration>>,
}

impl std::fmt::Debug for Coffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coffer")
            .field("destroyed", &self.is_destroyed())
            .field("rekeying", &self.is_rekeying())
            .finish_non_exhaustive()
    }
}

impl Coffer {
    /// A fresh random key in three locked regions (left, right, scratch), registered for
    /// [`purge`](crate::purge). No rekeying until [`start_rekeying`](Self::start_rekeying).
    ///
    /// # Errors
    /// [`Error::Memory`] when allocating or locking fails (nothing is left allocated); [`Error::Random`].
    pub fn new() -> Result<Coffer> {
        let mut coffer = Coffer::unregistered()?;
        let weak: Weak<dyn Purgeable> = Arc::downgrade(&*coffer.inner) as Weak<dyn Purgeable>;
        *coffer.registration = Some(register(weak));
        Ok(coffer)
    }

    /// A coffer that [`purge`](crate::purge) does not reach by itself (the enclave key, which purge destroys
    /// explicitly).
    pub(crate) fn unregistered() -> Result<Coffer> {
        let halves = secure_stack::run_at(Depth::Shallow, Halves::new)??;
        Ok(Coffer {
            inner: ManuallyDrop::new(Arc::new(Inner {
                halves: Mutex::new(Some(halves)),
                rekeyer: Mutex::new(None),
                epoch: memcall::fork_epoch(),
            })),
            registration: ManuallyDrop::new(None),
        })
    }

    /// Re-splits the key once.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`destroy`](Self::destroy) or a purge; [`Error::Forked`] in a forked child;
    /// [`Error::Random`]; [`Error::Memory`] when no private stack can be mapped.
    pub fn rekey(&self) -> Result<()> {
        self.inner.check()?;
        secure_stack::run_at(Depth::Shallow, || {
            lock(&self.inner.halves)
                .as_mut()
                .ok_or(Error::Destroyed)?
                .rekey()
        })?
    }

    /// Runs `f` on the assembled key, which is wiped when `f` returns.
    ///
    /// The key is assembled on a private stack in locked, no-dump, no-fork pages (32 KiB; an overflow
    /// faults on its guard page) and `f` runs there too; the used part of that stack is wiped afterwards and
    /// the registers are cleared before this returns. Keep `f` short and return nothing derived from the key
    /// (the return value is copied to ordinary memory). The coffer is not locked while `f` runs, so `f` may
    /// call other methods of the coffer, or [`purge`](crate::purge). Do not `fork()` inside `f`: the private
    /// stack is not inherited, so the child would have no stack to run on.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`destroy`](Self::destroy) or a purge; [`Error::Forked`] in a forked child;
    /// [`Error::Memory`] when no private stack can be mapped.
    pub fn with_key<R>(&self, f: impl FnOnce(&[u8; KEY_LEN]) -> R) -> Result<R> {
        self.with_key_at(Depth::Deep, f)
    }

    /// As [`with_key`](Self::with_key), on a private stack of class `depth`: [`Depth::Shallow`] only for
    /// the crate's own operations, whose stack use the secure stack's high-water tests bound.
    pub(crate) fn with_key_at<R>(
        &self,
        depth: Depth,
        f: impl FnOnce(&[u8; KEY_LEN]) -> R,
    ) -> Result<R> {
        self.inner.check()?;
        secure_stack::run_at(depth, || {
            let mut key = [0u8; KEY_LEN];
            lock(&self.inner.halves)
                .as_mut()
                .ok_or(Error::Destroyed)?
                .assemble(&mut key);
            let out = f(&key);
            memcall::wipe_bytes(&mut key);
            Ok(out)
        })?
    }

    /// Runs `f` with a cipher under the key, on a shallow private stack (see [`with_key`](Self::with_key)):
    /// `f` must be one of the crate's own seal or open operations.
    pub(crate) fn with_cipher<R>(&self, f: impl FnOnce(&Cipher) -> R) -> Result<R> {
        self.with_key_at(Depth::Shallow, |key| {
            let cipher = Cipher::new(key);
            f(&cipher)
        })
    }

    /// Starts a background thread that re-splits the key every `interval` until [`stop_rekeying`], [`destroy`]
    /// or drop. A no-op when one is running.
    ///
    /// [`stop_rekeying`]: Self::stop_rekeying
    /// [`destroy`]: Self::destroy
    ///
    /// # Errors
    /// [`Error::Io`] when the thread cannot be spawned; [`Error::Forked`] in a forked child.
    pub fn start_rekeying(&self, interval: Duration) -> Result<()> {
        self.inner.check()?;
        let mut slot = lock(&self.inner.rekeyer);
        if slot.is_some() {
            return Ok(());
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(&*self.inner);
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("memguard-rekey".into())
            .spawn(move || rekey_loop(&weak, &thread_stop, interval))?;
        *slot = Some(Rekeyer { stop, thread });
        Ok(())
    }

    /// Stops the rekeying thread and waits for it to end. A no-op when none runs, and in a forked child.
    pub fn stop_rekeying(&self) {
        self.inner.stop_rekeying();
    }

    /// True while the rekeying thread runs (never in a forked child).
    pub fn is_rekeying(&self) -> bool {
        !self.inner.forked()
            && lock(&self.inner.rekeyer)
                .as_ref()
                .is_some_and(|r| !r.thread.is_finished())
    }

    /// Stops rekeying, then wipes and releases the key. Idempotent; a no-op in a forked child.
    ///
    /// # Errors
    /// [`Error::Memory`] or [`Error::CanaryCorrupted`] from releasing a region; every region is released
    /// regardless.
    pub fn destroy(&self) -> Result<()> {
        self.inner.destroy()
    }

    /// True after [`destroy`](Self::destroy) or a purge, and always in a forked child.
    pub fn is_destroyed(&self) -> bool {
        self.inner.forked() || lock(&self.inner.halves).is_none()
    }
}

impl Drop for Coffer {
    fn drop(&mut self) {
        if self.inner.forked() {
            // The parent's pages, thread and registry slot: forgotten, never released, joined or unlinked.
            return;
        }
        if let Err(err) = self.destroy() {
            log::error!("destroying a coffer failed: {err}");
        }
        // SAFETY: both fields are dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.registration);
            ManuallyDrop::drop(&mut self.inner);
        }
    }
}

fn rekey_loop(inner: &Weak<Inner>, stop: &(Mutex<bool>, Condvar), interval: Duration) {
    let mut stopped = lock(&stop.0);
    loop {
        // Checked before waiting too: a stop that came before this thread first took the lock sent its
        // notification to nobody.
        if *stopped {
            return;
        }
        stopped = stop
            .1
            .wait_timeout(stopped, interval)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if *stopped {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let result = secure_stack::run_at(Depth::Shallow, || {
            lock(&inner.halves).as_mut().map(Halves::rekey)
        });
        match result {
            Ok(Some(Ok(()))) => {}
            Ok(None) => return,
            Ok(Some(Err(err))) | Err(err) => {
                log::error!("re-splitting the enclave key failed, rekeying stops: {err}");
                return;
            }
        }
    }
}
