//! [`Region`]: an owned, page-aligned mapping with per-region hardening.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Op, Result};
use crate::os;
use crate::wipe::wipe_raw;

/// Page protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// Any access faults (`PROT_NONE`, `PAGE_NOACCESS`).
    NoAccess,
    /// Reads work, writes fault (`PROT_READ`, `PAGE_READONLY`).
    ReadOnly,
    /// Reads and writes work (`PROT_READ | PROT_WRITE`, `PAGE_READWRITE`).
    ReadWrite,
}

/// What became of one hardening measure on a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The OS accepted it.
    Applied,
    /// This OS has no such measure.
    Unsupported,
    /// The OS refused it; the raw OS error code.
    Failed(i32),
}

impl Outcome {
    /// True when the measure is in effect.
    pub fn is_applied(self) -> bool {
        self == Outcome::Applied
    }

    pub(crate) fn from_result(res: Option<io::Result<()>>) -> Outcome {
        match res {
            None => Outcome::Unsupported,
            Some(Ok(())) => Outcome::Applied,
            Some(Err(e)) => Outcome::Failed(e.raw_os_error().unwrap_or(-1)),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied => f.write_str("applied"),
            Outcome::Unsupported => f.write_str("not supported on this OS"),
            Outcome::Failed(code) => write!(f, "failed ({})", io::Error::from_raw_os_error(*code)),
        }
    }
}

/// Which per-region protections took effect when a region was allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Hardening {
    /// Left out of core dumps (Linux `MADV_DONTDUMP`, FreeBSD `MAP_NOCORE`, OpenBSD `MAP_CONCEAL`).
    pub no_dump: Outcome,
    /// Not inherited by a forked child (Linux `MADV_DONTFORK`, BSD/macOS `minherit` none): the child has no
    /// mapping there, so touching it faults instead of reading the secret or silent zeros.
    pub no_fork: Outcome,
    /// Kept out of transparent huge pages, so protection and locking stay per page (Linux `MADV_NOHUGEPAGE`).
    pub no_huge_pages: Outcome,
    /// Excluded from crash reports (Windows `WerRegisterExcludedMemoryBlock`).
    pub crash_report_exclusion: Outcome,
}

/// An owned, page-aligned, zero-initialised mapping.
///
/// Allocation rounds the length up to whole pages, maps it read-write, and applies every per-region hardening
/// the OS offers (see [`Hardening`]). Locking is a separate call so callers choose what happens when the
/// locked-memory limit is reached. [`Region::free`] (and `Drop`, best effort) makes the pages writable, wipes
/// them and unmaps them.
///
/// Methods take `&self`: they are plain system calls on the region's address range. What may read or write the
/// bytes, and when, is the caller's business (see [`Region::as_slice`]).
///
/// # Forked children
/// A region belongs to the process that mapped it. Its pages are not inherited by a forked child
/// ([`Hardening::no_fork`]), and there the address range may soon hold an unrelated mapping of the child. So in a
/// child every method that would make a system call on the range fails with [`Error::Forked`], and
/// [`Region::free`] and `Drop` forget the handle instead of wiping and unmapping: a region handle inherited from
/// the parent can never touch, lock, wipe or unmap the child's memory. Every cache built on regions is safe
/// in a child by construction.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    hardening: Hardening,
    /// Three facts in one word (a region is embedded in every guarded buffer, so it stays small):
    /// - bits 2..: [`crate::fork_epoch`] when mapped; another value means this is a forked child and the range
    ///   is not ours;
    /// - bit 1 ([`SECRET`]): the pages are secret memory, carved from an area of [`crate::secretmem`];
    /// - bit 0 ([`LOCKED`]): set by a successful lock of the whole region, cleared by any unlock. It is what
    ///   [`Region::is_locked`] reports, so a pool can tell locked regions from unlocked ones without trusting
    ///   its caller.
    tag: AtomicU64,
}

