//! Criterion benches of the Secret API against the floor (two raw `mprotect` calls on one locked page, the
//! least any access window can cost), then a same-run summary that prints each figure with its ratio.
//!
//! `cargo bench -p securememory --bench secret` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::io::Read;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use memcall::{Protection, Region};
use securememory::{
    MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretExtensions, SecretFactory,
};

const KEY: &[u8; 32] = b"thisismy32bytesecretthatiwilluse";
const MIB: usize = 1 << 20;

/// A locked region of `len` bytes at rest (no-access), like a secret's pages.
fn floor_region(len: usize) -> Region {
    let region = Region::alloc(len).expect("alloc");
    region.lock().expect("lock");
    // Writing every page makes it resident, as a secret's pages are (untouched pages are cheaper to protect).
    region.wipe().expect("wipe");
    region.protect(Protection::NoAccess).expect("protect");
    region
}

fn floor_pair(region: &Region) {
    region.protect(Protection::ReadOnly).unwrap();
    region.protect(Protection::NoAccess).unwrap();
}

/// `iters` calls of `op` on each of two threads at once; returns wall time / 2, i.e. per-op time is
/// wall / all ops.
fn two_threads(iters: u64, op: &(dyn Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins both threads before returning.
        start
    })
    .elapsed()
        / 2
}

fn bench_access(c: &mut Criterion) {
    let pm = ProtectedMemorySecretFactory::new();
    let mg = MemguardSecretFactory::new();
    let pm_secret = pm.new(&mut KEY.to_vec()).unwrap();
    let mg_secret = mg.new(&mut KEY.to_vec()).unwrap();
    let big = pm.create_random(MIB).unwrap();
    let floor = floor_region(1);
    let floor_big = floor_region(MIB);

    let mut g = c.benchmark_group("access");
    g.bench_function("floor: mprotect RO + NONE, 1 locked page", |b| {
        b.iter(|| floor_pair(&floor))
    });
    g.bench_function("floor: mprotect RO + NONE, 256 locked pages", |b| {
        b.iter(|| floor_pair(&floor_big))
    });
    for (name, s) in [
        ("protected_memory", &pm_secret as &dyn Secret),
        ("memguard", &mg_secret as &dyn Secret),
    ] {
        g.bench_function(BenchmarkId::new("with_bytes", name), |b| {
            b.iter(|| s.with_bytes(|bytes| Ok(black_box(bytes[0]))).unwrap())
        });
        g.bench_function(BenchmarkId::new("with_bytes 2 threads", name), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, &|| {
                    s.with_bytes(|bytes| Ok(black_box(bytes[0]))).unwrap();
                })
            })
        });
        g.bench_function(BenchmarkId::new("with_bytes_func", name), |b| {
            b.iter(|| s.with_bytes_func(|bytes| Ok(bytes.to_vec())).unwrap())
        });
        g.bench_function(BenchmarkId::new("reader read_all", name), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                s.reader().unwrap().read_to_end(&mut out).unwrap();
                out
            })
        });
        g.bench_function(BenchmarkId::new("reader read_full", name), |b| {
            b.iter(|| {
                let mut out = [0u8; 32];
                s.reader().unwrap().read_exact(&mut out).unwrap();
                out
            })
        });
        g.bench_function(BenchmarkId::new("reader read loop", name), |b| {
            b.iter(|| {
                let mut reader = s.reader().unwrap();
                let (mut out, mut buf) = (Vec::with_capacity(32), [0u8; 8]);
                loop {
                    let (n, eof) = reader.read_with_eof(&mut buf).unwrap();
                    out.extend_from_slice(&buf[..n]);
                    if eof {
                        break out;
                    }
                }
            })
        });
    }
    g.bench_function("with_bytes 1 MiB/protected_memory", |b| {
        b.iter(|| {
            big.with_bytes(|bytes| Ok(black_box(bytes[MIB - 1])))
                .unwrap()
        })
    });
    g.finish();
}

