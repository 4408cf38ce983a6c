//! Guarantee 3, unreadable at rest: a secret's pages are no-access except while a closure runs on them, and
//! read-only while it does. Each scenario gets the address of the bytes inside the access window and touches it
//! where the guarantee says it must fault; the child must die of SIGSEGV right there, for both flavours.
//!
//! Beyond the plain cases of the `securememory` crate's own tests, these cover every access path (dyn call,
//! `with_bytes_func`, readers), nested and concurrent closures (only the last to leave re-protects), a panic
//! while another thread is still inside, and the memguard flavour's trailing guard page.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Barrier};

use common::{child_flavour, ensure, is_pattern, pattern_secret, run_for, Flavour};
use guarantees::{announce_touch, Scenario};
use securememory::{Error, SecretExtensions};

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Reads one byte at `addr`, announcing it first; the scenario fails if the read returns.
fn touch(addr: usize) -> Outcome {
    announce_touch();
    // SAFETY: deliberately reads memory the guarantee says is no-access: the process must die here.
    let value = unsafe { (addr as *const u8).read_volatile() };
    Err(format!("read {value:#04x} at {addr:#x} without a fault").into())
}

fn address_of(secret: &dyn securememory::Secret) -> Result<usize, Error> {
    secret.with_bytes(|b| Ok(b.as_ptr() as usize))
}

fn read_after_access() -> Outcome {
    let secret = pattern_secret(child_flavour()?, 1, 32)?;
    let addr = secret.with_bytes(|b| {
        assert!(is_pattern(1, b));
        Ok(b.as_ptr() as usize)
    })?;
    touch(addr)
}

fn write_inside_access() -> Outcome {
    let secret = pattern_secret(child_flavour()?, 2, 100)?;
    secret.with_bytes(|b| {
        announce_touch();
        // SAFETY: deliberately writes the read-only page inside the access window: the process must die here.
        unsafe { (b.as_ptr() as *mut u8).add(50).write_volatile(0) };
        Ok(())
    })?;
    Err("wrote inside with_bytes without a fault".into())
}

fn read_after_panic() -> Outcome {
    let secret = pattern_secret(child_flavour()?, 3, 5000)?;
    let mut addr = 0usize;
    let caught = catch_unwind(AssertUnwindSafe(|| {
        secret.with_bytes(|b| -> securememory::Result<()> {
            addr = b.as_ptr() as usize;
            panic!("a closure that panics inside the access window");
        })
    }));
    ensure(caught.is_err(), || "the panic was swallowed".into())?;
    // The secret still works after the panic, and the panic left no accessor behind.
    ensure(secret.with_bytes(|b| Ok(is_pattern(3, b)))?, || {
        "wrong bytes after a panic".into()
    })?;
    touch(addr)
}

/// A panic on one thread while another is still inside: the pages stay readable for the other thread, and
/// become no-access when it leaves.
fn read_after_panic_with_company() -> Outcome {
    let secret = pattern_secret(child_flavour()?, 4, 64)?;
    let inside = Arc::new(Barrier::new(2));
    let panicked = Arc::new(Barrier::new(2));
    let companion = {
        let (secret, inside, panicked) = (secret.clone(), inside.clone(), panicked.clone());
        std::thread::spawn(move || {
            secret.with_bytes(|b| {
                inside.wait();
                panicked.wait();
                // Still inside: the other thread's panic must not have made the pages no-access.
                Ok(is_pattern(4, b))
            })
        })
    };
    inside.wait();
    let mut addr = 0usize;
    let caught = catch_unwind(AssertUnwindSafe(|| {
        secret.with_bytes(|b| -> securememory::Result<()> {
            addr = b.as_ptr() as usize;
            panic!("panic while another thread is inside");
        })
    }));
    ensure(caught.is_err(), || "the panic was swallowed".into())?;
    panicked.wait();
    let still_readable = companion.join().map_err(|_| "companion panicked")??;
    ensure(still_readable, || {
        "the companion lost its bytes when the other closure panicked".into()
    })?;
    touch(addr)
}

