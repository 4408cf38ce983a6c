//! Soak: 2·10^6 create/close cycles (10^6 protected-memory secrets, 500,000 memguard secrets, 500,000 memguard
//! locked buffers) must leave the process as they found it: what the library maps and locks (`VmLck`, the
//! no-dump mappings and their bytes, the locked mappings' bytes) exactly, and `VmRSS` within a few pages. Sizes
//! include regions too large for the pool of locked pages, so both the pooled and the map/unmap paths are
//! soaked. The total mapping count is not compared (the C library's arenas move it; see `Footprint`).
//!
//! Release builds only (`cargo test --release -p securememory-guarantees --test soak`); a debug build would take
//! many minutes. Each kind runs in its own child so the figures are not disturbed by anything else. The first
//! tenth of the cycles is a warm-up (allocator caches, lazily made process-wide state); the baseline is taken
//! after it. The caches of locked pages are trimmed before each measurement.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{ensure, fill_pattern, Held, Kind};
use guarantees::proc_stats::Footprint;
use guarantees::{Scenario, Watchdog};

const KIND_VAR: &str = "GUARANTEES_KIND";
const CYCLES_VAR: &str = "GUARANTEES_SOAK_CYCLES";
/// Cycles per kind: about a minute in all on a loaded 2-core machine (a protected-memory cycle costs ~3 µs, a
/// guarded one ~25 µs).
fn default_cycles(kind: Kind) -> u64 {
    match kind {
        Kind::Secret(common::Flavour::ProtectedMemory) => 1_000_000,
        _ => 500_000,
    }
}
/// Resident memory may wobble by a few pages (allocator bookkeeping), not grow with the cycle count: 10^6 cycles
/// leaking even one byte each would add about 1 MiB.
const RSS_SLACK: u64 = 256 * 1024;

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Sizes cycle through the common 32-byte key, odd sizes, exactly one page, two pages, and ten pages (past
/// what the pool of locked pages keeps).
const SIZES: [usize; 8] = [32, 32, 33, 64, 100, 4096, 5000, 40_000];

fn run_cycles(kind: Kind, ids: std::ops::Range<u64>) -> Outcome {
    let mut source = vec![0u8; 40_000];
    for id in ids {
        let len = SIZES[id as usize % SIZES.len()];
        let holder = match kind {
            Kind::Secret(flavour) if id % 4 == 3 => {
                Held::Secret(flavour.random_secret(len)?.into())
            }
            _ => {
                fill_pattern(id, &mut source[..len]);
                let holder = kind.hold(&mut source[..len])?;
                if id % 64 == 0 {
                    ensure(holder.holds_pattern(id)?, || {
                        format!("cycle {id}: wrong bytes")
                    })?;
                }
                holder
            }
        };
        holder.close()?;
    }
    Ok(())
}

fn footprint() -> Footprint {
    memcall::pool::trim_all();
    Footprint::now()
}

fn soak() -> Outcome {
    let kind = Kind::from_env(KIND_VAR)?;
    let total = match std::env::var(CYCLES_VAR) {
        Ok(n) => n.parse()?,
        Err(_) => default_cycles(kind),
    };
    let _watchdog = Watchdog::start(Duration::from_secs(600), "the soak");
    let warmup = total / 10;
    run_cycles(kind, 0..warmup)?;
    let base = footprint();
    let started = Instant::now();
    run_cycles(kind, warmup..total)?;
    let elapsed = started.elapsed();
    let end = footprint();
    println!(
        "{}: {} cycles in {:.1?} ({:.2} µs per create+close); after warm-up {:?}, at the end {:?}",
        kind.name(),
        total - warmup,
        elapsed,
        elapsed.as_secs_f64() * 1e6 / (total - warmup) as f64,
        base,
        end
    );
    let changes = end.library_changes_since(&base);
    ensure(changes.is_empty(), || changes.join("; "))?;
    ensure(end.resident <= base.resident + RSS_SLACK, || {
        format!("VmRSS grew from {} to {}", base.resident, end.resident)
    })?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[("soak", soak)];
    guarantees::dispatch(SCENARIOS);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "run with --release: cargo test --release -p securememory-guarantees --test soak"
)]
fn a_million_create_close_cycles_leave_memory_flat() {
    for kind in Kind::ALL {
        let outcome = guarantees::run_child("soak")
            .env(KIND_VAR, kind.name())
            .timeout(Duration::from_secs(900))
            .run();
        print!("{}", outcome.stdout);
        outcome.assert_success();
    }
}
