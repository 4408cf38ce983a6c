//! One backend per OS behind one contract. Each backend exports, by name:
//! `LOCK_LIMIT_NAME`, `LOCK_LIMIT_HINT`, `page_size`, `map`, `unmap`, `protect`, `lock`, `unlock`,
//! `is_lock_limit_error`, `no_dump`, `no_fork`, `no_huge_pages`, `exclude_from_crash_reports`,
//! `unexclude_from_crash_reports`, `lock_limit`, `disable_core_dumps`, `locked_bytes`.
//!
//! The advice functions return `None` where the OS has no such measure.

#[cfg(unix)]
mod unix;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) mod linux_secretmem;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux as backend;

#[cfg(any(target_os = "macos", target_os = "ios"))]
mod macos;
#[cfg(any(target_os = "macos", target_os = "ios"))]
use macos as backend;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
use freebsd as backend;

#[cfg(target_os = "openbsd")]
mod openbsd;
#[cfg(target_os = "openbsd")]
use openbsd as backend;

#[cfg(target_os = "netbsd")]
mod netbsd;
#[cfg(target_os = "netbsd")]
use netbsd as backend;

#[cfg(any(target_os = "illumos", target_os = "solaris"))]
mod illumos;
#[cfg(any(target_os = "illumos", target_os = "solaris"))]
use illumos as backend;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as backend;

pub(crate) use backend::{
    disable_core_dumps, exclude_from_crash_reports, is_lock_limit_error, lock, lock_limit,
    locked_bytes, map, no_dump, no_fork, no_huge_pages, page_size, protect,
    unexclude_from_crash_reports, unlock, unmap, LOCK_LIMIT_HINT, LOCK_LIMIT_NAME,
};

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::{drop_lock_exemption, is_dumpable, set_dumpable};
#[cfg(all(unix, not(any(target_os = "illumos", target_os = "solaris"))))]
pub(crate) use unix::set_lock_limit as unix_set_lock_limit;
