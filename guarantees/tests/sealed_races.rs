//! Sealed secrets under concurrency: 12 threads make 10^4 accesses each across 64 shared sealed secrets (3 of
//! them through readers, one of them also closing a secret now and then), while 2 other threads keep closing
//! secrets and putting new ones in their place. Every access gives the exact bytes of the secret it reached or
//! `Error::Closed`, never anything else (no integrity error, no wrong or wiped bytes); nothing hangs (a watchdog
//! aborts the child); and once everything is closed the scratch cache is empty after a trim and `VmLck`, the
//! no-dump mappings and the locked mappings are back at their baseline.
//!
//! A second scenario races `memguard::purge()` (which also destroys the sealing key) against readers: each
//! access before the purge reaches its secret gives the exact bytes, each after it `Error::Closed`. A third
//! races it against creations: every secret made is, afterwards, closed or readable, never stuck between.
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

/// Threads creating sealed secrets (from bytes, and random) while another thread purges again and again.
/// A purge destroys the sealing key, so a secret sealed just before it and registered just after would be
/// neither closed by it nor readable: every secret a creation returns must, once the purges are over, be
/// closed or give its exact bytes. A creation may fail with `Error::Closed` (purges kept winning), and then its
/// source is left as it was.
fn purge_against_creators() -> Result<(), Box<dyn std::error::Error>> {
    use securememory::{sealed::SealedSecretFactory, SecretFactory};
    let _watchdog = Watchdog::start(Duration::from_secs(120), "purge against sealed creators");
    const CREATORS: u64 = 4;
    let per_creator: u64 = if cfg!(debug_assertions) { 3000 } else { 20_000 };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let made = std::thread::scope(|scope| {
        let creators: Vec<_> = (0..CREATORS)
            .map(|c| {
                let done = &done;
                scope.spawn(move || {
                    let factory = SealedSecretFactory::new();
                    let mut made = Vec::new();
                    for i in 0..per_creator {
                        let id = c * 1_000_000 + i;
                        if i % 2 == 0 {
                            let mut source = vec![0u8; race::len_of(id)];
                            common::fill_pattern(id, &mut source);
                            match factory.new(&mut source) {
                                Ok(secret) => made.push((id, Some(secret))),
                                Err(securememory::Error::Closed) => {
                                    assert!(
                                        race::holds(id, &source),
                                        "a failed new wiped its source"
                                    );
                                }
                                Err(e) => panic!("new: {e}"),
                            }
                        } else {
                            match factory.create_random(32) {
                                Ok(secret) => made.push((id, Some(secret))),
                                Err(securememory::Error::Closed) => {}
                                Err(e) => panic!("create_random: {e}"),
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    made
                })
            })
            .collect();
        let mut purges = 0;
        while done.load(Ordering::SeqCst) < CREATORS as usize {
            memguard::purge();
            purges += 1;
            std::thread::yield_now();
        }
        println!("{purges} purges raced the creations");
        creators
            .into_iter()
            .flat_map(|h| h.join().expect("a creator panicked"))
            .collect::<Vec<_>>()
    });
    let mut zombies = Vec::new();
    let (mut open, mut closed) = (0, 0);
    for (id, secret) in &made {
        let Some(secret) = secret else { continue };
        if secret.is_closed() {
            closed += 1;
            continue;
        }
        let read = secret.with_bytes(|b| {
            Ok(if id % 2 == 0 {
                race::holds(*id, b)
            } else {
                b.len() == 32
            })
        });
        match read {
            Ok(true) => open += 1,
            other => zombies.push(format!("secret {id}: open but {other:?}")),
        }
    }
    println!("{open} open, {closed} closed by a purge");
    ensure(zombies.is_empty(), || zombies.join("\n"))?;
    Ok(())
}

/// The same race, forced: a purge between sealing a secret and registering it. The secret `new` returns
/// opens to its bytes (it was sealed again under the new key), and its source is wiped.
fn purge_between_sealing_and_registration() -> Result<(), Box<dyn std::error::Error>> {
    use securememory::sealed::SealedSecretFactory;
    let _watchdog = Watchdog::start(
        Duration::from_secs(60),
        "purge between sealing and registration",
    );
    const ID: u64 = 6;
    let mut source = vec![0u8; race::len_of(ID)];
    common::fill_pattern(ID, &mut source);
    let secret = SealedSecretFactory::new().new_purged_before_registration(&mut source)?;
    ensure(source.iter().all(|&b| b == 0), || {
        "the source was not wiped".to_owned()
    })?;
    ensure(!secret.is_closed(), || {
        "the new secret is closed".to_owned()
    })?;
    let read = secret.with_bytes(|b| Ok(race::holds(ID, b)));
    ensure(matches!(read, Ok(true)), || {
        format!("the new secret does not open to its bytes: {read:?}")
    })?;
    memguard::purge();
    ensure(secret.is_closed(), || {
        "a later purge left it open".to_owned()
    })?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("races", races),
        ("purge_against_readers", purge_against_readers),
        ("purge_against_creators", purge_against_creators),
        (
            "purge_between_sealing_and_registration",
            purge_between_sealing_and_registration,
        ),
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

#[test]
fn purge_racing_creations_leaves_every_sealed_secret_closed_or_readable() {
    run_reporting(
        guarantees::run_child("purge_against_creators").timeout(Duration::from_secs(180)),
    );
}

#[test]
fn a_purge_between_sealing_and_registration_gives_a_secret_that_opens() {
    run_reporting(
        guarantees::run_child("purge_between_sealing_and_registration")
            .timeout(Duration::from_secs(90)),
    );
}
