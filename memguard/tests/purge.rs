//! Purge: every registered buffer and the enclave key are wiped, from any thread, without deadlock.
//!
//! Purge is process-wide, so these tests live in their own binary and take turns (`serial`).

use std::sync::{Mutex, MutexGuard, PoisonError};

use memguard::{purge, Enclave, Error, LockedBuffer};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn purge_destroys_buffers_and_later_use_is_an_error() {
    let _serial = serial();
    let mut a = LockedBuffer::from_bytes(&mut [3u8; 32]).unwrap();
    let b = LockedBuffer::new(10).unwrap();
    purge();
    assert!(!a.is_alive() && !b.is_alive());
    assert!(matches!(a.bytes(), Err(Error::Destroyed)));
    assert!(matches!(a.melt(), Err(Error::Destroyed)));
    a.destroy().unwrap();
    // New buffers work after a purge.
    let c = LockedBuffer::from_bytes(&mut [4u8; 8]).unwrap();
    assert!(c.equal_to(&[4u8; 8]));
}

#[test]
fn purge_inside_an_access_does_not_deadlock_and_wipes_when_the_access_ends() {
    let _serial = serial();
    let buf = LockedBuffer::from_bytes(&mut [5u8; 16]).unwrap();
    let seen = buf
        .with_bytes(|b| {
            purge();
            // Still readable: this access holds the buffer.
            b.to_vec()
        })
        .unwrap();
    assert_eq!(seen, vec![5u8; 16]);
    assert!(!buf.is_alive(), "wiped once the access ended");
}

#[test]
fn purge_waits_for_readers_on_other_threads() {
    let _serial = serial();
    let buf = LockedBuffer::from_bytes(&mut [6u8; 16]).unwrap();
    let guard = buf.bytes().unwrap();
    std::thread::scope(|s| {
        let purger = s.spawn(purge);
        // New accesses are refused once the purge has begun (nested reads on this thread until then).
        while buf.bytes().is_ok() {
            std::thread::yield_now();
        }
        assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
        // The reader still sees its bytes while the purge waits for it, and reading state again on the same
        // thread does not deadlock behind the waiting purge.
        assert_eq!(&*guard, &[6u8; 16]);
        assert_eq!(buf.size(), 16);
        assert!(buf.is_alive());
        assert!(!purger.is_finished(), "purge waits for the reader");
        drop(guard);
        purger.join().unwrap();
    });
    assert!(!buf.is_alive());
}

#[test]
fn enclaves_cannot_be_opened_after_purge_and_new_ones_work() {
    let _serial = serial();
    let enclave = Enclave::new(&mut b"before".to_vec()).unwrap();
    assert!(enclave.open().unwrap().equal_to(b"before"));
    purge();
    assert!(matches!(enclave.open(), Err(Error::DecryptionFailed)));
    let fresh = Enclave::new(&mut b"after".to_vec()).unwrap();
    assert!(fresh.open().unwrap().equal_to(b"after"));
}

#[test]
fn purge_stops_the_rekeying_thread() {
    let _serial = serial();
    drop(Enclave::new(&mut [1u8; 4]).unwrap());
    assert!(memguard::is_rekeying());
    purge();
    assert!(!memguard::is_rekeying());
    drop(Enclave::new(&mut [1u8; 4]).unwrap());
    assert!(memguard::is_rekeying(), "a new key rekeys again");
    memguard::stop_rekeying();
    assert!(!memguard::is_rekeying());
    let enclave = Enclave::new(&mut [2u8; 4]).unwrap();
    assert!(
        enclave.open().unwrap().equal_to(&[2u8; 4]),
        "the key works without rekeying"
    );
}

#[test]
fn purge_reaches_other_registered_items() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Weak};
    struct Item(AtomicUsize);
    impl memguard::Purgeable for Item {
        fn purge(&self, _: &memguard::PurgeRequest) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _serial = serial();
    let item = Arc::new(Item(AtomicUsize::new(0)));
    let registration = memguard::register(Arc::downgrade(&item) as Weak<dyn memguard::Purgeable>);
    purge();
    assert_eq!(item.0.load(Ordering::SeqCst), 1);
    drop(registration);
    purge();
    assert_eq!(
        item.0.load(Ordering::SeqCst),
        1,
        "deregistered items are not purged"
    );
}

#[test]
fn stream_reads_fail_after_purge_and_keep_their_chunks() {
    use std::io::{Read, Write};
    let _serial = serial();
    let mut stream = memguard::Stream::new();
    stream.write_all(&[1u8; 100]).unwrap();
    purge();
    let mut out = [0u8; 10];
    let err = stream.read(&mut out).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(out, [0u8; 10]);
    assert_eq!(stream.size(), 100);
    assert!(matches!(
        stream.flush_buffer(),
        Err(Error::DecryptionFailed)
    ));
}

/// Threads reading, re-reading (nested) and writing their buffers while purges land: every access either sees
/// the intact bytes or gets `Destroyed`, nothing faults or deadlocks, and every buffer ends up destroyed.
#[test]
fn purge_races_with_accesses_on_other_threads() {
    let _serial = serial();
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (stop, rounds) = (&stop, &rounds);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    rounds.fetch_add(1, Ordering::Relaxed);
                    let mut buf = LockedBuffer::new(64).unwrap();
                    let _ = buf.with_bytes_mut(|b| b.fill(t));
                    let nested = buf.with_bytes(|b| {
                        assert!(b.iter().all(|&x| x == t || x == 0));
                        buf.size()
                    });
                    assert!(matches!(nested, Ok(64) | Err(Error::Destroyed)));
                    match buf.bytes() {
                        Ok(bytes) => assert_eq!(bytes.len(), 64),
                        Err(e) => assert!(matches!(e, Error::Destroyed)),
                    };
                }
            });
        }
        // Keep purging until the threads have been through their loop many times, so purges land in every
        // phase of it.
        let mut purges = 0;
        while rounds.load(Ordering::Relaxed) < 4_000 || purges < 50 {
            purge();
            purges += 1;
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// An item may deregister itself from inside its own `purge` (the registry lock is not held then).
#[test]
fn an_item_can_deregister_itself_while_being_purged() {
    use std::sync::{Arc, Mutex, Weak};
    struct SelfRemoving(Mutex<Option<memguard::Registration>>);
    impl memguard::Purgeable for SelfRemoving {
        fn purge(&self, _: &memguard::PurgeRequest) {
            drop(self.0.lock().unwrap().take());
        }
    }
    let _serial = serial();
    let item = Arc::new(SelfRemoving(Mutex::new(None)));
    let before = memguard::registered_count();
    let registration = memguard::register(Arc::downgrade(&item) as Weak<dyn memguard::Purgeable>);
    *item.0.lock().unwrap() = Some(registration);
    assert_eq!(memguard::registered_count(), before + 1);
    purge();
    assert!(item.0.lock().unwrap().is_none());
    assert_eq!(memguard::registered_count(), before);
}
