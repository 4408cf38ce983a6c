//! Process-wide accounting, in its own binary with a single test so nothing else runs meanwhile: Go's metrics
//! test (20 allocated / 20 in use inside, 20 / 0 after), `Drop` closing like Go's finalizer, the `metrics`
//! facade, and creation failures leaving no mapping, lock or count behind.

mod common;

use common::{Flavour, Mg, Pm, KEY};
use memcall::{fault, Op};
use securememory::metrics::counts;
use securememory::{Secret, SecretExtensions, SecretFactory};

fn go_metrics_counts<F: Flavour>() {
    let before = counts();
    let mut secrets = Vec::new();
    for _ in 0..10 {
        let s = F::factory().new(&mut b"testing".to_vec()).unwrap();
        s.with_bytes(|b| {
            assert_eq!(b, b"testing");
            Ok(())
        })
        .unwrap();
        secrets.push(s);
        let r = F::factory().create_random(8).unwrap();
        assert_eq!(r.len(), 8);
        secrets.push(r);
    }
    secrets[0]
        .with_bytes(|_| {
            let now = counts();
            assert_eq!(now.allocated - before.allocated, 20);
            assert_eq!(now.in_use - before.in_use, 20);
            assert_eq!(
                now.locked_bytes - before.locked_bytes,
                secrets
                    .iter()
                    .map(|s| s.protections().locked_bytes as u64)
                    .sum::<u64>()
            );
            Ok(())
        })
        .unwrap();
    for s in &secrets {
        s.close().unwrap();
    }
    let after = counts();
    assert_eq!(after.allocated - before.allocated, 20);
    assert_eq!(after.in_use, before.in_use);
    assert_eq!(after.locked_bytes, before.locked_bytes);
}

fn drop_without_close_releases<F: Flavour>() {
    let before = counts();
    let locked = memcall::locked_bytes();
    let s = F::factory().new(&mut KEY.to_vec()).unwrap();
    assert_eq!(counts().in_use, before.in_use + 1);
    drop(s);
    assert_eq!(counts().in_use, before.in_use);
    assert_eq!(memcall::locked_bytes(), locked);
}

/// Several threads close one secret while a closure runs on it: it is released (and counted) exactly once.
fn concurrent_closes_count_once<F: Flavour>() {
    let before = counts();
    let s = F::factory().new(&mut KEY.to_vec()).unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            s.with_bytes(|_| {
                entered_tx.send(()).unwrap();
                // Give the closers time to queue up behind this closure.
                std::thread::sleep(std::time::Duration::from_millis(50));
                Ok(())
            })
            .unwrap()
        });
        entered_rx.recv().unwrap();
        for _ in 0..4 {
            scope.spawn(|| s.close().unwrap());
        }
    });
    assert!(s.is_closed());
    let after = counts();
    assert_eq!(after.in_use, before.in_use);
    assert_eq!(after.locked_bytes, before.locked_bytes);
}

/// Mappings the library made: excluded from core dumps (`dd` in smaps). The total count of mappings also moves
/// with the allocator's arenas and the test harness's threads, which are not the library's.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/smaps")
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .filter(|flags| flags.split_whitespace().any(|f| f == "dd"))
        .count()
}

