//! Authenticated encryption under this process's sealing key, for secrets kept encrypted in ordinary memory
//! (the sealed flavour of the `securememory` crate builds on it).
//!
//! AES-256-GCM with a 128-bit tag. Each item has an identity from [`next_id`], which never repeats in the
//! process: the nonce is derived from it (so no nonce repeats under a key), and the associated data binds
//! the ciphertext to the identity and the length (so another item's ciphertext, or a truncated one, does not
//! open).
//!
//! The key lives in one locked, no-dump, no-fork page that is unreadable at rest ([`KeyProtection`]); every
//! operation runs on a private stack in locked, no-dump, no-fork pages, wiped after it, so neither the key
//! nor its expansion ever reaches ordinary memory. [`purge`](crate::purge) destroys the key: what was sealed
//! before can never be opened again, and the next operation makes a new key. A forked child makes its own key
//! and cannot open what its parent sealed.

#[doc(hidden)]
pub use crate::core::seal_key::{key_address, key_opens};
pub use crate::core::seal_key::{
    key_generation, key_protection, next_id, open_in_place, seal_in_place, seal_random,
    KeyProtection, RANDOM_MAX, TAG_LEN,
};
