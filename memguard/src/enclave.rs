//! [`Enclave`]: a secret encrypted in ordinary memory under the process-wide enclave key.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::core::coffer::{Coffer, REKEY_INTERVAL};
use crate::core::crypto::{Cipher, NONCE_LEN, OVERHEAD as CIPHER_OVERHEAD};
use crate::error::{Error, Result};
use crate::locked_buffer::LockedBuffer;
use memcall::PerProcess;

/// Bytes an enclave's ciphertext has beyond its plaintext: a 24-byte nonce and a 16-byte tag (as in Go).
pub const OVERHEAD: usize = CIPHER_OVERHEAD;

/// Length of an enclave's identity (associated data of its ciphertext).
pub(crate) const ID_LEN: usize = 16;

/// The enclave key of this process: made on first use, destroyed by `purge`, and owned by the process that
/// made it (a forked child starts without one and never touches the parent's).
static KEY: PerProcess<Mutex<Option<Arc<Coffer>>>> = PerProcess::new(|| Mutex::new(None));

fn key() -> MutexGuard<'static, Option<Arc<Coffer>>> {
    KEY.get().lock().unwrap_or_else(PoisonError::into_inner)
}

/// The current enclave key, making it (and starting its rekeying) if there is none.
fn current_key() -> Result<Arc<Coffer>> {
    let mut key = key();
    match &*key {
        Some(coffer) if !coffer.is_destroyed() => Ok(Arc::clone(coffer)),
        _ => {
            let coffer = Coffer::unregistered()?;
            coffer.start_rekeying(REKEY_INTERVAL)?;
            let coffer = Arc::new(coffer);
            *key = Some(Arc::clone(&coffer));
            Ok(coffer)
        }
    }
}

/// Runs `f` with a cipher under the enclave key, on the private stack. A purge that destroys the key under
/// it shows as [`Error::Destroyed`].
fn with_cipher<R>(f: impl FnOnce(&Cipher) -> R) -> Result<R> {
    current_key()?.with_cipher(f)
}

/// How often a seal retries when purges keep destroying the key under it.
const SEAL_TRIES: usize = 64;

/// Seals with the current key; a purge racing the seal (the key destroyed under it, before `f` ran) makes it
/// retry with the next key, up to [`SEAL_TRIES`] times.
fn seal_with<R>(mut f: impl FnMut(&Cipher) -> Result<R>) -> Result<R> {
    for _ in 1..SEAL_TRIES {
        match with_cipher(&mut f) {
            Err(Error::Destroyed) => continue,
            other => return other?,
        }
    }
    with_cipher(f)?
}

/// Destroys the enclave key (stopping its rekeying); existing enclaves can no longer be opened. In a forked
/// child the parent's key is not touched (see [`PerProcess`]).
pub(crate) fn destroy_key() {
    let coffer = key().take();
    if let Some(coffer) = coffer {
        if let Err(err) = coffer.destroy() {
            log::error!("destroying the enclave key failed: {err}");
        }
    }
}

/// Re-splits the enclave key now (the background thread does it every 500 ms). Creates the key if none exists.
///
/// # Errors
/// [`Error::Memory`] when the key or a private stack cannot be made; [`Error::Random`]; [`Error::Io`] when
/// the rekeying thread cannot be started; [`Error::Destroyed`] when a purge destroyed the key meanwhile.
pub fn rekey() -> Result<()> {
    current_key()?.rekey()
}

/// Stops the enclave key's rekeying thread and waits for it; the key itself stays usable. A key made after
/// the next [`purge`](crate::purge) starts a new thread.
pub fn stop_rekeying() {
    let coffer = key().clone();
    if let Some(coffer) = coffer {
        coffer.stop_rekeying();
    }
}

/// True while this process's enclave key exists and its rekeying thread runs.
pub fn is_rekeying() -> bool {
    key().as_ref().is_some_and(|c| c.is_rekeying())
}

