//! Enclave crypto: XChaCha20-Poly1305 (the IETF AEAD construction, RustCrypto's `chacha20poly1305`) with a
//! random 24-byte nonce and associated data that binds each ciphertext to where it belongs, and BLAKE2b-256
//! for the key split. Ciphertext layout: `nonce (24) || tag (16) || body`, so the overhead is 40 bytes as in
//! Go.
//!
//! A [`Cipher`] holds the key schedule; it is only ever built inside [`Coffer::with_cipher`], which runs on a
//! private stack in locked, no-dump, no-fork pages (see [`secure_stack`](super::secure_stack)).
//!
//! [`Coffer::with_cipher`]: super::coffer::Coffer::with_cipher

use blake2::digest::consts::U32;
use blake2::digest::{FixedOutputReset, Update};
use blake2::Blake2b;

type Blake2b256 = Blake2b<U32>;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a ciphertext has beyond its plaintext.
pub(crate) const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A cipher keyed with a coffer's key; zeroed on drop, and only ever alive on the private stack.
pub(crate) struct Cipher(XChaCha20Poly1305);

impl Cipher {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Cipher {
        Cipher(XChaCha20Poly1305::new(Key::from_slice(key)))
    }

    /// Encrypts `data` in place under `nonce` and `ad` and returns `nonce || tag || ciphertext`. `data` then
    /// holds ciphertext.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        data: &mut [u8],
    ) -> Result<Vec<u8>> {
        let tag = self
            .0
            .encrypt_in_place_detached(XNonce::from_slice(nonce), ad, data)
            .map_err(|_| Error::InvalidLength { len: data.len() })?;
        let mut out = Vec::with_capacity(OVERHEAD + data.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(data);
        Ok(out)
    }

    /// Encrypts a copy of `plaintext` and returns `nonce || tag || ciphertext`. The plaintext is copied once
    /// into the output buffer and encrypted there in place (the output never reallocates).
    pub(crate) fn seal_copy(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.extend_from_slice(nonce);
        out.resize(OVERHEAD, 0);
        out.extend_from_slice(plaintext);
        let (head, body) = out.split_at_mut(OVERHEAD);
        match self
            .0
            .encrypt_in_place_detached(XNonce::from_slice(nonce), ad, body)
        {
            Ok(tag) => {
                head[NONCE_LEN..].copy_from_slice(&tag);
                Ok(out)
            }
            Err(_) => {
                memcall::wipe_bytes(&mut out);
                Err(Error::InvalidLength {
                    len: plaintext.len(),
                })
            }
        }
    }

    /// Decrypts `ciphertext` (made under the same `ad`) into `out` (exactly `ciphertext.len() - OVERHEAD`
    /// bytes), in place in `out`. On failure `out` is wiped.
    pub(crate) fn open_into(&self, ad: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Result<()> {
        if ciphertext.len() != out.len() + OVERHEAD {
            return Err(Error::DecryptionFailed);
        }
        let (nonce, rest) = ciphertext.split_at(NONCE_LEN);
        let (tag, body) = rest.split_at(TAG_LEN);
        out.copy_from_slice(body);
        let res = self.0.decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            ad,
            out,
            Tag::from_slice(tag),
        );
        if res.is_err() {
            memcall::wipe_bytes(out);
            return Err(Error::DecryptionFailed);
        }
        Ok(())
    }
}

/// Whether `key` opens `ciphertext` made under `ad` (decrypting into a scratch copy, wiped after). For tests
/// that look for copies of a key in memory; never used with the enclave key itself.
pub(crate) fn key_opens(key: &[u8; KEY_LEN], ad: &[u8], ciphertext: &[u8]) -> bool {
    let Some(len) = ciphertext.len().checked_sub(OVERHEAD) else {
        return false;
    };
    let mut out = vec![0u8; len];
    let ok = Cipher::new(key).open_into(ad, ciphertext, &mut out).is_ok();
    memcall::wipe_bytes(&mut out);
    ok
}

/// BLAKE2b-256 of `input` into `out`. The hasher's state (which holds a copy of the input) is zeroed after.
pub(crate) fn blake2b_256(input: &[u8], out: &mut [u8; 32]) {
    let mut hasher = Blake2b256::default();
    hasher.update(input);
    hasher.finalize_into_reset(out.into());
    // SAFETY:
    // - `hasher` is a live, exclusively owned local; the pointer is valid for `size_of_val(&hasher)` bytes;
    // - the BLAKE2b state is plain data (integer arrays, counters, a byte buffer and its position), so all
    //   zeros is a valid value, and it has no drop glue that could observe the change.
    unsafe { zeroize::zeroize_flat_type(&mut hasher as *mut Blake2b256) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let cipher = Cipher::new(&[9u8; 32]);
        let nonce = [3u8; NONCE_LEN];
        let ct = cipher.seal_copy(&nonce, b"ad", b"hello").unwrap();
        assert_eq!(ct.len(), 5 + OVERHEAD);
        let mut out = [0u8; 5];
        cipher.open_into(b"ad", &ct, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(matches!(
                cipher.open_into(b"ad", &bad, &mut out),
                Err(Error::DecryptionFailed)
            ));
            assert_eq!(out, [0u8; 5], "wiped after a failed open");
        }
        assert!(matches!(
            cipher.open_into(b"other ad", &ct, &mut out),
            Err(Error::DecryptionFailed)
        ));
        assert!(key_opens(&[9u8; 32], b"ad", &ct));
        assert!(!key_opens(&[8u8; 32], b"ad", &ct));
        let other = Cipher::new(&[8u8; 32]);
        assert!(other.open_into(b"ad", &ct, &mut out).is_err());
        let mut data = *b"world";
        let ct2 = cipher.seal_in_place(&nonce, b"", &mut data).unwrap();
        assert_ne!(&data, b"world");
        cipher.open_into(b"", &ct2, &mut out).unwrap();
        assert_eq!(&out, b"world");
    }

    #[test]
    fn blake2b_256_known_answer() {
        // BLAKE2b-256("abc"), from the BLAKE2 reference implementation.
        let mut out = [0u8; 32];
        blake2b_256(b"abc", &mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }
}
