//! `memguard::purge()` closes every live secret of every flavour and never waits unboundedly: a secret whose
//! closure runs on the purging thread is closed when that closure ends; one whose closure runs on another
//! thread past the grace period is wiped under it (a late read faults, in a child process here). Its own
//! binary: purge is process-wide.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{child_scenario, is_fault, run_child, secret_of, Flavour, Mg, Pm, Sealed, KEY};
use securememory::{Error, Secret, SecretExtensions};

/// Purge is process-wide: the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn purge_inside_a_closure_closes_the_secret_when_the_closure_ends<F: Flavour>() {
    let a = secret_of::<F>(KEY);
    let b = secret_of::<F>(KEY);
    let seen = b
        .with_bytes(|bytes| {
            ::memguard::purge();
            // The closure's own view stays valid until it returns.
            Ok(bytes == KEY)
        })
        .unwrap();
    assert!(seen, "the bytes stayed intact under the running closure");
    assert!(a.is_closed(), "purge closed the idle secret");
    assert!(
        b.is_closed(),
        "the busy secret was closed when its closure ended"
    );
    assert!(matches!(a.with_bytes(|_| Ok(())), Err(Error::Closed)));
    assert!(matches!(b.with_bytes(|_| Ok(())), Err(Error::Closed)));
    b.close().unwrap();
}

#[test]
fn purge_closes_page_backed_secrets() {
    let _serial = serial();
    purge_inside_a_closure_closes_the_secret_when_the_closure_ends::<Pm>();
    purge_inside_a_closure_closes_the_secret_when_the_closure_ends::<Mg>();
}

#[test]
fn sealed_purge_inside_a_closure_closes_the_secret() {
    let _serial = serial();
    purge_inside_a_closure_closes_the_secret_when_the_closure_ends::<Sealed>();
}

fn purge_waits_for_a_short_closure_on_another_thread<F: Flavour>() {
    let secret = std::sync::Arc::new(secret_of::<F>(KEY));
    let (inside, entered) = mpsc::channel();
    let reader = {
        let secret = std::sync::Arc::clone(&secret);
        std::thread::spawn(move || {
            secret.with_bytes(|bytes| {
                inside.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                Ok(bytes == KEY)
            })
        })
    };
    entered.recv().unwrap();
    ::memguard::purge();
    assert!(secret.is_closed(), "purge returned after the closure ended");
    assert!(
        reader.join().unwrap().unwrap(),
        "the closure read intact bytes"
    );
}

#[test]
fn purge_waits_for_short_closures_within_the_grace() {
    let _serial = serial();
    purge_waits_for_a_short_closure_on_another_thread::<Pm>();
    purge_waits_for_a_short_closure_on_another_thread::<Mg>();
}

#[test]
fn sealed_purge_waits_for_a_short_closure() {
    let _serial = serial();
    purge_waits_for_a_short_closure_on_another_thread::<Sealed>();
}

/// In a child: a closure on another thread outlives the grace; purge returns after about the grace, the
/// secret is closed for everyone else, and the closure's next read faults (SIGSEGV; an access violation on
/// Windows), never seeing other data.
fn late_reader_faults<F: Flavour>() {
    let secret: &'static F::Secret = Box::leak(Box::new(secret_of::<F>(KEY)));
    let (inside, entered) = mpsc::channel();
    let (go, read_again) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = secret.with_bytes(|bytes| {
            inside.send(()).unwrap();
            read_again.recv().unwrap();
            println!("late read: {}", std::hint::black_box(bytes)[0]);
            Ok(())
        });
        println!("the late reader returned");
    });
    entered.recv().unwrap();
    let started = Instant::now();
    ::memguard::purge();
    let took = started.elapsed();
    assert!(
        took < ::memguard::PURGE_GRACE * 4,
        "purge returned after {took:?}"
    );
    assert!(matches!(secret.with_bytes(|_| Ok(())), Err(Error::Closed)));
    println!("purge returned");
    go.send(()).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    println!("the late read did not fault");
}

/// Runs `late_reader_faults` for `scenario` in a child; its late read must fault.
fn late_read_faults_in_a_child(test_name: &str, scenario: &str) {
    let (status, out) = run_child(test_name, scenario, &[]);
    assert!(out.contains("purge returned"), "{scenario}: {out}");
    assert!(!out.contains("late read:"), "{scenario}: {out}");
    assert!(
        is_fault(&status),
        "{scenario}: the late read must fault: {status:?}\n{out}"
    );
}

#[test]
fn purge_past_the_grace_wipes_under_a_long_closure() {
    if let Some(scenario) = child_scenario() {
        match scenario.as_str() {
            "pm" => late_reader_faults::<Pm>(),
            _ => late_reader_faults::<Mg>(),
        }
        return;
    }
    let _serial = serial();
    for scenario in ["pm", "mg"] {
        late_read_faults_in_a_child("purge_past_the_grace_wipes_under_a_long_closure", scenario);
    }
}

/// As above for a sealed secret: the purge wipes its scratch copy under the closure and makes it no-access.
#[test]
fn sealed_purge_past_the_grace_wipes_the_scratch_copy() {
    if child_scenario().is_some() {
        late_reader_faults::<Sealed>();
        return;
    }
    let _serial = serial();
    late_read_faults_in_a_child(
        "sealed_purge_past_the_grace_wipes_the_scratch_copy",
        "sealed",
    );
}

fn quarantined_pages_are_never_reused<F: Flavour>() {
    let first = secret_of::<F>(KEY);
    let address = first
        .with_bytes(|bytes| Ok(bytes.as_ptr() as usize))
        .unwrap();
    let hold = first.quarantine();
    assert!(!hold.holds_pages());
    first.close().unwrap();
    assert!(hold.holds_pages(), "the closed secret's pages are held");
    // Many new secrets of the same size: none may land on the quarantined pages while the hold lives.
    let others: Vec<_> = (0..64)
        .map(|_| secret_of::<F>(b"another secret of 32 bytes here!"))
        .collect();
    for other in &others {
        let at = other.with_bytes(|b| Ok(b.as_ptr() as usize)).unwrap();
        assert_ne!(
            at, address,
            "a quarantined page was handed to another secret"
        );
    }
    drop(first);
    drop(hold);
    for other in others {
        other.close().unwrap();
    }
    // A handle taken after close holds nothing.
    let late = secret_of::<F>(KEY);
    late.close().unwrap();
    assert!(!late.quarantine().holds_pages());
}

#[test]
fn quarantine_keeps_pages_out_of_circulation() {
    let _serial = serial();
    quarantined_pages_are_never_reused::<Pm>();
    quarantined_pages_are_never_reused::<Mg>();
    // Sealed secrets have no pages at rest: their scratch regions are shared by design, and a quarantine taken
    // outside a window holds nothing (tests/sealed.rs shows what it does inside one).
}