fn bench_lifecycle(c: &mut Criterion) {
    let pm = ProtectedMemorySecretFactory::new();
    let mg = MemguardSecretFactory::new();
    let mut g = c.benchmark_group("lifecycle");
    g.bench_function("new + close/protected_memory", |b| {
        b.iter(|| pm.new(&mut KEY.to_vec()).unwrap().close().unwrap())
    });
    g.bench_function("new + close/memguard", |b| {
        b.iter(|| mg.new(&mut KEY.to_vec()).unwrap().close().unwrap())
    });
    g.bench_function("create_random + close/protected_memory", |b| {
        b.iter(|| pm.create_random(32).unwrap().close().unwrap())
    });
    g.bench_function("create_random + close/memguard", |b| {
        b.iter(|| mg.create_random(32).unwrap().close().unwrap())
    });
    g.finish();
}

/// Median nanoseconds per call of `op` over several timed rounds.
fn median_ns(rounds: usize, iters: u32, mut op: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        op();
    }
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[rounds / 2]
}

/// One table, one run: each figure next to the floor measured alongside it.
fn summary() {
    let pm = ProtectedMemorySecretFactory::new();
    let mg = MemguardSecretFactory::new();
    let s = pm.new(&mut KEY.to_vec()).unwrap();
    let big = pm.create_random(MIB).unwrap();
    let floor = floor_region(1);
    let floor_big = floor_region(MIB);
    let (rounds, n) = (7, 20_000);

    let floor_ns = median_ns(rounds, n, || floor_pair(&floor));
    let floor_big_ns = median_ns(rounds, n / 10, || floor_pair(&floor_big));
    let one = median_ns(rounds, n, || {
        s.with_bytes(|b| Ok(black_box(b[0]))).unwrap();
    });
    let two = {
        let mut samples: Vec<f64> = (0..rounds)
            .map(|_| {
                let wall = two_threads(u64::from(n), &|| {
                    s.with_bytes(|b| Ok(black_box(b[0]))).unwrap();
                });
                wall.as_nanos() as f64 / f64::from(n)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        samples[rounds / 2]
    };
    let big_ns = median_ns(rounds, n / 10, || {
        big.with_bytes(|b| Ok(black_box(b[0]))).unwrap();
    });
    let pm_life = median_ns(rounds, n / 4, || {
        pm.new(&mut KEY.to_vec()).unwrap().close().unwrap()
    });
    let mg_life = median_ns(rounds, n / 4, || {
        mg.new(&mut KEY.to_vec()).unwrap().close().unwrap()
    });
    let pm_rand = median_ns(rounds, n / 4, || {
        pm.create_random(32).unwrap().close().unwrap()
    });
    let mg_rand = median_ns(rounds, n / 4, || {
        mg.create_random(32).unwrap().close().unwrap()
    });

    println!("\nsame-run summary (median of {rounds} rounds; Go on this machine in brackets)");
    println!("{:<46} {:>10} {:>8}  baseline", "work", "ns/op", "ratio");
    let row = |name: &str, ns: f64, base: f64, base_name: &str| {
        println!("{name:<46} {ns:>10.0} {:>8.2}  {base_name}", ns / base);
    };
    row(
        "floor: mprotect pair, 1 locked page",
        floor_ns,
        floor_ns,
        "floor",
    );
    row(
        "floor: mprotect pair, 256 locked pages",
        floor_big_ns,
        floor_big_ns,
        "256-page floor",
    );
    row("with_bytes, 1 thread [Go 2.7 us]", one, floor_ns, "floor");
    row(
        "with_bytes, 2 threads, wall/all ops [Go 2.7 us]",
        two,
        one,
        "1-thread with_bytes",
    );
    row(
        "with_bytes, 1 MiB [Go 20.3 us]",
        big_ns,
        floor_big_ns,
        "256-page floor",
    );
    row(
        "new + close, protected_memory [Go 25.3 us]",
        pm_life,
        floor_ns,
        "floor",
    );
    row(
        "new + close, memguard [Go 48.2 us]",
        mg_life,
        floor_ns,
        "floor",
    );
    row(
        "create_random + close, protected_memory [24.7 us]",
        pm_rand,
        floor_ns,
        "floor",
    );
    row(
        "create_random + close, memguard [Go 47.5 us]",
        mg_rand,
        floor_ns,
        "floor",
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_access(&mut c);
    bench_lifecycle(&mut c);
    c.final_summary();
    summary();
}
