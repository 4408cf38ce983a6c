//! The pages of a sealed secret: ciphertext in ordinary memory, and a scratch region that holds the plaintext
//! only while an access window is open.

use std::any::Any;
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use memcall::{LockMode, Protection};

use super::pages::{DestroyFailed, Pages};
use super::scratch::{self, Scratch};
use crate::error::{Error, Result};
use crate::mg::sealing::{self, TAG_LEN};

/// One sealed secret's state at rest: `tag || ciphertext` under the process's sealing key, bound to `id`.
pub struct SealedPages {
    /// `tag (16) || ciphertext`. Read by `open_window`, written by `wipe_in_place`, `tamper` and `destroy`:
    /// all of them run under the access state's mutex (or own the pages), never concurrently.
    /// Cells rather than a cell around the box: the box's niche survives, so `Option<SealedPages>` costs no
    /// extra word.
    sealed: Box<[UnsafeCell<u8>]>,
    /// The identity, shifted left by one, with the lowest bit set when scratch copies must be locked (one word:
    /// a sealed secret's bookkeeping is most of what it costs).
    id_required: u64,
    /// The open window's scratch region (a `Box<Scratch>` turned into a raw pointer), null while closed.
    window: AtomicPtr<Scratch>,
}

// SAFETY:
// - `sealed` is only touched under the protocol above (the access state's mutex, or `&mut self`/ownership), so
//   sharing the pages between threads adds no data race;
// - the scratch pointer is transferred with atomic swaps, and `Scratch` is `Send`.
unsafe impl Sync for SealedPages {}

impl std::fmt::Debug for SealedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedPages")
            .field("id", &self.id())
            .field("open", &!self.window.load(Ordering::Relaxed).is_null())
            .finish_non_exhaustive()
    }
}

impl SealedPages {
    /// Seals a copy of `plaintext`; the copy is encrypted where it lands, in the new ciphertext buffer.
    pub(crate) fn seal_copy(plaintext: &[u8], lock_mode: LockMode) -> Result<SealedPages> {
        let mut sealed = vec![0u8; TAG_LEN + plaintext.len()].into_boxed_slice();
        sealed[TAG_LEN..].copy_from_slice(plaintext);
        let id = sealing::next_id();
        match sealing::seal_in_place(id, &mut sealed[TAG_LEN..]) {
            Ok(tag) => sealed[..TAG_LEN].copy_from_slice(&tag),
            Err(e) => {
                memcall::wipe_bytes(&mut sealed);
                return Err(Error::Memguard(e));
            }
        }
        Ok(SealedPages::from_parts(sealed, id, lock_mode))
    }

    /// `len` random bytes, made and encrypted on the private stack (small sizes) or in a scratch region.
    pub(crate) fn random(len: usize, lock_mode: LockMode) -> Result<SealedPages> {
        if len == 0 {
            return Err(Error::InvalidLength { len });
        }
        if len > sealing::RANDOM_MAX {
            return Self::filled(len, lock_mode, |bytes| {
                getrandom::fill(bytes).map_err(Error::Random)
            });
        }
        let mut sealed = vec![0u8; TAG_LEN + len].into_boxed_slice();
        let id = sealing::next_id();
        let tag = sealing::seal_random(id, &mut sealed[TAG_LEN..]).map_err(Error::Memguard)?;
        sealed[..TAG_LEN].copy_from_slice(&tag);
        Ok(SealedPages::from_parts(sealed, id, lock_mode))
    }

