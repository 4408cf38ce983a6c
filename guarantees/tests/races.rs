//! Concurrency: 12 threads make 10^4 accesses each across 64 shared secrets of both flavours (3 of them through
//! readers, and one of them also closing a secret now and then), while 2 other threads keep closing secrets and
//! putting new ones in their place. Every access must
//! give the exact bytes of the secret it reached or the exact closed error; nothing may hang (a watchdog aborts the
//! child after 120 s); and once everything is closed, what the library maps and locks (`VmLck`, the no-dump
//! mappings, their bytes and the locked mappings' bytes) is back at its baseline.
//!
//! The `securememory` crate's own race test hammers one secret with one closer; this one mixes flavours, sizes,
//! replacement and many secrets. The baseline is taken after a warm-up round of the same shape; the caches of
//! locked pages are trimmed before measuring. The total mapping count is not compared: the C library's per-thread
//! malloc arenas (made lazily, when a thread first meets contention) move it by a few mappings from run to run.
#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::race::{self, Workload};
use common::{
    ensure, ensure_library_back, pattern_secret, run_reporting, trimmed_footprint, Flavour,
};
use guarantees::{Scenario, Watchdog};
use securememory::{Secret, SecretExtensions};

const ACCESSES: usize = 10_000;

/// Both flavours in turn, every size, read through the trait object.
const WORKLOAD: Workload<dyn Secret> = Workload {
    new_secret,
    holds: |secret, id| secret.with_bytes(|b| Ok(race::holds(id, b))),
    reader_closes_one_in: 200,
    churn_pause: None,
};

fn new_secret(id: u64) -> securememory::Result<Arc<dyn Secret>> {
    pattern_secret(Flavour::ALL[id as usize % 2], id, race::len_of(id))
}

fn races() -> Result<(), Box<dyn std::error::Error>> {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "the race workload");
    WORKLOAD.round(200)?;
    let base = trimmed_footprint();
    let tally = WORKLOAD.round(ACCESSES)?;
    let end = trimmed_footprint();
    let (exact, closed) = (
        tally.exact.load(Ordering::Relaxed),
        tally.closed.load(Ordering::Relaxed),
    );
    eprintln!(
        "{exact} exact, {closed} closed, {} secrets replaced; footprint {base:?} -> {end:?}",
        tally.replaced.load(Ordering::Relaxed)
    );
    let live = tally.locked_while_live.load(Ordering::Relaxed);
    tally.check(ACCESSES)?;
    ensure(live > base.locked, || {
        format!(
            "VmLck {live} with 64 live secrets, {} without: nothing was locked",
            base.locked
        )
    })?;
    ensure_library_back(&base, &end, "after closing everything")?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[("races", races)];
    guarantees::dispatch(SCENARIOS);
}

#[test]
fn many_threads_reading_closing_and_creating_get_exact_bytes_or_closed_and_leak_nothing() {
    run_reporting(guarantees::run_child("races").timeout(Duration::from_secs(180)));
}
