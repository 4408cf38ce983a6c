//! Guarded buffers, encrypted enclaves with a rotating key, streams, purge and signal handling: a Rust port of
//! Go's `awnumar/memguard` without its failure modes.

mod buffer_io;
mod core;
mod enclave;
mod error;
mod locked_buffer;
mod purge;
mod signals;
mod stream;
mod util;
mod views;

pub use crate::core::access::{ReadGuard, WriteGuard};
pub use crate::core::coffer::{Coffer, REKEY_INTERVAL};
pub use crate::core::region::{DestroyError, GuardedRegion, Locking};
pub use crate::core::registry::{register, registered_count, Purgeable, Registration};
pub use buffer_io::ReadError;
pub use enclave::{is_rekeying, rekey, stop_rekeying, Enclave, OVERHEAD};
pub use error::{Error, Result};
pub use locked_buffer::LockedBuffer;
pub use purge::purge;
#[cfg(unix)]
pub use signals::{catch_interrupt, catch_signal};
pub use signals::{safe_exit, safe_panic, SIGNAL_EXIT_CODE};
pub use stream::{stream_chunk_size, Stream};
pub use util::{scramble_bytes, wipe_bytes};
pub use views::Plain;
