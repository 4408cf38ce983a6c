//! POSIX calls shared by every Unix backend; the per-OS files add only their deltas.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Op, Result};
use crate::limits::Limit;
use crate::region::Protection;

pub(crate) const LOCK_LIMIT_NAME: &str = "RLIMIT_MEMLOCK";

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    PAGE.store(size, Ordering::Relaxed);
    size
}

/// Maps `len` bytes of private anonymous read-write memory, with extra OS-specific `flags`.
///
/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map_with(len: usize, flags: libc::c_int) -> io::Result<*mut u8> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANON | flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(ptr.cast())
    }
}

/// # Safety
/// `ptr..ptr+len` must be a whole mapping (or whole pages of one) that nothing uses afterwards.
pub(crate) unsafe fn unmap(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and gives it up.
    check(unsafe { libc::munmap(ptr.cast(), len) })
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller; no live reference may rely on access that
/// the new protection removes.
pub(crate) unsafe fn protect(ptr: *mut u8, len: usize, prot: Protection) -> io::Result<()> {
    let prot = match prot {
        Protection::NoAccess => libc::PROT_NONE,
        Protection::ReadOnly => libc::PROT_READ,
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
    };
    // SAFETY: the range is the caller's mapping; changing its protection touches nothing else.
    check(unsafe { libc::mprotect(ptr.cast(), len, prot) })
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn lock(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: locking the caller's own range has no effect on memory safety.
    check(unsafe { libc::mlock(ptr.cast(), len) })
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn unlock(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: unlocking the caller's own range has no effect on memory safety.
    check(unsafe { libc::munlock(ptr.cast(), len) })
}

/// ENOMEM (over the limit), EPERM (limit 0 / no privilege) and EAGAIN (some BSDs, Linux secretmem) all mean
/// "not allowed to lock more".
pub(crate) fn is_lock_limit_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOMEM) | Some(libc::EPERM) | Some(libc::EAGAIN)
    )
}

fn to_limit(value: libc::rlim_t) -> Limit {
    if value == libc::RLIM_INFINITY {
        Limit::Unlimited
    } else {
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Limit::Bytes(value as u64)
    }
}

#[cfg_attr(any(target_os = "illumos", target_os = "solaris"), allow(dead_code))]
pub(crate) fn getrlimit(resource: RlimitResource) -> Result<(Limit, Limit)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(resource, &mut rl) })
        .map_err(|e| Error::os(Op::Limit, 0, 0, e))?;
    Ok((to_limit(rl.rlim_cur), to_limit(rl.rlim_max)))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) type RlimitResource = libc::c_int;

pub(crate) fn disable_core_dumps() -> Result<()> {
    if let Some(err) = crate::fault_check(Op::Limit) {
        return Err(Error::os(Op::Limit, 0, 0, err));
    }
    let rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid rlimit; lowering RLIMIT_CORE is always allowed.
    check(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &rl) })
        .map_err(|e| Error::os(Op::Limit, 0, 0, e))
}

/// Calls `madvise`, mapping EINVAL (advice unknown to this kernel) to "unsupported".
///
/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
    allow(dead_code)
)]
pub(crate) unsafe fn madvise(
    ptr: *mut u8,
    len: usize,
    advice: libc::c_int,
) -> Option<io::Result<()>> {
    // SAFETY: advice on the caller's own range; the advices used here never discard data.
    match check(unsafe { libc::madvise(ptr.cast(), len, advice) }) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
        other => Some(other),
    }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
))]
pub(crate) unsafe fn minherit(
    ptr: *mut u8,
    len: usize,
    inherit: libc::c_int,
) -> Option<io::Result<()>> {
    // SAFETY: changes only how the caller's own range is inherited by future children.
    Some(check(unsafe { libc::minherit(ptr.cast(), len, inherit) }))
}

/// Contract items for Unix backends that have no such measure, or nothing beyond `RLIMIT_MEMLOCK`. Each
/// backend re-exports the subset it needs, so the rest is unused there.
#[allow(dead_code)]
pub(crate) mod defaults {
    use std::io;

    #[cfg(not(any(target_os = "illumos", target_os = "solaris")))]
    use crate::error::Result;
    #[cfg(not(any(target_os = "illumos", target_os = "solaris")))]
    use crate::limits::LockLimit;

    /// # Safety
    /// No requirement; the signature matches the other backends.
    pub(crate) unsafe fn no_dump(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
        None
    }

    /// # Safety
    /// No requirement; the signature matches the other backends.
    pub(crate) unsafe fn no_huge_pages(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
        None
    }

    /// # Safety
    /// No requirement; the signature matches the other backends.
    pub(crate) unsafe fn exclude_from_crash_reports(
        _ptr: *mut u8,
        _len: usize,
    ) -> Option<io::Result<()>> {
        None
    }

    /// # Safety
    /// No requirement; the signature matches the other backends.
    pub(crate) unsafe fn unexclude_from_crash_reports(_ptr: *mut u8, _len: usize) {}

    pub(crate) fn locked_bytes() -> Option<u64> {
        None
    }

    #[cfg(not(any(target_os = "illumos", target_os = "solaris")))]
    pub(crate) fn lock_limit() -> Result<LockLimit> {
        let (soft, hard) = super::getrlimit(libc::RLIMIT_MEMLOCK as super::RlimitResource)?;
        Ok(LockLimit {
            soft,
            hard,
            exempt: None,
            locked_now: None,
        })
    }
}

/// Sets the soft `RLIMIT_MEMLOCK`, keeping the hard limit.
#[cfg(not(any(target_os = "illumos", target_os = "solaris")))]
pub(crate) fn set_lock_limit(soft: Limit) -> Result<()> {
    let (_, hard) = getrlimit(libc::RLIMIT_MEMLOCK as RlimitResource)?;
    let raw = |l: Limit| match l {
        Limit::Unlimited => libc::RLIM_INFINITY,
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Limit::Bytes(b) => b as libc::rlim_t,
    };
    let rl = libc::rlimit {
        rlim_cur: raw(soft),
        rlim_max: raw(hard),
    };
    // SAFETY: `rl` is a valid rlimit; the kernel rejects values it does not allow.
    check(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK as RlimitResource, &rl) })
        .map_err(|e| Error::os(Op::Limit, 0, 0, e))
}
