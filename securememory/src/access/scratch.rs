//! Scratch regions for sealed secrets: locked, no-dump, no-fork pages that hold a decrypted copy while
//! closures run on it, and are wiped and no-access at every other time.
//!
//! A small process-wide cache keeps released regions (wiped, no-access, locked) so that an access costs two
//! protection changes and no mapping or locking. It holds at most [`MAX_CACHED_BYTES`]; a memlock limit
//! reached anywhere in the process trims it (it registers with [`memcall::pool::register_trim_hook`]), and
//! `purge` empties it. A forked child starts with an empty cache and never touches the parent's regions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use memcall::{LockMode, PerProcess, Protection, Region, RegionPool};

/// Most bytes of released scratch regions kept for reuse (room for a 1 MiB secret's copy).
pub(crate) const MAX_CACHED_BYTES: usize = 1024 * 1024;

struct Cache {
    regions: Mutex<Vec<Region>>,
    bytes: AtomicUsize,
}

static CACHE: PerProcess<Cache> = PerProcess::new(new_cache);

fn new_cache() -> Cache {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        memcall::pool::register_trim_hook(trim);
    });
    Cache {
        regions: Mutex::new(Vec::new()),
        bytes: AtomicUsize::new(0),
    }
}

fn lock(cache: &Cache) -> MutexGuard<'_, Vec<Region>> {
    cache.regions.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A zeroed, read-write, locked (as `mode` asks) scratch region of at least `len` bytes, and whether it is
/// locked.
pub(crate) fn take(len: usize, mode: LockMode) -> memcall::Result<(Region, bool)> {
    let want = memcall::round_to_pages(len)?;
    let cache = CACHE.get();
    let cached = {
        let mut regions = lock(cache);
        let found = regions
            .iter()
            .position(|r| r.len() == want)
            .map(|at| regions.remove(at));
        if let Some(region) = &found {
            cache.bytes.fetch_sub(region.len(), Ordering::Relaxed);
        }
        found
    };
    if let Some(region) = cached {
        match region.protect(Protection::ReadWrite) {
            Ok(()) => return Ok((region, true)),
            Err(e) => {
                drop(region);
                return Err(e);
            }
        }
    }
    let acquired = RegionPool::global().acquire(want, mode)?;
    Ok((acquired.region, acquired.locked))
}

/// Wipes the first `used` bytes of a scratch region (the rest was zero from `take` and never written) and
/// makes it no-access, then caches it (when locked and there is room) or frees it.
///
/// # Errors
/// The failed protection change or unmap; the region is dropped (which still wipes and unmaps what it can).
pub(crate) fn give(mut region: Region, locked: bool, used: usize) -> memcall::Result<()> {
    // SAFETY: scratch regions are read-write from `take` until here, and the caller owns the region: no slice
    // of it is alive (the access window is closed).
    let bytes = unsafe { region.as_mut_slice() };
    let used = used.min(bytes.len());
    memcall::wipe_bytes(&mut bytes[..used]);
    let cache = CACHE.get();
    let len = region.len();
    if !locked || !region.is_locked() || region.is_forked() || len > MAX_CACHED_BYTES {
        return region.free().map_err(|e| e.error);
    }
    region.protect(Protection::NoAccess)?;
    // The oldest cached regions make room for this one: the sizes in use now are the ones worth keeping
    // (a 1 MiB secret's copy is not dropped for want of room next to a few small ones).
    let evicted = {
        let mut regions = lock(cache);
        let mut cached = cache.bytes.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        while cached + len > MAX_CACHED_BYTES && !regions.is_empty() {
            let old = regions.remove(0);
            cached -= old.len();
            evicted.push(old);
        }
        regions.push(region);
        cache.bytes.store(cached + len, Ordering::Relaxed);
        evicted
    };
    for old in evicted {
        if let Err(e) = old.free() {
            log::error!("releasing a scratch region failed: {}", e.error);
        }
    }
    Ok(())
}

/// Frees every cached scratch region of this process; returns the locked bytes given back.
pub(crate) fn trim() -> usize {
    let Some(cache) = CACHE.get_if_built() else {
        return 0;
    };
    let regions = {
        let mut cached = lock(cache);
        cache.bytes.store(0, Ordering::Relaxed);
        std::mem::take(&mut *cached)
    };
    let mut freed = 0;
    for region in regions {
        let len = region.len();
        match region.free() {
            Ok(()) => freed += len,
            Err(e) => log::error!("releasing a scratch region failed: {}", e.error),
        }
    }
    freed
}

/// Bytes of scratch regions cached right now.
pub(crate) fn cached_bytes() -> usize {
    CACHE
        .get_if_built()
        .map_or(0, |c| c.bytes.load(Ordering::Relaxed))
}
