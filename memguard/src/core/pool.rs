//! A bounded cache of armed guarded mappings: guard pages no-access, inner pages locked, read-write and wiped.
//!
//! Building a guarded region from scratch costs a map, a lock, two guard `mprotect`s and page faults; a cached
//! one costs none of them, so a buffer's or secret's whole life is the protection changes it really needs. A
//! cached mapping holds only zeros. The cache registers itself with [`memcall::pool::register_trim_hook`], so
//! any pool that hits the memlock limit (this one included) frees it before failing a caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use memcall::{PerProcess, Region};

/// Mappings whose inner part is at most this many pages are cached.
const MAX_INNER_PAGES: usize = 4;
/// The most locked (inner) bytes the cache keeps: 64 one-page buffers.
const MAX_CACHED_BYTES: usize = 256 * 1024;

/// The cache of one process. A forked child gets a fresh, empty one on first use ([`PerProcess`]): the parent's
/// mappings are not inherited (no-fork advice) and their addresses may hold the child's own memory by now, so
/// the child never hands them out, trims or unmaps them. A purge in progress on a parent thread at the fork
/// does not stop the child from caching either.
struct Cache {
    /// By inner size: anonymous mappings, then secret-memory ones (see [`Region::alloc_secret`]).
    shelves: [Mutex<Vec<Region>>; 2 * MAX_INNER_PAGES],
    cached_bytes: AtomicUsize,
    /// Purges in progress: what they destroy is unmapped, not cached.
    purging: AtomicUsize,
}

static CACHE: PerProcess<Cache> = PerProcess::new(|| Cache {
    shelves: [const { Mutex::new(Vec::new()) }; 2 * MAX_INNER_PAGES],
    cached_bytes: AtomicUsize::new(0),
    purging: AtomicUsize::new(0),
});

/// While it lives, destroyed regions are unmapped instead of cached.
pub(crate) struct PurgeScope(&'static AtomicUsize);

impl PurgeScope {
    pub(crate) fn enter() -> PurgeScope {
        let purging = &CACHE.get().purging;
        purging.fetch_add(1, Ordering::SeqCst);
        PurgeScope(purging)
    }
}

impl Drop for PurgeScope {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn shelf(cache: &Cache, index: usize) -> MutexGuard<'_, Vec<Region>> {
    // A push or pop is one step, so a poisoned shelf is still consistent.
    cache.shelves[index]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn shelf_of(inner_len: usize, secret: bool) -> Option<usize> {
    let pages = inner_len / memcall::page_size();
    let base = if secret { MAX_INNER_PAGES } else { 0 };
    (1..=MAX_INNER_PAGES)
        .contains(&pages)
        .then(|| base + pages - 1)
}

fn register_once() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if !memcall::pool::register_trim_hook(trim) {
            log::warn!("memguard's cache of guarded mappings could not register its trim hook");
        }
    });
}

/// True while a test has a failure armed that the uncached path would reach (see [`memcall::fault_armed`]).
fn bypass(ops: &[memcall::Op]) -> bool {
    ops.iter().any(|&op| memcall::fault_armed(op))
}

/// A cached mapping for `inner_len` bytes of inner pages, in secret memory or not, if one is there.
pub(crate) fn take(inner_len: usize, secret: bool) -> Option<Region> {
    if bypass(&[memcall::Op::Map, memcall::Op::Lock, memcall::Op::Protect]) {
        return None;
    }
    let index = shelf_of(inner_len, secret)?;
    // Nothing cached in this process yet: nothing to take (and no need to build the cache).
    let cache = CACHE.get_if_built()?;
    let region = shelf(cache, index).pop()?;
    cache.cached_bytes.fetch_sub(inner_len, Ordering::Relaxed);
    Some(region)
}

/// Caches an armed mapping whose inner pages are locked, read-write and wiped; hands it back when the cache is
/// full or the size is not cached.
pub(crate) fn give(region: Region, inner_len: usize) -> Result<(), Region> {
    if region.is_forked() {
        // A region of the parent's, destroyed in a forked child: never cached (the caller forgets it).
        return Err(region);
    }
    let cache = CACHE.get();
    let purging = cache.purging.load(Ordering::SeqCst) > 0;
    let Some(index) = shelf_of(inner_len, region.is_secret())
        .filter(|_| !purging && !bypass(&[memcall::Op::Unmap]))
    else {
        return Err(region);
    };
    register_once();
    let reserved = cache
        .cached_bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c + inner_len <= MAX_CACHED_BYTES).then_some(c + inner_len)
        })
        .is_ok();
    if !reserved {
        return Err(region);
    }
    shelf(cache, index).push(region);
    Ok(())
}

/// Frees every mapping this process cached (wiped again and unmapped); returns the locked bytes given back. In
/// a forked child, the parent's cached mappings are never touched (the child's cache starts empty).
pub fn trim() -> usize {
    let Some(cache) = CACHE.get_if_built() else {
        return 0;
    };
    let mut freed = 0;
    for index in 0..2 * MAX_INNER_PAGES {
        let inner_len = (index % MAX_INNER_PAGES + 1) * memcall::page_size();
        for region in std::mem::take(&mut *shelf(cache, index)) {
            cache.cached_bytes.fetch_sub(inner_len, Ordering::Relaxed);
            freed += inner_len;
            if let Err(e) = region.free() {
                // Dropping still unmaps it.
                drop(e.region);
            }
        }
    }
    freed
}
