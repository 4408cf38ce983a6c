//! Purge racing everything else: constructors never lose their caller's secret (a constructor either succeeds
//! or leaves its source intact, and every error is of a documented kind), and the exit purge of a caught
//! signal wipes every buffer in bounded time even while another thread sits inside an access.
#![cfg(target_os = "linux")]

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use guarantees::core_file::{self, MarkerSet};
use guarantees::{proc_stats, run_child, Scenario, Watchdog};
use memguard::{Enclave, LockedBuffer};
use securememory::memguard::MemguardSecretFactory;
use securememory::{ProtectedMemorySecretFactory, SecretFactory};

/// Constructing threads (the purging thread comes on top).
const THREADS: usize = 12;
/// Constructions in total, across all threads.
const OPERATIONS: usize = 500_000;
const LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    FromBytes,
    FromReader,
    Random,
    NewThenMove,
    EnclaveNew,
    EnclaveOpen,
    ProtectedMemorySecret,
    MemguardSecret,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::FromBytes,
        Op::FromReader,
        Op::Random,
        Op::NewThenMove,
        Op::EnclaveNew,
        Op::EnclaveOpen,
        Op::ProtectedMemorySecret,
        Op::MemguardSecret,
    ];
}

/// A nonzero source pattern unique to (thread, round).
fn pattern(thread: usize, round: usize) -> [u8; LEN] {
    let mut src = [0u8; LEN];
    for (i, b) in src.iter_mut().enumerate() {
        *b = (((thread * 131 + round * 7 + i * 13) % 255) + 1) as u8;
    }
    src
}

/// What went wrong, by operation, for the report.
#[derive(Default)]
struct Tally {
    ok: [usize; 8],
    documented_errors: Vec<(Op, String)>,
    lost_sources: Vec<(Op, String)>,
    undocumented_errors: Vec<(Op, String)>,
    wrong_bytes: Vec<(Op, String)>,
}

fn is_memory_or_random(e: &memguard::Error) -> bool {
    matches!(e, memguard::Error::Memory(_) | memguard::Error::Random(_))
}

/// Runs one operation and records how it went in `tally`.
fn run_op(op: Op, thread: usize, round: usize, sealed: &mut Option<Enclave>, tally: &mut Tally) {
    let original = pattern(thread, round);
    let mut src = original;
    let idx = Op::ALL.iter().position(|&o| o == op).unwrap_or(0);
    // (error description, documented?) when the operation failed.
    let failed: Option<(String, bool)> = match op {
        Op::FromBytes => match LockedBuffer::from_bytes(&mut src) {
            Ok(buf) => {
                if src != [0u8; LEN] {
                    tally
                        .wrong_bytes
                        .push((op, "source not wiped after success".into()));
                }
                if !buf.equal_to(&original) && buf.is_alive() {
                    tally
                        .wrong_bytes
                        .push((op, "buffer holds other bytes".into()));
                }
                None
            }
            Err(e) => Some((format!("{e:?}"), is_memory_or_random(&e))),
        },
        Op::FromReader => match LockedBuffer::from_reader(Cursor::new(&src[..]), LEN) {
            Ok(buf) => {
                if !buf.equal_to(&original) && buf.is_alive() {
                    tally
                        .wrong_bytes
                        .push((op, "buffer holds other bytes".into()));
                }
                None
            }
            Err(e) => Some((format!("{e:?}"), is_memory_or_random(&e.error))),
        },
        Op::Random => match LockedBuffer::random(LEN) {
            Ok(_) => None,
            Err(e) => Some((format!("{e:?}"), is_memory_or_random(&e))),
        },
        Op::NewThenMove => match LockedBuffer::new(LEN) {
            Ok(mut buf) => match buf.move_from(&mut src) {
                Ok(_) => None,
                // A purge may destroy the new, registered buffer before the move: documented, src untouched.
                Err(e) => Some((
                    format!("{e:?}"),
                    matches!(e, memguard::Error::Destroyed) || is_memory_or_random(&e),
                )),
            },
            Err(e) => Some((format!("{e:?}"), is_memory_or_random(&e))),
        },
        Op::EnclaveNew => match Enclave::new(&mut src) {
            Ok(enclave) => {
                *sealed = Some(enclave);
                None
            }
            Err(e) => Some((format!("{e:?}"), is_memory_or_random(&e))),
        },
        Op::EnclaveOpen => match sealed.as_ref().map(Enclave::open) {
            None | Some(Ok(_)) => None,
            // After a purge the key is new: documented.
            Some(Err(e)) => {
                let documented =
                    matches!(e, memguard::Error::DecryptionFailed) || is_memory_or_random(&e);
                *sealed = None;
                Some((format!("{e:?}"), documented))
            }
        },
        Op::ProtectedMemorySecret => match ProtectedMemorySecretFactory::new().new(&mut src) {
            Ok(_) => None,
            Err(e) => Some((
                format!("{e:?}"),
                matches!(
                    e,
                    securememory::Error::Memory(_) | securememory::Error::Random(_)
                ),
            )),
        },
        Op::MemguardSecret => match MemguardSecretFactory::new().new(&mut src) {
            Ok(_) => None,
            Err(e) => Some((
                format!("{e:?}"),
                matches!(
                    e,
                    securememory::Error::Memory(_)
                        | securememory::Error::Random(_)
                        | securememory::Error::Memguard(
                            memguard::Error::Memory(_) | memguard::Error::Random(_)
                        )
                ),
            )),
        },
    };
    match failed {
        None => tally.ok[idx] += 1,
        Some((what, documented)) => {
            let consumes_source = !matches!(op, Op::Random | Op::EnclaveOpen | Op::FromReader);
            if consumes_source && src != original {
                tally.lost_sources.push((op, what.clone()));
            }
            if documented {
                tally.documented_errors.push((op, what));
            } else {
                tally.undocumented_errors.push((op, what));
            }
        }
    }
}

