//! The access path allocates nothing: `with_bytes` (first accessor, nested accessor, failing closure) and
//! reader reads are counted by a global allocator wrapper. Its own binary: the allocator is process-wide.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{secret_of, Flavour, Mg, Pm, KEY};
use securememory::{Error, Secret, SecretExtensions};

struct Counting;

// The initializer is `const`; clippy still flags it on targets with emulated TLS (windows-gnu).
#[allow(clippy::missing_const_for_thread_local)]
mod tls {
    use super::Cell;
    thread_local! {
        pub(super) static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }
}
use tls::ALLOCATIONS;

// SAFETY: forwards every call to `System` unchanged; only counts allocations on the calling thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn check<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let mut buf = [0u8; 8];
    // Warm up lazily initialised process state (fork handler, thread-locals).
    s.with_bytes(|_| Ok(())).unwrap();
    let n = allocations_during(|| {
        for _ in 0..100 {
            let first = s.with_bytes(|b| Ok(b[0])).unwrap();
            assert_eq!(first, KEY[0]);
            s.with_bytes(|_| s.with_bytes(|b| Ok(b.len()))).unwrap();
            s.with_bytes_dyn(&mut |_| Ok(())).unwrap();
            let mut reader = s.reader().unwrap();
            while reader.read_with_eof(&mut buf).unwrap().0 > 0 {}
        }
    });
    assert_eq!(n, 0, "the access path allocated");
    let closed = secret_of::<F>(KEY);
    closed.close().unwrap();
    let n = allocations_during(|| {
        assert!(matches!(closed.with_bytes(|_| Ok(())), Err(Error::Closed)));
    });
    assert_eq!(n, 0, "refusing a closed secret allocated");
}

#[test]
fn access_path_does_not_allocate() {
    // The counter works: a Vec is counted.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
    check::<Pm>();
    check::<Mg>();
}
