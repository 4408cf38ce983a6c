//! Enclave and Coffer: round trips, tamper detection, rekeying under load. (Purge tests are in purge.rs:
//! a purge here would break the other tests' enclaves.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use memcall::{fault, Op};
use memguard::{Coffer, Enclave, Error, LockedBuffer, OVERHEAD};

#[test]
fn round_trip_wipes_the_source_and_opens_frozen() {
    let mut src = *b"hello";
    let enclave = Enclave::new(&mut src).unwrap();
    assert_eq!(src, [0u8; 5]);
    assert_eq!(enclave.size(), 5);
    assert_eq!(OVERHEAD, 40);
    assert_eq!(enclave.ciphertext().len(), 45);
    let opened = enclave.open().unwrap();
    assert!(opened.equal_to(b"hello"));
    assert!(!opened.is_mutable());
    // Open twice: the enclave is not consumed.
    assert!(enclave.open().unwrap().equal_to(b"hello"));
    assert!(matches!(
        Enclave::new(&mut []),
        Err(Error::InvalidLength { len: 0 })
    ));
    assert!(format!("{enclave:?}").contains("size: 5"));
}

#[test]
fn seal_destroys_the_buffer_and_random_works() {
    let buf = LockedBuffer::from_bytes(&mut [42u8; 100]).unwrap();
    let enclave = buf.seal().unwrap();
    assert!(enclave.open().unwrap().equal_to(&[42u8; 100]));
    let random = Enclave::random(32).unwrap();
    assert_eq!(random.size(), 32);
    assert!(!random.open().unwrap().equal_to(&[0u8; 32]));
    assert!(Enclave::random(0).is_err());
    // Two seals of the same plaintext differ (random nonce).
    let a = Enclave::new(&mut [1u8; 16]).unwrap();
    let b = Enclave::new(&mut [1u8; 16]).unwrap();
    assert_ne!(a.ciphertext(), b.ciphertext());
}

#[test]
fn flipped_ciphertext_bits_fail_and_leak_nothing() {
    let enclave = Enclave::new(&mut [9u8; 64]).unwrap();
    for i in [0, 23, 24, 39, 40, 41, enclave.ciphertext().len() - 1] {
        let mut bad = enclave.clone();
        bad.ciphertext_mut()[i] ^= 0x01;
        assert!(
            matches!(bad.open(), Err(Error::DecryptionFailed)),
            "byte {i}"
        );
    }
    assert!(enclave.open().unwrap().equal_to(&[9u8; 64]));
}

/// A failed open destroys its buffer: locked memory goes back to where it was (checked in a child process,
/// since locked bytes are counted per process).
#[test]
fn failed_open_releases_its_buffer() {
    if std::env::var("MEMGUARD_TEST_CHILD").as_deref() == Ok("open_leak") {
        let enclave = Enclave::new(&mut [1u8; 8]).unwrap();
        let mut bad = enclave.clone();
        bad.ciphertext_mut()[30] ^= 4;
        drop(bad.open()); // warm-up: the key already exists, this makes sure nothing else is lazily made
                          // The rekeying thread also runs on a private stack: one re-split overlapping an open would map a
                          // second, cached stack and count as locked memory.
        memguard::stop_rekeying();
        // Where the OS does not count locked bytes (Windows: `None`), the registry count still proves it.
        let before = memcall::locked_bytes();
        assert!(before.is_some() || !cfg!(target_os = "linux"), "VmLck");
        let registered = memguard::registered_count();
        for _ in 0..100 {
            assert!(matches!(bad.open(), Err(Error::DecryptionFailed)));
        }
        assert_eq!(memcall::locked_bytes(), before);
        assert_eq!(memguard::registered_count(), registered);
        std::process::exit(0);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "failed_open_releases_its_buffer", "--nocapture"])
        .env("MEMGUARD_TEST_CHILD", "open_leak")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn open_reports_allocation_failure() {
    let enclave = Enclave::new(&mut [1u8; 8]).unwrap();
    // Every lock fails while the guard lives (the page caches retry once at the limit).
    let _f = fault::fail(Op::Lock).times(u32::MAX).arm();
    assert!(matches!(enclave.open(), Err(Error::Memory(_))));
}

#[test]
fn eight_threads_seal_and_open_for_two_seconds_while_the_key_is_re_split() {
    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // The background thread re-splits every 500 ms; this one does it back to back for more contention.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                memguard::rekey().unwrap();
            }
        });
        for t in 0..8u8 {
            let (stop, rounds) = (&stop, &rounds);
            s.spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let mut plain = [t; 48];
                    plain[..4].copy_from_slice(&i.to_le_bytes());
                    let expected = plain;
                    let enclave = Enclave::new(&mut plain).unwrap();
                    let opened = enclave.open().unwrap();
                    assert!(opened.equal_to(&expected), "thread {t} round {i}");
                    i += 1;
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(memguard::is_rekeying());
    assert!(rounds.load(Ordering::Relaxed) > 8);
}

