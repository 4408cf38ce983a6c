//! A loom model of the access/close state machine: every interleaving of readers, closers and the protection
//! changes. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p securememory --release --test loom`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;
use memcall::Protection;
use securememory::loom_model::{AccessState, DestroyFailed, Pages};
use securememory::Error;

/// Explores interleavings with at most three preemptions per execution (the usual bound: bugs in practice need
/// few, and the unbounded space of three threads with a condition variable is too large to finish).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

const NO_ACCESS: u8 = 0;
const READ_ONLY: u8 = 1;
const READ_WRITE: u8 = 2;

/// Pages that record their protection and check every use against it.
struct ModelPages {
    protection: Arc<AtomicU8>,
    destroyed: Arc<AtomicBool>,
    data: [u8; 4],
}

impl Pages for ModelPages {
    fn protect(&self, prot: Protection) -> memcall::Result<()> {
        assert!(
            !self.destroyed.load(Ordering::SeqCst),
            "protect after destroy"
        );
        let value = match prot {
            Protection::NoAccess => NO_ACCESS,
            Protection::ReadOnly => READ_ONLY,
            Protection::ReadWrite => READ_WRITE,
        };
        self.protection.store(value, Ordering::SeqCst);
        Ok(())
    }

    unsafe fn data(&self) -> &[u8] {
        &self.data
    }

    unsafe fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    unsafe fn wipe_in_place(&self) -> memcall::Result<()> {
        self.protect(Protection::NoAccess)
    }

    fn destroy(self) -> Result<(), DestroyFailed<Self>> {
        assert_ne!(
            self.protection.load(Ordering::SeqCst),
            READ_ONLY,
            "destroyed while readable: a reader may still be inside"
        );
        assert!(
            !self.destroyed.swap(true, Ordering::SeqCst),
            "destroyed twice"
        );
        Ok(())
    }
}

fn model_state() -> (Arc<AccessState<ModelPages>>, Arc<AtomicU8>, Arc<AtomicBool>) {
    let protection = Arc::new(AtomicU8::new(NO_ACCESS));
    let destroyed = Arc::new(AtomicBool::new(false));
    let pages = ModelPages {
        protection: protection.clone(),
        destroyed: destroyed.clone(),
        data: *b"abcd",
    };
    (Arc::new(AccessState::new(pages, 0)), protection, destroyed)
}

/// A reader: inside the closure the pages must be read-only and not destroyed.
fn read(
    state: &AccessState<ModelPages>,
    protection: &AtomicU8,
    destroyed: &AtomicBool,
) -> Result<(), Error> {
    state.with_bytes(|bytes| {
        assert_eq!(
            protection.load(Ordering::SeqCst),
            READ_ONLY,
            "read while not readable"
        );
        assert!(!destroyed.load(Ordering::SeqCst), "read after destroy");
        assert_eq!(bytes, b"abcd");
        Ok(())
    })
}

#[test]
fn concurrent_readers_see_read_only_and_leave_no_access() {
    model(|| {
        let (state, protection, destroyed) = model_state();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (state, protection, destroyed) =
                    (state.clone(), protection.clone(), destroyed.clone());
                thread::spawn(move || read(&state, &protection, &destroyed).unwrap())
            })
            .collect();
        read(&state, &protection, &destroyed).unwrap();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(state.readers(), 0);
        assert_eq!(protection.load(Ordering::SeqCst), NO_ACCESS);
    });
}

#[test]
fn close_waits_for_readers_and_refuses_late_ones() {
    model(|| {
        let (state, protection, destroyed) = model_state();
        let reader = {
            let (state, protection, destroyed) =
                (state.clone(), protection.clone(), destroyed.clone());
            thread::spawn(move || match read(&state, &protection, &destroyed) {
                Ok(()) | Err(Error::Closed) => {}
                Err(e) => panic!("unexpected {e}"),
            })
        };
        state.close().unwrap();
        assert!(state.is_closed());
        assert!(destroyed.load(Ordering::SeqCst));
        reader.join().unwrap();
        assert!(matches!(
            read(&state, &protection, &destroyed),
            Err(Error::Closed)
        ));
    });
}

#[test]
fn concurrent_closes_destroy_once() {
    model(|| {
        let (state, protection, destroyed) = model_state();
        let closer = {
            let state = state.clone();
            thread::spawn(move || state.close().unwrap())
        };
        let reader = {
            let (state, protection, destroyed) =
                (state.clone(), protection.clone(), destroyed.clone());
            thread::spawn(move || {
                let _ = read(&state, &protection, &destroyed);
            })
        };
        state.close().unwrap();
        closer.join().unwrap();
        reader.join().unwrap();
        assert!(state.is_closed());
        assert!(destroyed.load(Ordering::SeqCst));
    });
}

#[test]
fn nested_reader_and_close_inside_access() {
    model(|| {
        let (state, protection, destroyed) = model_state();
        let other = {
            let (state, protection, destroyed) =
                (state.clone(), protection.clone(), destroyed.clone());
            thread::spawn(move || {
                let _ = read(&state, &protection, &destroyed);
            })
        };
        let inner = state.with_bytes(|_| {
            assert!(matches!(state.close(), Err(Error::CloseInsideAccess)));
            read(&state, &protection, &destroyed)
        });
        inner.unwrap();
        other.join().unwrap();
        assert_eq!(protection.load(Ordering::SeqCst), NO_ACCESS);
        state.close().unwrap();
    });
}

