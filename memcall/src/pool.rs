//! A bounded pool of regions that are already mapped, hardened and locked.
//!
//! Mapping, advising and locking fresh pages costs several system calls (about 7–10 µs on a typical VM); a
//! secret that reuses a pooled region pays none of them. A pooled region is always wiped (all zeros), locked and
//! read-write: it holds nothing secret, and the next owner can write into it without a protection change.
//!
//! The pool never makes a caller fail: when locking a fresh region hits the memlock limit, the pool first gives
//! its cached regions back to the OS and retries. What it holds counts toward the process's locked memory and is
//! reported by [`RegionPool::cached_bytes`].
//!
//! Each pool's cache belongs to the process that filled it: a forked child sees it empty (see [`RegionPool`]).
//!
//! With the `fault-injection` feature, a rule armed on the calling thread for [`Op::Map`] or [`Op::Lock`]
//! makes [`RegionPool::acquire`] skip the cache, and one for [`Op::Unmap`] makes [`RegionPool::release`] free
//! the region, so injected failures are reached as they would be without a pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::error::{Op, Result};
use crate::fork::PerProcess;
use crate::region::{round_to_pages, Region};

/// Regions of up to this many pages are pooled; larger ones are mapped and freed directly.
pub const MAX_POOLED_PAGES: usize = 8;

/// The default cap of a pool: 256 KiB of locked memory (64 pages of 4 KiB).
pub const DEFAULT_POOL_BYTES: usize = 256 * 1024;

/// How a caller wants a region locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LockMode {
    /// Locking must succeed; failure is an error.
    #[default]
    Required,
    /// Try to lock; on failure hand out the region unlocked and say so.
    BestEffort,
}

/// A region handed out by a pool, with whether it is locked.
#[derive(Debug)]
pub struct Acquired {
    /// The region: zeroed and read-write.
    pub region: Region,
    /// Whether its pages are locked (the same as [`Region::is_locked`]).
    pub locked: bool,
}

/// What one process caches: the regions by size class and their total.
#[derive(Debug)]
struct Shelves {
    classes: [Mutex<Vec<Region>>; MAX_POOLED_PAGES],
    cached_bytes: AtomicUsize,
}

impl Shelves {
    fn new() -> Shelves {
        Shelves {
            classes: [const { Mutex::new(Vec::new()) }; MAX_POOLED_PAGES],
            cached_bytes: AtomicUsize::new(0),
        }
    }
}

/// A bounded cache of wiped, locked, read-write regions, by size in pages.
///
/// The cache belongs to the process that filled it. A forked child starts with an empty one: the parent's
/// regions are not mapped there (no-fork advice) and their addresses may hold the child's own memory by now, so
/// the child never hands them out, trims, wipes or unmaps them; it forgets them (see [`PerProcess`]).
#[derive(Debug)]
pub struct RegionPool {
    shelves: PerProcess<Shelves>,
    max_bytes: AtomicUsize,
}

impl Default for RegionPool {
    fn default() -> Self {
        Self::new(DEFAULT_POOL_BYTES)
    }
}