#[test]
fn coffer_key_survives_rekeying_and_dies_with_destroy() {
    let coffer = Coffer::new().unwrap();
    let key = coffer.with_key(|k| *k).unwrap();
    assert_ne!(key, [0u8; 32]);
    let view = coffer.view().unwrap();
    assert!(view.equal_to(&key) && view.is_mutable());
    for _ in 0..100 {
        coffer.rekey().unwrap();
        assert_eq!(coffer.with_key(|k| *k).unwrap(), key);
    }
    coffer.start_rekeying(Duration::from_millis(1)).unwrap();
    assert!(coffer.is_rekeying());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(coffer.with_key(|k| *k).unwrap(), key);
    coffer.stop_rekeying();
    assert!(!coffer.is_rekeying());
    coffer.destroy().unwrap();
    assert!(coffer.is_destroyed());
    assert!(matches!(coffer.with_key(|_| ()), Err(Error::Destroyed)));
    assert!(matches!(coffer.rekey(), Err(Error::Destroyed)));
    assert!(matches!(coffer.view(), Err(Error::Destroyed)));
    coffer.destroy().unwrap();
}

#[test]
fn coffer_creation_failure_at_any_lock_is_typed() {
    for skip in 0..3 {
        // Not a lock-limit errno: at the limit the private stack goes on unlocked, and whether this call maps
        // one (or finds one cached) depends on the other tests running.
        let _f = fault::fail(Op::Lock).after(skip).errno(libc::EINVAL).arm();
        let made = Coffer::new();
        assert!(
            matches!(made, Err(Error::Memory(_))),
            "lock #{skip}: {made:?}"
        );
    }
}

#[test]
fn destroy_stops_the_rekeying_thread() {
    let coffer = Coffer::new().unwrap();
    coffer.start_rekeying(Duration::from_millis(5)).unwrap();
    coffer.destroy().unwrap();
    assert!(!coffer.is_rekeying());
}

#[test]
fn another_enclaves_ciphertext_does_not_open_here() {
    let a = Enclave::new(&mut [1u8; 32]).unwrap();
    let b = Enclave::new(&mut [2u8; 32]).unwrap();
    let mut spliced = a.clone();
    spliced.ciphertext_mut().copy_from_slice(b.ciphertext());
    assert!(matches!(spliced.open(), Err(Error::DecryptionFailed)));
    // Clones share the identity: a clone's ciphertext opens in the original.
    let mut a2 = a.clone();
    let fresh = a.clone();
    a2.ciphertext_mut().copy_from_slice(fresh.ciphertext());
    assert!(a2.open().unwrap().equal_to(&[1u8; 32]));
    // Both still open with their own ciphertext.
    assert!(a.open().unwrap().equal_to(&[1u8; 32]));
    assert!(b.open().unwrap().equal_to(&[2u8; 32]));
}

/// Runs `f` in a forked child with a watchdog (the child is killed after 10 s); returns its exit code.
#[cfg(unix)]
fn in_forked_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork in a multi-threaded test process. The child uses only this crate (whose process-wide
    // state is per fork epoch), the allocator (fork-safe in glibc) and `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: `alarm` is async-signal-safe; SIGALRM's default action kills the child: the watchdog.
        unsafe { libc::alarm(10) };
        let code = f();
        // SAFETY: `_exit` skips the parent's atexit handlers and the test harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally (status {status:#x}): killed by the watchdog or a fault"
    );
    libc::WEXITSTATUS(status)
}

/// Runs `scenario` in a fresh process of this test binary (so no other test allocates meanwhile), with the
/// process-wide caches of locked pages emptied before each fork. (Those caches are owned by the process that
/// fills them; emptying them keeps this test about the enclave key alone.)
fn alone(test: &str, scenario: fn()) {
    if common::scenario().as_deref() == Some(test) {
        scenario();
        std::process::exit(0);
    }
    common::assert_exit_code(&common::run_child(test, test), 0);
}

/// In a forked child: the parent's enclaves give `Forked`, new ones work under a fresh key, a coffer of the
/// parent gives `Forked` and dropping it does nothing, and purge returns within 1 s (the parent's rekeying
/// thread is never joined). The parent keeps sealing on another thread and re-splitting a coffer every
/// millisecond while it forks, so the child may inherit the key's locks held mid-operation.
#[cfg(unix)]
#[test]
fn a_forked_child_gets_a_fresh_key_and_typed_errors_for_the_parents() {
    alone(
        "a_forked_child_gets_a_fresh_key_and_typed_errors_for_the_parents",
        forked_child_scenario,
    );
}

