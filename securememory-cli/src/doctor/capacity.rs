//! How many secrets of a given size fit under the locked-memory limit: by arithmetic here, and measured by the
//! proof registry's `fill` scenario in a child process.

use serde::Serialize;

use crate::doctor::host::MemlockFacts;
use proofs::scenarios::fill::{self, FillParams, Measured};
use proofs::{Flavour, Launcher};

/// When nothing limits locking, the measuring child stops after this many locked bytes.
const UNBOUNDED_CAP_BYTES: u64 = 64 << 20;

/// Live sealed secrets the measuring child holds at least (fewer only when they would not fit in
/// [`SEALED_MEMORY_BUDGET`]), and at most when `--expect` asks for more.
pub const SEALED_LIVE_CHECK: u64 = 100_000;
const SEALED_MAX: u64 = 1_000_000;
/// Ordinary memory the sealed child may use, estimated at the secret's size plus [`SEALED_OVERHEAD`] each.
const SEALED_MEMORY_BUDGET: u64 = 1 << 30;
const SEALED_OVERHEAD: u64 = 256;
/// Sealed secrets read back after filling.
const SEALED_READ_BACK: u64 = 1_000;

#[derive(Debug, Serialize)]
pub struct Capacity {
    pub flavour: &'static str,
    /// The registry scenario that measured it.
    pub scenario: &'static str,
    /// Locked bytes one secret costs.
    pub locked_bytes_per_secret: u64,
    /// Mapped bytes one secret costs (locked pages plus unlocked guard pages).
    pub mapped_bytes_per_secret: u64,
    /// soft limit / locked bytes per secret; `None` when the limit is unlimited.
    pub by_arithmetic: Option<u64>,
    /// What the child managed to allocate.
    pub measured: Option<Measured>,
    /// Why there is no measurement, when there is none.
    pub not_measured: Option<String>,
}

fn per_secret(flavour: Flavour, size: u64) -> (u64, u64) {
    let page = memcall::page_size() as u64;
    let inner = size.div_ceil(page) * page;
    match flavour {
        // Guard pages are mapped no-access and never locked.
        Flavour::Memguard | Flavour::LockedBuffer => (inner, inner + 2 * page),
        Flavour::Region | Flavour::ProtectedMemory => (inner, inner),
        // Ciphertext in ordinary memory; locked scratch pages only while a closure runs.
        Flavour::Sealed => (0, 0),
    }
}

/// How many sealed secrets of `size` bytes the live check holds for a service that needs `expect`, unless
/// `asked` (`--sealed-check`) says.
pub fn sealed_count(size: u64, expect: u64, asked: Option<u64>) -> u64 {
    if let Some(n) = asked {
        return n;
    }
    let by_memory = SEALED_MEMORY_BUDGET / size.saturating_add(SEALED_OVERHEAD);
    expect
        .clamp(SEALED_LIVE_CHECK, SEALED_MAX)
        .min(by_memory)
        .max(1)
}

/// Sealed secrets are not bounded by the locked-memory limit: a child without `CAP_IPC_LOCK` holds `count`
/// of them ([`sealed_count`]), reads a sample back and reports `VmLck` and mappings from the first to the
/// last.
pub fn sealed(launcher: &Launcher, size: u64, count: u64, memlock: &MemlockFacts) -> Capacity {
    let params = FillParams {
        flavour: Flavour::Sealed,
        size: usize::try_from(size).unwrap_or(usize::MAX),
        cap: count,
        drop_ipc_lock: memlock.cap_ipc_lock == Some(true),
        read_back: SEALED_READ_BACK.min(count),
    };
    let (measured, not_measured) = match fill::measure(launcher, params) {
        Ok(m) => (Some(m), None),
        Err(why) => (None, Some(why)),
    };
    Capacity {
        flavour: Flavour::Sealed.name(),
        scenario: fill::SCENARIO.name,
        locked_bytes_per_secret: 0,
        mapped_bytes_per_secret: 0,
        by_arithmetic: None,
        measured,
        not_measured,
    }
}

/// Arithmetic and measured capacity for `flavour`.
pub fn capacity(
    launcher: &Launcher,
    flavour: Flavour,
    size: u64,
    memlock: &MemlockFacts,
) -> Capacity {
    let (locked, mapped) = per_secret(flavour, size);
    let budget = memlock
        .soft_bytes
        .map(|soft| soft.saturating_sub(memlock.locked_now_bytes.unwrap_or(0)));
    let by_arithmetic = budget.map(|b| b / locked);
    // Past the arithmetic figure plus slack the limit is evidently not binding; stop there.
    let cap = match by_arithmetic {
        Some(n) => n + n / 8 + 16,
        None => (UNBOUNDED_CAP_BYTES / locked).max(1),
    };
    let params = FillParams {
        flavour,
        size: usize::try_from(size).unwrap_or(usize::MAX),
        cap,
        drop_ipc_lock: memlock.cap_ipc_lock == Some(true),
        read_back: 0,
    };
    let (measured, not_measured) = match fill::measure(launcher, params) {
        Ok(m) => (Some(m), None),
        Err(why) => (None, Some(why)),
    };
    Capacity {
        flavour: flavour.name(),
        scenario: fill::SCENARIO.name,
        locked_bytes_per_secret: locked,
        mapped_bytes_per_secret: mapped,
        by_arithmetic,
        measured,
        not_measured,
    }
}