fn lock_class(class: &Mutex<Vec<Region>>) -> MutexGuard<'_, Vec<Region>> {
    // The vectors stay consistent even if a holder panicked: every push/pop is a single step.
    class
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RegionPool {
    /// An empty pool that caches at most `max_bytes` of regions.
    pub const fn new(max_bytes: usize) -> Self {
        RegionPool {
            shelves: PerProcess::new(Shelves::new),
            max_bytes: AtomicUsize::new(max_bytes),
        }
    }

    /// The process-wide pool used by the higher crates.
    pub fn global() -> &'static RegionPool {
        static GLOBAL: RegionPool = RegionPool::new(DEFAULT_POOL_BYTES);
        &GLOBAL
    }

    /// Changes the cap; a lower cap frees cached regions at once. Zero disables pooling.
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        if self.cached_bytes() > max_bytes {
            self.trim();
        }
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of locked memory held by cached regions of this process now.
    pub fn cached_bytes(&self) -> usize {
        self.shelves
            .get_if_built()
            .map_or(0, |s| s.cached_bytes.load(Ordering::Relaxed))
    }

    fn class_of(len: usize) -> Option<usize> {
        let pages = len / crate::page_size();
        (1..=MAX_POOLED_PAGES).contains(&pages).then(|| pages - 1)
    }

    /// A zeroed, read-write, hardened region of at least `len` bytes, locked as `mode` asks.
    ///
    /// # Errors
    /// As [`Region::alloc`] and [`Region::lock`] (the latter only with [`LockMode::Required`], and only after
    /// the pool has released its own cached regions to make room).
    pub fn acquire(&self, len: usize, mode: LockMode) -> Result<Acquired> {
        let len = round_to_pages(len)?;
        // With a test's failure armed for mapping or locking, serve from the OS so the failure is reached.
        let bypass = crate::fault_armed(Op::Map) || crate::fault_armed(Op::Lock);
        if let Some(class) = Self::class_of(len).filter(|_| !bypass) {
            let shelves = self.shelves.get();
            if let Some(region) = lock_class(&shelves.classes[class]).pop() {
                shelves
                    .cached_bytes
                    .fetch_sub(region.len(), Ordering::Relaxed);
                return Ok(Acquired {
                    region,
                    locked: true,
                });
            }
        }
        let region = Region::alloc(len)?;
        let locked = match region.lock() {
            Ok(()) => true,
            Err(e) if e.is_lock_limit() && self.trim() + trim_all() > 0 => {
                match (region.lock(), mode) {
                    (Ok(()), _) => true,
                    (Err(_), LockMode::BestEffort) => false,
                    (Err(e), LockMode::Required) => return Err(e),
                }
            }
            Err(_) if mode == LockMode::BestEffort => false,
            Err(e) => return Err(e),
        };
        Ok(Acquired { region, locked })
    }

    /// Gives a region back: it is wiped (made read-write and zeroed) and cached if it is locked, of a pooled
    /// size and the pool has room; otherwise it is freed.
    ///
    /// Whether the region is locked is the region's own record ([`Region::is_locked`]: locked whole by this
    /// process and not unlocked since). `locked` can only veto caching (pass what [`Acquired::locked`] said):
    /// a region that is not locked is never cached, whatever the caller claims, so the pool never hands out an
    /// unlocked region as locked. A region mapped by another process (a forked child releasing a region
    /// inherited from its parent) is forgotten, never cached.
    ///
    /// # Errors
    /// When wiping or freeing fails the region comes back inside the error, as with [`Region::free`].
    pub fn release(&self, region: Region, locked: bool) -> Result<(), crate::FreeError> {
        // With a test's unmap failure armed, free for real so the failure is reached.
        // Secret memory goes back to its own pool (see `crate::secretmem`) through `free`.
        let cacheable = locked
            && region.is_locked()
            && !region.is_forked()
            && !region.is_secret()
            && !crate::fault_armed(Op::Unmap);
        let Some(class) = Self::class_of(region.len()).filter(|_| cacheable) else {
            return region.free();
        };
        if let Err(error) = region.wipe() {
            return Err(crate::FreeError { region, error });
        }
        let len = region.len();
        let shelves = self.shelves.get();
        let reserved = shelves
            .cached_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cached| {
                (cached + len <= self.max_bytes()).then_some(cached + len)
            })
            .is_ok();
        if reserved {
            lock_class(&shelves.classes[class]).push(region);
            Ok(())
        } else {
            region.free()
        }
    }

    /// Frees every region this process cached (wiped again on the way out, and unlocked by the unmap); returns
    /// the bytes given back. In a forked child that has cached nothing yet this touches nothing at all.
    pub fn trim(&self) -> usize {
        let Some(shelves) = self.shelves.get_if_built() else {
            return 0;
        };
        let mut freed = 0;
        for class in &shelves.classes {
            let drained: Vec<Region> = std::mem::take(&mut *lock_class(class));
            for region in drained {
                shelves
                    .cached_bytes
                    .fetch_sub(region.len(), Ordering::Relaxed);
                freed += region.len();
                // A region that cannot be freed is dropped, which still unmaps it.
                if let Err(e) = region.free() {
                    drop(e.region);
                }
            }
        }
        freed
    }
}

