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

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::{ensure, is_pattern, sealed_pattern, xorshift};
use guarantees::proc_stats::Footprint;
use guarantees::{Scenario, Watchdog};
use securememory::sealed::{cached_scratch_bytes, SealedSecret};
use securememory::{Error, Secret};

const SLOTS: usize = 64;
const READERS: usize = 12;
const STREAM_READERS: usize = 3;
const CHURNERS: usize = 2;
/// Accesses per reader thread: the full proof (release builds).
const ACCESSES: usize = 10_000;
/// Accesses per reader thread in a debug build, where every window costs a debug-built decryption and private
/// stack wipe (about a millisecond): the same workload, shorter.
const DEBUG_ACCESSES: usize = 300;
const ACCESSES_VAR: &str = "GUARANTEES_SEALED_ACCESSES";
/// The last reader also closes one secret in this many, racing the churn threads' own closes of it.
const READER_CLOSES_ONE_IN: u64 = 50;

type Slot = Mutex<(u64, Arc<SealedSecret>)>;

#[derive(Default)]
struct Tally {
    exact: AtomicUsize,
    closed: AtomicUsize,
    replaced: AtomicUsize,
    problems: Mutex<Vec<String>>,
}

impl Tally {
    fn problem(&self, what: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < 20 {
            problems.push(what);
        }
    }

    fn problems(self) -> Vec<String> {
        self.problems
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Sizes: keys, odd sizes, one page and past it.
fn len_of(id: u64) -> usize {
    [32, 1, 4096, 4097, 100, 33][id as usize % 6]
}

fn access(tally: &Tally, id: u64, secret: &SealedSecret, through_reader: bool) {
    let result = if through_reader {
        read_all(secret).map(|bytes| is_pattern(id, &bytes) && bytes.len() == len_of(id))
    } else {
        secret.with_bytes(|b| Ok(is_pattern(id, b) && b.len() == len_of(id)))
    };
    match result {
        Ok(true) => {
            tally.exact.fetch_add(1, Ordering::Relaxed);
        }
        Ok(false) => tally.problem(format!("secret {id}: wrong bytes")),
        Err(Error::Closed) => {
            tally.closed.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tally.problem(format!("secret {id}: unexpected error {e:?}")),
    }
}

/// Reads a whole secret through a reader; a close in the middle gives the closed error back.
fn read_all(secret: &SealedSecret) -> securememory::Result<Vec<u8>> {
    let mut reader = secret.reader()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 1000];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(match e.into_inner().map(|e| e.downcast::<Error>()) {
                    Some(Ok(e)) => *e,
                    _ => Error::action("a reader failed with a foreign error"),
                })
            }
        }
    }
}

