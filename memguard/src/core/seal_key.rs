//! The sealing key: one AES-256-GCM key per process, for secrets kept encrypted in ordinary memory (see
//! [`crate::sealing`]).
//!
//! The 32 key bytes live in one locked, no-dump, no-fork page that no code can read at rest:
//! - where the CPU and kernel offer memory protection keys ([`memcall::pkey`]), the page carries this process's
//!   key, disabled in every thread; an operation opens it on its own thread only, without a system call, for
//!   as long as the operation reads the expanded cipher in place;
//! - elsewhere the page is no-access (`mprotect`), made read-only for one copy of the cipher onto the private
//!   stack at a time.
//!
//! The page holds the expanded cipher (the key schedule); no raw key is kept. Every operation under it runs on
//! the private stack ([`secure_stack`](super::secure_stack)), wiped after each operation. The key never exists
//! anywhere else.
//!
//! # Lifecycle
//! Made on first use; destroyed (wiped, unlocked, unmapped) by [`destroy`], which `purge` calls; the next use
//! makes a new one. Owned by the process that made it: a forked child does not have the page (no-fork advice)
//! and makes its own key. The nonce is the item's identity, from a process-wide counter that never repeats, so
//! no nonce repeats under any key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use memcall::pkey::ProtectionKey;
use memcall::{PerProcess, Protection, Region};

use super::secure_stack;
use crate::error::{Error, Result};

/// Bytes of a sealing key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// How the sealing key's page is kept unreadable at rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProtection {
    /// A memory protection key disabled in every thread; a read opens a window on one thread, without a
    /// system call.
    ProtectionKey,
    /// A no-access page, made read-only for each read (two `mprotect` calls).
    NoAccessPage,
}

struct KeyPage {
    region: Region,
    pkey: Option<ProtectionKey>,
    /// Serialises the copies of a no-access page: each makes it readable and no-access again, and one
    /// thread's `NoAccess` must not land in the middle of another's copy.
    copying: Mutex<()>,
}

impl KeyPage {
    /// Makes a key and expands it into the page. Call on the private stack: the raw key and the cipher pass
    /// through locals there on their way in.
    fn new() -> Result<KeyPage> {
        const _: () = assert!(std::mem::align_of::<Aes256Gcm>() <= 4096);
        let region = Region::alloc(std::mem::size_of::<Aes256Gcm>())?;
        let locked = match region.lock() {
            Err(e) if e.is_lock_limit() && memcall::pool::trim_all() > 0 => region.lock(),
            other => other,
        };
        // A region dropped on error is wiped and unmapped; nothing secret is in it yet.
        locked?;
        let mut key = [0u8; KEY_LEN];
        let filled = getrandom::fill(&mut key);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        memcall::wipe_bytes(&mut key);
        filled?;
        let pkey = ProtectionKey::get();
        let page = KeyPage {
            region,
            pkey,
            copying: Mutex::new(()),
        };
        let store = || {
            // SAFETY:
            // - the page is read-write and accessible on this thread (the window opened around this closure,
            //   or not yet sealed), page-aligned (so aligned for the cipher) and at least its size;
            // - nothing else refers to it yet; `write` moves the cipher in without dropping anything.
            unsafe { std::ptr::write(page.region.as_ptr().cast::<Aes256Gcm>(), cipher) }
        };
        match page.pkey {
            Some(pkey) => {
                pkey.tag(&page.region)?;
                pkey.with_access(store);
            }
            None => {
                store();
                page.region.protect(Protection::NoAccess)?;
            }
        }
        Ok(page)
    }

