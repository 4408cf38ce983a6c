//! Enclave and Coffer: round trips, tamper detection, rekeying under load. (Purge tests are in purge.rs:
//! a purge here would break the other tests' enclaves.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        let before = memcall::locked_bytes().unwrap();
        let registered = memguard::registered_count();
        for _ in 0..100 {
            assert!(matches!(bad.open(), Err(Error::DecryptionFailed)));
        }
        assert_eq!(memcall::locked_bytes().unwrap(), before);
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
        let _f = fault::fail(Op::Lock).after(skip).arm();
        assert!(
            matches!(Coffer::new(), Err(Error::Memory(_))),
            "lock #{skip}"
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
