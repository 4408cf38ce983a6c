//! [`Enclave`]: a secret encrypted in ordinary memory under the process-wide enclave key.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::core::coffer::{Coffer, REKEY_INTERVAL};
use crate::core::crypto::{Cipher, OVERHEAD as CIPHER_OVERHEAD};
use crate::error::{Error, Result};
use crate::locked_buffer::LockedBuffer;

/// Bytes an enclave's ciphertext has beyond its plaintext: a 24-byte nonce and a 16-byte tag (as in Go).
pub const OVERHEAD: usize = CIPHER_OVERHEAD;

/// The enclave key, created on first use, destroyed by `purge`.
static KEY: Mutex<Option<Coffer>> = Mutex::new(None);

fn key() -> MutexGuard<'static, Option<Coffer>> {
    KEY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cipher under the current enclave key, making the key (and starting its rekeying) if there is none.
fn cipher() -> Result<Cipher> {
    let mut key = key();
    let coffer = match &mut *key {
        Some(coffer) if !coffer.is_destroyed() => coffer,
        slot => {
            let coffer = Coffer::new()?;
            coffer.start_rekeying(REKEY_INTERVAL)?;
            slot.insert(coffer)
        }
    };
    coffer.with_key(Cipher::new)
}

/// Destroys the enclave key (stopping its rekeying); existing enclaves can no longer be opened.
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
/// As [`Enclave::new`].
pub fn rekey() -> Result<()> {
    drop(cipher()?);
    key().as_ref().ok_or(Error::Destroyed)?.rekey()
}

/// Stops the enclave key's rekeying thread and waits for it; the key itself stays usable. A key made after
/// the next [`purge`](crate::purge) starts a new thread.
pub fn stop_rekeying() {
    if let Some(coffer) = key().as_ref() {
        coffer.stop_rekeying();
    }
}

/// True while the enclave key exists and its rekeying thread runs.
pub fn is_rekeying() -> bool {
    key().as_ref().is_some_and(Coffer::is_rekeying)
}

/// A secret encrypted (XChaCha20-Poly1305) under the process-wide enclave key, kept in ordinary memory.
///
/// Cheap to hold in bulk: only the key is in locked memory. [`open`](Self::open) decrypts into a new frozen
/// [`LockedBuffer`]. After [`purge`](crate::purge) the key is gone and opening fails with
/// [`Error::DecryptionFailed`].
#[derive(Clone)]
pub struct Enclave {
    ciphertext: Vec<u8>,
}

impl fmt::Debug for Enclave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enclave")
            .field("size", &self.size())
            .finish()
    }
}

impl Enclave {
    /// Encrypts `src` (in place, so no plaintext copy is made) and wipes it.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for an empty `src`; [`Error::Memory`] when the key cannot be made;
    /// [`Error::Random`]. `src` is left untouched on error.
    pub fn new(src: &mut [u8]) -> Result<Enclave> {
        if src.is_empty() {
            return Err(Error::InvalidLength { len: 0 });
        }
        let ciphertext = cipher()?.seal_in_place(src)?;
        crate::util::wipe_bytes(src);
        Ok(Enclave { ciphertext })
    }

    /// Encrypts a copy of `plaintext`, which is left as is.
    pub(crate) fn from_copy(plaintext: &[u8]) -> Result<Enclave> {
        if plaintext.is_empty() {
            return Err(Error::InvalidLength { len: 0 });
        }
        Ok(Enclave {
            ciphertext: cipher()?.seal_copy(plaintext)?,
        })
    }

    /// Encrypts the contents of `buffer` in place and destroys it (Go's `Seal`).
    pub(crate) fn seal(mut buffer: LockedBuffer) -> Result<Enclave> {
        let cipher = cipher()?;
        buffer.melt()?;
        let ciphertext = cipher.seal_in_place(&mut buffer.bytes_mut()?)?;
        buffer.destroy()?;
        Ok(Enclave { ciphertext })
    }

    /// An enclave of `size` random bytes, made without the bytes ever leaving locked memory in the clear.
    ///
    /// # Errors
    /// As [`LockedBuffer::random`] and [`Enclave::new`].
    pub fn random(size: usize) -> Result<Enclave> {
        LockedBuffer::random(size)?.seal()
    }

    /// Decrypts into a new frozen [`LockedBuffer`]. The plaintext appears only inside locked memory: the
    /// ciphertext is copied into the new buffer and decrypted there in place.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] when the ciphertext was altered or the key changed (after a purge); the new
    /// buffer is destroyed then, nothing is leaked. [`Error::Memory`] when the buffer cannot be allocated.
    pub fn open(&self) -> Result<LockedBuffer> {
        let mut buffer = self.open_mutable()?;
        buffer.freeze()?;
        Ok(buffer)
    }

    /// As [`open`](Self::open), leaving the buffer mutable.
    pub(crate) fn open_mutable(&self) -> Result<LockedBuffer> {
        let mut buffer = LockedBuffer::new(self.size())?;
        self.open_into(&mut buffer.bytes_mut()?)?;
        Ok(buffer)
    }

    /// Decrypts into `out`, which must be exactly [`size`](Self::size) bytes; wiped on failure.
    pub(crate) fn open_into(&self, out: &mut [u8]) -> Result<()> {
        cipher()?.open_into(&self.ciphertext, out)
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
}

impl LockedBuffer {
    /// Encrypts the buffer into an [`Enclave`] and destroys it (Go's `Seal`). The plaintext is encrypted in
    /// place inside the buffer, never copied out.
    ///
    /// # Errors
    /// [`Error::Destroyed`]; [`Error::Memory`] when melting or destroying fails; [`Error::Random`].
    pub fn seal(self) -> Result<Enclave> {
        Enclave::seal(self)
    }
}

impl Coffer {
    /// A copy of the key in a new mutable [`LockedBuffer`] (Go's `Coffer.View`); destroy it when done.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`Coffer::destroy`]; [`Error::Memory`] when the buffer cannot be made.
    pub fn view(&self) -> Result<LockedBuffer> {
        let mut view = LockedBuffer::new(crate::core::crypto::KEY_LEN)?;
        let mut data = view.bytes_mut()?;
        self.with_key(|key| data.copy_from_slice(key))?;
        drop(data);
        Ok(view)
    }
}