/// A reader that only checks it was let in to intact bytes: a purge past its grace may wipe the pages under it.
fn read_under_purge(state: &AccessState<ModelPages>, destroyed: &AtomicBool) -> Result<(), Error> {
    state.with_bytes(|bytes| {
        assert!(!destroyed.load(Ordering::SeqCst), "entered after destroy");
        assert_eq!(bytes, b"abcd");
        Ok(())
    })
}

#[test]
fn purge_past_its_grace_destroys_once_after_the_last_reader() {
    model(|| {
        let (state, protection, destroyed) = model_state();
        let reader = {
            let (state, destroyed) = (state.clone(), destroyed.clone());
            thread::spawn(move || match read_under_purge(&state, &destroyed) {
                Ok(()) | Err(Error::Closed) => {}
                Err(e) => panic!("unexpected {e}"),
            })
        };
        // A deadline already past: the purge never waits.
        state.purge_by(std::time::Instant::now(), false).unwrap();
        reader.join().unwrap();
        assert!(
            state.is_closed(),
            "closed by the purge or by the last reader"
        );
        assert!(destroyed.load(Ordering::SeqCst));
        assert_eq!(protection.load(Ordering::SeqCst), NO_ACCESS);
        assert!(matches!(
            read_under_purge(&state, &destroyed),
            Err(Error::Closed)
        ));
    });
}

#[test]
fn purge_inside_a_closure_closes_when_the_closure_ends() {
    model(|| {
        let (state, protection, destroyed) = model_state();
        let other = {
            let (state, protection, destroyed) =
                (state.clone(), protection.clone(), destroyed.clone());
            thread::spawn(move || match read(&state, &protection, &destroyed) {
                Ok(()) | Err(Error::Closed) => {}
                Err(e) => panic!("unexpected {e}"),
            })
        };
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        state
            .with_bytes(|bytes| {
                state.purge_by(far, false)?;
                assert_eq!(bytes, b"abcd", "the running closure keeps its bytes");
                assert!(!destroyed.load(Ordering::SeqCst));
                Ok(())
            })
            .unwrap();
        other.join().unwrap();
        assert!(state.is_closed());
        assert!(destroyed.load(Ordering::SeqCst));
    });
}

/// Pages with an access window of their own (as a sealed secret's scratch copy): counts opens, closes and
/// retired windows, and checks every read happens inside an open window.
struct WindowPages {
    open: Arc<AtomicU8>,
    retired: Arc<AtomicU8>,
    data: [u8; 4],
}

impl Pages for WindowPages {
    fn protect(&self, _prot: Protection) -> memcall::Result<()> {
        Ok(())
    }

    fn open_window(&self) -> Result<(), Error> {
        assert_eq!(
            self.open.fetch_add(1, Ordering::SeqCst),
            0,
            "window opened twice"
        );
        Ok(())
    }

    fn close_window(&self, retire: bool) -> memcall::Result<Option<Box<dyn std::any::Any + Send>>> {
        assert_eq!(
            self.open.fetch_sub(1, Ordering::SeqCst),
            1,
            "closed a window that was not open"
        );
        if retire {
            self.retired.fetch_add(1, Ordering::SeqCst);
            return Ok(Some(Box::new(())));
        }
        Ok(None)
    }

    unsafe fn data(&self) -> &[u8] {
        assert_eq!(
            self.open.load(Ordering::SeqCst),
            1,
            "read outside the window"
        );
        &self.data
    }

    unsafe fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    unsafe fn wipe_in_place(&self) -> memcall::Result<()> {
        Ok(())
    }

    fn destroy(self) -> Result<(), DestroyFailed<Self>> {
        assert_eq!(
            self.open.load(Ordering::SeqCst),
            0,
            "destroyed with its window open"
        );
        Ok(())
    }
}

#[test]
fn a_quarantine_inside_a_shared_window_retires_that_window_once() {
    model(|| {
        let open = Arc::new(AtomicU8::new(0));
        let retired = Arc::new(AtomicU8::new(0));
        let state = Arc::new(AccessState::new(
            WindowPages {
                open: open.clone(),
                retired: retired.clone(),
                data: *b"abcd",
            },
            0,
        ));
        let other = {
            let state = state.clone();
            thread::spawn(move || {
                state
                    .with_bytes(|b| {
                        assert_eq!(b, b"abcd");
                        Ok(())
                    })
                    .unwrap()
            })
        };
        let hold = state
            .with_bytes(|b| {
                assert_eq!(b, b"abcd");
                Ok(state.quarantine())
            })
            .unwrap();
        other.join().unwrap();
        assert_eq!(open.load(Ordering::SeqCst), 0, "a window left open");
        assert_eq!(
            retired.load(Ordering::SeqCst),
            1,
            "the quarantined window is retired exactly once"
        );
        assert!(hold.holds_pages());
        // A later window is not retired: the quarantine covered the one that was open.
        state.with_bytes(|_| Ok(())).unwrap();
        assert_eq!(retired.load(Ordering::SeqCst), 1);
        state.close().unwrap();
    });
}