/// A secret encrypted (XChaCha20-Poly1305) under the process-wide enclave key, kept in ordinary memory.
///
/// Cheap to hold in bulk: only the key is in locked memory. [`open`](Self::open) decrypts into a new frozen
/// [`LockedBuffer`]. After [`purge`](crate::purge) the key is gone and opening fails with
/// [`Error::DecryptionFailed`].
///
/// The key is assembled, and the cipher runs, only on a private stack in locked, no-dump, no-fork pages that
/// is wiped after each seal or open (x86_64 and aarch64 Unix; elsewhere on the calling thread's stack, see the
/// crate docs). Each ciphertext is bound to its enclave: its associated data is a random 16-byte identity
/// fixed when the enclave is made (clones share it), so another enclave's ciphertext copied in through
/// [`ciphertext_mut`](Self::ciphertext_mut) does not open.
///
/// # Fork
/// The enclave key belongs to the process that made it. In a forked child, opening an enclave made by the
/// parent fails with [`Error::Forked`]; enclaves made in the child use a fresh key of its own.
#[derive(Clone)]
pub struct Enclave {
    ciphertext: Vec<u8>,
    id: [u8; ID_LEN],
    epoch: u64,
}

impl fmt::Debug for Enclave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enclave")
            .field("size", &self.size())
            .finish()
    }
}

/// Associated data of a standalone enclave: a domain byte and its identity.
fn enclave_ad(id: &[u8; ID_LEN]) -> [u8; 1 + ID_LEN] {
    let mut ad = [0u8; 1 + ID_LEN];
    ad[0] = b'E';
    ad[1..].copy_from_slice(id);
    ad
}