/// Bit 0 of [`Region::tag`]: the whole region is locked.
const LOCKED: u64 = 1;
/// Bit 1 of [`Region::tag`]: secret memory (always locked by the kernel; freed back to its area).
const SECRET: u64 = 2;
/// The epoch starts at this bit of [`Region::tag`].
const EPOCH_SHIFT: u32 = 2;

// SAFETY:
// - `Region` owns its mapping exclusively; the pointer is never shared with another owner.
// - Every method that touches the bytes is `unsafe` and puts the aliasing rules on its caller, so moving or
//   sharing the handle between threads adds no data race of its own.
unsafe impl Send for Region {}
// SAFETY: the `&self` methods only issue system calls on the address range; the kernel serialises them.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("addr", &self.ptr)
            .field("len", &self.len)
            .field("hardening", &self.hardening)
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// Runs one backend call, unless a test injected a failure for `op` on this thread.
fn syscall(op: Op, addr: usize, len: usize, f: impl FnOnce() -> io::Result<()>) -> Result<()> {
    if let Some(err) = crate::fault_check(op) {
        return Err(classify(op, addr, len, err));
    }
    f().map_err(|err| classify(op, addr, len, err))
}

fn classify(op: Op, addr: usize, len: usize, source: io::Error) -> Error {
    if op == Op::Lock && os::is_lock_limit_error(&source) {
        Error::LockLimit {
            addr,
            len,
            limit: os::lock_limit().ok().map(Box::new),
            source,
        }
    } else {
        Error::os(op, addr, len, source)
    }
}

fn advise(f: impl FnOnce() -> Option<io::Result<()>>) -> Outcome {
    if let Some(err) = crate::fault_check(Op::Advise) {
        return Outcome::from_result(Some(Err(err)));
    }
    Outcome::from_result(f())
}

/// Rounds `len` up to a whole number of pages.
///
/// # Errors
/// [`Error::InvalidLength`] for zero or when the rounded length overflows `isize`.
pub fn round_to_pages(len: usize) -> Result<usize> {
    let page = os::page_size();
    if len == 0 {
        return Err(Error::InvalidLength { len });
    }
    len.checked_add(page - 1)
        .map(|l| l & !(page - 1))
        .filter(|&l| l <= isize::MAX as usize)
        .ok_or(Error::InvalidLength { len })
}