fn constructors_racing_purge() -> Result<(), Box<dyn std::error::Error>> {
    let _watchdog = Watchdog::start(Duration::from_secs(240), "constructors racing purge");
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let purges = AtomicUsize::new(0);
    let total = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                memguard::purge();
                purges.fetch_add(1, Ordering::Relaxed);
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (next, total) = (&next, &total);
                s.spawn(move || {
                    let mut tally = Tally::default();
                    let mut sealed = None;
                    loop {
                        let round = next.fetch_add(1, Ordering::Relaxed);
                        if round >= OPERATIONS {
                            break;
                        }
                        let op = Op::ALL[(round / THREADS + thread) % Op::ALL.len()];
                        run_op(op, thread, round, &mut sealed, &mut tally);
                    }
                    let mut total = total.lock().unwrap();
                    for (t, o) in total.ok.iter_mut().zip(tally.ok) {
                        *t += o;
                    }
                    total.documented_errors.extend(tally.documented_errors);
                    total.lost_sources.extend(tally.lost_sources);
                    total.undocumented_errors.extend(tally.undocumented_errors);
                    total.wrong_bytes.extend(tally.wrong_bytes);
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let total = total.into_inner().unwrap();
    let summarize = |list: &[(Op, String)]| {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for (op, what) in list {
            *counts.entry(format!("{op:?}: {what}")).or_default() += 1;
        }
        counts
    };
    eprintln!(
        "{OPERATIONS} operations on {THREADS} threads, {} purges",
        purges.load(Ordering::Relaxed)
    );
    for (op, ok) in Op::ALL.iter().zip(total.ok) {
        eprintln!("  {op:?}: {ok} ok");
    }
    eprintln!(
        "documented errors: {:?}",
        summarize(&total.documented_errors)
    );
    eprintln!(
        "undocumented errors: {:?}",
        summarize(&total.undocumented_errors)
    );
    eprintln!(
        "failed with the source wiped: {:?}",
        summarize(&total.lost_sources)
    );
    eprintln!("wrong bytes: {:?}", summarize(&total.wrong_bytes));
    if !total.lost_sources.is_empty()
        || !total.undocumented_errors.is_empty()
        || !total.wrong_bytes.is_empty()
    {
        return Err(
            "a constructor lost its source, returned an undocumented error or wrong bytes".into(),
        );
    }
    Ok(())
}

/// The markers the exit scan looks for, kept masked (see [`MarkerSet`]).
static MARKERS: OnceLock<MarkerSet> = OnceLock::new();

extern "C" fn scan_at_exit() {
    if let Some(set) = MARKERS.get() {
        let hits = proc_stats::scan_own_memory(set);
        let found: Vec<usize> = hits.iter().map(|(i, _)| *i).collect();
        eprintln!("GUARANTEES: markers found after the exit purge: {found:?}");
    }
}

/// Buffers holding markers, one of them held by a thread inside a 20 s access; `catch` installs the handler
/// and returns the signal to raise. The process must exit with the signal code, and by then (the scan runs in
/// an `atexit` handler, after the purge) no marker may be left in its memory.
fn exit_purge_wipes_everything(catch: fn() -> i32) -> Result<(), Box<dyn std::error::Error>> {
    const COUNT: usize = 6;
    let hexes: Vec<String> = (0..COUNT).map(|_| core_file::random_hex(32)).collect();
    let mut buffers = Vec::new();
    for hex in &hexes {
        let mut buf = LockedBuffer::new(32)?;
        core_file::decode_hex_into(hex, &mut buf.bytes_mut()?);
        buf.freeze()?;
        buffers.push(buf);
    }
    let set = MARKERS.get_or_init(|| MarkerSet::from_hex(&hexes));
    let found = proc_stats::scan_own_memory(set).len();
    if found < COUNT {
        return Err(format!("the scan found {found} of {COUNT} markers before the signal").into());
    }
    // SAFETY: `scan_at_exit` is a plain `extern "C" fn` with static lifetime; it only reads a `OnceLock`,
    // `/proc` and writes to stderr.
    if unsafe { libc::atexit(scan_at_exit) } != 0 {
        return Err("atexit failed".into());
    }
    let held: &'static LockedBuffer = Box::leak(Box::new(buffers.pop().ok_or("no buffer")?));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let guard = held.bytes();
        let _ = tx.send(());
        std::thread::sleep(Duration::from_secs(20));
        drop(guard);
    });
    rx.recv()?;
    let sig = catch();
    // SAFETY: raise only sends a signal to the calling thread.
    unsafe { libc::raise(sig) };
    std::thread::sleep(Duration::from_secs(30));
    drop(buffers);
    Err("the process survived the signal".into())
}

