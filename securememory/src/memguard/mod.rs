//! Secrets in guarded buffers (Go's `memguard` adapter): a no-access guard page before and after the data,
//! the data right-aligned against the trailing guard so an overflow faults at once, and a random canary in
//! front of it that is checked when the secret is closed.
//!
//! Unlike Go's adapter, a failure to map or lock returns an error (Go panics and destroys every buffer in the
//! process), and nothing is leaked on any error path.

mod factory;
mod secret;

pub use factory::{MemguardSecretFactory, MemguardSecretFactoryBuilder};
pub use secret::MemguardSecret;