fn churn(slots: &[Slot], tally: &Tally, ids: &AtomicU64, done: &AtomicBool, seed: u64) {
    let mut rng = seed;
    while !done.load(Ordering::Relaxed) {
        let slot = &slots[xorshift(&mut rng) as usize % SLOTS];
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let fresh = match sealed_pattern(id, len_of(id)) {
            Ok(s) => Arc::new(s),
            Err(e) => return tally.problem(format!("creating secret {id}: {e}")),
        };
        let close_first = xorshift(&mut rng) % 2 == 0;
        let old = {
            let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            if close_first {
                if let Err(e) = guard.1.close() {
                    tally.problem(format!("closing secret {}: {e}", guard.0));
                }
            }
            std::mem::replace(&mut *guard, (id, fresh))
        };
        if let Err(e) = old.1.close() {
            tally.problem(format!("closing secret {}: {e}", old.0));
        }
        tally.replaced.fetch_add(1, Ordering::Relaxed);
        // Paced, so the churn does not starve the readers of the two cores CI machines have.
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn new_slots(ids: &AtomicU64) -> securememory::Result<Vec<Slot>> {
    (0..SLOTS)
        .map(|_| {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            sealed_pattern(id, len_of(id)).map(|s| Mutex::new((id, Arc::new(s))))
        })
        .collect()
}

fn round(accesses: usize) -> Result<Tally, Box<dyn std::error::Error>> {
    let ids = AtomicU64::new(0);
    let slots = new_slots(&ids)?;
    let tally = Tally::default();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let churners: Vec<_> = (0..CHURNERS)
            .map(|c| {
                let (slots, tally, ids, done) = (&slots, &tally, &ids, &done);
                scope.spawn(move || churn(slots, tally, ids, done, 0x9E37_79B9 + c as u64))
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (slots, tally) = (&slots, &tally);
                scope.spawn(move || {
                    let mut rng = 0x2545_F491_4F6C_DD1D ^ (r as u64 + 1);
                    for _ in 0..accesses {
                        let (id, secret) = {
                            let guard = slots[xorshift(&mut rng) as usize % SLOTS]
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            (guard.0, Arc::clone(&guard.1))
                        };
                        access(tally, id, &secret, r < STREAM_READERS);
                        if r == READERS - 1 && xorshift(&mut rng) % READER_CLOSES_ONE_IN == 0 {
                            if let Err(e) = secret.close() {
                                tally.problem(format!("a reader closing secret {id}: {e}"));
                            }
                        }
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().expect("reader thread panicked");
        }
        done.store(true, Ordering::Relaxed);
        for c in churners {
            c.join().expect("churn thread panicked");
        }
    });
    for slot in slots {
        let (id, secret) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
        secret
            .close()
            .map_err(|e| format!("closing secret {id}: {e}"))?;
    }
    Ok(tally)
}

/// The footprint with every cache of locked pages (the scratch cache included) trimmed.
fn footprint() -> Footprint {
    memcall::pool::trim_all();
    Footprint::now()
}

fn races() -> Result<(), Box<dyn std::error::Error>> {
    let accesses: usize = std::env::var(ACCESSES_VAR)?.parse()?;
    let _watchdog = Watchdog::start(Duration::from_secs(240), "the sealed race workload");
    round(50)?;
    let base = footprint();
    let tally = round(accesses)?;
    let cached = cached_scratch_bytes();
    let end = footprint();
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
    let problems = tally.problems();
    ensure(problems.is_empty(), || problems.join("\n"))?;
    ensure(exact + closed == READERS * accesses, || {
        format!(
            "{exact} + {closed} results for {} accesses",
            READERS * accesses
        )
    })?;
    ensure(exact > 0 && closed > 0, || {
        "the workload did not mix successful and closed accesses".into()
    })?;
    ensure(cached_scratch_bytes() == 0, || {
        format!(
            "{} bytes of scratch cached after a trim",
            cached_scratch_bytes()
        )
    })?;
    let changes = end.library_changes_since(&base);
    ensure(changes.is_empty(), || {
        format!(
            "after closing everything: {}; footprint {base:?} -> {end:?}",
            changes.join("; ")
        )
    })?;
    Ok(())
}

/// Readers on every secret while another thread purges: exact bytes or `Error::Closed`, never an integrity
/// error from a key destroyed under a secret the purge has not reached yet.
fn purge_against_readers() -> Result<(), Box<dyn std::error::Error>> {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "purge against sealed readers");
    for round in 0..10 {
        let ids = AtomicU64::new(round * 1000);
        let slots = new_slots(&ids)?;
        let tally = Tally::default();
        let start = Barrier::new(READERS + 1);
        std::thread::scope(|scope| {
            for r in 0..READERS {
                let (slots, tally, start) = (&slots, &tally, &start);
                scope.spawn(move || {
                    let mut rng = 0x2545_F491_4F6C_DD1D ^ (r as u64 + 1);
                    start.wait();
                    for _ in 0..200 {
                        let (id, secret) = {
                            let guard = slots[xorshift(&mut rng) as usize % SLOTS]
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            (guard.0, Arc::clone(&guard.1))
                        };
                        access(tally, id, &secret, false);
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
    let outcome = guarantees::run_child("races")
        .env(ACCESSES_VAR, accesses.to_string())
        .timeout(Duration::from_secs(300))
        .run();
    eprint!("{}", outcome.stderr);
    outcome.assert_success();
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
    let outcome = guarantees::run_child("purge_against_readers")
        .timeout(Duration::from_secs(180))
        .run();
    eprint!("{}", outcome.stderr);
    outcome.assert_success();
}
