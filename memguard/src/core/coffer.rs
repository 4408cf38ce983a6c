//! The coffer: a 32-byte key kept split in two locked halves, `key = BLAKE2b-256(right) XOR left`, re-split on
//! a timer so that neither half stays put. Every intermediate (the random mask, both hashes, the assembled key)
//! lives in a locked scratch region and is wiped right after use (Go leaves one hash behind).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::crypto::{blake2b_256, KEY_LEN};
use super::region::{GuardedRegion, Locking};
use crate::error::{Error, Result};

/// How often the enclave key is re-split (Go: 500 ms).
pub const REKEY_INTERVAL: Duration = Duration::from_millis(500);

// Scratch layout: four 32-byte slots in one guarded region.
const RAND: usize = 0;
const HASH_A: usize = 32;
const VIEW: usize = 96;
const SCRATCH_LEN: usize = 128;

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
        //   changes their protection), of exactly 32, 32 and 128 bytes;
        // - `&mut self` makes these the only live references to their data until `Parts` is dropped.
        unsafe {
            Parts {
                left: self.left.data_mut().try_into().expect("32 bytes"),
                right: self.right.data_mut().try_into().expect("32 bytes"),
                scratch: self.scratch.data_mut().try_into().expect("128 bytes"),
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
        memcall::wipe_bytes(&mut p.scratch[RAND..VIEW]);
        res
    }

    /// Assembles the key in the scratch's view slot, runs `f` on it, and wipes it.
    fn with_key<R>(&mut self, f: impl FnOnce(&[u8; KEY_LEN]) -> R) -> R {
        let p = self.parts();
        let (head, view) = p.scratch.split_at_mut(VIEW);
        let view: &mut [u8; KEY_LEN] = view.try_into().expect("32");
        blake2b_256(p.right, view);
        xor_into(view, p.left);
        let out = f(view);
        memcall::wipe_bytes(view);
        memcall::wipe_bytes(head);
        out
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything that can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A 32-byte key split across two locked buffers and re-split on a timer (Go's `core.Coffer`).
///
/// The process-wide enclave key is one of these, created on first use and destroyed by
/// [`purge`](crate::purge); a `Coffer` of your own holds any other key the same way.
pub struct Coffer {
    inner: Arc<Inner>,
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
    /// A fresh random key in three locked regions (left, right, scratch). No rekeying until
    /// [`start_rekeying`](Self::start_rekeying).
    ///
    /// # Errors
    /// [`Error::Memory`] when allocating or locking fails (nothing is left allocated); [`Error::Random`].
    pub fn new() -> Result<Coffer> {
        Ok(Coffer {
            inner: Arc::new(Inner {
                halves: Mutex::new(Some(Halves::new()?)),
                rekeyer: Mutex::new(None),
            }),
        })
    }

    /// Re-splits the key once.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`destroy`](Self::destroy); [`Error::Random`].
    pub fn rekey(&self) -> Result<()> {
        lock(&self.inner.halves)
            .as_mut()
            .ok_or(Error::Destroyed)?
            .rekey()
    }

    /// Runs `f` on the assembled key, which is wiped when `f` returns. The coffer is locked meanwhile.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`destroy`](Self::destroy).
    pub fn with_key<R>(&self, f: impl FnOnce(&[u8; KEY_LEN]) -> R) -> Result<R> {
        Ok(lock(&self.inner.halves)
            .as_mut()
            .ok_or(Error::Destroyed)?
            .with_key(f))
    }

    /// Starts a background thread that re-splits the key every `interval` until [`stop_rekeying`], [`destroy`]
    /// or drop. A no-op when one is running.
    ///
    /// [`stop_rekeying`]: Self::stop_rekeying
    /// [`destroy`]: Self::destroy
    ///
    /// # Errors
    /// [`Error::Io`] when the thread cannot be spawned.
    pub fn start_rekeying(&self, interval: Duration) -> Result<()> {
        let mut slot = lock(&self.inner.rekeyer);
        if slot.is_some() {
            return Ok(());
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(&self.inner);
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("memguard-rekey".into())
            .spawn(move || rekey_loop(&weak, &thread_stop, interval))?;
        *slot = Some(Rekeyer { stop, thread });
        Ok(())
    }

    /// Stops the rekeying thread and waits for it to end. A no-op when none runs.
    pub fn stop_rekeying(&self) {
        let Some(rekeyer) = lock(&self.inner.rekeyer).take() else {
            return;
        };
        *lock(&rekeyer.stop.0) = true;
        rekeyer.stop.1.notify_all();
        if rekeyer.thread.thread().id() != thread::current().id() {
            let _ = rekeyer.thread.join();
        }
    }

    /// True while the rekeying thread runs.
    pub fn is_rekeying(&self) -> bool {
        lock(&self.inner.rekeyer)
            .as_ref()
            .is_some_and(|r| !r.thread.is_finished())
    }

    /// Stops rekeying, then wipes and releases the key. Idempotent.
    ///
    /// # Errors
    /// [`Error::Memory`] or [`Error::CanaryCorrupted`] from releasing a region; every region is released
    /// regardless.
    pub fn destroy(&self) -> Result<()> {
        self.stop_rekeying();
        match lock(&self.inner.halves).take() {
            Some(halves) => halves.destroy(),
            None => Ok(()),
        }
    }

    /// True after [`destroy`](Self::destroy).
    pub fn is_destroyed(&self) -> bool {
        lock(&self.inner.halves).is_none()
    }
}

impl Drop for Coffer {
    fn drop(&mut self) {
        if let Err(err) = self.destroy() {
            log::error!("destroying a coffer failed: {err}");
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
        let result = lock(&inner.halves).as_mut().map(Halves::rekey);
        match result {
            Some(Ok(())) => {}
            None => return,
            Some(Err(err)) => {
                log::error!("re-splitting the enclave key failed, rekeying stops: {err}");
                return;
            }
        }
    }
}
