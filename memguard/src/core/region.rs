//! [`GuardedRegion`]: `[guard][canary … data][guard]` in one mapping, the data right-aligned so that an
//! overflow hits the trailing guard page at once.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use memcall::{Hardening, Protection, Region};

use super::canary;
use crate::error::{Error, Result};

/// Whether a buffer's pages must be locked into RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Locking {
    /// Locking must succeed, or the allocation fails with the lock error (which names the limit and how to
    /// raise it). The default.
    #[default]
    Required,
    /// A lock failure is tolerated (logged at `warn`), and [`GuardedRegion::is_locked`] reports it. The pages
    /// may then be swapped out.
    BestEffort,
}

/// Guarded pages for one secret: `[guard][canary … data][guard]`.
///
/// The data is right-aligned against the trailing guard page and a random canary fills the slack in front of it
/// (zero bytes when the size is a page multiple). Only the inner (data) pages are locked; the guard pages are
/// no-access for the region's whole life.
/// The inner pages start read-write with the data zeroed.
///
/// A `GuardedRegion` is not registered for [`purge`](crate::purge) by itself; [`LockedBuffer`](crate::LockedBuffer)
/// and other owners register themselves. Dropping it without [`destroy`](GuardedRegion::destroy) still wipes and
/// unmaps the pages, but skips the canary check.
pub struct GuardedRegion {
    region: Region,
    size: usize,
    inner_len: usize,
    locked: bool,
    /// Set once the canary has been checked: a retried destroy finds it wiped and must not check it again.
    canary_checked: bool,
    canary_failed: bool,
    /// True while the inner pages are no-access (as set through [`GuardedRegion::protect`]); destroy must
    /// make them readable before checking the canary.
    inner_no_access: AtomicBool,
}

impl fmt::Debug for GuardedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedRegion")
            .field("addr", &self.as_ptr())
            .field("len", &self.size)
            .field("inner_len", &self.inner_len)
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

impl GuardedRegion {
    /// Maps `size` bytes of data between two guard pages, plants the canary and locks the data pages.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for zero or absurd sizes; [`Error::Memory`] when mapping, locking (with
    /// [`Locking::Required`]) or protecting fails; [`Error::Random`] when no canary can be drawn. Nothing is
    /// left mapped on error.
    pub fn new(size: usize, locking: Locking) -> Result<GuardedRegion> {
        Self::new_in(size, locking, memcall::Backing::Anonymous)
    }

    /// As [`GuardedRegion::new`], with the pages from `backing`. In secret memory
    /// ([`memcall::Backing::SecretMem`]) the whole mapping, guard pages included, is secret memory: always
    /// locked, and charged to the memlock limit whole (see [`memcall::Region::alloc_secret`]).
    ///
    /// # Errors
    /// As [`GuardedRegion::new`]; with secret memory also [`Error::Memory`] holding
    /// [`memcall::Error::SecretMemUnavailable`] or [`memcall::Error::Unsupported`] where there is none.
    pub fn new_in(
        size: usize,
        locking: Locking,
        backing: memcall::Backing,
    ) -> Result<GuardedRegion> {
        if size == 0 {
            return Err(Error::InvalidLength { len: size });
        }
        let page = memcall::page_size();
        let inner_len =
            memcall::round_to_pages(size).map_err(|_| Error::InvalidLength { len: size })?;
        let total = inner_len
            .checked_add(2 * page)
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or(Error::InvalidLength { len: size })?;
        let secret = backing == memcall::Backing::SecretMem;
        if let Some(region) = super::pool::take(inner_len, secret) {
            return Self::from_cache(region, size, inner_len);
        }
        let region = if secret {
            Region::alloc_secret(total)?
        } else {
            Region::alloc(total)?
        };
        let mut this = GuardedRegion {
            region,
            size,
            inner_len,
            locked: false,
            canary_checked: false,
            canary_failed: false,
            inner_no_access: AtomicBool::new(false),
        };
        match this.arm(locking) {
            Ok(()) => Ok(this),
            Err(err) => {
                // Nothing secret is in the pages yet; if freeing fails, dropping the handle unmaps anyway.
                if let Err(free) = this.region.free() {
                    log::error!("releasing a half-built guarded region failed: {free}");
                }
                Err(err)
            }
        }
    }

    /// A cached armed mapping (guards no-access, inner locked, read-write, zero): only the canary is new.
    fn from_cache(region: Region, size: usize, inner_len: usize) -> Result<GuardedRegion> {
        let mut this = GuardedRegion {
            region,
            size,
            inner_len,
            locked: true,
            canary_checked: false,
            canary_failed: false,
            inner_no_access: AtomicBool::new(false),
        };
        if let Err(err) = canary::plant(this.slack_mut()) {
            if let Err(free) = this.region.free() {
                log::error!("releasing a cached guarded region failed: {free}");
            }
            return Err(err.into());
        }
        Ok(this)
    }

