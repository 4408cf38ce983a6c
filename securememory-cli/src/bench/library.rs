//! Workloads on the library's own types. Each constructor sets up outside the timed loop.

use memcall::Region;

use super::stats::Workload;

type Built = Result<Box<dyn Workload>, String>;

fn unavailable(what: &str) -> Built {
    Err(format!(
        "not available: {what} is not built into this binary yet"
    ))
}

pub fn with_bytes_protected() -> Built {
    unavailable("securememory")
}
pub fn with_bytes_memguard() -> Built {
    unavailable("securememory")
}
pub fn with_bytes_two_threads() -> Built {
    unavailable("securememory")
}
pub fn with_bytes_1mib() -> Built {
    unavailable("securememory")
}
pub fn new_close_protected() -> Built {
    unavailable("securememory")
}
pub fn new_close_memguard() -> Built {
    unavailable("securememory")
}
pub fn create_random_close_protected() -> Built {
    unavailable("securememory")
}
pub fn create_random_close_memguard() -> Built {
    unavailable("securememory")
}
pub fn buffer_new_destroy() -> Built {
    unavailable("memguard")
}
pub fn enclave_seal_open() -> Built {
    unavailable("memguard")
}
pub fn stream_1mib() -> Built {
    unavailable("memguard")
}

/// A fresh one-page region: map, harden, lock, then wipe and unmap. The page-layer cost under every secret.
pub fn region_alloc_lock_free() -> Built {
    Ok(Box::new(|iters: u64| {
        for _ in 0..iters {
            let r = Region::alloc(32).map_err(|e| e.to_string())?;
            r.lock().map_err(|e| e.to_string())?;
            r.free().map_err(|e| e.error.to_string())?;
        }
        Ok(())
    }))
}