impl Region {
    /// Maps at least `len` bytes (rounded up to whole pages), read-write and zeroed, and hardens them.
    ///
    /// Hardening failures do not fail the allocation; they are recorded in [`Region::hardening`].
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for zero or absurd lengths; [`Error::Os`] with [`Op::Map`] when the OS has no
    /// memory to give.
    ///
    /// ```
    /// let region = memcall::Region::alloc(100)?;
    /// assert_eq!(region.len(), memcall::page_size()); // rounded up to whole pages
    /// println!("no-dump: {}", region.hardening().no_dump); // what the OS applied
    /// region.free().map_err(|e| e.error)?;
    /// # Ok::<(), memcall::Error>(())
    /// ```
    pub fn alloc(len: usize) -> Result<Region> {
        let len = round_to_pages(len)?;
        // Before anything is mapped: installs the fork handler, so a fork after this call is always seen.
        let epoch = crate::fork_epoch();
        let mut ptr = std::ptr::null_mut();
        syscall(Op::Map, 0, len, || {
            // SAFETY: `len` is a non-zero multiple of the page size that fits in `isize`.
            ptr = unsafe { os::map(len) }?;
            Ok(())
        })?;
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Error::os(
                Op::Map,
                0,
                len,
                io::Error::other("the OS returned a null mapping"),
            )
        })?;
        let (p, l) = (ptr.as_ptr(), len);
        // In each closure below `p..p+l` is the mapping made just above, owned by nobody else yet.
        let hardening = Hardening {
            // SAFETY: see above.
            no_dump: advise(|| unsafe { os::no_dump(p, l) }),
            // SAFETY: see above.
            no_fork: advise(|| unsafe { os::no_fork(p, l) }),
            // SAFETY: see above.
            no_huge_pages: advise(|| unsafe { os::no_huge_pages(p, l) }),
            // SAFETY: see above.
            crash_report_exclusion: advise(|| unsafe { os::exclude_from_crash_reports(p, l) }),
        };
        // Touch the first page: the mapping then has its own anon_vma, so the kernel never merges it with a
        // neighbouring mapping. Unmerged, each later protection change is a plain page-table update instead of a
        // VMA split and merge, which costs about twice as much. One page is enough (anon_vma is per mapping),
        // so a huge allocation does not fault in memory it may never use.
        // SAFETY: the mapping is at least one page, read-write and owned by nobody else yet.
        unsafe { p.write_volatile(0) };
        Ok(Region {
            ptr,
            len,
            hardening,
            tag: AtomicU64::new(epoch << EPOCH_SHIFT),
        })
    }

    /// Maps at least `len` bytes (rounded up to whole pages) of secret memory, read-write and zeroed: pages the
    /// kernel removes from its direct map, so no other process can read them, root included (see
    /// [`crate::secretmem`]). They are locked (charged to `RLIMIT_MEMLOCK`) and never dumped; no-fork advice
    /// applies as for [`Region::alloc`]. The pages are carved from a pooled area; [`Region::free`] wipes them
    /// and gives them back to it.
    ///
    /// # Errors
    /// [`Error::SecretMemUnavailable`] when the kernel has no secret memory (the message says why and what to
    /// do); [`Error::Unsupported`] on operating systems other than Linux; [`Error::LockLimit`] when mapping it
    /// would exceed the locked-memory limit (after the caches of locked pages were trimmed);
    /// [`Error::InvalidLength`] for zero or absurd lengths; [`Error::Os`] with [`Op::Map`] otherwise.
    pub fn alloc_secret(len: usize) -> Result<Region> {
        crate::secretmem::acquire(len)
    }

    /// A region of `len` bytes at `ptr`, carved from a secret-memory area of this process: read-write, zeroed,
    /// locked by the kernel.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn from_secret(ptr: NonNull<u8>, len: usize, hardening: Hardening) -> Region {
        Region {
            ptr,
            len,
            hardening,
            tag: AtomicU64::new((crate::fork_epoch() << EPOCH_SHIFT) | SECRET | LOCKED),
        }
    }

    /// True when the pages are secret memory ([`Region::alloc_secret`]).
    pub fn is_secret(&self) -> bool {
        self.tag.load(Ordering::Relaxed) & SECRET != 0
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region holds at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of the mapping. Dereferencing it is subject to the current protection.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Which hardening measures took effect at allocation.
    pub fn hardening(&self) -> Hardening {
        self.hardening
    }

    /// True when this process is a forked child of the one that mapped the region: the range is not ours.
    pub fn is_forked(&self) -> bool {
        crate::fork_epoch() != self.tag.load(Ordering::Relaxed) >> EPOCH_SHIFT
    }

    /// True when the whole region was locked by [`Region::lock`] (or [`Region::lock_range`] over its whole
    /// length) and not unlocked since. Partial locks are not counted.
    pub fn is_locked(&self) -> bool {
        self.tag.load(Ordering::Acquire) & LOCKED != 0
    }

    pub(crate) fn range(&self, offset: usize, len: usize) -> Result<(*mut u8, usize)> {
        if self.is_forked() {
            return Err(Error::Forked);
        }
        let page = os::page_size();
        let ok = len > 0
            && offset % page == 0
            && len % page == 0
            && offset.checked_add(len).is_some_and(|end| end <= self.len);
        if !ok {
            return Err(Error::InvalidRange {
                offset,
                len,
                region_len: self.len,
            });
        }
        // SAFETY: `offset < self.len`, so the result stays inside the mapping.
        Ok((unsafe { self.ptr.as_ptr().add(offset) }, len))
    }

    /// Changes the protection of the whole region.
    ///
    /// # Errors
    /// [`Error::Os`] with [`Op::Protect`]; [`Error::Forked`] in a forked child.
    ///
    /// ```
    /// use memcall::{Protection, Region};
    ///
    /// let region = Region::alloc(32)?;
    /// region.protect(Protection::NoAccess)?; // any touch now faults
    /// region.protect(Protection::ReadOnly)?;
    /// // SAFETY:
    /// // - the region is read-only, and nothing writes it, while the slice lives;
    /// // - this process mapped it.
    /// assert!(unsafe { region.as_slice() }.iter().all(|&b| b == 0));
    /// region.free().map_err(|e| e.error)?;
    /// # Ok::<(), memcall::Error>(())
    /// ```
    pub fn protect(&self, prot: Protection) -> Result<()> {
        self.protect_range(0, self.len, prot)
    }

    /// Changes the protection of `len` bytes at `offset` (both page-aligned).
    ///
    /// # Errors
    /// [`Error::InvalidRange`] for a bad range; [`Error::Os`] with [`Op::Protect`]; [`Error::Forked`] in a forked child.
    pub fn protect_range(&self, offset: usize, len: usize, prot: Protection) -> Result<()> {
        let (p, l) = self.range(offset, len)?;
        // SAFETY: `p..p+l` lies inside this region's mapping (checked by `range`).
        syscall(Op::Protect, p as usize, l, || unsafe {
            os::protect(p, l, prot)
        })
    }

    /// Locks the whole region into RAM so it is never swapped.
    ///
    /// # Errors
    /// [`Error::LockLimit`] when the locked-memory limit is reached (the message says how to raise it);
    /// [`Error::Os`] with [`Op::Lock`] otherwise; [`Error::Forked`] in a forked child.
    ///
    /// ```
    /// let region = memcall::Region::alloc(32)?;
    /// match region.lock() {
    ///     Ok(()) => assert!(region.is_locked()),
    ///     // Says which limit was reached and how to raise it.
    ///     Err(e) if e.is_lock_limit() => eprintln!("{e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// region.free().map_err(|e| e.error)?; // unmapping unlocks too
    /// # Ok::<(), memcall::Error>(())
    /// ```
    pub fn lock(&self) -> Result<()> {
        self.lock_range(0, self.len)
    }

    /// Locks `len` bytes at `offset` (both page-aligned). On Linux the range must be accessible when locked.
    ///
    /// # Errors
    /// As [`Region::lock`], plus [`Error::InvalidRange`].
    pub fn lock_range(&self, offset: usize, len: usize) -> Result<()> {
        let (p, l) = self.range(offset, len)?;
        if self.is_secret() {
            // Secret memory is locked by the kernel from the moment it is mapped (and charged then).
            return Ok(());
        }
        // SAFETY: `p..p+l` lies inside this region's mapping (checked by `range`).
        syscall(Op::Lock, p as usize, l, || unsafe { os::lock(p, l) })?;
        if offset == 0 && len == self.len {
            self.tag.fetch_or(LOCKED, Ordering::Release);
        }
        Ok(())
    }

    /// Unlocks the whole region.
    ///
    /// # Errors
    /// [`Error::Os`] with [`Op::Unlock`]; [`Error::Forked`] in a forked child.
    pub fn unlock(&self) -> Result<()> {
        self.unlock_range(0, self.len)
    }

    /// Unlocks `len` bytes at `offset` (both page-aligned).
    ///
    /// # Errors
    /// [`Error::InvalidRange`]; [`Error::Os`] with [`Op::Unlock`]; [`Error::Forked`] in a forked child.
    pub fn unlock_range(&self, offset: usize, len: usize) -> Result<()> {
        let (p, l) = self.range(offset, len)?;
        if self.is_secret() {
            // Secret memory cannot be unlocked: it stays locked until it is unmapped.
            return Ok(());
        }
        // Cleared before the call: even a failed unlock may have unlocked part of the range.
        self.tag.fetch_and(!LOCKED, Ordering::Release);
        // SAFETY: `p..p+l` lies inside this region's mapping (checked by `range`).
        syscall(Op::Unlock, p as usize, l, || unsafe { os::unlock(p, l) })
    }

    /// Makes the whole region read-write and overwrites it with zeros (writes the compiler cannot elide).
    ///
    /// # Errors
    /// [`Error::Os`] with [`Op::Protect`] when the pages cannot be made writable; nothing is written then; [`Error::Forked`] in a forked child.
    pub fn wipe(&self) -> Result<()> {
        self.protect(Protection::ReadWrite)?;
        // SAFETY: the whole mapping is read-write now. Callers that wipe while other threads hold slices into
        // the region break those slices' contract, which is why such slices are only handed out by `unsafe` fns.
        unsafe { wipe_raw(self.ptr.as_ptr(), self.len) };
        Ok(())
    }

    /// The region's bytes.
    ///
    /// # Safety
    /// - The whole region must be readable (ReadOnly or ReadWrite) for as long as the slice lives.
    /// - Nothing may write the region (through [`Region::as_mut_slice`], [`Region::as_ptr`] or
    ///   [`Region::wipe`]) while the slice lives.
    /// - This process must be the one that mapped the region (not [`Region::is_forked`]): in a forked child the
    ///   range is not the region's.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, initialised (zero-filled by the OS), and the caller guarantees it
        // is readable and not written for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The region's bytes, writable.
    ///
    /// # Safety
    /// The whole region must be read-write for as long as the slice lives, and this process must be the one
    /// that mapped it (not [`Region::is_forked`]). (`&mut self` rules out other slices from this handle; raw
    /// pointers obtained through [`Region::as_ptr`] must not be used meanwhile.)
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, and `&mut self` gives exclusive access through this handle.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Wipes the pages and unmaps them (which also unlocks them). In a forked child the handle is forgotten
    /// instead (the range is not ours there) and the call succeeds.
    ///
    /// # Errors
    /// When the pages cannot be made writable or unmapped, the region comes back inside the error so the call
    /// can be retried; nothing is leaked.
    pub fn free(self) -> Result<(), FreeError> {
        let this = ManuallyDrop::new(self);
        if this.is_forked() {
            return Ok(());
        }
        match this.release() {
            Ok(()) => Ok(()),
            Err(error) => Err(FreeError {
                region: ManuallyDrop::into_inner(this),
                error,
            }),
        }
    }

    fn release(&self) -> Result<()> {
        self.wipe()?;
        let (p, l) = (self.ptr.as_ptr(), self.len);
        if self.is_secret() {
            // Wiped and read-write: the pages go back to their area, whose unmap releases them.
            crate::secretmem::give_back(p, l);
            return Ok(());
        }
        if self.hardening.crash_report_exclusion.is_applied() {
            // SAFETY: `p..p+l` is this region, registered at allocation.
            unsafe { os::unexclude_from_crash_reports(p, l) };
        }
        // SAFETY: `p..p+l` is exactly the mapping made by `alloc`; after this call nothing uses it, because
        // `free` consumes the handle and `Drop` runs only once.
        syscall(Op::Unmap, p as usize, l, || unsafe { os::unmap(p, l) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.is_forked() {
            // The parent's pages: not mapped here (no-fork advice), and the range may be the child's own memory
            // by now. Forget the handle.
            return;
        }
        // Best effort: a region dropped without `free` is still wiped and unmapped. If wiping is impossible the
        // mapping is released anyway, since keeping it would only keep the secret around longer.
        if self.release().is_err() {
            let (p, l) = (self.ptr.as_ptr(), self.len);
            if self.is_secret() {
                // Unwiped secret memory is unmapped and never handed out again.
                crate::secretmem::discard(p, l);
                return;
            }
            // SAFETY: `p..p+l` is this region's mapping and nothing uses it after `drop`.
            let _ = unsafe { os::unmap(p, l) };
        }
    }
}

/// [`Region::free`] failed; the region is handed back so nothing leaks.
pub struct FreeError {
    /// The region, still mapped.
    pub region: Region,
    /// Why freeing failed.
    pub error: Error,
}

impl fmt::Debug for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreeError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for FreeError {
    /// What lies behind [`error`](Self::error), whose text is this error's `Display` (so a chain never repeats it).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}
