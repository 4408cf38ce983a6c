//! FreeBSD: `MAP_NOCORE` at map time (plus `MADV_NOCORE`), `minherit(INHERIT_NONE)`.

use std::io;

pub(crate) use super::unix::defaults::{
    exclude_from_crash_reports, lock_limit, locked_bytes, no_huge_pages,
    unexclude_from_crash_reports,
};
pub(crate) use super::unix::{
    disable_core_dumps, is_lock_limit_error, lock, page_size, protect, unlock, unmap,
    LOCK_LIMIT_NAME,
};
use super::unix::{madvise, map_with, minherit};

pub(crate) const LOCK_LIMIT_HINT: &str =
    "Raise it with `ulimit -l`, the `memorylocked` capability in \
login.conf, or rctl(8) (`memorylocked`); vm.max_user_wired caps it system-wide.";

/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: forwarded precondition.
    unsafe { map_with(len, libc::MAP_NOCORE) }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_dump(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition; MADV_NOCORE only changes dump eligibility.
    unsafe { madvise(ptr, len, libc::MADV_NOCORE) }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_fork(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition.
    unsafe { minherit(ptr, len, libc::INHERIT_NONE) }
}
