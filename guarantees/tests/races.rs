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

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ensure, is_pattern, pattern_secret, Flavour};
use guarantees::proc_stats::Footprint;
use guarantees::{Scenario, Watchdog};
use securememory::{Error, Secret, SecretExtensions};

const SLOTS: usize = 64;
const READERS: usize = 12;
/// Of the readers, how many go through `SecretReader` instead of `with_bytes`.
const STREAM_READERS: usize = 3;
const CHURNERS: usize = 2;
const ACCESSES: usize = 10_000;
/// The last reader also closes one secret in this many, racing the churn threads' own closes of it.
const READER_CLOSES_ONE_IN: u64 = 200;

type Slot = Mutex<(u64, Arc<dyn Secret>)>;

/// Tallies of what the readers saw.
#[derive(Default)]
struct Tally {
    exact: AtomicUsize,
    closed: AtomicUsize,
    problems: Mutex<Vec<String>>,
    replaced: AtomicUsize,
    /// `VmLck` once the 64 secrets exist: shows the baseline comparison is about memory that was really locked.
    locked_while_live: AtomicU64,
}

impl Tally {
    fn problem(&self, what: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < 20 {
            problems.push(what);
        }
    }
}

fn len_of(id: u64) -> usize {
    [32, 1, 4096, 4097, 100, 33][id as usize % 6]
}

fn new_secret(id: u64) -> securememory::Result<Arc<dyn Secret>> {
    pattern_secret(Flavour::ALL[id as usize % 2], id, len_of(id))
}

/// A small xorshift generator: which slot to visit next, without a shared RNG.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn access(tally: &Tally, id: u64, secret: &dyn Secret, through_reader: bool) {
    let result = if through_reader {
        read_all(secret).map(|bytes| is_pattern(id, &bytes) && bytes.len() == len_of(id))
    } else {
        secret.with_bytes(|b| Ok(is_pattern(id, b) && b.len() == len_of(id)))
    };
    match result {
        Ok(true) => tally.exact.fetch_add(1, Ordering::Relaxed),
        Ok(false) => {
            tally.problem(format!("secret {id}: wrong bytes"));
            0
        }
        Err(Error::Closed) => tally.closed.fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            tally.problem(format!("secret {id}: unexpected error {e}"));
            0
        }
    };
}

/// Reads a whole secret through a reader. A close in the middle may cut it short: then the closed error comes
/// back, never a short or wrong result passed off as complete.
fn read_all(secret: &dyn Secret) -> securememory::Result<Vec<u8>> {
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
        let slot = &slots[next(&mut rng) as usize % SLOTS];
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let fresh = match new_secret(id) {
            Ok(s) => s,
            Err(e) => return tally.problem(format!("creating secret {id}: {e}")),
        };
        let close_first = next(&mut rng) % 2 == 0;
        let old = {
            let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            if close_first {
                // Close while still published: readers that pick it up now get the closed error.
                if let Err(e) = guard.1.close() {
                    tally.problem(format!("closing secret {}: {e}", guard.0));
                }
            }
            std::mem::replace(&mut *guard, (id, fresh))
        };
        // Otherwise close after unpublishing, while readers that took it may still be inside.
        if let Err(e) = old.1.close() {
            tally.problem(format!("closing secret {}: {e}", old.0));
        }
        tally.replaced.fetch_add(1, Ordering::Relaxed);
    }
}

/// One round of the workload: `accesses` per reader thread.
fn round(accesses: usize) -> Result<Tally, Box<dyn std::error::Error>> {
    let ids = AtomicU64::new(0);
    let slots: Vec<Slot> = (0..SLOTS)
        .map(|_| {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            new_secret(id).map(|s| Mutex::new((id, s)))
        })
        .collect::<Result<_, _>>()?;
    let tally = Tally::default();
    tally
        .locked_while_live
        .store(guarantees::proc_stats::locked(), Ordering::Relaxed);
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
                            let guard = slots[next(&mut rng) as usize % SLOTS]
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            (guard.0, guard.1.clone())
                        };
                        access(tally, id, secret.as_ref(), r < STREAM_READERS);
                        if r == READERS - 1 && next(&mut rng) % READER_CLOSES_ONE_IN == 0 {
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

fn footprint() -> Footprint {
    memcall::pool::trim_all();
    Footprint::now()
}

fn races() -> Result<(), Box<dyn std::error::Error>> {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "the race workload");
    round(200)?;
    let base = footprint();
    let tally = round(ACCESSES)?;
    let end = footprint();
    let exact = tally.exact.load(Ordering::Relaxed);
    let closed = tally.closed.load(Ordering::Relaxed);
    eprintln!(
        "{exact} exact, {closed} closed, {} secrets replaced; footprint {base:?} -> {end:?}",
        tally.replaced.load(Ordering::Relaxed)
    );
    let problems = tally
        .problems
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    ensure(problems.is_empty(), || problems.join("\n"))?;
    ensure(exact + closed == READERS * ACCESSES, || {
        format!(
            "{exact} + {closed} results for {} accesses",
            READERS * ACCESSES
        )
    })?;
    ensure(exact > 0 && closed > 0, || {
        "the workload did not mix successful and closed accesses".into()
    })?;
    let live = tally.locked_while_live.load(Ordering::Relaxed);
    ensure(live > base.locked, || {
        format!(
            "VmLck {live} with 64 live secrets, {} without: nothing was locked",
            base.locked
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

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[("races", races)];
    guarantees::dispatch(SCENARIOS);
}

#[test]
fn many_threads_reading_closing_and_creating_get_exact_bytes_or_closed_and_leak_nothing() {
    let outcome = guarantees::run_child("races")
        .timeout(Duration::from_secs(180))
        .run();
    eprint!("{}", outcome.stderr);
    outcome.assert_success();
}