/// The registered trim hooks. Lock-free to read: `trim_all` runs at the memlock limit, also in forked children,
/// where a lock held by a parent thread at the fork would never be released. Hooks are plain functions of this
/// program, so a child inherits them (they are fork-safe themselves: each cache forgets its parent's regions).
static TRIM_HOOKS: [OnceLock<fn() -> usize>; MAX_TRIM_HOOKS] =
    [const { OnceLock::new() }; MAX_TRIM_HOOKS];

/// How many distinct trim hooks may be registered.
pub const MAX_TRIM_HOOKS: usize = 16;

/// Registers a function that frees another cache of locked memory (for example guarded buffers kept by a
/// higher crate) and returns the bytes it gave back. [`trim_all`] calls it, and so does every pool that hits the
/// memlock limit, so no cache of locked pages makes another allocation fail. Registering twice is harmless.
/// Returns `false` (and registers nothing) when [`MAX_TRIM_HOOKS`] other hooks are registered already.
pub fn register_trim_hook(hook: fn() -> usize) -> bool {
    for slot in &TRIM_HOOKS {
        match slot.set(hook) {
            Ok(()) => return true,
            Err(_) if slot.get().is_some_and(|h| std::ptr::fn_addr_eq(*h, hook)) => return true,
            Err(_) => {}
        }
    }
    false
}

/// Gives every cached locked page back to the OS: the global pool's and those of registered caches. Returns
/// the bytes freed. Call it before measuring locked memory, or to shrink the process after a burst.
///
/// In a forked child it frees only what the child itself cached: regions cached by the parent are not the
/// child's (their addresses may hold the child's own memory), and are never touched.
pub fn trim_all() -> usize {
    let cached = RegionPool::global().trim()
        + TRIM_HOOKS
            .iter()
            .filter_map(OnceLock::get)
            .map(|hook| hook())
            .sum::<usize>();
    // Last: the caches above give secret-memory regions back to their areas, which may leave them idle.
    cached + crate::secretmem::trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protection;

    #[test]
    fn a_reused_region_never_shows_old_contents() {
        let pool = RegionPool::new(DEFAULT_POOL_BYTES);
        let mut first = pool.acquire(32, LockMode::Required).unwrap();
        // SAFETY: read-write and exclusively ours.
        unsafe { first.region.as_mut_slice() }.fill(0xC3);
        first.region.protect(Protection::NoAccess).unwrap();
        let addr = first.region.as_ptr();
        pool.release(first.region, first.locked).unwrap();
        assert_eq!(pool.cached_bytes(), crate::page_size());
        let second = pool.acquire(1, LockMode::Required).unwrap();
        assert_eq!(second.region.as_ptr(), addr, "the cached region is reused");
        assert!(second.locked);
        // SAFETY: pooled regions are handed out read-write.
        assert!(unsafe { second.region.as_slice() }.iter().all(|&b| b == 0));
        assert_eq!(pool.cached_bytes(), 0);
        pool.release(second.region, true).unwrap();
        pool.trim();
        assert_eq!(pool.cached_bytes(), 0);
    }

    #[test]
    fn the_cap_is_respected_and_unlocked_or_large_regions_are_freed() {
        let page = crate::page_size();
        let pool = RegionPool::new(2 * page);
        let held: Vec<_> = (0..4)
            .map(|_| pool.acquire(1, LockMode::Required).unwrap())
            .collect();
        for a in held {
            pool.release(a.region, a.locked).unwrap();
        }
        assert_eq!(pool.cached_bytes(), 2 * page);
        let unlocked = pool.acquire(1, LockMode::Required).unwrap();
        pool.release(unlocked.region, false).unwrap();
        assert_eq!(
            pool.cached_bytes(),
            page,
            "an unlocked region is never cached"
        );
        let big = pool
            .acquire((MAX_POOLED_PAGES + 1) * page, LockMode::Required)
            .unwrap();
        pool.release(big.region, true).unwrap();
        assert_eq!(pool.cached_bytes(), page);
        pool.set_max_bytes(0);
        assert_eq!(pool.cached_bytes(), 0);
    }

    #[test]
    fn invalid_lengths_are_errors() {
        let pool = RegionPool::new(DEFAULT_POOL_BYTES);
        assert!(pool.acquire(0, LockMode::Required).is_err());
        assert!(pool.acquire(usize::MAX, LockMode::BestEffort).is_err());
    }
}
