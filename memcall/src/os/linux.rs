//! Linux and Android: `madvise` hardening, `RLIMIT_MEMLOCK` with the `CAP_IPC_LOCK` exemption, `VmLck`.

use std::io;

pub(crate) use super::unix::defaults::{exclude_from_crash_reports, unexclude_from_crash_reports};
pub(crate) use super::unix::{
    disable_core_dumps, is_lock_limit_error, page_size, protect, unlock, unmap, LOCK_LIMIT_NAME,
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

/// Locks with `mlock2(MLOCK_ONFAULT)`: every page is locked the moment it is first touched and the whole range
/// is charged to `RLIMIT_MEMLOCK` at once (so the limit error comes here, not later). Unlike plain `mlock`, it
/// spares each later `mprotect` that makes the range writable a page-table walk: for a `VM_LOCKED` private
/// mapping the kernel re-populates the range on every such call, unless the mapping is lock-on-fault. A secret's
/// bytes are written after locking, so they are never in an unlocked page. Falls back to `mlock` where `mlock2`
/// is missing (kernels before 4.4, valgrind).
///
/// # Safety
/// `ptr..ptr+len` must be page-aligned and mapped by the caller.
pub(crate) unsafe fn lock(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: locking the caller's own range has no effect on memory safety.
    if unsafe { libc::mlock2(ptr.cast(), len, libc::MLOCK_ONFAULT) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // SAFETY: as above.
        Some(libc::ENOSYS) | Some(libc::EINVAL) => unsafe { super::unix::lock(ptr, len) },
        _ => Err(err),
    }
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

fn status_field(name: &str) -> Option<String> {
    // Capabilities are per thread: read this thread's view (VmLck is per process and the same in both).
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .ok()?;
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

/// Clears CAP_IPC_LOCK from the effective and permitted sets of the calling thread (and so of threads it starts
/// afterwards), so `RLIMIT_MEMLOCK` applies to it. Irreversible.
pub(crate) fn drop_lock_exemption() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget with a version-3 header reads two `Data` records into `data`, which has room for them.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bit = !(1u32 << CAP_IPC_LOCK);
    data[0].effective &= bit;
    data[0].permitted &= bit;
    data[0].inheritable &= bit;
    // SAFETY: capset reads the header and two `Data` records; dropping capabilities is always permitted.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_dumpable(dumpable: bool) -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    if unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn is_dumpable() -> io::Result<bool> {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    let ret = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret != 0)
}