    /// Runs `f` with the expanded cipher. With a protection key, `f` reads it in place: the page is readable
    /// on this thread only, for the duration of `f`, and no copy is made. Otherwise the page is readable for
    /// a copy onto the private stack, and `f` runs on the copy. Call on the private stack.
    fn with_cipher<R>(&self, f: impl FnOnce(&Aes256Gcm) -> R) -> Result<R> {
        let cipher = self.region.as_ptr().cast::<Aes256Gcm>();
        match self.pkey {
            // SAFETY:
            // - the page is readable on this thread for the duration of this closure (the window opened around
            //   it) and holds the cipher written by `new`;
            // - nothing writes it meanwhile (only `new` and `destroy` do, the latter under the write lock, which
            //   excludes the read lock the caller holds); the reference does not outlive the closure.
            Some(pkey) => Ok(pkey.with_access(|| f(unsafe { &*cipher }))),
            None => {
                let copying = self.copying.lock().unwrap_or_else(PoisonError::into_inner);
                self.region.protect(Protection::ReadOnly)?;
                // SAFETY: as above, with the page read-only (for every thread) for exactly this copy, which
                // `copying` keeps from overlapping another.
                let copy = unsafe { &*cipher }.clone();
                self.region.protect(Protection::NoAccess)?;
                drop(copying);
                Ok(f(&copy))
            }
        }
    }

    fn destroy(self) -> Result<()> {
        let drop_cipher = || {
            // SAFETY: the page holds the cipher written by `new`, accessible here, and is never read again.
            unsafe { std::ptr::drop_in_place(self.region.as_ptr().cast::<Aes256Gcm>()) }
        };
        match self.pkey {
            Some(pkey) => {
                pkey.with_access(drop_cipher);
                // Back to the default key, so the wipe in `free` can write the page.
                ProtectionKey::untag(&self.region)?;
            }
            None => {
                self.region.protect(Protection::ReadWrite)?;
                drop_cipher();
            }
        }
        self.region.free().map_err(|e| Error::from(e.error))
    }
}

/// Read-locked by every operation under the key, write-locked to make or destroy it.
static KEY: PerProcess<RwLock<Option<KeyPage>>> = PerProcess::new(|| RwLock::new(None));

fn key() -> RwLockReadGuard<'static, Option<KeyPage>> {
    KEY.get().read().unwrap_or_else(PoisonError::into_inner)
}

/// The next identity: never repeats in this process (nor in a forked child, which continues the count under a
/// key of its own).
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::SeqCst)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The first identity [`next_id`] had not yet handed out when a key was last destroyed (0: never). An item
/// whose identity is below it may have been sealed under that key; one above it was sealed under a later key.
static DESTROYED_BELOW: AtomicU64 = AtomicU64::new(0);

/// How many keys [`purge`](crate::purge) has destroyed in this process (each purge destroys the current
/// one). Read before sealing an item and again once the item can be reached by a purge: when the two differ,
/// the key it was sealed under may be gone, and the item may never open.
pub fn key_generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// How the key is protected in this process (made on first use).
pub fn key_protection() -> KeyProtection {
    if ProtectionKey::get().is_some() {
        KeyProtection::ProtectionKey
    } else {
        KeyProtection::NoAccessPage
    }
}

/// Runs `f` with the cipher under the process key, making the key first if there is none. Call on the private
/// stack.
fn with_cipher<R>(f: impl FnOnce(&Aes256Gcm) -> R) -> Result<R> {
    let mut f = Some(f);
    loop {
        if let Some(page) = &*key() {
            return page.with_cipher(f.take().expect("runs once: the loop returns"));
        }
        let mut slot = KEY.get().write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(KeyPage::new()?);
        }
    }
}

/// Runs `f` with the cipher under the existing process key; never makes a key: without one, whatever was
/// sealed was sealed under a key destroyed since ([`Error::Destroyed`]). Call on the private stack.
fn with_opening_cipher<R>(f: impl FnOnce(&Aes256Gcm) -> R) -> Result<R> {
    match &*key() {
        Some(page) => page.with_cipher(f),
        None => Err(Error::Destroyed),
    }
}

/// Nonce and associated data of item `id` with `len` bytes of plaintext: the nonce is unique per item, the
/// associated data binds the ciphertext to the item and its length.
fn binding(id: u64, len: usize) -> ([u8; 12], [u8; 16]) {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&id.to_le_bytes());
    let mut ad = [0u8; 16];
    ad[..8].copy_from_slice(&id.to_le_bytes());
    ad[8..].copy_from_slice(&(len as u64).to_le_bytes());
    (nonce, ad)
}

