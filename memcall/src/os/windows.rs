//! Windows: `VirtualAlloc`/`VirtualProtect`/`VirtualLock`/`VirtualFree`; the working set is grown when
//! `VirtualLock` hits its quota; regions are excluded from Windows Error Reporting dumps where kernel32 offers
//! `WerRegisterExcludedMemoryBlock` (looked up at run time: older systems and Wine lack it, and the region's
//! [`Hardening::crash_report_exclusion`](crate::Hardening) then says `Unsupported`).

use std::ffi::c_void;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use windows_sys::core::HRESULT;
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_NOT_ENOUGH_QUOTA, ERROR_NOT_LOCKED, ERROR_NO_SYSTEM_RESOURCES,
    ERROR_WORKING_SET_QUOTA,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualFree, VirtualLock, VirtualProtect, VirtualUnlock, MEM_COMMIT, MEM_RELEASE,
    MEM_RESERVE, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessWorkingSetSize, SetProcessWorkingSetSize,
};

use crate::error::{Error, Op, Result};
use crate::limits::{Limit, LockLimit};
use crate::region::Protection;

pub(crate) const LOCK_LIMIT_NAME: &str = "the process working-set size (VirtualLock quota)";
pub(crate) const LOCK_LIMIT_HINT: &str = "VirtualLock can pin only what fits in the working-set minimum; this \
library grows it on demand, so the failure means SetProcessWorkingSetSize was refused (a job object's \
working-set limit, or too little physical memory). Raise the job's limit or hold fewer secrets. Under Wine the \
limit is the Unix RLIMIT_MEMLOCK of the wine process: raise it with `ulimit -l` before starting wine.";

fn check(ok: i32) -> io::Result<()> {
    if ok != 0 {
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
    // SAFETY: SYSTEM_INFO is plain data; all-zero is a valid value that GetSystemInfo overwrites.
    let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable SYSTEM_INFO.
    unsafe { GetSystemInfo(&mut info) };
    let size = usize::try_from(info.dwPageSize)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    PAGE.store(size, Ordering::Relaxed);
    size
}

/// # Safety
/// `len` must be a non-zero multiple of the page size.
pub(crate) unsafe fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh committed allocation at an address of the system's choosing touches no existing memory.
    let ptr = unsafe {
        VirtualAlloc(
            std::ptr::null(),
            len,
            MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE,
        )
    };
    if ptr.is_null() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ptr.cast())
    }
}

/// # Safety
/// `ptr` must be the start of an allocation made by [`map`] that nothing uses afterwards.
pub(crate) unsafe fn unmap(ptr: *mut u8, _len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the whole allocation and gives it up; MEM_RELEASE requires size 0.
    check(unsafe { VirtualFree(ptr.cast(), 0, MEM_RELEASE) })
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and inside the caller's allocation; no live reference may rely on
/// access that the new protection removes.
pub(crate) unsafe fn protect(ptr: *mut u8, len: usize, prot: Protection) -> io::Result<()> {
    let prot = match prot {
        Protection::NoAccess => PAGE_NOACCESS,
        Protection::ReadOnly => PAGE_READONLY,
        Protection::ReadWrite => PAGE_READWRITE,
    };
    let mut old = 0;
    // SAFETY: the range is the caller's; `old` is a valid out-parameter.
    check(unsafe { VirtualProtect(ptr.cast(), len, prot, &mut old) })
}

fn grow_working_set(extra: usize) -> io::Result<()> {
    // Fault seam: a test refuses the growth here (as a job object's limit would).
    if let Some(err) = crate::fault_check(Op::Limit) {
        return Err(err);
    }
    let (mut min, mut max) = (0usize, 0usize);
    // SAFETY: the pseudo-handle of the current process is always valid; the out-parameters are valid.
    check(unsafe { GetProcessWorkingSetSize(GetCurrentProcess(), &mut min, &mut max) })?;
    let min = min.saturating_add(extra);
    let max = max.max(min).saturating_add(extra);
    // SAFETY: as above; the sizes are plain numbers the system validates.
    check(unsafe { SetProcessWorkingSetSize(GetCurrentProcess(), min, max) })
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned, committed and inside the caller's allocation.
pub(crate) unsafe fn lock(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: locking the caller's own committed range has no effect on memory safety.
    let first = virtual_lock(|| check(unsafe { VirtualLock(ptr.cast(), len) }));
    match first {
        Err(e) if is_lock_limit_error(&e) => {
            // The quota is the working-set minimum: grow it by what we need (and a page table's worth) and retry.
            grow_working_set(len.saturating_add(16 * page_size())).map_err(|_| e)?;
            // SAFETY: as above.
            virtual_lock(|| check(unsafe { VirtualLock(ptr.cast(), len) }))
        }
        other => other,
    }
}

/// One `VirtualLock` call, unless a test injected a failure of [`Op::Lock`] for it. The seam is consulted here
/// as well as before the whole lock (in the region layer), so a rule armed with `after(1)` fails this backend's
/// first `VirtualLock` and drives the grow-and-retry path that a real working-set quota takes.
fn virtual_lock(call: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    match crate::fault_check(Op::Lock) {
        Some(err) => Err(err),
        None => call(),
    }
}

/// # Safety
/// `ptr..ptr+len` must be page-aligned and inside the caller's allocation.
pub(crate) unsafe fn unlock(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: unlocking the caller's own range has no effect on memory safety.
    match check(unsafe { VirtualUnlock(ptr.cast(), len) }) {
        Err(e) if e.raw_os_error() == Some(ERROR_NOT_LOCKED as i32) => Ok(()),
        other => other,
    }
}

pub(crate) fn is_lock_limit_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(|c| c as u32),
        Some(ERROR_WORKING_SET_QUOTA)
            | Some(ERROR_NOT_ENOUGH_QUOTA)
            | Some(ERROR_NO_SYSTEM_RESOURCES)
            // What VirtualLock returns past the lock limit under Wine (the Unix RLIMIT_MEMLOCK without
            // CAP_IPC_LOCK) and on systems whose policy refuses locking.
            | Some(ERROR_ACCESS_DENIED)
    )
}

