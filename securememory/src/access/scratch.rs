//! Scratch regions for sealed secrets: locked, no-dump, no-fork pages that hold a decrypted copy while
//! closures run on it, and are wiped and no-access at every other time.
//!
//! A small process-wide cache keeps released regions (wiped, no-access, locked) so that an access costs two
//! protection changes and no mapping or locking. It holds at most [`MAX_CACHED_BYTES`]; a memlock limit
//! reached anywhere in the process trims it (it registers with [`memcall::pool::register_trim_hook`]), and
//! `purge` empties it. A forked child starts with an empty cache and never touches the parent's regions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use memcall::{LockMode, PerProcess, Protection, Region, RegionPool};

/// Most bytes of released scratch regions kept for reuse (room for a 1 MiB secret's copy).
pub(crate) const MAX_CACHED_BYTES: usize = 1024 * 1024;

/// A scratch region and what its release needs to know. Boxed once, when the region is mapped, and cached
/// boxed: an access window moves the box in and out of a sealed secret without allocating.
pub(crate) struct Scratch {
    pub(crate) region: Region,
    /// Whether the region is locked (a best-effort secret's region may not be).
    locked: bool,
    /// Wiped and made no-access under its readers by a purge: freed (never cached) when released.
    pub(crate) purged: AtomicBool,
}

/// Boxed entries on purpose: the boxes move in and out of sealed secrets' windows as they are, so a cached
/// region costs no allocation on the way out.
type Cached = Vec<Box<Scratch>>;

struct Cache {
    #[allow(clippy::vec_box)]
    regions: Mutex<Cached>,
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

fn lock(cache: &Cache) -> MutexGuard<'_, Cached> {
    cache.regions.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A zeroed, read-write scratch region of at least `len` bytes, locked as `mode` asks.
pub(crate) fn take(len: usize, mode: LockMode) -> memcall::Result<Box<Scratch>> {
    let want = memcall::round_to_pages(len)?;
    let cache = CACHE.get();
    let cached = {
        let mut regions = lock(cache);
        let found = regions
            .iter()
            .position(|s| s.region.len() == want)
            .map(|at| regions.remove(at));
        if let Some(scratch) = &found {
            cache
                .bytes
                .fetch_sub(scratch.region.len(), Ordering::Relaxed);
        }
        found
    };
    if let Some(scratch) = cached {
        // A dropped box frees its region (wiped and unmapped by `Region`'s drop).
        return scratch
            .region
            .protect(Protection::ReadWrite)
            .map(|()| scratch);
    }
    let acquired = RegionPool::global().acquire(want, mode)?;
    Ok(Box::new(Scratch {
        region: acquired.region,
        locked: acquired.locked,
        purged: AtomicBool::new(false),
    }))
}

/// Gives a scratch region back: wipes its first `used` bytes (the rest was zero from `take` and never
/// written) and makes it no-access, then caches it (when locked, never purged, and there is room) or frees it.
///
/// # Errors
/// The failed protection change or unmap; the region is dropped (which still wipes and unmaps what it can).
pub(crate) fn give(mut scratch: Box<Scratch>, used: usize) -> memcall::Result<()> {
    if scratch.purged.load(Ordering::Acquire) {
        // Already wiped and no-access under its readers; it goes, like the secret it served.
        return scratch.region.free().map_err(|e| e.error);
    }
    // SAFETY: scratch regions are read-write from `take` until here, and the caller owns the region: no slice
    // of it is alive (the access window is closed).
    let bytes = unsafe { scratch.region.as_mut_slice() };
    let used = used.min(bytes.len());
    memcall::wipe_bytes(&mut bytes[..used]);
    let cache = CACHE.get();
    let len = scratch.region.len();
    if !scratch.locked
        || !scratch.region.is_locked()
        || scratch.region.is_forked()
        || len > MAX_CACHED_BYTES
    {
        return scratch.region.free().map_err(|e| e.error);
    }
    scratch.region.protect(Protection::NoAccess)?;
    // The oldest cached regions make room for this one: the sizes in use now are the ones worth keeping
    // (a 1 MiB secret's copy is not dropped for want of room next to a few small ones).
    let evicted = {
        let mut regions = lock(cache);
        let mut cached = cache.bytes.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        while cached + len > MAX_CACHED_BYTES && !regions.is_empty() {
            let old = regions.remove(0);
            cached -= old.region.len();
            evicted.push(old);
        }
        regions.push(scratch);
        cache.bytes.store(cached + len, Ordering::Relaxed);
        evicted
    };
    for old in evicted {
        if let Err(e) = old.region.free() {
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
    for scratch in regions {
        let len = scratch.region.len();
        match scratch.region.free() {
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
