//! Leaked guards never hang purge, drop or destroy, and never make a purge skip other buffers. Each scenario
//! runs in a child process with a time limit, so a hang shows as a killed child.
//!
//! Leaking a guard (`std::mem::forget`, `Box::leak`) is safe Rust: the buffer's lock stays held for good.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memguard::{purge, Error, LockedBuffer};

/// Far above the purge's 500 ms grace, far below the hang it guards against (forever).
const LIMIT: Duration = Duration::from_secs(20);

fn child(test: &str) -> common::Bounded {
    common::run_child_bounded(test, test, LIMIT)
}

fn is_child(test: &str) -> bool {
    common::scenario().as_deref() == Some(test)
}

#[test]
fn a_read_guard_forgotten_on_the_purging_thread_neither_hangs_purge_nor_keeps_the_buffer_readable()
{
    const NAME: &str =
        "a_read_guard_forgotten_on_the_purging_thread_neither_hangs_purge_nor_keeps_the_buffer_readable";
    if is_child(NAME) {
        let buf = LockedBuffer::from_bytes(&mut [1u8; 32]).unwrap();
        std::mem::forget(buf.bytes().unwrap());
        let other = LockedBuffer::from_bytes(&mut [2u8; 32]).unwrap();
        purge();
        assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
        assert!(!buf.equal_to(&[1u8; 32]));
        assert!(!other.is_alive(), "the other buffer is purged as usual");
        // A second purge on the same thread does not hang either.
        purge();
        assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
        // Dropping the buffer does not wait for the leaked guard.
        drop(buf);
        std::process::exit(0);
    }
    child(NAME).assert_exit_code(0);
}

#[test]
fn a_read_guard_forgotten_on_another_thread_is_waited_for_then_forced() {
    const NAME: &str = "a_read_guard_forgotten_on_another_thread_is_waited_for_then_forced";
    if is_child(NAME) {
        let buf = LockedBuffer::from_bytes(&mut [3u8; 32]).unwrap();
        let other = LockedBuffer::from_bytes(&mut [4u8; 32]).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(buf.bytes().unwrap()));
        });
        purge();
        assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
        assert!(!other.is_alive());
        drop(buf);
        std::process::exit(0);
    }
    child(NAME).assert_exit_code(0);
}

#[test]
fn dropping_or_destroying_a_buffer_with_a_forgotten_guard_returns() {
    const NAME: &str = "dropping_or_destroying_a_buffer_with_a_forgotten_guard_returns";
    if is_child(NAME) {
        // Drop, read guard forgotten.
        let buf = LockedBuffer::from_bytes(&mut [5u8; 32]).unwrap();
        std::mem::forget(buf.bytes().unwrap());
        drop(buf);
        // Destroy, read guard forgotten: a typed error, the data wiped, the buffer dead.
        let mut buf = LockedBuffer::from_bytes(&mut [6u8; 32]).unwrap();
        std::mem::forget(buf.bytes().unwrap());
        assert!(matches!(buf.destroy(), Err(Error::StillAccessed)));
        assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
        assert!(matches!(buf.melt(), Err(Error::StillAccessed)));
        drop(buf);
        // Write guard forgotten: reads, flags, writes, destroy and drop all return.
        let mut buf = LockedBuffer::new(32).unwrap();
        std::mem::forget(buf.bytes_mut().unwrap());
        assert!(matches!(buf.bytes(), Err(Error::StillAccessed)));
        assert!(!buf.is_alive());
        assert_eq!(buf.size(), 0);
        assert!(matches!(buf.bytes_mut(), Err(Error::StillAccessed)));
        assert!(matches!(buf.freeze(), Err(Error::StillAccessed)));
        assert!(matches!(buf.destroy(), Err(Error::StillAccessed)));
        drop(buf);
        // And a purge afterwards has nothing left waiting.
        purge();
        std::process::exit(0);
    }
    child(NAME).assert_exit_code(0);
}

/// A guard forgotten on this thread must not make the purge treat every other buffer as "maybe mine": a
/// buffer held briefly by another thread is still waited for, and gone when the purge returns.
#[test]
fn a_forgotten_guard_does_not_make_later_purges_skip_other_buffers() {
    const NAME: &str = "a_forgotten_guard_does_not_make_later_purges_skip_other_buffers";
    if is_child(NAME) {
        let forgotten = LockedBuffer::from_bytes(&mut [7u8; 32]).unwrap();
        std::mem::forget(forgotten.bytes().unwrap());
        let held = LockedBuffer::from_bytes(&mut [8u8; 32]).unwrap();
        let holding = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let guard = held.bytes().unwrap();
                holding.store(true, Ordering::SeqCst);
                // Hold until the purge has reached this buffer (new accesses are refused from then on).
                while held.bytes().is_ok() {
                    std::thread::yield_now();
                }
                // A little longer, so a purge that did not wait (treating this buffer as held by its own
                // thread) would return while the buffer is still alive; well within the purge's grace.
                std::thread::sleep(Duration::from_millis(50));
                drop(guard);
            });
            while !holding.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            purge();
            assert!(
                !held.is_alive(),
                "the purge waited for the other thread's access and destroyed the buffer"
            );
        });
        std::process::exit(0);
    }
    child(NAME).assert_exit_code(0);
}

/// A guard leaked for good on another thread: the purge returns in bounded time, and reading through the
/// leaked guard afterwards faults (the pages are wiped, no-access, and still mapped, so it can never show
/// other memory).
#[test]
fn a_guard_leaked_on_another_thread_faults_after_purge() {
    const NAME: &str = "a_guard_leaked_on_another_thread_faults_after_purge";
    if is_child(NAME) {
        let buf: &'static LockedBuffer =
            Box::leak(Box::new(LockedBuffer::from_bytes(&mut [9u8; 64]).unwrap()));
        let (leaked_tx, leaked_rx) = std::sync::mpsc::channel();
        let (purged_tx, purged_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let guard: &'static memguard::ReadGuard<'static> =
                Box::leak(Box::new(buf.bytes().unwrap()));
            assert_eq!(guard[0], 9);
            leaked_tx.send(()).unwrap();
            purged_rx.recv().unwrap();
            eprintln!("touching the leaked guard");
            let seen = std::hint::black_box(&guard[..])
                .iter()
                .fold(0u8, |a, &b| a | b);
            eprintln!("read through the leaked guard survived: {seen}");
            std::process::exit(97);
        });
        leaked_rx.recv().unwrap();
        purge();
        assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
        purged_tx.send(()).unwrap();
        let _ = reader.join();
        std::process::exit(98);
    }
    let out = child(NAME);
    out.assert_faulted();
    assert!(
        String::from_utf8_lossy(&out.output.stderr).contains("touching the leaked guard"),
        "{}",
        out.describe()
    );
}

/// `purge` called inside a buffer's own access still wipes the buffer when that access ends.
#[test]
fn purge_inside_an_access_wipes_the_buffer_when_the_access_ends() {
    const NAME: &str = "purge_inside_an_access_wipes_the_buffer_when_the_access_ends";
    if is_child(NAME) {
        let buf = LockedBuffer::from_bytes(&mut [10u8; 16]).unwrap();
        let seen = buf
            .with_bytes(|b| {
                purge();
                b.to_vec()
            })
            .unwrap();
        assert_eq!(seen, vec![10u8; 16]);
        assert!(!buf.is_alive());
        std::process::exit(0);
    }
    child(NAME).assert_exit_code(0);
}
