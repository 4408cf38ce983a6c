//! Speed of the guarded-buffer primitives against Go memguard on this machine (from the issue):
//! new-from-bytes + destroy (32 B) 42.5 µs, enclave seal + open (32 B) 119.7 µs, stream write + read of
//! 1 MiB 13.3 ms. Run with `cargo bench -p securememory-memguard`; a ratio table is printed at the end.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use memguard::{Enclave, GuardedRegion, LockedBuffer, Locking, Stream};

const SECRET: &[u8; 32] = b"thisismy32bytesecretthatiwilluse";
const MIB: usize = 1 << 20;

fn buffer_new_from_bytes_destroy() {
    let mut src = *SECRET;
    let mut buf = LockedBuffer::from_bytes(&mut src).expect("allocate");
    buf.destroy().expect("destroy");
}

fn enclave_seal_open() {
    let mut src = *SECRET;
    let enclave = Enclave::new(&mut src).expect("seal");
    let mut opened = enclave.open().expect("open");
    black_box(opened.with_bytes(|b| b[0]).expect("read"));
    opened.destroy().expect("destroy");
}

fn stream_write_read(payload: &[u8], out: &mut [u8]) {
    let mut stream = Stream::new();
    stream.write_all(payload).expect("write");
    let mut total = 0;
    loop {
        let n = stream.read(&mut out[total..]).expect("read");
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, payload.len());
}

fn region_new_destroy() {
    GuardedRegion::new(32, Locking::Required)
        .expect("allocate")
        .destroy()
        .expect("destroy");
}

fn benches_fn(c: &mut Criterion) {
    c.bench_function("buffer_new_from_bytes_destroy_32B", |b| {
        b.iter(buffer_new_from_bytes_destroy)
    });
    c.bench_function("enclave_seal_open_32B", |b| b.iter(enclave_seal_open));
    c.bench_function("guarded_region_new_destroy_32B", |b| {
        b.iter(region_new_destroy)
    });
    let payload: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut out = vec![0u8; MIB];
    let mut group = c.benchmark_group("stream");
    group.sample_size(20);
    group.bench_function("stream_write_read_1MiB", |b| {
        b.iter(|| stream_write_read(&payload, &mut out))
    });
    group.finish();
}

criterion_group!(benches, benches_fn);

/// CPU time of the calling thread (user + system), which leaves out time spent preempted: on a shared, busy
/// machine it is far steadier than wall time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Median wall and thread-CPU time per call over `rounds` batches of `per_batch` calls.
fn median(rounds: usize, per_batch: u32, mut f: impl FnMut()) -> (Duration, Duration) {
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..rounds)
        .map(|_| {
            let (start, start_cpu) = (Instant::now(), thread_cpu_time());
            for _ in 0..per_batch {
                f();
            }
            (
                start.elapsed() / per_batch,
                (thread_cpu_time() - start_cpu) / per_batch,
            )
        })
        .unzip();
    wall.sort();
    cpu.sort();
    (wall[rounds / 2], cpu[rounds / 2])
}

fn print_ratios() {
    let payload: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut out = vec![0u8; MIB];
    let rows = [
        (
            "new-from-bytes + destroy, 32 B",
            42.5e-6,
            median(21, 200, buffer_new_from_bytes_destroy),
        ),
        (
            "enclave seal + open, 32 B",
            119.7e-6,
            median(21, 200, enclave_seal_open),
        ),
        (
            "stream write + read, 1 MiB",
            13.3e-3,
            median(11, 3, || stream_write_read(&payload, &mut out)),
        ),
    ];
    println!("\nmemguard vs Go memguard (median per operation; Go's figure is wall time on this machine)");
    println!(
        "{:<32} {:>11} {:>11} {:>11} {:>9} {:>9}",
        "operation", "rust wall", "rust cpu", "go", "x (wall)", "x (cpu)"
    );
    for (name, go, (wall, cpu)) in rows {
        println!(
            "{:<32} {:>9.1}µs {:>9.1}µs {:>9.1}µs {:>8.1}x {:>8.1}x",
            name,
            wall.as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6,
            go * 1e6,
            go / wall.as_secs_f64(),
            go / cpu.as_secs_f64()
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
