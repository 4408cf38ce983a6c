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

use std::sync::{Mutex, PoisonError};

use memcall::PerProcess;

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

    /// Encrypts `data` in place under `nonce` and `ad` and returns `nonce || tag || ciphertext`, in `out`
    /// (emptied first; its allocation is reused when large enough). `data` then holds ciphertext.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        data: &mut [u8],
        mut out: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let tag = self
            .0
            .encrypt_in_place_detached(XNonce::from_slice(nonce), ad, data)
            .map_err(|_| Error::InvalidLength { len: data.len() })?;
        out.clear();
        out.reserve_exact(OVERHEAD + data.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(data);
        Ok(out)
    }

    /// Encrypts a copy of `plaintext` and returns `nonce || tag || ciphertext`, in `out` (emptied first; its
    /// allocation is reused when large enough). The plaintext is copied once into the output buffer and
    /// encrypted there in place (the output never reallocates after that copy).
    pub(crate) fn seal_copy(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        plaintext: &[u8],
        mut out: Vec<u8>,
    ) -> Result<Vec<u8>> {
        out.clear();
        out.reserve_exact(OVERHEAD + plaintext.len());
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

/// Bytes drawn from the OS generator at a time for [`public_random`].
const BATCH: usize = 2048;

/// OS randomness not handed out yet: `bytes[used..]`. Handed-out bytes are zeroed, so the buffer only ever
/// holds values still to come.
struct Batch {
    bytes: Box<[u8; BATCH]>,
    used: usize,
}

/// The process's batch. A forked child starts with an empty one and never reads the parent's (its bytes may
/// already have been handed out in the parent).
static PUBLIC: PerProcess<Mutex<Batch>> = PerProcess::new(|| {
    Mutex::new(Batch {
        bytes: Box::new([0u8; BATCH]),
        used: BATCH,
    })
});

/// Fills `out` with random bytes from the OS generator for values the ciphertext carries in the clear (nonces
/// and identities), which need to be unique but not secret. The bytes are read from the OS a batch at a time,
/// which saves a system call per seal; each byte is handed out once, in one process only.
///
/// Never use this for keys or masks: those come from `getrandom` directly, into locked memory.
pub(crate) fn public_random(out: &mut [u8]) -> Result<()> {
    if out.len() > BATCH / 8 {
        getrandom::fill(out)?;
        return Ok(());
    }
    let mut batch = PUBLIC.get().lock().unwrap_or_else(PoisonError::into_inner);
    if BATCH - batch.used < out.len() {
        // On failure `used` stays where it was: nothing is handed out twice.
        getrandom::fill(&mut batch.bytes[..])?;
        batch.used = 0;
    }
    let at = batch.used;
    let taken = &mut batch.bytes[at..at + out.len()];
    out.copy_from_slice(taken);
    taken.fill(0);
    batch.used = at + out.len();
    Ok(())
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
        let ct = cipher
            .seal_copy(&nonce, b"ad", b"hello", Vec::new())
            .unwrap();
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
        // A reused output buffer: its old contents are gone, the result is the same as in a fresh one.
        let ct2 = cipher
            .seal_in_place(&nonce, b"", &mut data, vec![0xEE; 100])
            .unwrap();
        assert_eq!(ct2.len(), 5 + OVERHEAD);
        assert_eq!(
            ct2,
            cipher
                .seal_copy(&nonce, b"", b"world", vec![1, 2, 3])
                .unwrap()
        );
        assert_ne!(&data, b"world");
        cipher.open_into(b"", &ct2, &mut out).unwrap();
        assert_eq!(&out, b"world");
    }

    #[test]
    fn public_random_never_repeats_and_refills() {
        use std::collections::HashSet;
        // More than a batch's worth, from several threads: every 24-byte value is distinct (a repeat of
        // random 192-bit values would mean bytes were handed out twice).
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..2 * BATCH / NONCE_LEN)
                        .map(|_| {
                            let mut nonce = [0u8; NONCE_LEN];
                            public_random(&mut nonce).unwrap();
                            nonce
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for nonce in h.join().unwrap() {
                assert_ne!(nonce, [0u8; NONCE_LEN]);
                assert!(seen.insert(nonce), "a nonce was handed out twice");
            }
        }
        // Larger requests go to the OS directly.
        let mut big = [0u8; BATCH];
        public_random(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }

    /// A forked child never hands out bytes of the batch it inherited: its first value is not the one the
    /// parent would hand out next. The parent holds its batch's lock across the fork (as a thread of a real
    /// program may), so a child that used the parent's batch would also block on it: an alarm ends it then.
    #[cfg(unix)]
    #[test]
    fn a_forked_child_draws_its_own_batch() {
        let mut first = [0u8; NONCE_LEN];
        public_random(&mut first).unwrap();
        let batch = PUBLIC.get().lock().unwrap();
        if BATCH - batch.used < NONCE_LEN {
            // Exhausted right now (other tests draw too): nothing the child could reuse.
            return;
        }
        let parents_next: [u8; NONCE_LEN] = batch.bytes[batch.used..batch.used + NONCE_LEN]
            .try_into()
            .unwrap();
        // SAFETY: the child only draws from its own batch (a std mutex, an allocation and getrandom, which
        // glibc keeps usable after fork) under an alarm, and `_exit`s; nothing else of this test binary runs
        // in it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: `alarm` only arms a timer; its default action ends the child.
            unsafe { libc::alarm(10) };
            let mut child = [0u8; NONCE_LEN];
            let ok = public_random(&mut child).is_ok() && child != parents_next && child != first;
            // SAFETY: `_exit` is always safe; it skips the harness's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        drop(batch);
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-parameter.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child drew its own bytes (status {status:#x})"
        );
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