    /// `len` bytes that `fill` writes into a locked scratch region, encrypted there; only the ciphertext leaves
    /// it. The region is wiped whatever happens.
    pub(crate) fn filled(
        len: usize,
        lock_mode: LockMode,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<SealedPages> {
        if len == 0 {
            return Err(Error::InvalidLength { len });
        }
        let mut scratch = scratch::take(len, lock_mode).map_err(Error::Memory)?;
        let id = sealing::next_id();
        let sealed = {
            // SAFETY: a scratch region from `take` is read-write, and it is owned here: no other slice of it
            // exists.
            let plain = &mut unsafe { scratch.region.as_mut_slice() }[..len];
            fill(plain).and_then(|()| {
                let tag = sealing::seal_in_place(id, plain).map_err(Error::Memguard)?;
                let mut sealed = vec![0u8; TAG_LEN + len].into_boxed_slice();
                sealed[..TAG_LEN].copy_from_slice(&tag);
                sealed[TAG_LEN..].copy_from_slice(plain);
                Ok(sealed)
            })
        };
        let released = scratch::give(scratch, len).map_err(Error::Memory);
        match (sealed, released) {
            (Ok(sealed), Ok(())) => Ok(SealedPages::from_parts(sealed, id, lock_mode)),
            (Err(e), Ok(())) => Err(e),
            (Ok(mut sealed), Err(cleanup)) => {
                memcall::wipe_bytes(&mut sealed);
                Err(cleanup)
            }
            (Err(e), Err(cleanup)) => Err(Error::Cleanup {
                error: Box::new(e),
                cleanup: Box::new(cleanup),
            }),
        }
    }

    fn from_parts(sealed: Box<[u8]>, id: u64, lock_mode: LockMode) -> SealedPages {
        // Identities come from a 64-bit counter that starts at 1: the top bit is never reached.
        let len = sealed.len();
        let raw = Box::into_raw(sealed).cast::<UnsafeCell<u8>>();
        // SAFETY: `UnsafeCell<u8>` has the same layout as `u8` (`repr(transparent)`), so the allocation of `len`
        // bytes is one of `len` cells; ownership moves from the first box to the second.
        let sealed = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(raw, len)) };
        SealedPages {
            sealed,
            id_required: id << 1 | u64::from(lock_mode == LockMode::Required),
            window: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Plaintext length.
    pub(crate) fn len(&self) -> usize {
        self.sealed.len() - TAG_LEN
    }

    /// The sealed bytes as a shared slice.
    ///
    /// # Safety
    /// No writer of the sealed bytes may run while the slice lives (hold the access state's mutex).
    unsafe fn sealed_bytes(&self) -> &[u8] {
        // SAFETY: the cells are `len` initialised bytes (`repr(transparent)` over `u8`); no writer runs, by the
        // caller's contract.
        unsafe { std::slice::from_raw_parts(self.sealed.as_ptr().cast::<u8>(), self.sealed.len()) }
    }

    /// The sealed bytes as a writable slice.
    ///
    /// # Safety
    /// Nothing else may read or write the sealed bytes while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn sealed_bytes_mut(&self) -> &mut [u8] {
        // SAFETY: writing through cells reached from a shared reference is what `UnsafeCell` allows; exclusive
        // use is the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(
                UnsafeCell::raw_get(self.sealed.as_ptr()),
                self.sealed.len(),
            )
        }
    }

    /// The identity the ciphertext is bound to.
    pub(crate) fn id(&self) -> u64 {
        self.id_required >> 1
    }

    fn lock_mode(&self) -> LockMode {
        if self.id_required & 1 != 0 {
            LockMode::Required
        } else {
            LockMode::BestEffort
        }
    }

    /// A copy of `tag || ciphertext`.
    ///
    /// # Safety
    /// No writer of the sealed bytes may run meanwhile (hold the access state's mutex).
    pub(crate) unsafe fn sealed_copy(&self) -> Vec<u8> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.sealed_bytes() }.to_vec()
    }

    /// Runs `f` on `tag || ciphertext`, writable (tests that tamper with it).
    ///
    /// # Safety
    /// No other access to the sealed bytes may run meanwhile (hold the access state's mutex with no window
    /// open).
    pub(crate) unsafe fn tamper(&self, f: impl FnOnce(&mut [u8])) {
        // SAFETY: forwarded from this function's contract.
        f(unsafe { self.sealed_bytes_mut() })
    }
}

impl Drop for SealedPages {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nothing else touches the sealed bytes.
        memcall::wipe_bytes(unsafe { self.sealed_bytes_mut() });
        let window = self.window.swap(ptr::null_mut(), Ordering::AcqRel);
        if !window.is_null() {
            // SAFETY: a non-null window pointer came from `Box::into_raw` in `open_window` and was not taken
            // back (swapped out) since; `&mut self` makes this the only owner.
            let scratch = unsafe { Box::from_raw(window) };
            if let Err(e) = scratch::give(scratch, self.len()) {
                log::error!("releasing a sealed secret's scratch region failed: {e}");
            }
        }
    }
}

impl Pages for SealedPages {
    /// Changes the protection of the open window's scratch region; without one there is nothing to protect.
    fn protect(&self, prot: Protection) -> memcall::Result<()> {
        let window = self.window.load(Ordering::Acquire);
        if window.is_null() {
            return Ok(());
        }
        // SAFETY: the window is swapped out only by `close_window`/`Drop`, which the access state never runs
        // concurrently with `protect` (both under its mutex, or with `&mut self`).
        unsafe { &*window }.region.protect(prot)
    }

