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
///
/// `Display` is the whole message, the OS error's text included, so [`source`](std::error::Error::source)
/// does not return that OS error again (a chain printed as `error: source: …` would show it twice): it returns
/// what lies behind the OS error, if anything (`None` for a plain OS error code). The OS error itself is
/// [`io_error`](Self::io_error).
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
    /// Secret memory ([`Region::alloc_secret`](crate::Region::alloc_secret)) was asked for and the kernel has
    /// none to give: `memfd_secret` failed. The message says why (the kernel is too old or built without it,
    /// it is turned off at boot, or a seccomp filter refuses it) and what to do.
    SecretMemUnavailable {
        /// The error of `memfd_secret`.
        source: io::Error,
    },
    /// The operating system has no such feature (for example secret memory off Linux).
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
}

impl Error {
    /// The raw OS error code, when the failure came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// The underlying OS error, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Os { source, .. }
            | Error::LockLimit { source, .. }
            | Error::SecretMemUnavailable { source } => Some(source),
            _ => None,
        }
    }

    /// The operation that failed, when the failure came from the OS.
    pub fn op(&self) -> Option<Op> {
        match self {
            Error::Os { op, .. } => Some(*op),
            Error::LockLimit { .. } => Some(Op::Lock),
            Error::SecretMemUnavailable { .. } => Some(Op::Map),
            _ => None,
        }
    }

    /// True when secret memory was asked for and this kernel or OS has none ([`Error::SecretMemUnavailable`],
    /// or [`Error::Unsupported`]).
    pub fn is_secret_mem_unavailable(&self) -> bool {
        matches!(
            self,
            Error::SecretMemUnavailable { .. } | Error::Unsupported { .. }
        )
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
            Error::SecretMemUnavailable { source } => {
                write!(f, "secret memory (memfd_secret) is not available: {source}. ")?;
                f.write_str(match source.raw_os_error() {
                    Some(38) => {
                        "The kernel has none to give: it is older than 5.14, built without CONFIG_SECRETMEM, or \
                         secret memory is off (boot parameter secretmem.enable=0; kernels 5.14 to 6.4 need \
                         secretmem.enable=1 on the kernel command line). "
                    }
                    Some(1 | 13) => {
                        "A seccomp filter or security module refuses the call (container runtimes' default \
                         seccomp profiles may): allow memfd_secret in the profile. "
                    }
                    _ => "",
                })?;
                f.write_str(
                    "Or choose the best-effort secret-memory backing, which falls back to ordinary locked \
                     pages and says so in each secret's protection report, or the default anonymous backing.",
                )
            }
            Error::Unsupported { what } => {
                write!(f, "{what} is not available on this operating system")
            }
        }
    }
}

