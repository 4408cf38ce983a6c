//! The sealed flavour (`securememory::sealed`) has every behaviour the two page-backed flavours have: the
//! generic tests of `secret.rs` and `race.rs` run for it too (round trips at every size, closed errors, nested
//! closures sharing one decrypted copy, close waiting for readers and refused inside its own closure, panics,
//! bad sizes, `Debug`, concurrent close). Here, what differs or is its own: a megabyte, the accessors only it
//! has, concurrent closures sharing one decrypted copy, drop, `reader()`, the protection report (no locked
//! bytes of its own), creation from a closure or a reader, quarantine and fork. What is proper to it (no locked
//! memory per secret, tamper, key and scratch) is proven in `guarantees/tests/sealed_*.rs`.

mod common;

use std::io::Read;
use std::sync::{Arc, Barrier};

use common::{
    assert_platform_protections, assert_round_trip, child_scenario, pattern, run_child, secret_of,
    Flavour, Sealed, KEY,
};
use securememory::sealed::{SealedSecret, SealedSecretFactory};
use securememory::{Error, Locking, Secret, SecretExtensions, SecretFactory};

fn sealed(bytes: &[u8]) -> SealedSecret {
    secret_of::<Sealed>(bytes)
}

/// A megabyte round-trips through the sealed flavour too (the sizes every flavour runs are in `secret.rs`).
#[test]
fn round_trip_of_a_megabyte() {
    assert_round_trip::<Sealed>(&pattern(1 << 20, 0));
}

/// A closed sealed secret refuses its own accessors as well as the generic ones (`secret.rs`).
#[test]
fn closed_secret_refuses_the_reader_and_the_sealed_parts() {
    let s = sealed(KEY);
    s.close().unwrap();
    assert!(matches!(s.reader(), Err(Error::Closed)));
    assert!(matches!(s.sealed_parts(), Err(Error::Closed)));
    assert!(matches!(s.tamper(|_| ()), Err(Error::Closed)));
}

/// Several threads inside closures on one secret at once see one decrypted copy (the same address); on many
/// secrets each has its own.
#[test]
fn concurrent_closures_share_one_decrypted_copy() {
    const THREADS: usize = 6;
    let secrets: Vec<Arc<SealedSecret>> = (0..3u8)
        .map(|i| Arc::new(sealed(&pattern(48, i))))
        .collect();
    let all_inside = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, all_inside) = (Arc::clone(&secrets[t % 3]), Arc::clone(&all_inside));
            std::thread::spawn(move || {
                s.with_bytes(|b| {
                    all_inside.wait();
                    let ok = b == &pattern(48, (t % 3) as u8)[..];
                    let readers = Sealed::accessors(&s);
                    all_inside.wait();
                    Ok((b.as_ptr() as usize, ok, readers))
                })
                .unwrap()
            })
        })
        .collect();
    let seen: Vec<(usize, bool, usize)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (t, (ptr, ok, readers)) in seen.iter().enumerate() {
        assert!(ok, "thread {t} saw wrong bytes");
        assert_eq!(*readers, THREADS / 3, "thread {t}");
        assert_eq!(*ptr, seen[t % 3].0, "thread {t} had a copy of its own");
    }
    assert_ne!(seen[0].0, seen[1].0);
    assert_ne!(seen[1].0, seen[2].0);
    for s in &secrets {
        assert_eq!(Sealed::accessors(s), 0);
    }
}

/// Dropping closes: a quarantine handle taken before the drop holds the retired pages afterwards (which only a
/// close puts there).
#[test]
fn drop_closes() {
    let s = sealed(KEY);
    let q = s.quarantine();
    assert!(!q.holds_pages());
    drop(s);
    assert!(q.holds_pages(), "dropping did not close the secret");
}

#[test]
fn reader_reads_the_plaintext() {
    let data = pattern(5000, 9);
    let s = sealed(&data);
    let mut out = Vec::new();
    s.reader().unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
    let mut partial = [0u8; 10];
    let mut r = s.reader().unwrap();
    r.read_exact(&mut partial).unwrap();
    assert_eq!(partial[..], data[..10]);
    s.close().unwrap();
    assert!(matches!(s.reader(), Err(Error::Closed)));
}

