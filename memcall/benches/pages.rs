//! The cost floor of secret memory on this machine, and what the pool saves.
//!
//! - `floor/protect_pair_1_page`: mprotect(read-only) + mprotect(no-access) on one locked page, the price of one
//!   access window; every other figure in the workspace is compared with it.
//! - `floor/protect_pair_256_pages`: the same on a 1 MiB locked region.
//! - `region/fresh_alloc_lock_free` vs `region/pooled_acquire_release`: a one-page locked region from the OS
//!   versus from the pool (the release includes the wipe and its protection change).

use criterion::{criterion_group, criterion_main, Criterion};
use memcall::{LockMode, Protection, Region, RegionPool};

fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    for pages in [1usize, 256] {
        let region = Region::alloc(pages * memcall::page_size()).unwrap();
        region.lock().unwrap();
        // Writing every page makes it resident, as a secret's pages are (untouched pages are cheaper to protect).
        region.wipe().unwrap();
        region.protect(Protection::NoAccess).unwrap();
        group.bench_function(format!("protect_pair_{pages}_pages"), |b| {
            b.iter(|| {
                region.protect(Protection::ReadOnly).unwrap();
                region.protect(Protection::NoAccess).unwrap();
            })
        });
        region.free().unwrap();
    }
    group.finish();
}

fn allocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("region");
    group.bench_function("fresh_alloc_lock_free", |b| {
        b.iter(|| {
            let region = Region::alloc(32).unwrap();
            region.lock().unwrap();
            region.free().unwrap();
        })
    });
    let pool = RegionPool::new(1 << 20);
    group.bench_function("pooled_acquire_release", |b| {
        b.iter(|| {
            let a = pool.acquire(32, LockMode::Required).unwrap();
            pool.release(a.region, a.locked).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, floor, allocation);
criterion_main!(benches);
