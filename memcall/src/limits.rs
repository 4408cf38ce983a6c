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
    /// `unlimited`, or the size in the largest binary unit it reaches, never rounded: `0 bytes`, `12 KiB`,
    /// `8 MiB`, `1.5 MiB`; a size that unit cannot show exactly in two decimals is rounded to one and followed
    /// by its exact byte count, as in `1.2 MiB (1258291 bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Bytes(b) => fmt::Display::fmt(&Bytes(*b), f),
        }
    }
}

/// A byte count for people (see [`Limit`]'s `Display`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bytes(pub(crate) u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let b = self.0;
        if b < 1024 {
            return write!(f, "{b} {}", if b == 1 { "byte" } else { "bytes" });
        }
        // The largest unit not above `b`: 1024^(index + 1).
        let index = ((63 - b.leading_zeros()) / 10 - 1) as usize;
        let unit = 1u64 << (10 * (index + 1));
        let (whole, rest) = (b / unit, b % unit);
        let name = UNITS[index];
        if rest == 0 {
            return write!(f, "{whole} {name}");
        }
        // Hundredths of the unit, exact when `rest * 100` is a multiple of the unit (u128: no overflow).
        let hundredths = u128::from(rest) * 100;
        let unit128 = u128::from(unit);
        let cents = hundredths / unit128;
        if hundredths % unit128 == 0 {
            return if cents % 10 == 0 {
                write!(f, "{whole}.{} {name}", cents / 10)
            } else {
                write!(f, "{whole}.{cents:02} {name}")
            };
        }
        // Not exact: rounded to one decimal, followed by the exact count.
        let tenths = (u128::from(b) * 10 + unit128 / 2) / unit128;
        write!(f, "{}.{} {name} ({b} bytes)", tenths / 10, tenths % 10)
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
            write!(f, ", {} locked now", Bytes(locked))?;
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
#[cfg_attr(
    docsrs,
    doc(cfg(all(unix, not(any(target_os = "illumos", target_os = "solaris")))))
)]
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
#[cfg_attr(docsrs, doc(cfg(any(target_os = "linux", target_os = "android"))))]
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
#[cfg_attr(docsrs, doc(cfg(any(target_os = "linux", target_os = "android"))))]
pub fn set_dumpable(dumpable: bool) -> Result<()> {
    injected_limit_failure()?;
    os::set_dumpable(dumpable).map_err(limit_error)
}

/// Whether the process is dumpable (`prctl(PR_GET_DUMPABLE)`).
///
/// # Errors
/// [`Error::Os`](crate::Error::Os) with [`Op::Limit`](crate::Op::Limit) when `prctl` fails.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[cfg_attr(docsrs, doc(cfg(any(target_os = "linux", target_os = "android"))))]
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

#[cfg(test)]
mod tests {
    use super::{Limit, LockLimit};

    #[test]
    fn sizes_are_exact_and_in_human_units() {
        let cases: [(u64, &str); 14] = [
            (0, "0 bytes"),
            (1, "1 byte"),
            (1000, "1000 bytes"),
            (4096, "4 KiB"),
            (12 * 1024, "12 KiB"),
            (12 * 1024 + 512, "12.5 KiB"),
            (65_536 * 1024, "64 MiB"),
            (8 << 20, "8 MiB"),
            (3 << 19, "1.5 MiB"),
            ((1 << 20) + (1 << 18), "1.25 MiB"),
            ((1 << 20) + 5 * 1024, "1.0 MiB (1053696 bytes)"),
            (1_258_291, "1.2 MiB (1258291 bytes)"),
            (5 << 30, "5 GiB"),
            (u64::MAX, "16.0 EiB (18446744073709551615 bytes)"),
        ];
        for (bytes, text) in cases {
            assert_eq!(Limit::Bytes(bytes).to_string(), text, "{bytes} bytes");
        }
        assert_eq!(Limit::Unlimited.to_string(), "unlimited");
    }

    #[test]
    fn a_few_locked_kib_are_not_shown_as_zero_mib() {
        let limit = LockLimit {
            soft: Limit::Bytes(8 << 20),
            hard: Limit::Unlimited,
            exempt: Some(false),
            locked_now: Some(12 * 1024),
        };
        let text = limit.to_string();
        assert!(text.contains("8 MiB (soft), unlimited (hard)"), "{text}");
        assert!(text.contains(", 12 KiB locked now"), "{text}");
        let none = LockLimit {
            locked_now: Some(0),
            ..limit
        };
        assert!(none.to_string().contains(", 0 bytes locked now"), "{none}");
    }
}
