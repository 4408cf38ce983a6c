//! Counts of secrets, always kept in process-wide atomics, and also reported through the `metrics` facade
//! when the `metrics` feature is on.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `secret.allocated` | counter | secrets ever created (never decreases) |
//! | `secret.inuse` | gauge (incremented / decremented) | secrets created and not yet closed |
//! | `secret.locked_bytes` | gauge | bytes of locked memory held by live secrets |
//! | `secret.protectedmemory.alloctimer` | histogram (seconds) | time to create a `protected_memory` secret, failures included |
//! | `secret.memguard.alloctimer` | histogram (seconds) | the same for the `memguard` flavour |

use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static IN_USE: AtomicU64 = AtomicU64::new(0);
static LOCKED_BYTES: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the process-wide counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Secrets ever created in this process (`secret.allocated`).
    pub allocated: u64,
    /// Secrets created and not yet closed (`secret.inuse`).
    pub in_use: u64,
    /// Bytes of locked memory held by live secrets (`secret.locked_bytes`).
    pub locked_bytes: u64,
}

/// The process-wide counts right now.
pub fn counts() -> Counts {
    Counts {
        allocated: ALLOCATED.load(Ordering::Relaxed),
        in_use: IN_USE.load(Ordering::Relaxed),
        locked_bytes: LOCKED_BYTES.load(Ordering::Relaxed),
    }
}

/// Which flavour an allocation timer belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flavour {
    ProtectedMemory,
    Memguard,
    Sealed,
}

pub(crate) fn secret_created(locked_bytes: usize) {
    ALLOCATED.fetch_add(1, Ordering::Relaxed);
    IN_USE.fetch_add(1, Ordering::Relaxed);
    LOCKED_BYTES.fetch_add(locked_bytes as u64, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!("secret.allocated").increment(1);
        ::metrics::gauge!("secret.inuse").increment(1.0);
        ::metrics::gauge!("secret.locked_bytes").increment(locked_bytes as f64);
    }
}

pub(crate) fn secret_closed(locked_bytes: usize) {
    IN_USE.fetch_sub(1, Ordering::Relaxed);
    LOCKED_BYTES.fetch_sub(locked_bytes as u64, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    {
        ::metrics::gauge!("secret.inuse").decrement(1.0);
        ::metrics::gauge!("secret.locked_bytes").decrement(locked_bytes as f64);
    }
}

/// Times one allocation, successful or not, like Go's `defer AllocTimer.UpdateSince(time.Now())`.
pub(crate) struct AllocTimer {
    #[cfg(feature = "metrics")]
    start: std::time::Instant,
    #[cfg(feature = "metrics")]
    flavour: Flavour,
}

impl AllocTimer {
    pub(crate) fn start(flavour: Flavour) -> AllocTimer {
        let _ = flavour;
        AllocTimer {
            #[cfg(feature = "metrics")]
            start: std::time::Instant::now(),
            #[cfg(feature = "metrics")]
            flavour,
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for AllocTimer {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        match self.flavour {
            Flavour::ProtectedMemory => {
                ::metrics::histogram!("secret.protectedmemory.alloctimer").record(elapsed)
            }
            Flavour::Memguard => {
                ::metrics::histogram!("secret.memguard.alloctimer").record(elapsed)
            }
            Flavour::Sealed => ::metrics::histogram!("secret.sealed.alloctimer").record(elapsed),
        }
    }
}