#[test]
fn protections_report_sealed_and_no_locked_bytes() {
    let s = sealed(KEY);
    let r = s.protections();
    assert!(r.sealed);
    assert_eq!(
        r.locked_bytes, 0,
        "a sealed secret locks nothing of its own"
    );
    assert!(r.locked, "the scratch copies must be locked");
    assert!(!r.guard_pages && !r.canary);
    assert_platform_protections(&r);
    let best = SealedSecretFactory::with_locking(Locking::BestEffort)
        .new(&mut KEY.to_vec())
        .unwrap();
    assert!(best.protections().sealed);
    assert!(!best.protections().locked);
    assert_eq!(best.protections().locked_bytes, 0);
    assert_eq!(best.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), KEY);
}

#[test]
fn create_with_and_from_reader() {
    let data = pattern(100, 3);
    let s = Sealed::factory()
        .create_with(100, &mut |pages| {
            assert_eq!(pages.len(), 100);
            assert!(pages.iter().all(|&b| b == 0), "the fill gets zeroed memory");
            pages.copy_from_slice(&data);
            Ok(())
        })
        .unwrap();
    assert_eq!(s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), data);

    let err = Sealed::factory()
        .create_with(16, &mut |_| Err(Error::action("no input")))
        .unwrap_err();
    assert_eq!(err.to_string(), "no input");
    assert!(matches!(
        Sealed::factory().create_with(0, &mut |_| Ok(())),
        Err(Error::InvalidLength { len: 0 })
    ));

    let mut input: &[u8] = b"0123456789abcdef0123456789abcdef trailing";
    let s = Sealed::factory().from_reader(&mut input, 32).unwrap();
    assert_eq!(input, b" trailing");
    assert_eq!(
        s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(),
        b"0123456789abcdef0123456789abcdef"
    );
    let mut short: &[u8] = b"too short";
    let err = Sealed::factory().from_reader(&mut short, 32).unwrap_err();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{err:?}"
    );
    let mut all: &[u8] = b"a token of unknown length";
    let s = Sealed::factory()
        .from_reader_to_end(&mut all, 4096)
        .unwrap();
    assert_eq!(s.len(), 25);
}

/// A quarantine taken inside a closure retires that window's scratch copy (a pointer kept past the closure
/// can never read another secret's plaintext through a reused region): the handle holds it once the window
/// closes, and the secret stays usable through a fresh window.
#[test]
fn quarantine_inside_a_closure_retires_the_window() {
    let s = sealed(KEY);
    let (q, ptr) = s
        .with_bytes(|b| {
            let q = s.quarantine();
            assert!(!q.holds_pages(), "nothing retired while the window is open");
            Ok((q, b.as_ptr() as usize))
        })
        .unwrap();
    assert!(q.holds_pages(), "the window's scratch was not retired");
    // A new window decrypts into another region: the retired one is never reused while the handle lives.
    let again = s
        .with_bytes(|b| Ok((b == KEY, b.as_ptr() as usize)))
        .unwrap();
    assert!(again.0);
    assert_ne!(again.1, ptr, "a retired scratch region was reused");
    s.close().unwrap();
    assert!(q.holds_pages());
    drop(q);
}

#[test]
fn quarantine_outside_a_closure_holds_pages_after_close() {
    let s = sealed(KEY);
    let q = s.quarantine();
    assert!(s.with_bytes(|b| Ok(b == KEY)).unwrap());
    assert!(
        !q.holds_pages(),
        "a window opened after the quarantine is not retired"
    );
    s.close().unwrap();
    assert!(q.holds_pages());
    let closed = sealed(KEY);
    closed.close().unwrap();
    assert!(!closed.quarantine().holds_pages());
}

/// In a child (with an alarm as watchdog): a forked grandchild gets `Error::Forked` from the parent's sealed
/// secret (reading, closing and dropping it do nothing), and new sealed secrets work there under its own key;
/// the parent's secret is intact afterwards.
#[cfg(unix)]
#[test]
fn forked_child_refuses_the_parents_secrets_and_makes_new_ones() {
    const NAME: &str = "forked_child_refuses_the_parents_secrets_and_makes_new_ones";
    if child_scenario().is_some() {
        fork_scenario();
        std::process::exit(0);
    }
    let (status, out) = run_child(NAME, "fork", &[]);
    assert!(status.success(), "child failed ({status}):\n{out}");
    assert!(out.contains("grandchild ok"), "{out}");
}

