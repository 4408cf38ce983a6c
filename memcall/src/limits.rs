//! Locked-memory limits and core-dump control.

use std::fmt;

use crate::error::Result;
use crate::os;

/// One side of a resource limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// No limit.
    Unlimited,
    /// A limit in bytes.
    Bytes(u64),
}

impl Limit {
    /// The limit in bytes, or `None` when unlimited.
    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Bytes(b) => Some(b),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Bytes(b) if b % (1 << 20) == 0 => write!(f, "{} MiB", b >> 20),
            Limit::Bytes(b) if b % (1 << 10) == 0 => write!(f, "{} KiB", b >> 10),
            Limit::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

/// How much memory this process may lock.
///
/// On Unix this is `RLIMIT_MEMLOCK`; on Windows it is the process working-set minimum (`soft`) and maximum
/// (`hard`), which bound what `VirtualLock` may pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockLimit {
    /// The limit in force.
    pub soft: Limit,
    /// The ceiling an unprivileged process may raise `soft` to.
    pub hard: Limit,
    /// Whether the process may lock beyond the limit (Linux `CAP_IPC_LOCK`); `None` where the OS has no such
    /// notion or it could not be read.
    pub exempt: Option<bool>,
    /// Bytes this process has locked now (Linux `VmLck`), when the OS tells.
    pub locked_now: Option<u64>,
}

impl fmt::Display for LockLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} (soft), {} (hard)",
            os::LOCK_LIMIT_NAME,
            self.soft,
            self.hard
        )?;
        if let Some(locked) = self.locked_now {
            write!(f, ", {} locked now", Limit::Bytes(locked))?;
        }
        if self.exempt == Some(true) {
            f.write_str(", and the process is exempt from it (CAP_IPC_LOCK)")?;
        }
        Ok(())
    }
}

/// The locked-memory limit in force for this process.
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when the limit cannot be read.
pub fn lock_limit() -> Result<LockLimit> {
    os::lock_limit()
}

/// Sets the soft and hard core-file size limits to zero, so this process writes no core dump.
///
/// This is process-wide and, without privilege, cannot be undone. Regions allocated by this crate are also
/// excluded from core dumps individually where the OS allows ([`Hardening::no_dump`](crate::Hardening)), which
/// is what protects secrets when core dumps stay enabled. A no-op on Windows.
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when `setrlimit` fails.
pub fn disable_core_dumps() -> Result<()> {
    os::disable_core_dumps()
}

/// Bytes of memory this process has locked right now, where the OS tells (Linux: `VmLck` in
/// `/proc/self/status`); `None` elsewhere.
pub fn locked_bytes() -> Option<u64> {
    os::locked_bytes()
}

/// Sets the soft locked-memory limit (`RLIMIT_MEMLOCK`), keeping the hard one. Lowering always works; raising
/// past the hard limit needs privilege. Useful to cap what a service may lock, and in tests.
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when `setrlimit` refuses (EINVAL
/// above the hard limit, EPERM without privilege).
#[cfg(all(unix, not(any(target_os = "illumos", target_os = "solaris"))))]
pub fn set_lock_limit(soft: Limit) -> Result<()> {
    injected_limit_failure()?;
    os::unix_set_lock_limit(soft)
}

/// Gives up `CAP_IPC_LOCK` (effective, permitted and inheritable) for the calling thread, so the locked-memory
/// limit applies from now on; irreversible. A privileged service can call it to make sure a runaway cannot pin
/// unbounded memory, and tests use it to reach the limit as an unprivileged service would.
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when `capset` fails.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn drop_lock_exemption() -> Result<()> {
    os::drop_lock_exemption().map_err(limit_error)
}

/// Marks the process (non-)dumpable with `prctl(PR_SET_DUMPABLE)`. Not dumpable means: no core file at all, and
/// processes of the same user can no longer ptrace it or read `/proc/PID/mem`. Opt-in hardening beyond
/// [`disable_core_dumps`]; note it also makes `/proc/self` files owned by root.
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when `prctl` fails.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn set_dumpable(dumpable: bool) -> Result<()> {
    injected_limit_failure()?;
    os::set_dumpable(dumpable).map_err(limit_error)
}

/// Whether the process is dumpable (`prctl(PR_GET_DUMPABLE)`).
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when `prctl` fails.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn is_dumpable() -> Result<bool> {
    os::is_dumpable().map_err(limit_error)
}

/// A failed process-limit call.
#[cfg_attr(
    any(not(unix), target_os = "illumos", target_os = "solaris"),
    allow(dead_code)
)]
fn limit_error(source: std::io::Error) -> crate::Error {
    crate::Error::Os {
        op: crate::Op::Limit,
        addr: 0,
        len: 0,
        source,
    }
}

/// The failure a test injected for [`Op::Limit`](crate::Op::Limit) on this thread, if any.
#[cfg_attr(
    any(not(unix), target_os = "illumos", target_os = "solaris"),
    allow(dead_code)
)]
fn injected_limit_failure() -> Result<()> {
    crate::fault_check(crate::Op::Limit).map_or(Ok(()), |e| Err(limit_error(e)))
}
