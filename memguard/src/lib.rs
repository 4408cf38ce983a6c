//! Guarded buffers, encrypted enclaves with a rotating key, streams, purge and signal handling: a Rust port of
//! Go's `awnumar/memguard` without its failure modes.

mod core;
mod error;
mod purge;

pub use crate::core::region::{DestroyError, GuardedRegion, Locking};
pub use crate::core::registry::{register, registered_count, Purgeable, Registration};
pub use error::{Error, Result};
pub use purge::purge;
