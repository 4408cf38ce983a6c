//! Sealed secrets under concurrency: 12 threads make 10^4 accesses each across 64 shared sealed secrets (3 of
//! them through readers, one of them also closing a secret now and then), while 2 other threads keep closing
//! secrets and putting new ones in their place. Every access gives the exact bytes of the secret it reached or
//! `Error::Closed`, never anything else (no integrity error, no wrong or wiped bytes); nothing hangs (a watchdog
//! aborts the child); and once everything is closed the scratch cache is empty after a trim and `VmLck`, the
//! no-dump mappings and the locked mappings are back at their baseline.
//!
//! A second scenario races `memguard::purge()` (which also destroys the sealing key) against readers: each
//! access before the purge reaches its secret gives the exact bytes, each after it `Error::Closed`.
#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::race::{self, Tally, Workload, READERS};
use common::{ensure, ensure_library_back, run_reporting, sealed_pattern, trimmed_footprint};
use guarantees::{Scenario, Watchdog};
use securememory::sealed::{cached_scratch_bytes, SealedSecret};
use securememory::Secret;

/// Accesses per reader thread: the full proof (release builds).
const ACCESSES: usize = 10_000;
/// Accesses per reader thread in a debug build, where every window costs a debug-built decryption and private
/// stack wipe (about a millisecond): the same workload, shorter.
const DEBUG_ACCESSES: usize = 300;
const ACCESSES_VAR: &str = "GUARANTEES_SEALED_ACCESSES";

/// Sealed secrets of every size, read through their own `with_bytes`; the churn paced, so it does not starve
/// the readers of the two cores CI machines have.
const WORKLOAD: Workload<SealedSecret> = Workload {
    new_secret: |id| sealed_pattern(id, race::len_of(id)).map(Arc::new),
    holds: |secret, id| secret.with_bytes(|b| Ok(race::holds(id, b))),
    reader_closes_one_in: 50,
    churn_pause: Some(Duration::from_micros(200)),
};

fn races() -> Result<(), Box<dyn std::error::Error>> {
    let accesses: usize = std::env::var(ACCESSES_VAR)?.parse()?;
    let _watchdog = Watchdog::start(Duration::from_secs(240), "the sealed race workload");
    WORKLOAD.round(50)?;
    let base = trimmed_footprint();
    let tally = WORKLOAD.round(accesses)?;
    let cached = cached_scratch_bytes();
    let end = trimmed_footprint();
    let (exact, closed) = (
        tally.exact.load(Ordering::Relaxed),
        tally.closed.load(Ordering::Relaxed),
    );
    eprintln!(
        "{exact} exact, {closed} closed, {} secrets replaced; {cached} bytes of scratch cached before the \
         trim, {} after; footprint {base:?} -> {end:?}",
        tally.replaced.load(Ordering::Relaxed),
        cached_scratch_bytes()
    );
    tally.check(accesses)?;
    ensure(cached_scratch_bytes() == 0, || {
        format!(
            "{} bytes of scratch cached after a trim",
            cached_scratch_bytes()
        )
    })?;
    ensure_library_back(&base, &end, "after closing everything")?;
    Ok(())
}

/// Readers on every secret while another thread purges: exact bytes or `Error::Closed`, never an integrity
/// error from a key destroyed under a secret the purge has not reached yet.
fn purge_against_readers() -> Result<(), Box<dyn std::error::Error>> {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "purge against sealed readers");
    for round in 0..10 {
        let ids = AtomicU64::new(round * 1000);
        let slots = WORKLOAD.new_slots(&ids)?;
        let tally = Tally::default();
        let start = Barrier::new(READERS + 1);
        std::thread::scope(|scope| {
            for r in 0..READERS {
                let (slots, tally, start) = (&slots, &tally, &start);
                scope.spawn(move || {
                    let mut rng = 0x2545_F491_4F6C_DD1D ^ (r as u64 + 1);
                    start.wait();
                    for _ in 0..200 {
                        let (id, secret) = race::pick(slots, &mut rng);
                        WORKLOAD.access(tally, id, &secret, false);
                    }
                });
            }
            start.wait();
            std::thread::sleep(Duration::from_millis(2));
            memguard::purge();
        });
        let problems = tally.problems();
        ensure(problems.is_empty(), || {
            format!("round {round}:\n{}", problems.join("\n"))
        })?;
        for slot in &slots {
            let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            ensure(guard.1.is_closed(), || {
                format!("secret {} survived the purge", guard.0)
            })?;
        }
    }
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("races", races),
        ("purge_against_readers", purge_against_readers),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn race_in_child(accesses: usize) {
    run_reporting(
        guarantees::run_child("races")
            .env(ACCESSES_VAR, accesses.to_string())
            .timeout(Duration::from_secs(300)),
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "run with --release: cargo test --release -p securememory-guarantees --test sealed_races"
)]
fn twelve_threads_times_ten_thousand_accesses_with_close_and_create_get_exact_bytes_or_closed() {
    race_in_child(ACCESSES);
}

#[test]
fn many_threads_reading_closing_and_creating_sealed_secrets_get_exact_bytes_or_closed_and_leak_nothing(
) {
    race_in_child(if cfg!(debug_assertions) {
        DEBUG_ACCESSES
    } else {
        ACCESSES / 10
    });
}

#[test]
fn purge_racing_readers_of_sealed_secrets_gives_exact_bytes_or_closed() {
    run_reporting(guarantees::run_child("purge_against_readers").timeout(Duration::from_secs(180)));
}
