//! Sealed secrets: encrypted at rest in ordinary memory, decrypted into locked scratch pages only while a
//! closure runs. No page, mapping or locked byte per secret, so the number of live secrets is bounded by
//! ordinary memory (about 200 bytes each for a 32-byte key), not by `RLIMIT_MEMLOCK` or `vm.max_map_count`.
//!
//! - At rest: `tag || ciphertext` (AES-256-GCM, see [`memguard::sealing`]) on the heap,
//!   bound to the secret's identity, so a ciphertext altered or swapped with another secret's fails with
//!   [`Error::Integrity`](crate::Error::Integrity) and the closure is not run.
//! - The key: one per process, in a locked, no-dump, no-fork page unreadable at rest (a memory protection key
//!   where the CPU has them, a no-access page elsewhere); the key and the cipher state exist only on a private,
//!   locked stack that is wiped after every operation.
//! - Access: the first closure on a secret decrypts it into a scratch region (locked, no-dump, no-fork,
//!   no-access between uses, taken from a small cache); concurrent closures share that copy through the same
//!   access state machine as the other flavours; the last one to leave wipes it and makes it no-access again.
//! - `close` zeroes the ciphertext and forgets the secret; `purge` does it for every sealed secret and
//!   destroys the key. A creation that a purge overtakes between sealing and registering is sealed again
//!   under the new key (`new`, `create_random`), or fails with [`Error::Closed`](crate::Error::Closed)
//!   (`create_with` and the readers built on it, whose input cannot be read twice): no secret is left neither
//!   closed nor readable.
//! - In a forked child a parent's sealed secret fails with [`Error::Forked`](crate::Error::Forked); new ones
//!   work under the child's own key.

mod factory;
mod secret;

pub use factory::SealedSecretFactory;
pub use secret::SealedSecret;

/// Bytes of scratch pages (locked, wiped, no-access) cached for the next access right now. A memlock limit
/// reached anywhere in the process, [`memcall::pool::trim_all`] and `purge` give them back.
pub fn cached_scratch_bytes() -> usize {
    crate::access::scratch::cached_bytes()
}