/// A fresh identity and nonce, from the OS generator (through the batch of public randomness: neither is
/// secret, both must be unique).
fn fresh_id_and_nonce() -> Result<([u8; ID_LEN], [u8; NONCE_LEN])> {
    let mut bytes = [0u8; ID_LEN + NONCE_LEN];
    crate::core::crypto::public_random(&mut bytes)?;
    let mut id = [0u8; ID_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    id.copy_from_slice(&bytes[..ID_LEN]);
    nonce.copy_from_slice(&bytes[ID_LEN..]);
    Ok((id, nonce))
}

impl Enclave {
    /// Encrypts `src` (in place, so no plaintext copy is made) and wipes it.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for an empty `src`; [`Error::Memory`] when the key or a private stack cannot
    /// be made; [`Error::Io`] when the key's rekeying thread cannot be started; [`Error::Random`];
    /// [`Error::Destroyed`] when purges on other threads destroyed the key under 64 attempts in a row. `src`
    /// is left untouched on error.
    ///
    /// ```
    /// let mut token = b"a bearer token".to_vec();
    /// let sealed = memguard::Enclave::new(&mut token)?; // encrypted, `token` wiped
    /// assert!(token.iter().all(|&b| b == 0));
    /// assert_eq!(sealed.size(), 14);
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn new(src: &mut [u8]) -> Result<Enclave> {
        let (id, nonce) = fresh_id_and_nonce()?;
        Self::new_bound(src, id, &enclave_ad(&id), &nonce, Vec::new())
    }

    /// Encrypts `src` in place under `ad` and wipes it (stream chunks pass their own binding). The ciphertext
    /// goes into `spare`, whose allocation is reused when large enough (a stream recycles its chunks').
    pub(crate) fn new_bound(
        src: &mut [u8],
        id: [u8; ID_LEN],
        ad: &[u8],
        nonce: &[u8; NONCE_LEN],
        spare: Vec<u8>,
    ) -> Result<Enclave> {
        if src.is_empty() {
            return Err(Error::InvalidLength { len: 0 });
        }
        let mut spare = Some(spare);
        let ciphertext =
            seal_with(|c| c.seal_in_place(nonce, ad, src, spare.take().unwrap_or_default()))?;
        crate::util::wipe_bytes(src);
        Ok(Enclave::from_parts_unchecked(ciphertext, id))
    }

    /// Encrypts a copy of `plaintext` under `ad`, which is left as is, into `spare` (as in
    /// [`new_bound`](Self::new_bound)).
    pub(crate) fn from_copy_bound(
        plaintext: &[u8],
        id: [u8; ID_LEN],
        ad: &[u8],
        nonce: &[u8; NONCE_LEN],
        spare: Vec<u8>,
    ) -> Result<Enclave> {
        if plaintext.is_empty() {
            return Err(Error::InvalidLength { len: 0 });
        }
        let mut spare = Some(spare);
        let ciphertext =
            seal_with(|c| c.seal_copy(nonce, ad, plaintext, spare.take().unwrap_or_default()))?;
        Ok(Enclave::from_parts_unchecked(ciphertext, id))
    }

    fn from_parts_unchecked(ciphertext: Vec<u8>, id: [u8; ID_LEN]) -> Enclave {
        Enclave {
            ciphertext,
            id,
            epoch: memcall::fork_epoch(),
        }
    }

    /// Encrypts the contents of `buffer` in place and destroys it (Go's `Seal`).
    pub(crate) fn seal(mut buffer: LockedBuffer) -> Result<Enclave> {
        let (id, nonce) = fresh_id_and_nonce()?;
        let ad = enclave_ad(&id);
        buffer.melt()?;
        let ciphertext = {
            let mut data = buffer.bytes_mut()?;
            seal_with(|c| c.seal_in_place(&nonce, &ad, &mut data, Vec::new()))?
        };
        buffer.destroy()?;
        Ok(Enclave::from_parts_unchecked(ciphertext, id))
    }

    /// An enclave of `size` random bytes, made without the bytes ever leaving locked memory in the clear.
    ///
    /// # Errors
    /// As [`LockedBuffer::random`] and [`LockedBuffer::seal`].
    pub fn random(size: usize) -> Result<Enclave> {
        LockedBuffer::random(size)?.seal()
    }

    /// Decrypts into a new frozen [`LockedBuffer`]. The plaintext appears only inside locked memory: the
    /// ciphertext is copied into the new buffer and decrypted there in place.
    ///
    /// # Errors
    /// - [`Error::DecryptionFailed`] when the ciphertext was altered or replaced (another enclave's ciphertext
    ///   does not open here), or the key changed: after a [`purge`](crate::purge), including one that ran
    ///   while this call was in progress (it either succeeds, or fails with this error);
    /// - [`Error::Forked`] in a forked child for an enclave made by the parent;
    /// - [`Error::Memory`] when the buffer or a private stack cannot be allocated.
    ///
    /// The new buffer is destroyed on error, nothing is leaked.
    ///
    /// ```
    /// let sealed = memguard::Enclave::new(&mut *b"a bearer token".to_vec())?;
    /// let opened = sealed.open()?; // a frozen LockedBuffer; the enclave stays as it was
    /// assert!(opened.equal_to(b"a bearer token"));
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn open(&self) -> Result<LockedBuffer> {
        let mut buffer = self.open_mutable()?;
        buffer.freeze().map_err(purged_as_failed)?;
        Ok(buffer)
    }

    /// As [`open`](Self::open), leaving the buffer mutable.
    pub(crate) fn open_mutable(&self) -> Result<LockedBuffer> {
        self.open_mutable_bound(&enclave_ad(&self.id))
    }

    /// As [`open_mutable`](Self::open_mutable) with explicit associated data.
    pub(crate) fn open_mutable_bound(&self, ad: &[u8]) -> Result<LockedBuffer> {
        self.check_epoch()?;
        // Decrypted into a buffer not yet registered for purge, so a concurrent purge cannot destroy it
        // half-made; it is registered once complete.
        let mut buffer = LockedBuffer::unregistered(self.size(), crate::Locking::Required)?;
        self.open_into_bound(ad, &mut buffer.bytes_mut().map_err(purged_as_failed)?)?;
        Ok(buffer.registered())
    }

    fn check_epoch(&self) -> Result<()> {
        if memcall::fork_epoch() != self.epoch {
            return Err(Error::Forked);
        }
        Ok(())
    }

    /// Decrypts into `out` under `ad`; `out` must be exactly [`size`](Self::size) bytes and is wiped on
    /// failure.
    pub(crate) fn open_into_bound(&self, ad: &[u8], out: &mut [u8]) -> Result<()> {
        self.check_epoch()?;
        let opened = with_cipher(|c| c.open_into(ad, &self.ciphertext, out));
        match opened {
            Ok(res) => res,
            // The key was destroyed by a purge while this ran: the enclave can never be opened again.
            Err(Error::Destroyed) => Err(Error::DecryptionFailed),
            Err(err) => Err(err),
        }
    }

    /// The ciphertext's allocation, for a stream to seal its next chunk into.
    pub(crate) fn into_ciphertext(self) -> Vec<u8> {
        self.ciphertext
    }

    /// Size of the plaintext in bytes.
    pub fn size(&self) -> usize {
        self.ciphertext.len() - OVERHEAD
    }

    /// The raw ciphertext (`nonce || tag || body`), e.g. to test tamper detection.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Mutable access to the raw ciphertext. Changing it makes [`open`](Self::open) fail.
    pub fn ciphertext_mut(&mut self) -> &mut [u8] {
        &mut self.ciphertext
    }

    /// The identity the ciphertext is bound to, to rebuild the enclave elsewhere with
    /// [`from_parts`](Self::from_parts) (for tests that look for the key in a memory image).
    #[doc(hidden)]
    pub fn id(&self) -> [u8; ID_LEN] {
        self.id
    }

    /// An enclave from a ciphertext and the identity it was bound to (for tests; it opens only under this
    /// process's key, and only if the ciphertext was made for that identity).
    #[doc(hidden)]
    pub fn from_parts(ciphertext: Vec<u8>, id: [u8; ID_LEN]) -> Result<Enclave> {
        if ciphertext.len() <= OVERHEAD {
            return Err(Error::InvalidLength {
                len: ciphertext.len(),
            });
        }
        Ok(Enclave::from_parts_unchecked(ciphertext, id))
    }

    /// An enclave sealed under `key` instead of the enclave key (for tests: a control that a scan for keys
    /// in a memory image does find a key that is there).
    #[doc(hidden)]
    pub fn sealed_with_key(key: &[u8; 32], plaintext: &[u8]) -> Result<Enclave> {
        if plaintext.is_empty() {
            return Err(Error::InvalidLength { len: 0 });
        }
        let (id, nonce) = fresh_id_and_nonce()?;
        let ciphertext =
            Cipher::new(key).seal_copy(&nonce, &enclave_ad(&id), plaintext, Vec::new())?;
        Ok(Enclave::from_parts_unchecked(ciphertext, id))
    }

    /// Whether `key` opens this enclave (decrypting a throwaway copy). For tests that look for copies of the
    /// enclave key in memory: try every 32-byte window of a memory image as `key`.
    #[doc(hidden)]
    pub fn opens_with_key(&self, key: &[u8; 32]) -> bool {
        crate::core::crypto::key_opens(key, &enclave_ad(&self.id), &self.ciphertext)
    }
}

/// A purge that destroys a buffer being filled by an open means the enclave key is gone too.
fn purged_as_failed(err: Error) -> Error {
    match err {
        Error::Destroyed => Error::DecryptionFailed,
        other => other,
    }
}

impl LockedBuffer {
    /// Encrypts the buffer into an [`Enclave`] and destroys it (Go's `Seal`). The plaintext is encrypted in
    /// place inside the buffer, never copied out.
    ///
    /// # Errors
    /// [`Error::Destroyed`] (also when a purge destroys the buffer meanwhile, or the key under 64 attempts in a
    /// row); [`Error::Memory`] when melting or
    /// destroying fails, or the key or a private stack cannot be made; [`Error::Io`] when the key's rekeying
    /// thread cannot be started; [`Error::Random`]; [`Error::Forked`] for a buffer made by a parent process.
    pub fn seal(self) -> Result<Enclave> {
        Enclave::seal(self)
    }
}

impl Coffer {
    /// A copy of the key in a new mutable [`LockedBuffer`] (Go's `Coffer.View`); destroy it when done. The
    /// copy is made on the private stack (see [`with_key`](Self::with_key)).
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`Coffer::destroy`] or a purge; [`Error::Forked`] in a forked child;
    /// [`Error::Memory`] when the buffer or a private stack cannot be made.
    pub fn view(&self) -> Result<LockedBuffer> {
        let mut view = LockedBuffer::new(crate::core::crypto::KEY_LEN)?;
        let mut data = view.bytes_mut()?;
        self.with_key_at(crate::core::secure_stack::Depth::Shallow, |key| {
            data.copy_from_slice(key)
        })?;
        drop(data);
        Ok(view)
    }
}