fn interrupt_exit_wipes_everything() -> Result<(), Box<dyn std::error::Error>> {
    exit_purge_wipes_everything(|| {
        memguard::catch_interrupt().expect("catch_interrupt");
        libc::SIGINT
    })
}

fn signal_exit_wipes_everything() -> Result<(), Box<dyn std::error::Error>> {
    exit_purge_wipes_everything(|| {
        memguard::catch_signal(|_| {}, &[libc::SIGTERM]).expect("catch_signal");
        libc::SIGTERM
    })
}

#[test]
fn child_entry() {
    let scenarios: &[(&str, Scenario)] = &[
        ("constructors_racing_purge", constructors_racing_purge),
        (
            "interrupt_exit_wipes_everything",
            interrupt_exit_wipes_everything,
        ),
        ("signal_exit_wipes_everything", signal_exit_wipes_everything),
    ];
    guarantees::dispatch(scenarios);
}

/// 12 threads construct buffers, enclaves and secrets of both flavours while another purges in a loop: no
/// constructor fails with its source wiped, every error is of a documented kind, no buffer holds other bytes.
#[test]
fn constructors_racing_purge_keep_their_sources() {
    let out = run_child("constructors_racing_purge")
        .timeout(Duration::from_secs(300))
        .run();
    eprintln!("{}", out.stderr);
    out.assert_success();
}

fn assert_wiped_exit(scenario: &str) {
    // Far below the 20 s access the child holds: the exit may wait for it the purge's grace, no more.
    let out = run_child(scenario).timeout(Duration::from_secs(8)).run();
    assert!(
        !out.timed_out && out.status.code() == Some(memguard::SIGNAL_EXIT_CODE),
        "expected exit code {}; {}",
        memguard::SIGNAL_EXIT_CODE,
        out.describe()
    );
    assert!(
        out.stderr
            .contains("GUARANTEES: markers found after the exit purge: []"),
        "{}",
        out.describe()
    );
}

#[test]
fn catch_interrupt_wipes_every_buffer_even_one_in_use_on_another_thread() {
    assert_wiped_exit("interrupt_exit_wipes_everything");
}

#[test]
fn catch_signal_wipes_every_buffer_even_one_in_use_on_another_thread() {
    assert_wiped_exit("signal_exit_wipes_everything");
}