fn failed_creations_leak_nothing<F: Flavour>() {
    // Warm up lazily allocated process state (thread-locals, the fault table) before measuring.
    drop(F::factory().new(&mut KEY.to_vec()).unwrap());
    let failures: [(Op, u32, u32); 6] = [
        (Op::Map, 0, 1),
        // Every lock fails (the page caches retry once at the limit).
        (Op::Lock, 0, u32::MAX),
        (Op::Protect, F::PROTECTS_BEFORE_SEAL, 1),
        // Seal fails and so does the first attempt to free.
        (Op::Protect, F::PROTECTS_BEFORE_SEAL, 2),
        (Op::Protect, F::PROTECTS_BEFORE_SEAL, 3),
        (Op::Unmap, 0, 1),
    ];
    // The page caches keep wiped, locked pages for reuse: empty them so only leaks remain in the figures.
    memcall::pool::trim_all();
    let (before, locked, maps) = (counts(), memcall::locked_bytes(), mappings());
    for (op, after, times) in failures {
        for random in [false, true] {
            let _guard = fault::fail(op).after(after).times(times).arm();
            let result = if random {
                F::factory().create_random(32)
            } else {
                F::factory().new(&mut KEY.to_vec())
            };
            // An unmap failure only matters on the error path; a secret that was made is closed normally.
            if let Ok(s) = result {
                assert_eq!(op, Op::Unmap);
                drop(_guard);
                s.close().unwrap();
            }
        }
    }
    memcall::pool::trim_all();
    let now = counts();
    assert_eq!(now.in_use, before.in_use, "{op_list:?}", op_list = failures);
    assert_eq!(
        now.allocated,
        before.allocated + 2,
        "only the two unmap-fault secrets were made"
    );
    assert_eq!(memcall::locked_bytes(), locked, "locked memory leaked");
    assert_eq!(mappings(), maps, "no-dump mappings leaked");
}

#[cfg(feature = "metrics")]
mod facade {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    #[derive(Default)]
    pub struct Capture {
        values: Mutex<HashMap<String, Arc<AtomicU64>>>,
        samples: Mutex<HashMap<String, Arc<Samples>>>,
    }

    #[derive(Default)]
    pub struct Samples(AtomicU64);

    impl metrics::HistogramFn for Samples {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Capture {
        fn cell(&self, key: &Key) -> Arc<AtomicU64> {
            let mut values = self.values.lock().unwrap();
            Arc::clone(values.entry(key.name().to_string()).or_default())
        }
        pub fn counter(&self, name: &str) -> u64 {
            self.values
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |v| v.load(Ordering::Relaxed))
        }
        pub fn gauge(&self, name: &str) -> f64 {
            f64::from_bits(self.counter(name))
        }
        pub fn samples(&self, name: &str) -> u64 {
            self.samples
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |v| v.0.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut samples = self.samples.lock().unwrap();
            Histogram::from_arc(Arc::clone(
                samples.entry(key.name().to_string()).or_default(),
            ))
        }
    }
}

#[cfg(feature = "metrics")]
fn metrics_facade_reports() {
    let capture = facade::Capture::default();
    metrics::with_local_recorder(&capture, || {
        let a = Pm::factory().new(&mut KEY.to_vec()).unwrap();
        let b = Mg::factory().create_random(8).unwrap();
        let _ = Pm::factory().new(&mut []);
        assert_eq!(capture.counter("secret.allocated"), 2);
        assert_eq!(capture.gauge("secret.inuse"), 2.0);
        let locked = (a.protections().locked_bytes + b.protections().locked_bytes) as f64;
        assert_eq!(capture.gauge("secret.locked_bytes"), locked);
        assert_eq!(
            capture.samples("secret.protectedmemory.alloctimer"),
            2,
            "failures are timed too"
        );
        assert_eq!(capture.samples("secret.memguard.alloctimer"), 1);
        a.close().unwrap();
        drop(b);
        assert_eq!(capture.counter("secret.allocated"), 2);
        assert_eq!(capture.gauge("secret.inuse"), 0.0);
        assert_eq!(capture.gauge("secret.locked_bytes"), 0.0);
    });
}

#[test]
fn accounting() {
    go_metrics_counts::<Pm>();
    go_metrics_counts::<Mg>();
    drop_without_close_releases::<Pm>();
    drop_without_close_releases::<Mg>();
    concurrent_closes_count_once::<Pm>();
    concurrent_closes_count_once::<Mg>();
    failed_creations_leak_nothing::<Pm>();
    failed_creations_leak_nothing::<Mg>();
    #[cfg(feature = "metrics")]
    metrics_facade_reports();
}