    fn lock_inner(&self) -> memcall::Result<()> {
        match self.region.lock_range(self.page(), self.inner_len) {
            // At the limit, caches of locked pages (this crate's and memcall's) give theirs back first.
            Err(e) if e.is_lock_limit() && memcall::pool::trim_all() > 0 => {
                self.region.lock_range(self.page(), self.inner_len)
            }
            other => other,
        }
    }

    fn arm(&mut self, locking: Locking) -> Result<()> {
        // Lock while the pages are still read-write: Linux refuses to lock PROT_NONE pages.
        match self.lock_inner() {
            Ok(()) => self.locked = true,
            Err(err) if locking == Locking::BestEffort => {
                log::warn!("guarded region left unlocked (best effort): {err}");
            }
            Err(err) => return Err(err.into()),
        }
        canary::plant(self.slack_mut())?;
        self.region
            .protect_range(0, self.page(), Protection::NoAccess)?;
        self.region.protect_range(
            self.page() + self.inner_len,
            self.page(),
            Protection::NoAccess,
        )?;
        Ok(())
    }

    /// The canary slack in front of the data.
    ///
    /// Only called while the inner pages are read-write and nothing else holds a slice of them: in `arm`, on a
    /// fresh mapping owned by nobody else yet.
    fn slack_mut(&mut self) -> &mut [u8] {
        // SAFETY:
        // - `[page, page + inner_len - size)` lies inside the mapping and before the data;
        // - the inner pages are read-write and `&mut self` excludes every other slice of them (see above).
        unsafe {
            std::slice::from_raw_parts_mut(self.region.as_ptr().add(self.page()), self.canary_len())
        }
    }

    /// Length of each guard page: the mapping is `[guard][inner][guard]` (derived rather than stored, which
    /// keeps the handle, and every error that carries one, small).
    fn page(&self) -> usize {
        (self.region.len() - self.inner_len) / 2
    }

    /// Size of the data in bytes (at least 1).
    pub fn len(&self) -> usize {
        self.size
    }

    /// Always false: a region holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Length of the inner (data) pages: the size rounded up to whole pages.
    pub fn inner_len(&self) -> usize {
        self.inner_len
    }

    /// Length of the canary in front of the data: `inner_len() - len()`.
    pub fn canary_len(&self) -> usize {
        self.inner_len - self.size
    }

    /// Length of each guard page.
    pub fn guard_len(&self) -> usize {
        self.page()
    }

    /// Length of the whole mapping: both guards and the inner pages.
    pub fn mapping_len(&self) -> usize {
        self.region.len()
    }

    /// Changes the protection of the inner pages (the guards stay no-access).
    ///
    /// # Errors
    /// [`Error::Memory`] when `mprotect` fails.
    pub fn protect(&self, prot: Protection) -> Result<()> {
        self.region
            .protect_range(self.page(), self.inner_len, prot)?;
        self.inner_no_access
            .store(prot == Protection::NoAccess, Ordering::Relaxed);
        Ok(())
    }

