//! NetBSD: no core-dump exclusion exists; `minherit(MAP_INHERIT_NONE)` keeps pages from children.

use std::io;

pub(crate) use super::unix::defaults::{
    exclude_from_crash_reports, lock_limit, locked_bytes, no_dump, no_huge_pages,
    unexclude_from_crash_reports,
};
pub(crate) use super::unix::{
    disable_core_dumps, is_lock_limit_error, lock, page_size, protect, unlock, unmap,
    LOCK_LIMIT_NAME,
};
use super::unix::{map_with, minherit};

pub(crate) const LOCK_LIMIT_HINT: &str =
    "Raise it with `ulimit -l` or the `memorylocked` capability of the \
login class in login.conf(5); the vm.wired_max sysctl caps it system-wide.";

/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: forwarded precondition.
    unsafe { map_with(len, 0) }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_fork(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition.
    unsafe { minherit(ptr, len, libc::MAP_INHERIT_NONE) }
}