#[cfg(unix)]
fn forked_child_scenario() {
    let parent_enclave = Enclave::new(&mut [5u8; 40]).unwrap();
    assert!(parent_enclave.open().unwrap().equal_to(&[5u8; 40]));
    let coffer = Coffer::new().unwrap();
    coffer.start_rekeying(Duration::from_millis(1)).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                drop(Enclave::new(&mut [3u8; 64]).unwrap());
            }
        })
    };
    for round in 0..20 {
        memcall::pool::trim_all();
        let code = in_forked_child(|| {
            let step = |ok: bool, code: i32| if ok { 0 } else { code };
            let checks = [
                step(matches!(parent_enclave.open(), Err(Error::Forked)), 1),
                step(
                    Enclave::new(&mut [7u8; 16])
                        .and_then(|e| e.open())
                        .is_ok_and(|b| b.equal_to(&[7u8; 16])),
                    2,
                ),
                step(matches!(coffer.with_key(|_| ()), Err(Error::Forked)), 3),
                step(coffer.is_destroyed() && !coffer.is_rekeying(), 4),
                step(Coffer::new().and_then(|c| c.view()).is_ok(), 5),
            ];
            if let Some(&code) = checks.iter().find(|&&c| c != 0) {
                return code;
            }
            let start = Instant::now();
            memguard::purge();
            if start.elapsed() > Duration::from_secs(1) {
                return 6;
            }
            // After the purge the child's own key is new again and works.
            let e = Enclave::new(&mut [9u8; 8]).unwrap();
            step(e.open().is_ok_and(|b| b.equal_to(&[9u8; 8])), 7)
        });
        assert_eq!(code, 0, "round {round}: child check {code} failed");
    }
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    // The parent's key and coffer are untouched by the children.
    assert!(parent_enclave.open().unwrap().equal_to(&[5u8; 40]));
    assert!(coffer.is_rekeying());
    coffer.with_key(|_| ()).unwrap();
}

/// A coffer of the user's own is reached by purge, also when purge is called from inside its `with_key`.
#[test]
fn a_user_coffer_is_destroyed_by_purge_even_from_inside_with_key() {
    alone(
        "a_user_coffer_is_destroyed_by_purge_even_from_inside_with_key",
        || {
            let coffer = Coffer::new().unwrap();
            memguard::purge();
            assert!(coffer.is_destroyed());
            assert!(matches!(coffer.with_key(|_| ()), Err(Error::Destroyed)));
            let inner = Coffer::new().unwrap();
            inner.with_key(|_| memguard::purge()).unwrap();
            assert!(inner.is_destroyed());
        },
    );
}

/// An open racing purges either succeeds or fails with `DecryptionFailed` (never `Destroyed`), and a seal
/// racing them succeeds under whichever key is current.
#[test]
fn open_and_seal_racing_purge_give_only_documented_outcomes() {
    alone(
        "open_and_seal_racing_purge_give_only_documented_outcomes",
        || {
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let (mut opened, mut failed) = (0usize, 0usize);
                        while !stop.load(Ordering::Relaxed) {
                            let enclave = Enclave::new(&mut [4u8; 48]).expect("seal");
                            for _ in 0..5 {
                                match enclave.open() {
                                    Ok(buf) => {
                                        // A purge may reach the new buffer right after it is returned.
                                        assert!(buf.equal_to(&[4u8; 48]) || !buf.is_alive());
                                        opened += 1;
                                    }
                                    Err(Error::DecryptionFailed) => failed += 1,
                                    Err(other) => panic!("undocumented error {other:?}"),
                                }
                            }
                        }
                        (opened, failed)
                    })
                })
                .collect();
            for _ in 0..200 {
                memguard::purge();
                std::thread::sleep(Duration::from_micros(200));
            }
            stop.store(true, Ordering::Relaxed);
            let (mut opened, mut failed) = (0, 0);
            for w in workers {
                let (o, f) = w.join().unwrap();
                opened += o;
                failed += f;
            }
            assert!(opened > 0 && failed > 0, "opened {opened}, failed {failed}");
        },
    );
}

#[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
fn deep(n: u64) -> u64 {
    let frame = [n as u8; 512];
    std::hint::black_box(&frame);
    if n > 10_000_000 {
        return 0;
    }
    deep(n + 1).wrapping_add(u64::from(frame[7]))
}

/// Running off the end of the private stack hits its guard page: a fault, not a silent write into whatever
/// lies below. (The private stack exists on Unix for x86_64 and aarch64; elsewhere the keyed operation runs on
/// the thread's own stack.)
#[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
#[test]
fn overflowing_the_private_stack_faults_on_its_guard_page() {
    if common::scenario().as_deref() == Some("overflow") {
        let coffer = Coffer::new().unwrap();
        let out = coffer.with_key(|_| deep(0)).unwrap();
        std::hint::black_box(out);
        common::child_survived();
    }
    let out = common::run_child(
        "overflowing_the_private_stack_faults_on_its_guard_page",
        "overflow",
    );
    common::assert_faulted(&out);
}
