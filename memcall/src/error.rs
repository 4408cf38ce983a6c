//! The one error type of this crate: which call failed, on which range, and the raw OS error.

use std::fmt;
use std::io;

use crate::limits::LockLimit;

/// The page operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Mapping fresh pages (`mmap`, `VirtualAlloc`).
    Map,
    /// Releasing pages (`munmap`, `VirtualFree`).
    Unmap,
    /// Changing page protection (`mprotect`, `VirtualProtect`).
    Protect,
    /// Locking pages into RAM (`mlock`, `VirtualLock`).
    Lock,
    /// Unlocking pages (`munlock`, `VirtualUnlock`).
    Unlock,
    /// Per-region advice (`madvise`, `minherit`, crash-report exclusion).
    Advise,
    /// Reading or changing a process resource limit (`getrlimit`, `setrlimit`, working-set size).
    Limit,
}

impl Op {
    /// Every operation, in declaration order (handy for exhaustive fault-injection tests).
    pub const ALL: [Op; 7] = [
        Op::Map,
        Op::Unmap,
        Op::Protect,
        Op::Lock,
        Op::Unlock,
        Op::Advise,
        Op::Limit,
    ];

    /// The name of the operation as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Map => "map",
            Op::Unmap => "unmap",
            Op::Protect => "protect",
            Op::Lock => "lock",
            Op::Unlock => "unlock",
            Op::Advise => "advise",
            Op::Limit => "resource limit",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed page operation.
///
/// The `Display` text says what failed, on how many bytes, and why; it never contains memory contents nor
/// addresses (which would leak the process's memory layout into logs). The addresses are in the fields and in
/// the `Debug` form, for debugging.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A length of zero, or one that overflows when rounded up to whole pages.
    InvalidLength {
        /// The length asked for.
        len: usize,
    },
    /// A sub-range that is not page-aligned or does not lie inside the region.
    InvalidRange {
        /// Offset of the range inside the region.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Length of the whole region.
        region_len: usize,
    },
    /// A system call failed.
    Os {
        /// What was being done.
        op: Op,
        /// Start address of the range (0 when the call had none).
        addr: usize,
        /// Length of the range in bytes (0 when the call had none).
        len: usize,
        /// The raw OS error.
        source: io::Error,
    },
    /// Locking failed because the process hit its locked-memory limit (RLIMIT_MEMLOCK, or the Windows
    /// working-set quota). The message names the limit and how to raise it.
    LockLimit {
        /// Start address of the range.
        addr: usize,
        /// Length of the range in bytes.
        len: usize,
        /// The limit in force when the call failed, if it could be read.
        limit: Option<Box<LockLimit>>,
        /// The raw OS error.
        source: io::Error,
    },
    /// The region was mapped by another process: this is a forked child, which has no mapping for it (no-fork
    /// advice) and may have put its own memory at that address since. Nothing was done.
    Forked,
}

impl Error {
    /// The raw OS error code, when the failure came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// The underlying OS error, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Os { source, .. } | Error::LockLimit { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The operation that failed, when the failure came from the OS.
    pub fn op(&self) -> Option<Op> {
        match self {
            Error::Os { op, .. } => Some(*op),
            Error::LockLimit { .. } => Some(Op::Lock),
            _ => None,
        }
    }

    /// True when this is the locked-memory limit being reached.
    pub fn is_lock_limit(&self) -> bool {
        matches!(self, Error::LockLimit { .. })
    }

    pub(crate) fn os(op: Op, addr: usize, len: usize, source: io::Error) -> Self {
        Error::Os {
            op,
            addr,
            len,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidLength { len } => write!(
                f,
                "invalid length {len}: must be at least 1 and fit in the address space when rounded up to whole pages"
            ),
            Error::InvalidRange {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "invalid range {offset}..{} of a {region_len}-byte region: it must be non-empty, page-aligned and inside the region",
                offset.saturating_add(*len)
            ),
            // The address is left out on purpose (see the type's docs); `Debug` has it.
            Error::Os {
                op, len, source, ..
            } => {
                write!(f, "could not {op} {len} bytes: {source}")
            }
            Error::LockLimit {
                len, limit, source, ..
            } => {
                write!(
                    f,
                    "could not lock {len} bytes: the locked-memory limit was reached ({source}). "
                )?;
                match limit {
                    Some(limit) => write!(f, "{limit}. ")?,
                    None => f.write_str("The current limit could not be read. ")?,
                }
                f.write_str(crate::os::LOCK_LIMIT_HINT)
            }
            Error::Forked => f.write_str(
                "the memory belongs to the parent process: this forked child has no access to it and left it alone",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } | Error::LockLimit { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::InvalidLength { .. } | Error::InvalidRange { .. } => io::ErrorKind::InvalidInput,
            Error::Forked => io::ErrorKind::PermissionDenied,
            Error::LockLimit { .. } => io::ErrorKind::OutOfMemory,
            Error::Os { source, .. } => source.kind(),
        };
        io::Error::new(kind, err)
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
