//! The system calls the proofs make beyond `memcall`: host identity, core-dump limits, kernel-feature probes,
//! fork, and the deliberate faults of the live proofs. The doctor's front-end makes none of its own.

use std::io;

/// `uname(2)` fields.
#[derive(Clone, Debug)]
pub struct Uname {
    /// Operating system name ("Linux").
    pub sysname: String,
    /// Kernel release ("6.1.0-18-amd64").
    pub release: String,
    /// Kernel build version.
    pub version: String,
    /// Hardware name ("x86_64").
    pub machine: String,
}

fn c_chars(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// This host's `uname(2)`.
///
/// # Errors
/// When `uname` fails.
pub fn uname() -> io::Result<Uname> {
    // SAFETY: `utsname` is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Uname {
        sysname: c_chars(&u.sysname),
        release: c_chars(&u.release),
        version: c_chars(&u.version),
        machine: c_chars(&u.machine),
    })
}

/// `RLIMIT_CORE` as (soft, hard); `None` means unlimited.
///
/// # Errors
/// When `getrlimit` fails.
pub fn core_limit() -> io::Result<(Option<u64>, Option<u64>)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux but not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    let side = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v as u64);
    Ok((side(rl.rlim_cur), side(rl.rlim_max)))
}

/// Raises the soft core-file limit to the hard one (always allowed), so this process can dump core.
///
/// # Errors
/// When `getrlimit` or `setrlimit` fails.
pub fn raise_core_limit() -> io::Result<()> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: `rl` is a valid rlimit whose soft side does not exceed its hard side.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives up CAP_IPC_LOCK so RLIMIT_MEMLOCK binds (Linux); elsewhere there is no exemption to give up.
///
/// # Errors
/// When the capability cannot be dropped, with why.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn drop_lock_exemption() -> Result<(), String> {
    memcall::drop_lock_exemption().map_err(|e| e.to_string())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn drop_lock_exemption() -> Result<(), String> {
    Err("this OS has no locked-memory exemption to give up".to_owned())
}

/// Whether this process may dump core (`PR_GET_DUMPABLE`); `None` where the OS has no such switch.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn is_dumpable() -> Option<bool> {
    memcall::is_dumpable().ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn is_dumpable() -> Option<bool> {
    None
}

/// Maps three private pages and asks for a guard on the first one with `MADV_GUARD_INSTALL` (Linux 6.13+;
/// libc has no constant for it yet).
///
/// # Errors
/// The kernel's refusal (`EINVAL` before 6.13), or a failed `mmap`.
#[cfg(target_os = "linux")]
pub fn probe_guard_install() -> io::Result<()> {
    const MADV_GUARD_INSTALL: libc::c_int = 102;
    let page = memcall::page_size();
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            3 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `p..p+page` is the start of the mapping made above, which nothing else uses.
    let r = unsafe { libc::madvise(p, page, MADV_GUARD_INSTALL) };
    let err = io::Error::last_os_error();
    // SAFETY: `p..p+3*page` is exactly the mapping made above.
    unsafe { libc::munmap(p, 3 * page) };
    if r != 0 {
        return Err(err);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn probe_guard_install() -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Reads one byte at `addr` with a volatile load. The live proofs call this on pages that must be unreadable, in
/// a child process whose death by SIGSEGV is the expected outcome.
///
/// # Safety
/// `addr` must be an address the caller expects to be either readable or to fault; reading it must not race
/// with a writer. A fault terminates the process.
pub unsafe fn touch(addr: *const u8) -> u8 {
    // SAFETY: forwarded to the caller.
    unsafe { addr.read_volatile() }
}

/// `fork()`. Returns 0 in the child and the child's pid in the parent.
///
/// # Errors
/// When the kernel refuses to fork.
///
/// # Safety
/// The calling process must be single-threaded, or the child must only do async-signal-safe work before
/// `exit_now`.
pub unsafe fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: forwarded to the caller.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// How a waited-for child ended: `Ok(code)` for an exit, `Err(signal)` for a kill.
///
/// # Errors
/// When `waitpid` fails (other than by an interrupt, which is retried).
pub fn wait(pid: libc::pid_t) -> io::Result<Result<i32, i32>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-parameter; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if libc::WIFSIGNALED(status) {
        Ok(Err(libc::WTERMSIG(status)))
    } else {
        Ok(Ok(libc::WEXITSTATUS(status)))
    }
}

/// Writes `bytes` to stdout with one `write(2)`, bypassing Rust's buffered stdout (for forked children).
pub fn write_stdout_raw(bytes: &[u8]) {
    // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes; fd 1 may be closed, which only yields an error.
    unsafe { libc::write(1, bytes.as_ptr().cast(), bytes.len()) };
}

/// Ends the process at once without running destructors or atexit handlers (used in forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and always sound to call.
    unsafe { libc::_exit(code) }
}

/// Fills `buf` from the OS random generator (one getrandom(2) call on Linux for small buffers).
///
/// # Errors
/// When the OS generator fails.
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(io::Error::other)
}

/// CPU time this process has used, in nanoseconds (all threads; time spent preempted is not counted).
pub fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on every supported Unix.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A signal's name for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSYS => "SIGSYS",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Makes the page holding `addr` readable with `mprotect` (what code in a forked child could try).
///
/// # Errors
/// The kernel's refusal (e.g. `ENOMEM` where nothing is mapped).
///
/// # Safety
/// Changing the protection of memory someone else relies on is only sound in a process about to exit.
pub unsafe fn protect_page_readable(addr: usize) -> io::Result<()> {
    let page = memcall::page_size();
    let start = addr & !(page - 1);
    // SAFETY: forwarded to the caller; mprotect on an unmapped range only returns ENOMEM.
    if unsafe { libc::mprotect(start as *mut libc::c_void, page, libc::PROT_READ) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes one byte to every page of `region` (read-write and the caller's), so its pages are resident as a
/// live secret's are.
///
/// # Errors
/// When the region is not read-write (its protection is restored either way).
pub fn make_resident(region: &memcall::Region) -> Result<(), memcall::Error> {
    region.protect(memcall::Protection::ReadWrite)?;
    let page = memcall::page_size();
    for offset in (0..region.len()).step_by(page) {
        // SAFETY: the region is read-write (just set) and `offset < region.len()`; nothing else refers to it.
        unsafe { region.as_ptr().add(offset).write_volatile(1) };
    }
    Ok(())
}