    /// Start of the data. Dereferencing it is subject to the inner pages' protection.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: `page + inner_len - size` is inside the mapping (`size <= inner_len`).
        unsafe {
            self.region
                .as_ptr()
                .add(self.page() + self.inner_len - self.size)
        }
    }

    /// The data.
    ///
    /// # Safety
    /// - The inner pages must be readable (ReadOnly or ReadWrite) while the slice lives.
    /// - Nothing may write the data, protect the pages no-access or destroy the region while the slice lives.
    pub unsafe fn data(&self) -> &[u8] {
        // SAFETY: `as_ptr()..+size` is inside the mapping and initialised; the caller guarantees readability
        // and the absence of writers for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size) }
    }

    /// The data, writable.
    ///
    /// # Safety
    /// - The inner pages must be read-write while the slice lives.
    /// - The caller must have exclusive access: no other slice from [`data`](Self::data) or `data_mut`, and no
    ///   protection change or destroy, while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data_mut(&self) -> &mut [u8] {
        // SAFETY: as `data`, with exclusivity guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size) }
    }

    /// True when the inner pages are locked into RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// True when the pages are secret memory ([`GuardedRegion::new_in`] with [`memcall::Backing::SecretMem`]).
    pub fn is_secret(&self) -> bool {
        self.region.is_secret()
    }

    /// Which per-region hardening (no-dump, no-fork, ...) took effect.
    pub fn hardening(&self) -> Hardening {
        self.region.hardening()
    }

    /// Makes the inner pages readable if they are not, and compares the slack with the canary pattern.
    fn check_canary(&mut self) -> Result<()> {
        if self.inner_no_access.load(Ordering::Relaxed) {
            self.protect(Protection::ReadOnly)?;
        }
        // SAFETY:
        // - the slack lies inside the inner pages, before the data, and the inner pages are readable (made so
        //   just above, or never no-access);
        // - `&mut self` means nobody holds a slice of the region, so nobody writes it meanwhile.
        let slack = unsafe {
            std::slice::from_raw_parts(self.region.as_ptr().add(self.page()), self.canary_len())
        };
        self.canary_failed = !canary::intact(slack);
        self.canary_checked = true;
        Ok(())
    }

    /// Verifies the canary (constant time), then wipes the whole mapping and unmaps it (unmapping also unlocks
    /// it). The inner pages are made readable first when they are no-access. In a forked child, a region made by
    /// the parent is forgotten instead (it is not mapped there) and this succeeds.
    ///
    /// # Errors
    /// [`Error::CanaryCorrupted`] when the canary changed; the memory is wiped and freed all the same. Any other
    /// failure hands the region back inside the [`DestroyError`] so the call can be retried; nothing is leaked.
    pub fn destroy(self) -> Result<(), DestroyError> {
        if self.region.is_forked() {
            // A forked child holding its parent's region: the pages are not mapped here and the range may be the
            // child's own memory. Nothing to check, wipe or unmap; dropping the handle forgets it.
            drop(self);
            return Ok(());
        }
        if self.locked && !self.canary_checked && !memcall::fault_armed(memcall::Op::Protect) {
            return self.destroy_into_cache();
        }
        self.destroy_unmapping()
    }

    /// One protection change: inner pages read-write; then the canary check, the wipe of data and canary,
    /// and the mapping goes back to the cache (guards still no-access, inner still locked). A corrupted canary
    /// or a full cache falls back to unmapping.
    fn destroy_into_cache(mut self) -> Result<(), DestroyError> {
        if let Err(error) = self.protect(Protection::ReadWrite) {
            return Err(DestroyError {
                error,
                region: Some(self),
            });
        }
        // SAFETY:
        // - the inner pages `[page, page + inner_len)` lie inside the mapping and are read-write (just above);
        // - `self` is owned here, so no slice of the region exists anywhere else.
        let inner = unsafe {
            std::slice::from_raw_parts_mut(self.region.as_ptr().add(self.page()), self.inner_len)
        };
        self.canary_failed = !canary::intact(&inner[..self.inner_len - self.size]);
        self.canary_checked = true;
        memcall::wipe_bytes(inner);
        if self.canary_failed {
            return self.destroy_unmapping();
        }
        let inner_len = self.inner_len;
        match super::pool::give(self.region, inner_len) {
            Ok(()) => Ok(()),
            Err(region) => {
                self.region = region;
                self.destroy_unmapping()
            }
        }
    }

    fn destroy_unmapping(mut self) -> Result<(), DestroyError> {
        if !self.canary_checked {
            if let Err(err) = self.check_canary() {
                return Err(DestroyError {
                    error: err,
                    region: Some(self),
                });
            }
        }
        let canary_failed = self.canary_failed;
        let (addr, len) = (self.as_ptr() as usize, self.size);
        let GuardedRegion {
            region,
            size,
            inner_len,
            locked,
            inner_no_access,
            ..
        } = self;
        // `free` makes the whole mapping read-write, wipes all of it (data, canary, guards), then unmaps it.
        match region.free() {
            Ok(()) if canary_failed => Err(DestroyError {
                error: Error::CanaryCorrupted { addr, len },
                region: None,
            }),
            Ok(()) => Ok(()),
            Err(free) => Err(DestroyError {
                error: free.error.into(),
                region: Some(GuardedRegion {
                    region: free.region,
                    size,
                    inner_len,
                    locked,
                    canary_checked: true,
                    canary_failed,
                    // `free` made everything read-write before it failed, or failed doing so.
                    inner_no_access,
                }),
            }),
        }
    }
}

/// [`GuardedRegion::destroy`] failed.
pub struct DestroyError {
    /// Why.
    pub error: Error,
    /// The region, still mapped, when it could not be freed (retry `destroy`); `None` when it was freed
    /// (canary corruption).
    pub region: Option<GuardedRegion>,
}

impl fmt::Debug for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestroyError")
            .field("error", &self.error)
            .field("region", &self.region)
            .finish()
    }
}

impl fmt::Display for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for DestroyError {
    /// What lies behind [`error`](Self::error), whose text is this error's `Display` (so a chain never repeats it).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl From<DestroyError> for Error {
    fn from(e: DestroyError) -> Error {
        e.error
    }
}
