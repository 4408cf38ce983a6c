//! Go's `secret_race_test.go`: 12 threads use one secret while a closer calls `close` again and again once 6
//! have started. Every result is the exact bytes or the exact closed error, and the secret ends closed. Each
//! scenario runs 20 times, for every flavour.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use common::{secret_of, Flavour, KEY};
use securememory::{Error, Secret, SecretExtensions};

const THREADS: usize = 12;
const RUNS: usize = 20;
const OPS_PER_THREAD: usize = 200;

/// `op(t, secret)` is thread `t`'s access: the bytes, or the error's text.
fn run_race<F: Flavour>(op: fn(usize, &F::Secret) -> Result<Vec<u8>, String>) {
    for _ in 0..RUNS {
        let secret = Arc::new(secret_of::<F>(KEY));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let successes = Arc::new(AtomicUsize::new(0));
        let closer = {
            let secret = Arc::clone(&secret);
            std::thread::spawn(move || {
                let mut started = 0;
                while ready_rx.recv().is_ok() {
                    started += 1;
                    if started >= THREADS / 2 {
                        secret.close().expect("close during the race");
                    }
                }
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (secret, ready, successes) = (
                    Arc::clone(&secret),
                    ready_tx.clone(),
                    Arc::clone(&successes),
                );
                std::thread::spawn(move || {
                    ready.send(()).unwrap();
                    for _ in 0..OPS_PER_THREAD {
                        match op(t, &secret) {
                            Ok(bytes) => {
                                assert_eq!(bytes, KEY, "a reader saw wiped or foreign bytes");
                                successes.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(text) => assert_eq!(text, "secret has already been destroyed"),
                        }
                    }
                })
            })
            .collect();
        drop(ready_tx);
        for w in workers {
            w.join().unwrap();
        }
        closer.join().unwrap();
        assert!(secret.is_closed());
        assert_eq!(F::accessors(&secret), 0);
        secret.close().unwrap();
    }
}

fn with_bytes_func<S: Secret>(s: &S) -> Result<Vec<u8>, String> {
    s.with_bytes_func(|b| Ok(b.to_vec())).map_err(|e| {
        assert!(matches!(e, Error::Closed), "{e:?}");
        e.to_string()
    })
}

/// The reader reports through `std::io::Error`, which keeps the message.
fn read_to_end<S: Secret>(s: &S) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut reader = s.reader().map_err(|e| e.to_string())?;
    reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn with_bytes_concurrent_close<F: Flavour>() {
    run_race::<F>(|_, s| with_bytes_func(s));
}

fn reader_concurrent_close<F: Flavour>() {
    run_race::<F>(|_, s| read_to_end(s));
}

/// Half the threads read through closures, half through readers.
fn mixed_concurrent_close<F: Flavour>() {
    run_race::<F>(|t, s| {
        if t % 2 == 0 {
            with_bytes_func(s)
        } else {
            read_to_end(s)
        }
    });
}

for_flavours!(
    every: [
        with_bytes_concurrent_close,
        reader_concurrent_close,
        mixed_concurrent_close
    ],
    page_backed: [],
);
