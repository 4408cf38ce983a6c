//! Secrets in guarded buffers (Go's `memguard` adapter): a no-access guard page before and after the data,
//! the data right-aligned against the trailing guard so an overflow faults at once, and a random canary in
//! front of it that is checked when the secret is closed.
//!
//! Unlike Go's adapter, a failure to map or lock returns an error (Go panics and destroys every buffer in the
//! process), and nothing is leaked on any error path.
//!
//! # The `memguard` crate's items, here too
//! `use securememory::*;` brings this module into scope under the name `memguard`, where it hides the
//! `memguard` crate (package `securememory-memguard`). So that code written against the crate keeps compiling
//! either way, this module also re-exports every public item of the crate: after the glob import,
//! `memguard::LockedBuffer`, `memguard::Enclave`, `memguard::purge` or `memguard::Error` name exactly the
//! crate's items. (`memguard::Error` is the crate's error; this flavour's secrets return
//! [`securememory::Error`](crate::Error).) `::memguard` always names the crate.
//!
//! ```
//! use securememory::*;
//!
//! let secret = MemguardSecretFactory::new().create_random(32)?; // this flavour
//! let buffer = memguard::LockedBuffer::random(32)?; // the crate's guarded buffer
//! assert_eq!(secret.len(), buffer.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod factory;
mod secret;

pub use factory::{MemguardSecretFactory, MemguardSecretFactoryBuilder};
pub use secret::MemguardSecret;

#[doc(no_inline)]
pub use ::memguard::*;