/// Nested closures on one secret: leaving the inner one keeps the pages readable for the outer one.
fn read_after_nested() -> Outcome {
    let secret = pattern_secret(child_flavour()?, 5, 32)?;
    let addr = secret.with_bytes(|outer| {
        let inner_ok = secret.with_bytes(|inner| Ok(is_pattern(5, inner)))?;
        // The inner closure has left; the outer slice must still be readable.
        let outer_ok = is_pattern(5, outer);
        assert!(inner_ok && outer_ok, "nested access returned wrong bytes");
        Ok(outer.as_ptr() as usize)
    })?;
    touch(addr)
}

/// Eight threads inside at once, leaving one by one: only the last one re-protects, and it does.
fn read_after_concurrent() -> Outcome {
    const THREADS: usize = 8;
    let secret = pattern_secret(child_flavour()?, 6, 4096)?;
    let all_inside = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (secret, all_inside) = (secret.clone(), all_inside.clone());
            std::thread::spawn(move || {
                secret.with_bytes(|b| {
                    all_inside.wait();
                    std::thread::sleep(std::time::Duration::from_millis(5 * i as u64));
                    Ok((is_pattern(6, b), b.as_ptr() as usize))
                })
            })
        })
        .collect();
    let mut addr = 0;
    for t in threads {
        let (ok, a) = t.join().map_err(|_| "reader panicked")??;
        ensure(ok, || "a concurrent reader saw wrong bytes".into())?;
        addr = a;
    }
    touch(addr)
}

/// Every other way in (dyn call, `with_bytes_func`, a reader) also leaves the pages no-access.
fn read_after_every_access_path() -> Outcome {
    let secret = pattern_secret(child_flavour()?, 7, 300)?;
    let addr = address_of(secret.as_ref())?;
    let mut seen = false;
    secret.with_bytes_dyn(&mut |b| {
        seen = is_pattern(7, b);
        Ok(())
    })?;
    ensure(seen, || "with_bytes_dyn saw wrong bytes".into())?;
    let copy = secret.with_bytes_func(|b| Ok(b[..4].to_vec()))?;
    ensure(is_pattern(7, &copy), || {
        "with_bytes_func returned wrong bytes".into()
    })?;
    let mut reader = secret.reader()?;
    let mut buf = [0u8; 100];
    reader.read_exact(&mut buf)?;
    ensure(is_pattern(7, &buf), || {
        "the reader returned wrong bytes".into()
    })?;
    touch(addr)
}

/// The memguard flavour right-aligns the data against a guard page: one byte past the end faults even inside
/// the access window.
fn read_past_end_inside() -> Outcome {
    let secret = pattern_secret(Flavour::Memguard, 8, 33)?;
    secret.with_bytes(|b| {
        let past_end = b.as_ptr() as usize + b.len();
        touch(past_end).map_err(|e| Error::action(e.to_string()))
    })?;
    Err("read past the end without a fault".into())
}

#[test]
fn child_entry() {
    guarantees::dispatch(SCENARIOS);
}

macro_rules! fault_tests {
    ($($scenario:ident),* $(,)?) => {
        const SCENARIOS: &[(&str, Scenario)] = &[
            $((stringify!($scenario), $scenario),)*
            ("read_past_end_inside", read_past_end_inside),
        ];
        mod protected_memory {
            $(#[test]
            fn $scenario() {
                super::run_for(stringify!($scenario), super::Flavour::ProtectedMemory).assert_faulted_at_touch();
            })*
        }
        mod memguard {
            $(#[test]
            fn $scenario() {
                super::run_for(stringify!($scenario), super::Flavour::Memguard).assert_faulted_at_touch();
            })*

            #[test]
            fn read_past_end_inside() {
                super::run_for("read_past_end_inside", super::Flavour::Memguard).assert_faulted_at_touch();
            }
        }
    };
}

fault_tests!(
    read_after_access,
    write_inside_access,
    read_after_panic,
    read_after_panic_with_company,
    read_after_nested,
    read_after_concurrent,
    read_after_every_access_path,
);
