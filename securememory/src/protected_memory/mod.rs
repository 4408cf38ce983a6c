//! Secrets in whole pages of their own, data at offset 0 (Go's `protectedmemory`).
//!
//! Each secret is one page-rounded mapping: read-write while it is filled, locked, left out of core dumps and
//! forked children, then no-access except while a closure runs on it.

mod factory;
mod secret;

pub use factory::{ProtectedMemorySecretFactory, ProtectedMemorySecretFactoryBuilder};
pub use secret::ProtectedMemorySecret;