    fn open_window(&self) -> Result<()> {
        if !self.window.load(Ordering::Acquire).is_null() {
            // Still open (a failed close): the plaintext is in place.
            return self.protect(Protection::ReadWrite).map_err(Error::ReadOnly);
        }
        let len = self.len();
        // A full memlock limit is `Error::Memory` holding `LockLimit`, which names the limit and how to raise it.
        let mut scratch = scratch::take(len, self.lock_mode()).map_err(Error::Memory)?;
        let opened = {
            // SAFETY: `take` returns a read-write region owned here; the sealed bytes are only written under
            // the access state's mutex, which the caller holds.
            let (plain, sealed) = unsafe {
                (
                    &mut scratch.region.as_mut_slice()[..len],
                    self.sealed_bytes(),
                )
            };
            plain.copy_from_slice(&sealed[TAG_LEN..]);
            let tag: &[u8; TAG_LEN] = sealed[..TAG_LEN].try_into().expect("16-byte tag");
            sealing::open_in_place(self.id(), tag, plain)
        };
        if let Err(e) = opened {
            let error = match e {
                crate::mg::Error::DecryptionFailed => Error::Integrity,
                // The key it was sealed under was destroyed by a purge that has not reached this secret yet:
                // it is as good as closed, and will be in a moment.
                crate::mg::Error::Destroyed => Error::Closed,
                other => Error::Memguard(other),
            };
            return match scratch::give(scratch, len) {
                Ok(()) => Err(error),
                Err(cleanup) => Err(Error::Cleanup {
                    error: Box::new(error),
                    cleanup: Box::new(Error::Memory(cleanup)),
                }),
            };
        }
        self.window.store(Box::into_raw(scratch), Ordering::Release);
        Ok(())
    }

    fn close_window(&self, retire: bool) -> memcall::Result<Option<Box<dyn Any + Send>>> {
        let window = self.window.swap(ptr::null_mut(), Ordering::AcqRel);
        if window.is_null() {
            return Ok(None);
        }
        // SAFETY: the pointer came from `Box::into_raw` in `open_window`, and the swap above made this call its
        // only owner.
        let mut scratch = unsafe { Box::from_raw(window) };
        if retire && !scratch.purged.load(Ordering::Acquire) {
            // Something may still point into it: wiped and no-access, never reused.
            // SAFETY: read-write until now, and no reader remains (the window is closing).
            memcall::wipe_bytes(unsafe { scratch.region.as_mut_slice() });
            let sealed = scratch.region.protect(Protection::NoAccess);
            let kept: Box<dyn Any + Send> = scratch;
            return sealed.map(|()| Some(kept));
        }
        // A purged region is freed by `give`, like the secret.
        scratch::give(scratch, self.len()).map(|()| None)
    }

    unsafe fn data(&self) -> &[u8] {
        let window = self.window.load(Ordering::Acquire);
        assert!(!window.is_null(), "sealed secret read outside its window");
        // SAFETY: forwarded from this function's contract: the window is open (so the scratch region is
        // mapped and read-write) for as long as the slice lives, and nothing writes it meanwhile.
        unsafe { &(&*window).region.as_slice()[..self.len()] }
    }

    /// The sealed bytes (`tag || ciphertext`): what is at rest, and what a retiring close wipes.
    unsafe fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: `&mut self`: nothing else touches the sealed bytes.
        unsafe { self.sealed_bytes_mut() }
    }

    unsafe fn wipe_in_place(&self) -> memcall::Result<()> {
        // SAFETY: forwarded from this function's contract: nothing else writes the sealed bytes meanwhile (the
        // caller holds the access state's mutex).
        memcall::wipe_bytes(unsafe { self.sealed_bytes_mut() });
        let window = self.window.load(Ordering::Acquire);
        if window.is_null() {
            return Ok(());
        }
        // SAFETY: the window stays until `close_window`, which the caller's mutex excludes.
        let scratch = unsafe { &*window };
        scratch.purged.store(true, Ordering::Release);
        scratch.region.wipe()?;
        scratch.region.protect(Protection::NoAccess)
    }

    fn destroy(self) -> std::result::Result<(), DestroyFailed<Self>> {
        // `Drop` wipes the sealed bytes and releases a window left open.
        drop(self);
        Ok(())
    }
}