/// Encrypts `data` in place for item `id` and returns the tag.
///
/// # Errors
/// [`Error::Memory`] when the key's page or the private stack cannot be mapped or locked (the memlock limit,
/// named in the error); [`Error::Random`] when the key cannot be made.
pub fn seal_in_place(id: u64, data: &mut [u8]) -> Result<[u8; TAG_LEN]> {
    secure_stack::run_at(secure_stack::Depth::Shallow, || {
        let (nonce, ad) = binding(id, data.len());
        let tag =
            with_cipher(|c| c.encrypt_in_place_detached(Nonce::from_slice(&nonce), &ad, data))?
                .map_err(|_| Error::InvalidLength { len: data.len() })?;
        Ok(tag.into())
    })?
}

/// Decrypts `data` in place for item `id`; on failure `data` is wiped.
///
/// # Errors
/// [`Error::Destroyed`] when the key it was sealed under is gone (a purge destroyed it; a purge racing this
/// call has not reached the item yet): it can never be opened again; [`Error::DecryptionFailed`] when the
/// ciphertext or tag was altered or belongs to another item (for an item made before the last purge, which the
/// purge closed, an alteration may show as [`Error::Destroyed`] too); otherwise as [`seal_in_place`].
pub fn open_in_place(id: u64, tag: &[u8; TAG_LEN], data: &mut [u8]) -> Result<()> {
    let opened = secure_stack::run_at(secure_stack::Depth::Shallow, || {
        let (nonce, ad) = binding(id, data.len());
        with_opening_cipher(|c| {
            c.decrypt_in_place_detached(Nonce::from_slice(&nonce), &ad, data, Tag::from_slice(tag))
        })?
        .map_err(|_| {
            // An identity handed out before the last destroy may have been sealed under the destroyed key
            // (such items are being purged); any later one was sealed under the current key, so it was
            // altered or belongs to another item.
            if id < DESTROYED_BELOW.load(Ordering::SeqCst) {
                Error::Destroyed
            } else {
                Error::DecryptionFailed
            }
        })
    })
    .and_then(|r| r);
    if opened.is_err() {
        memcall::wipe_bytes(data);
    }
    opened
}

/// Most bytes [`seal_random`] makes on the private stack.
pub const RANDOM_MAX: usize = 1024;

/// Fills `out` with the ciphertext of `out.len()` fresh random bytes for item `id` and returns the tag. The
/// random plaintext exists only on the private stack.
///
/// # Errors
/// [`Error::InvalidLength`] above [`RANDOM_MAX`] bytes; otherwise as [`seal_in_place`].
pub fn seal_random(id: u64, out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
    if out.len() > RANDOM_MAX {
        return Err(Error::InvalidLength { len: out.len() });
    }
    secure_stack::run_at(secure_stack::Depth::Shallow, || {
        let mut buf = [0u8; RANDOM_MAX];
        let plain = &mut buf[..out.len()];
        let result = getrandom::fill(plain).map_err(Error::from).and_then(|()| {
            let (nonce, ad) = binding(id, plain.len());
            with_cipher(|c| c.encrypt_in_place_detached(Nonce::from_slice(&nonce), &ad, plain))?
                .map_err(|_| Error::InvalidLength { len: plain.len() })
        });
        let tag = result.map(|tag| {
            out.copy_from_slice(plain);
            <[u8; TAG_LEN]>::from(tag)
        });
        memcall::wipe_bytes(&mut buf);
        tag
    })?
}

/// Destroys this process's key (a purge); the next use makes a new one. What was sealed under the old key can
/// never be opened again.
pub(crate) fn destroy() {
    let Some(key) = KEY.get_if_built() else {
        return;
    };
    let mut slot = key.write().unwrap_or_else(PoisonError::into_inner);
    let page = slot.take();
    if page.is_some() {
        // Under the key's write lock, so no seal under the destroyed key can follow: every identity handed out from
        // here on is sealed under a later key.
        DESTROYED_BELOW.store(NEXT_ID.load(Ordering::SeqCst), Ordering::SeqCst);
        GENERATION.fetch_add(1, Ordering::SeqCst);
    }
    drop(slot);
    if let Some(page) = page {
        if let Err(err) = page.destroy() {
            log::error!("destroying the sealing key failed: {err}");
        }
    }
}

