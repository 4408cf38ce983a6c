//! A bounded cache of armed guarded mappings: guard pages no-access, inner pages locked, read-write and wiped.
//!
//! Building a guarded region from scratch costs a map, a lock, two guard `mprotect`s and page faults; a cached
//! one costs none of them, so a buffer's or secret's whole life is the protection changes it really needs. A
//! cached mapping holds only zeros. The cache registers itself with [`memcall::pool::register_trim_hook`], so
//! any pool that hits the memlock limit (this one included) frees it before failing a caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use memcall::Region;

/// Mappings whose inner part is at most this many pages are cached.
const MAX_INNER_PAGES: usize = 4;
/// The most locked (inner) bytes the cache keeps: 64 one-page buffers.
const MAX_CACHED_BYTES: usize = 256 * 1024;

static SHELVES: [Mutex<Vec<Region>>; MAX_INNER_PAGES] =
    [const { Mutex::new(Vec::new()) }; MAX_INNER_PAGES];
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Purges in progress: what they destroy is unmapped, not cached.
static PURGING: AtomicUsize = AtomicUsize::new(0);

/// While it lives, destroyed regions are unmapped instead of cached.
pub(crate) struct PurgeScope(());

impl PurgeScope {
    pub(crate) fn enter() -> PurgeScope {
        PURGING.fetch_add(1, Ordering::SeqCst);
        PurgeScope(())
    }
}

impl Drop for PurgeScope {
    fn drop(&mut self) {
        PURGING.fetch_sub(1, Ordering::SeqCst);
    }
}

fn shelf(index: usize) -> MutexGuard<'static, Vec<Region>> {
    // A push or pop is one step, so a poisoned shelf is still consistent.
    SHELVES[index].lock().unwrap_or_else(|p| p.into_inner())
}

fn shelf_of(inner_len: usize) -> Option<usize> {
    let pages = inner_len / memcall::page_size();
    (1..=MAX_INNER_PAGES).contains(&pages).then(|| pages - 1)
}

fn register_once() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| memcall::pool::register_trim_hook(trim));
}

/// True while a test has a failure armed that the uncached path would reach (see [`memcall::fault_armed`]).
fn bypass(ops: &[memcall::Op]) -> bool {
    ops.iter().any(|&op| memcall::fault_armed(op))
}

/// A cached mapping for `inner_len` bytes of inner pages, if one is there.
pub(crate) fn take(inner_len: usize) -> Option<Region> {
    if bypass(&[memcall::Op::Map, memcall::Op::Lock, memcall::Op::Protect]) {
        return None;
    }
    let region = shelf(shelf_of(inner_len)?).pop()?;
    CACHED_BYTES.fetch_sub(inner_len, Ordering::Relaxed);
    Some(region)
}

/// Caches an armed mapping whose inner pages are locked, read-write and wiped; hands it back when the cache is
/// full or the size is not cached.
pub(crate) fn give(region: Region, inner_len: usize) -> Result<(), Region> {
    let purging = PURGING.load(Ordering::SeqCst) > 0;
    let Some(index) = shelf_of(inner_len).filter(|_| !purging && !bypass(&[memcall::Op::Unmap]))
    else {
        return Err(region);
    };
    register_once();
    let reserved = CACHED_BYTES
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c + inner_len <= MAX_CACHED_BYTES).then_some(c + inner_len)
        })
        .is_ok();
    if !reserved {
        return Err(region);
    }
    shelf(index).push(region);
    Ok(())
}

/// Frees every cached mapping (wiped again and unmapped); returns the locked bytes given back.
pub fn trim() -> usize {
    let mut freed = 0;
    for (index, _) in SHELVES.iter().enumerate() {
        let inner_len = (index + 1) * memcall::page_size();
        for region in std::mem::take(&mut *shelf(index)) {
            CACHED_BYTES.fetch_sub(inner_len, Ordering::Relaxed);
            freed += inner_len;
            if let Err(e) = region.free() {
                // Dropping still unmaps it.
                drop(e.region);
            }
        }
    }
    freed
}
