//! illumos and Solaris: no per-region dump or fork exclusion exists. There is no `RLIMIT_MEMLOCK`: locking
//! needs the `proc_lock_memory` privilege and is capped by the `project.max-locked-memory` resource control,
//! so [`lock_limit`] reports no rlimit (unlimited) and the hint names those controls.

use std::io;

pub(crate) use super::unix::defaults::{
    exclude_from_crash_reports, locked_bytes, no_dump, no_huge_pages, unexclude_from_crash_reports,
};
use super::unix::map_with;
pub(crate) use super::unix::{
    disable_core_dumps, is_lock_limit_error, lock, page_size, protect, unlock, unmap,
    LOCK_LIMIT_NAME,
};
use crate::error::Result;
use crate::limits::{Limit, LockLimit};

pub(crate) const LOCK_LIMIT_HINT: &str = "Locking memory needs the proc_lock_memory privilege (ppriv(1), \
usermod -K defaultpriv=basic,proc_lock_memory) and is capped by the project.max-locked-memory resource control \
(prctl(1), projmod(1M)).";

/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: forwarded precondition.
    unsafe { map_with(len, 0) }
}

/// # Safety
/// No requirement; the signature matches the other backends.
pub(crate) unsafe fn no_fork(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
    None
}

pub(crate) fn lock_limit() -> Result<LockLimit> {
    Ok(LockLimit {
        soft: Limit::Unlimited,
        hard: Limit::Unlimited,
        exempt: None,
        locked_now: None,
    })
}
