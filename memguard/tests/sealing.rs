//! The sealing key is unreadable at rest, with protection keys and with the `mprotect` fallback: a stray read
//! of its page faults, and sealing works the same in both modes.

mod common;

use common::{assert_faulted, run_child, scenario};
use memguard::sealing::{self, KeyProtection};

/// Seals and opens one item, then (in `read_key` scenarios) reads the key's page outside any window.
fn exercise(read_key: bool) {
    let id = sealing::next_id();
    let mut data = *b"a secret sealed under the key!!!";
    let tag = sealing::seal_in_place(id, &mut data).expect("seal");
    sealing::open_in_place(id, &tag, &mut data).expect("open");
    assert_eq!(&data, b"a secret sealed under the key!!!");
    if read_key {
        let addr = sealing::key_address().expect("a key exists after sealing");
        eprintln!("reading the key page at {addr:#x}");
        // SAFETY: none; this read is meant to fault (the test's child dies of it).
        let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
        println!("read {byte} from the key page: it was readable");
        std::process::exit(3);
    }
}

#[test]
fn child_entry() {
    match scenario().as_deref() {
        Some("read-key") => exercise(true),
        Some("fallback-round-trip") => {
            assert_eq!(sealing::key_protection(), KeyProtection::NoAccessPage);
            exercise(false);
        }
        _ => {}
    }
}

#[test]
fn the_key_page_faults_when_read_outside_a_window() {
    let out = run_child("child_entry", "read-key");
    assert_faulted(&out);
}

#[cfg(unix)]
#[test]
fn the_mprotect_fallback_seals_and_its_key_page_faults_too() {
    use std::process::Command;
    let exe = std::env::current_exe().unwrap();
    for (scenario, expect_fault) in [("fallback-round-trip", false), ("read-key", true)] {
        let out = Command::new(&exe)
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env("MEMGUARD_TEST_CHILD", scenario)
            .env(memcall::pkey::DISABLE_ENV, "1")
            .output()
            .unwrap();
        if expect_fault {
            assert_faulted(&out);
        } else {
            assert!(
                out.status.success(),
                "{scenario}: {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