impl std::error::Error for Error {
    /// What lies behind the OS error, whose own text is already in `Display` (see the type's docs).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } | Error::LockLimit { source, .. } => {
                std::error::Error::source(source)
            }
            Error::SecretMemUnavailable { source } => std::error::Error::source(source),
            Error::InvalidLength { .. }
            | Error::InvalidRange { .. }
            | Error::Forked
            | Error::Unsupported { .. } => None,
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
            Error::SecretMemUnavailable { .. } | Error::Unsupported { .. } => {
                io::ErrorKind::Unsupported
            }
        };
        io::Error::new(kind, err)
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// An error with a cause of its own, so the tests see whether `source()` goes past the OS error to it.
    #[derive(Debug)]
    struct Outer(Root);

    #[derive(Debug)]
    struct Root;

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("device went away")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    impl fmt::Display for Root {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cable unplugged")
        }
    }

    impl std::error::Error for Root {}

    fn layered_io() -> io::Error {
        io::Error::other(Outer(Root))
    }

    /// One value of every variant, the wrapping ones twice: over a plain OS error and over an error with causes.
    fn every_variant() -> Vec<Error> {
        let limit = LockLimit {
            soft: crate::Limit::Bytes(64 * 1024),
            hard: crate::Limit::Unlimited,
            exempt: Some(false),
            locked_now: Some(4096),
        };
        let all = vec![
            Error::InvalidLength { len: 0 },
            Error::InvalidRange {
                offset: 1,
                len: 2,
                region_len: 4096,
            },
            Error::os(Op::Protect, 0x1000, 4096, io::Error::from_raw_os_error(13)),
            Error::os(Op::Map, 0, 8192, layered_io()),
            Error::LockLimit {
                addr: 0x1000,
                len: 4096,
                limit: Some(Box::new(limit)),
                source: io::Error::from_raw_os_error(12),
            },
            Error::LockLimit {
                addr: 0x1000,
                len: 4096,
                limit: None,
                source: layered_io(),
            },
            Error::Forked,
            Error::SecretMemUnavailable {
                source: io::Error::from_raw_os_error(38),
            },
            Error::Unsupported {
                what: "secret memory",
            },
        ];
        // No wildcard arm: a new variant does not compile until it has a flag here, and its flag is unused
        // (a warning, an error under `-D warnings`) until it is checked below.
        let (mut invalid_length, mut invalid_range, mut os, mut lock_limit, mut forked) =
            (false, false, false, false, false);
        let (mut secret_mem, mut unsupported) = (false, false);
        for e in &all {
            match e {
                Error::InvalidLength { .. } => invalid_length = true,
                Error::InvalidRange { .. } => invalid_range = true,
                Error::Os { .. } => os = true,
                Error::LockLimit { .. } => lock_limit = true,
                Error::Forked => forked = true,
                Error::SecretMemUnavailable { .. } => secret_mem = true,
                Error::Unsupported { .. } => unsupported = true,
            }
        }
        assert!(invalid_length && invalid_range && os && lock_limit && forked);
        assert!(secret_mem && unsupported);
        all
    }

    /// The messages of `e` and of each `source()` in turn, as a chain printer (`anyhow`'s `{:#}`) shows them.
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut messages = vec![e.to_string()];
        let mut next = e.source();
        while let Some(cause) = next {
            messages.push(cause.to_string());
            next = cause.source();
        }
        messages
    }

    #[test]
    fn no_message_repeats_in_a_chain() {
        for e in every_variant() {
            let messages = chain(&e);
            for pair in messages.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{}", messages.join(": "));
            }
            // Nothing is lost either: each message appears once, down to the deepest cause.
            let rendered = messages.join(": ");
            if e.io_error().is_some_and(|io| io.get_ref().is_some()) {
                assert!(rendered.ends_with(": cable unplugged"), "{rendered}");
                assert_eq!(
                    rendered.matches("device went away").count(),
                    1,
                    "{rendered}"
                );
            } else {
                assert_eq!(messages.len(), 1, "{rendered}");
            }
        }
    }

    #[test]
    fn display_is_unchanged() {
        let texts: Vec<String> = every_variant().iter().map(ToString::to_string).collect();
        assert_eq!(
            texts[0],
            "invalid length 0: must be at least 1 and fit in the address space when rounded up to whole pages"
        );
        assert_eq!(
            texts[1],
            "invalid range 1..3 of a 4096-byte region: it must be non-empty, page-aligned and inside the region"
        );
        assert_eq!(
            texts[2],
            format!(
                "could not protect 4096 bytes: {}",
                io::Error::from_raw_os_error(13)
            )
        );
        assert_eq!(texts[3], "could not map 8192 bytes: device went away");
        assert!(
            texts[4].starts_with(&format!(
                "could not lock 4096 bytes: the locked-memory limit was reached ({}). {} is 64 KiB (soft), \
                 unlimited (hard), 4 KiB locked now. ",
                io::Error::from_raw_os_error(12),
                crate::os::LOCK_LIMIT_NAME
            )),
            "{}",
            texts[4]
        );
        assert!(texts[4].ends_with(crate::os::LOCK_LIMIT_HINT));
        assert_eq!(
            texts[5],
            format!(
                "could not lock 4096 bytes: the locked-memory limit was reached (device went away). The \
                 current limit could not be read. {}",
                crate::os::LOCK_LIMIT_HINT
            )
        );
        assert_eq!(
            texts[6],
            "the memory belongs to the parent process: this forked child has no access to it and left it alone"
        );
        assert!(
            texts[7].starts_with("secret memory (memfd_secret) is not available: ")
                && texts[7].contains("secretmem.enable=1")
                && texts[7].contains("best-effort"),
            "{}",
            texts[7]
        );
        assert_eq!(
            texts[8],
            "secret memory is not available on this operating system"
        );
    }

    #[test]
    fn accessors_still_reach_the_os_error() {
        for e in every_variant() {
            match &e {
                Error::Os { op, .. } => assert_eq!(e.op(), Some(*op)),
                Error::LockLimit { .. } => {
                    assert!(e.is_lock_limit());
                    assert_eq!(e.op(), Some(Op::Lock));
                }
                Error::SecretMemUnavailable { .. } => {
                    assert!(e.is_secret_mem_unavailable());
                    assert_eq!(e.raw_os_error(), Some(38));
                }
                _ => assert!(e.io_error().is_none() && e.op().is_none()),
            }
        }
        let e = Error::os(Op::Unlock, 0, 4096, io::Error::from_raw_os_error(1));
        assert_eq!(e.raw_os_error(), Some(1));
        assert!(e.source().is_none());
    }
}
