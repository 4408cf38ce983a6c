//! Linux and Android: `madvise` hardening, `RLIMIT_MEMLOCK` with the `CAP_IPC_LOCK` exemption, `VmLck`.

use std::io;

pub(crate) use super::unix::{
    disable_core_dumps, is_lock_limit_error, lock, page_size, protect, unlock, unmap,
    LOCK_LIMIT_NAME,
};
use super::unix::{getrlimit, madvise, map_with};
use crate::error::Result;
use crate::limits::LockLimit;

pub(crate) const LOCK_LIMIT_HINT: &str = "Raise the limit with `ulimit -l <KiB|unlimited>` before starting the \
process, `LimitMEMLOCK=` in its systemd unit, `docker run --ulimit memlock=<bytes>:<bytes>` for a container, or \
give the process CAP_IPC_LOCK, which lifts the limit (Kubernetes: add \"IPC_LOCK\" to the container's \
securityContext.capabilities; the pod's memlock ulimit itself comes from the container runtime's defaults). \
Fewer live secrets, or the opt-in unlocked mode, also avoid it.";

const CAP_IPC_LOCK: u32 = 14;

/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: forwarded precondition.
    unsafe { map_with(len, 0) }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_dump(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition; MADV_DONTDUMP only changes dump eligibility.
    unsafe { madvise(ptr, len, libc::MADV_DONTDUMP) }
}

/// DONTFORK rather than WIPEONFORK: a child then faults on the address instead of reading silent zeros.
///
/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_fork(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition; MADV_DONTFORK only affects future children.
    unsafe { madvise(ptr, len, libc::MADV_DONTFORK) }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn no_huge_pages(ptr: *mut u8, len: usize) -> Option<io::Result<()>> {
    // SAFETY: forwarded precondition; MADV_NOHUGEPAGE only changes THP eligibility.
    unsafe { madvise(ptr, len, libc::MADV_NOHUGEPAGE) }
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

fn status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

pub(crate) fn locked_bytes() -> Option<u64> {
    let kb = status_field("VmLck")?;
    kb.strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

fn has_ipc_lock() -> Option<bool> {
    let caps = u64::from_str_radix(&status_field("CapEff")?, 16).ok()?;
    Some(caps & (1 << CAP_IPC_LOCK) != 0)
}

pub(crate) fn lock_limit() -> Result<LockLimit> {
    let (soft, hard) = getrlimit(libc::RLIMIT_MEMLOCK)?;
    Ok(LockLimit {
        soft,
        hard,
        exempt: has_ipc_lock(),
        locked_now: locked_bytes(),
    })
}
