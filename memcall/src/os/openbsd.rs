//! OpenBSD: `MAP_CONCEAL` at map time keeps pages out of core dumps; `minherit(MAP_INHERIT_NONE)`.

use std::io;

pub(crate) use super::unix::defaults::{
    exclude_from_crash_reports, lock_limit, locked_bytes, no_huge_pages,
    unexclude_from_crash_reports,
};
pub(crate) use super::unix::{
    disable_core_dumps, is_lock_limit_error, lock, page_size, protect, unlock, unmap,
    LOCK_LIMIT_NAME,
};
use super::unix::{map_with, minherit};

pub(crate) const LOCK_LIMIT_HINT: &str =
    "Raise it with `ulimit -l` or the `memorylocked` capability of the \
login class in login.conf(5).";

/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: forwarded precondition.
    unsafe { map_with(len, libc::MAP_CONCEAL) }
}

/// Applied by `MAP_CONCEAL` in [`map`]; nothing more to do.
///
/// # Safety
/// No requirement; the signature matches the other backends.
pub(crate) unsafe fn no_dump(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
    Some(Ok(()))
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_fork(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition.
    unsafe { minherit(ptr, len, libc::MAP_INHERIT_NONE) }
}
