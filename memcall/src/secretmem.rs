//! Secret memory: regions whose pages the kernel itself cannot read (Linux `memfd_secret(2)`, 5.14 and later).
//!
//! Secret-memory pages are removed from the kernel's direct map. Besides everything an ordinary [`Region`]
//! gives, that means no other process reads them, root included: `/proc/<pid>/mem`, `process_vm_readv`,
//! `ptrace(PTRACE_PEEKDATA)` and core dumps (`gcore` too, whatever the `coredump_filter`) all fail or see
//! nothing, and a kernel bug that discloses memory through the direct map cannot reach them either. The pages
//! are always locked (the kernel charges them to `RLIMIT_MEMLOCK` when they are mapped) and never dumped.
//!
//! [`Region::alloc_secret`] hands out such a region. Making a fresh secret-memory file costs tens of
//! microseconds, so regions are carved out of larger *areas* (up to [`AREA_PAGES`] pages each, fewer near the
//! memlock limit) that this module keeps per process:
//! - a freed region is wiped (made read-write and zeroed) before its pages can be handed out again;
//! - an area whose regions are all free is unmapped when another area still has room, and [`trim`] (called by
//!   [`trim_all`](crate::pool::trim_all), so every cache that hits the memlock limit calls it too) unmaps every
//!   such area;
//! - areas belong to the process that mapped them: they are mapped no-fork, and a forked child starts with none
//!   (see [`PerProcess`](crate::PerProcess)); a parent's region is forgotten in the child, never reused.
//!
//! The file descriptor is closed as soon as an area is mapped (it is close-on-exec until then), so none is ever
//! inherited by a program the process starts.
//!
//! On kernels without it ([`Error::SecretMemUnavailable`]) and on other operating systems
//! ([`Error::Unsupported`]) allocation fails with a typed error that says so and what to do.

use crate::error::Result;
#[cfg(doc)]
use crate::{Error, Region};

/// Most pages in one secret-memory area (a larger region gets an area of its own size).
pub const AREA_PAGES: usize = 64;

/// Where a region's pages come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backing {
    /// Ordinary private anonymous memory ([`Region::alloc`]): locked, no-dump, no-fork, but in the kernel's
    /// direct map, so a process allowed to trace this one (root, a debugger) can read it.
    #[default]
    Anonymous,
    /// Secret memory ([`Region::alloc_secret`]): out of the kernel's direct map, readable by this process only.
    SecretMem,
}

impl Backing {
    /// A short name for messages and reports.
    pub fn name(self) -> &'static str {
        match self {
            Backing::Anonymous => "anonymous",
            Backing::SecretMem => "secret memory (memfd_secret)",
        }
    }
}

impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether secret memory can be used here: `Ok` when the kernel hands out a secret-memory file (nothing is
/// mapped or charged).
///
/// # Errors
/// [`Error::SecretMemUnavailable`] when the kernel refuses (the message says why and what to do);
/// [`Error::Unsupported`] on operating systems other than Linux.
pub fn available() -> Result<()> {
    imp::available()
}

/// Bytes of secret memory this process has mapped in areas (in use or free), all of it charged to
/// `RLIMIT_MEMLOCK`.
pub fn mapped_bytes() -> usize {
    imp::mapped_bytes()
}

/// Bytes of secret memory mapped but not in use (free parts of areas, wiped).
pub fn cached_bytes() -> usize {
    imp::cached_bytes()
}

/// Unmaps every area of this process whose regions are all free; returns the bytes given back (and uncharged
/// from `RLIMIT_MEMLOCK`). In a forked child it touches nothing of the parent's.
pub fn trim() -> usize {
    imp::trim()
}

pub(crate) use imp::{acquire, discard, give_back};

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, MutexGuard};

    use super::AREA_PAGES;
    use crate::error::{Error, Op, Result};
    use crate::fork::PerProcess;
    use crate::os;
    use crate::os::linux_secretmem;
    use crate::region::{round_to_pages, Hardening, Outcome, Region};

    /// One mapped secret-memory file, carved into regions.
    struct Area {
        base: usize,
        pages: usize,
        /// Per page: handed out (or lost, see `dead`).
        used: Vec<bool>,
        used_count: usize,
        /// Pages unmapped after a failed wipe: counted in `used_count`, never handed out again.
        dead: usize,
        hardening: Hardening,
    }

    impl Area {
        fn len(&self) -> usize {
            self.pages * os::page_size()
        }

        fn contains(&self, addr: usize) -> bool {
            addr >= self.base && addr < self.base + self.len()
        }

        fn is_idle(&self) -> bool {
            self.used_count == self.dead
        }

        fn free_pages(&self) -> usize {
            self.pages - self.used_count
        }

        /// The first run of `n` free pages, marked used; its page index.
        fn carve(&mut self, n: usize) -> Option<usize> {
            if self.free_pages() < n {
                return None;
            }
            let mut run = 0;
            for i in 0..self.pages {
                if self.used[i] {
                    run = 0;
                    continue;
                }
                run += 1;
                if run == n {
                    let start = i + 1 - n;
                    self.used[start..=i].fill(true);
                    self.used_count += n;
                    return Some(start);
                }
            }
            None
        }

        fn unmap(self) {
            let (p, l) = (self.base as *mut u8, self.len());
            // SAFETY: `p..p+l` is exactly the area's reservation with its secret pages mapped over it; every
            // region carved from it has been given back (or the area would not be idle), so nothing uses it.
            // An unmap of a whole mapping only fails for a bad range; nothing else could be done then.
            let _ = unsafe { os::unmap(p, l) };
        }
    }

    struct Areas {
        list: Mutex<Vec<Area>>,
        mapped: AtomicUsize,
        free: AtomicUsize,
    }

    static AREAS: PerProcess<Areas> = PerProcess::new(|| Areas {
        list: Mutex::new(Vec::new()),
        mapped: AtomicUsize::new(0),
        free: AtomicUsize::new(0),
    });

    fn lock(areas: &Areas) -> MutexGuard<'_, Vec<Area>> {
        // Every change under the lock is completed before anything that can panic.
        areas.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn available() -> Result<()> {
        linux_secretmem::probe().map_err(|source| Error::SecretMemUnavailable { source })
    }

    pub(crate) fn mapped_bytes() -> usize {
        AREAS
            .get_if_built()
            .map_or(0, |a| a.mapped.load(Ordering::Relaxed))
    }

    pub(crate) fn cached_bytes() -> usize {
        AREAS
            .get_if_built()
            .map_or(0, |a| a.free.load(Ordering::Relaxed))
    }

    pub(crate) fn trim() -> usize {
        let Some(areas) = AREAS.get_if_built() else {
            return 0;
        };
        let idle: Vec<Area> = {
            let mut list = lock(areas);
            let (idle, busy) = std::mem::take(&mut *list)
                .into_iter()
                .partition(Area::is_idle);
            *list = busy;
            idle
        };
        let mut freed = 0;
        for area in idle {
            let len = area.len();
            let free = (area.pages - area.used_count) * os::page_size();
            areas.mapped.fetch_sub(len, Ordering::Relaxed);
            areas.free.fetch_sub(free, Ordering::Relaxed);
            freed += len;
            area.unmap();
        }
        freed
    }

    /// Takes `len` bytes (whole pages) from an area of this process, mapping a new area when none has room.
    fn take(areas: &Areas, len: usize) -> Option<Region> {
        let page = os::page_size();
        let n = len / page;
        let mut list = lock(areas);
        // Newest areas first: they are the likeliest to have room. An area with enough free pages but no run
        // of `n` of them is passed over.
        let (addr, hardening) = list
            .iter_mut()
            .rev()
            .filter(|a| a.free_pages() >= n)
            .find_map(|a| Some((a.base + a.carve(n)? * page, a.hardening)))?;
        areas.free.fetch_sub(len, Ordering::Relaxed);
        let ptr = NonNull::new(addr as *mut u8)?;
        Some(Region::from_secret(ptr, len, hardening))
    }

    fn advise(res: Option<io::Result<()>>) -> Outcome {
        Outcome::from_result(res)
    }

    /// Maps a new area of `pages` pages and hardens it.
    fn map_area(pages: usize) -> io::Result<Area> {
        let page = os::page_size();
        let len = pages * page;
        // SAFETY: `len` is a non-zero multiple of the page size.
        let base = unsafe { linux_secretmem::map_area(len, page) }?;
        // In each call below `base..base+len` is the area just mapped, owned by nobody else yet. Secret memory
        // is never dumped and always locked by the kernel; the advice still says so for the report, and keeps
        // the pages out of forked children.
        let hardening = Hardening {
            // SAFETY: see above.
            no_dump: advise(unsafe { os::no_dump(base, len) }),
            // SAFETY: see above.
            no_fork: advise(unsafe { os::no_fork(base, len) }),
            // SAFETY: see above.
            no_huge_pages: advise(unsafe { os::no_huge_pages(base, len) }),
            crash_report_exclusion: Outcome::Unsupported,
        };
        Ok(Area {
            base: base as usize,
            pages,
            used: vec![false; pages],
            used_count: 0,
            dead: 0,
            hardening,
        })
    }

    fn classify(len: usize, source: io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::EAGAIN) => Error::LockLimit {
                addr: 0,
                len,
                limit: os::lock_limit().ok().map(Box::new),
                source,
            },
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => {
                Error::SecretMemUnavailable { source }
            }
            _ => Error::os(Op::Map, 0, len, source),
        }
    }

    /// Maps an area with room for `n` pages: [`AREA_PAGES`] (or `n` when larger), halved at the memlock limit
    /// down to `n`; at `n`, the caches of locked pages are trimmed once before the limit error is returned.
    fn grow(areas: &Areas, n: usize) -> Result<()> {
        let page = os::page_size();
        let mut pages = n.max(AREA_PAGES);
        let mut trimmed = false;
        let area = loop {
            match map_area(pages) {
                Ok(area) => break area,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && pages > n => {
                    pages = (pages / 2).max(n);
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EAGAIN)
                        && !trimmed
                        && crate::pool::trim_all() > 0 =>
                {
                    trimmed = true;
                }
                Err(e) => return Err(classify(n * page, e)),
            }
        };
        areas.mapped.fetch_add(area.len(), Ordering::Relaxed);
        areas.free.fetch_add(area.len(), Ordering::Relaxed);
        lock(areas).push(area);
        Ok(())
    }

    pub(crate) fn acquire(len: usize) -> Result<Region> {
        let len = round_to_pages(len)?;
        // Before any area exists: installs the fork handler, so a fork after this call is always seen.
        crate::fork_epoch();
        if let Some(err) = crate::fault_check(Op::Map) {
            return Err(classify(len, err));
        }
        let areas = AREAS.get();
        if let Some(region) = take(areas, len) {
            return Ok(region);
        }
        // Mapped without holding the lock: at the limit `grow` trims every cache, this one included.
        grow(areas, len / os::page_size())?;
        // Another thread may have taken the new room meanwhile: then grow once more.
        match take(areas, len) {
            Some(region) => Ok(region),
            None => {
                grow(areas, len / os::page_size())?;
                take(areas, len).ok_or_else(|| {
                    Error::os(
                        Op::Map,
                        0,
                        len,
                        io::Error::other("secret-memory area taken by other threads"),
                    )
                })
            }
        }
    }

    /// Marks `ptr..ptr+len` (a region carved from an area of this process, already wiped) free again; unmaps
    /// the area when it is idle and another area still has room.
    pub(crate) fn give_back(ptr: *mut u8, len: usize) {
        release(ptr, len, false);
    }

    /// A region that could not be wiped: its pages are unmapped (nobody can read them: they are secret memory
    /// and the file is freed with the area) and never handed out again.
    pub(crate) fn discard(ptr: *mut u8, len: usize) {
        // SAFETY: `ptr..ptr+len` is a region carved from an area of this process, given up by its owner.
        // A failure leaves the pages mapped but marked dead: they are unmapped with their area.
        let _ = unsafe { os::unmap(ptr, len) };
        release(ptr, len, true);
    }

    fn release(ptr: *mut u8, len: usize, dead: bool) {
        let Some(areas) = AREAS.get_if_built() else {
            return;
        };
        let page = os::page_size();
        let addr = ptr as usize;
        let mut list = lock(areas);
        // Regions are only made from areas of this process (a parent's are forgotten before reaching here).
        let Some(index) = list.iter().position(|a| a.contains(addr)) else {
            return;
        };
        let area = &mut list[index];
        let start = (addr - area.base) / page;
        let n = len / page;
        if dead {
            area.dead += n;
        } else {
            area.used[start..start + n].fill(false);
            area.used_count -= n;
            areas.free.fetch_add(len, Ordering::Relaxed);
        }
        let spare_room = list
            .iter()
            .enumerate()
            .any(|(i, a)| i != index && a.free_pages() > 0);
        if list[index].is_idle() && (spare_room || list[index].dead > 0) {
            let area = list.swap_remove(index);
            drop(list);
            areas.mapped.fetch_sub(area.len(), Ordering::Relaxed);
            areas
                .free
                .fetch_sub(area.free_pages() * page, Ordering::Relaxed);
            area.unmap();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use crate::error::{Error, Result};
    use crate::region::Region;

    fn unsupported() -> Error {
        Error::Unsupported {
            what: "secret memory (Linux memfd_secret, 5.14 and later)",
        }
    }

    pub(crate) fn available() -> Result<()> {
        Err(unsupported())
    }

    pub(crate) fn mapped_bytes() -> usize {
        0
    }

    pub(crate) fn cached_bytes() -> usize {
        0
    }

    pub(crate) fn trim() -> usize {
        0
    }

    pub(crate) fn acquire(_len: usize) -> Result<Region> {
        Err(unsupported())
    }

    /// Never called: no secret region exists on this OS.
    pub(crate) fn give_back(_ptr: *mut u8, _len: usize) {}

    /// Never called: no secret region exists on this OS.
    pub(crate) fn discard(_ptr: *mut u8, _len: usize) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::{Protection, Region};

    #[test]
    fn a_freed_secret_region_is_wiped_and_reused_from_its_area() {
        if let Err(e) = available() {
            eprintln!("skipped: {e}");
            return;
        }
        let page = crate::page_size();
        let mut first = Region::alloc_secret(32).unwrap();
        assert!(first.is_secret() && first.is_locked());
        assert_eq!(first.len(), page);
        assert!(mapped_bytes() >= AREA_PAGES * page);
        // SAFETY: read-write and exclusively ours.
        unsafe { first.as_mut_slice() }.fill(0xA5);
        first.protect(Protection::NoAccess).unwrap();
        // Locking and unlocking are no-ops: the kernel keeps secret memory locked.
        first.unlock().unwrap();
        assert!(first.is_locked());
        let addr = first.as_ptr();
        first.free().unwrap();
        let second = Region::alloc_secret(page).unwrap();
        assert_eq!(second.as_ptr(), addr, "the free pages are handed out again");
        // SAFETY: a fresh secret region is read-write.
        assert!(unsafe { second.as_slice() }.iter().all(|&b| b == 0));
        let big = Region::alloc_secret((AREA_PAGES + 1) * page).unwrap();
        assert_eq!(big.len(), (AREA_PAGES + 1) * page);
        drop(big);
        drop(second);
        assert!(cached_bytes() > 0);
        let before = mapped_bytes();
        assert!(trim() > 0);
        assert!(mapped_bytes() < before);
    }
}