/// Forks once more: the new child makes, reads and closes a sealed secret. Whether it did.
#[cfg(unix)]
fn second_generation_works() -> bool {
    // SAFETY: the calling process has one thread (a forked child of a one-thread test), so no lock is held
    // by a thread that the new child lacks.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the new child's own watchdog (alarms are not inherited).
        unsafe { libc::alarm(30) };
        let ok = SealedSecretFactory::new()
            .new(&mut pattern(24, 9))
            .and_then(|s| {
                let read = s.with_bytes(|b| Ok(b == &pattern(24, 9)[..]))?;
                s.close()?;
                Ok(read)
            })
            .unwrap_or(false);
        // SAFETY: ends the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(i32::from(!ok)) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child (or -1, which waitpid refuses); `status` is a valid out pointer.
    pid > 0
        && unsafe { libc::waitpid(pid, &mut status, 0) } == pid
        && libc::WIFEXITED(status)
        && libc::WEXITSTATUS(status) == 0
}

#[cfg(unix)]
fn fork_scenario() {
    // SAFETY: `alarm` has no preconditions; SIGALRM's default action ends a hung child.
    unsafe { libc::alarm(60) };
    let s = sealed(KEY);
    let random = Sealed::factory().create_random(64).unwrap();
    // A window opened and closed, so the scratch cache holds a region inherited by nobody.
    assert!(s.with_bytes(|b| Ok(b == KEY)).unwrap());
    // SAFETY: this process runs one test on one thread (`--test-threads=1`), so no lock is held by a thread
    // that the child lacks.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above (the grandchild's own watchdog: alarms are not inherited).
        unsafe { libc::alarm(30) };
        let mut failures = Vec::new();
        if securememory::sealed::cached_scratch_bytes() != 0 {
            failures.push("the child started with the parent's scratch cache");
        }
        if !matches!(s.with_bytes(|_| Ok(())), Err(Error::Forked)) {
            failures.push("with_bytes on the parent's secret was not refused");
        }
        if !matches!(
            random.with_bytes_func(|b| Ok(b.to_vec())),
            Err(Error::Forked)
        ) {
            failures.push("with_bytes_func on the parent's random secret was not refused");
        }
        if !matches!(s.close(), Err(Error::Forked)) {
            failures.push("close of the parent's secret was not refused");
        }
        let fresh = SealedSecretFactory::new().new(&mut pattern(40, 5));
        match fresh {
            Ok(fresh) => {
                if fresh.with_bytes(|b| Ok(b == &pattern(40, 5)[..])).ok() != Some(true) {
                    failures.push("a new secret in the child did not read back");
                }
                if fresh.close().is_err() {
                    failures.push("a new secret in the child did not close");
                }
            }
            Err(_) => failures.push("a new secret could not be made in the child"),
        }
        match SealedSecretFactory::new().create_random(32) {
            Ok(r) if r.with_bytes(|b| Ok(b.len())).ok() == Some(32) => {}
            _ => failures.push("a new random secret did not work in the child"),
        }
        // A second generation (the key and the protection key are per process, inherited by nobody) works
        // the same way.
        if !second_generation_works() {
            failures.push("a sealed secret did not work in a second forked generation");
        }
        // Dropping the parent's secrets in the child is quiet and touches nothing of the parent's.
        drop(s);
        drop(random);
        let code = if failures.is_empty() {
            println!("grandchild ok");
            0
        } else {
            eprintln!("grandchild failures: {failures:?}");
            1
        };
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: ends the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "grandchild ended with status {status:#x}"
    );
    assert!(
        s.with_bytes(|b| Ok(b == KEY)).unwrap(),
        "the parent's secret after the fork"
    );
    assert_eq!(random.with_bytes(|b| Ok(b.len())).unwrap(), 64);
    s.close().unwrap();
}