/// # Safety
/// No requirement; the signature matches the other backends.
pub(crate) unsafe fn no_dump(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
    None
}

/// # Safety
/// No requirement; Windows has no fork.
pub(crate) unsafe fn no_fork(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
    None
}

/// # Safety
/// No requirement; the signature matches the other backends.
pub(crate) unsafe fn no_huge_pages(_ptr: *mut u8, _len: usize) -> Option<io::Result<()>> {
    None
}

/// # Safety
/// `ptr..ptr+len` must be the caller's allocation, unregistered before it is freed.
pub(crate) unsafe fn exclude_from_crash_reports(
    ptr: *mut u8,
    len: usize,
) -> Option<io::Result<()>> {
    let wer = wer()?;
    let Ok(len) = u32::try_from(len) else {
        return Some(Err(io::Error::from(io::ErrorKind::InvalidInput)));
    };
    // SAFETY: `register` is kernel32's WerRegisterExcludedMemoryBlock (see `wer`); it registers the caller's own
    // range with WER and only reads the address and size.
    let hr = unsafe { (wer.register)(ptr.cast(), len) };
    Some(if hr >= 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(hr))
    })
}

/// # Safety
/// `ptr` must have been registered by [`exclude_from_crash_reports`].
pub(crate) unsafe fn unexclude_from_crash_reports(ptr: *mut u8, _len: usize) {
    if let Some(wer) = wer() {
        // SAFETY: `unregister` is kernel32's WerUnregisterExcludedMemoryBlock (see `wer`); it removes a
        // registration this crate made and only compares the address.
        let _ = unsafe { (wer.unregister)(ptr.cast()) };
    }
}

type WerRegister = unsafe extern "system" fn(*const c_void, u32) -> HRESULT;
type WerUnregister = unsafe extern "system" fn(*const c_void) -> HRESULT;

#[derive(Clone, Copy)]
struct Wer {
    register: WerRegister,
    unregister: WerUnregister,
}

/// kernel32's crash-report exclusion functions, looked up once; `None` when this system has not both (Windows
/// before 10 version 1703 and Server 2016, Wine). Linking them statically would make the whole library fail to
/// load there.
fn wer() -> Option<Wer> {
    static WER: OnceLock<Option<Wer>> = OnceLock::new();
    *WER.get_or_init(|| {
        // SAFETY: the name is a NUL-terminated ASCII string; kernel32 is mapped in every Windows process, and
        // the returned handle is not reference-counted, so nothing needs releasing.
        let kernel32 = unsafe { GetModuleHandleA(c"kernel32.dll".as_ptr().cast()) };
        if kernel32.is_null() {
            return None;
        }
        // SAFETY: `kernel32` is a valid module handle and the names are NUL-terminated ASCII strings.
        let register =
            unsafe { GetProcAddress(kernel32, c"WerRegisterExcludedMemoryBlock".as_ptr().cast()) }?;
        // SAFETY: as above.
        let unregister = unsafe {
            GetProcAddress(
                kernel32,
                c"WerUnregisterExcludedMemoryBlock".as_ptr().cast(),
            )
        }?;
        // SAFETY:
        // - both pointers are the exported functions of those names, whose documented signatures are
        //   `HRESULT WerRegisterExcludedMemoryBlock(const void *, DWORD)` and
        //   `HRESULT WerUnregisterExcludedMemoryBlock(const void *)` with the `system` ABI;
        // - a function pointer and FARPROC have the same size and representation.
        Some(unsafe {
            Wer {
                register: std::mem::transmute::<unsafe extern "system" fn() -> isize, WerRegister>(
                    register,
                ),
                unregister: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    WerUnregister,
                >(unregister),
            }
        })
    })
}

pub(crate) fn disable_core_dumps() -> Result<()> {
    if let Some(err) = crate::fault_check(Op::Limit) {
        return Err(Error::os(Op::Limit, 0, 0, err));
    }
    Ok(())
}

pub(crate) fn locked_bytes() -> Option<u64> {
    None
}

pub(crate) fn lock_limit() -> Result<LockLimit> {
    let (mut min, mut max) = (0usize, 0usize);
    // SAFETY: the pseudo-handle of the current process is always valid; the out-parameters are valid.
    check(unsafe { GetProcessWorkingSetSize(GetCurrentProcess(), &mut min, &mut max) })
        .map_err(|e| Error::os(Op::Limit, 0, 0, e))?;
    Ok(LockLimit {
        soft: Limit::Bytes(min as u64),
        hard: Limit::Bytes(max as u64),
        exempt: None,
        locked_now: None,
    })
}