/// The address of the key's page while a key exists, for tests that read it to prove it faults.
pub fn key_address() -> Option<usize> {
    let key = KEY.get_if_built()?;
    let page = key.read().unwrap_or_else(PoisonError::into_inner);
    page.as_ref().map(|p| p.region.as_ptr() as usize)
}

/// Whether `candidate` is the key that sealed `ciphertext` (with `tag`) for item `id`. For tests that look for
/// copies of the key in memory.
pub fn key_opens(
    candidate: &[u8; KEY_LEN],
    id: u64,
    tag: &[u8; TAG_LEN],
    ciphertext: &[u8],
) -> bool {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(candidate));
    let mut data = ciphertext.to_vec();
    let (nonce, ad) = binding(id, data.len());
    let ok = cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &ad,
            &mut data,
            Tag::from_slice(tag),
        )
        .is_ok();
    memcall::wipe_bytes(&mut data);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_binding_and_tamper() {
        let (a, b) = (next_id(), next_id());
        let mut data = *b"thirty-two bytes of secret key!!";
        let tag = seal_in_place(a, &mut data).unwrap();
        assert_ne!(&data, b"thirty-two bytes of secret key!!");
        let ct = data;
        open_in_place(a, &tag, &mut data).unwrap();
        assert_eq!(&data, b"thirty-two bytes of secret key!!");
        // Another item's identity, a flipped bit or a flipped tag bit: refused, and the output wiped.
        let mut other = ct;
        assert!(matches!(
            open_in_place(b, &tag, &mut other),
            Err(Error::DecryptionFailed)
        ));
        assert_eq!(other, [0u8; 32]);
        for bit in [0, 7, 100, 255] {
            let mut bad = ct;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open_in_place(a, &tag, &mut bad).is_err());
            let mut bad_tag = tag;
            bad_tag[bit % 16] ^= 1;
            let mut copy = ct;
            assert!(open_in_place(a, &bad_tag, &mut copy).is_err());
        }
        // Random secrets open to what was sealed, and are never the same twice.
        let c = next_id();
        let mut r1 = [0u8; 48];
        let tag1 = seal_random(c, &mut r1).unwrap();
        open_in_place(c, &tag1, &mut r1).unwrap();
        assert_ne!(r1, [0u8; 48]);
        assert!(seal_random(c, &mut [0u8; RANDOM_MAX + 1]).is_err());

        // A destroyed key opens nothing (`Destroyed`, not an integrity failure, and opening makes no key), and
        // the next seal makes a new one. (In this one test: the key is process-wide and the other tests of this
        // module use it.)
        let id = next_id();
        let mut data = [5u8; 40];
        let tag = seal_in_place(id, &mut data).unwrap();
        destroy();
        let early = next_id(); // handed out before the next key exists, sealed under it
        let sealed = data;
        assert!(matches!(
            open_in_place(id, &tag, &mut data),
            Err(Error::Destroyed)
        ));
        assert!(key().is_none(), "opening made a key");
        let mut fresh = [6u8; 8];
        let id2 = next_id();
        let tag2 = seal_in_place(id2, &mut fresh).unwrap();
        let mut old = sealed;
        assert!(matches!(
            open_in_place(id, &tag, &mut old),
            Err(Error::Destroyed)
        ));
        let mut late = [7u8; 8];
        let tag_late = seal_in_place(early, &mut late).unwrap();
        open_in_place(early, &tag_late, &mut late).unwrap();
        assert_eq!(late, [7u8; 8]);
        let mut altered = fresh;
        altered[0] ^= 1;
        assert!(matches!(
            open_in_place(id2, &tag2, &mut altered),
            Err(Error::DecryptionFailed)
        ));
        open_in_place(id2, &tag2, &mut fresh).unwrap();
        assert_eq!(fresh, [6u8; 8]);
    }
}
