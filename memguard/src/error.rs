//! The crate's error type. Messages carry sizes, never buffer contents or addresses (those stay in the fields
//! and in `Debug`).

use std::fmt;
use std::io;

/// Everything that can go wrong in this crate.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A size of zero, or one too large to map. (Go's memguard hands out an inert "null buffer" instead.)
    InvalidLength {
        /// The size asked for.
        len: usize,
    },
    /// A page operation failed: mapping, locking (the message then names the limit and how to raise it),
    /// protecting or unmapping.
    Memory(memcall::Error),
    /// The canary around a buffer changed, so something wrote outside the buffer's data. The region was wiped
    /// and released all the same.
    CanaryCorrupted {
        /// Start address of the buffer's data.
        addr: usize,
        /// Size of the buffer's data.
        len: usize,
    },
    /// An enclave could not be opened: its ciphertext was altered, or the key changed (after [`purge`]).
    ///
    /// [`purge`]: crate::purge
    DecryptionFailed,
    /// The buffer was destroyed (explicitly, or by [`purge`](crate::purge)).
    Destroyed,
    /// The buffer is frozen (read-only); [`melt`](crate::LockedBuffer::melt) it first.
    Immutable,
    /// An offset past the end of the buffer.
    OutOfRange {
        /// The offset asked for.
        offset: usize,
        /// The buffer's size.
        len: usize,
    },
    /// A typed view needs an alignment or size the buffer's data does not have.
    Misaligned {
        /// Alignment the view needs.
        align: usize,
        /// Start address of the data.
        addr: usize,
    },
    /// The buffer's bytes are not UTF-8.
    Utf8(std::str::Utf8Error),
    /// The operating system's random number generator failed.
    Random(getrandom::Error),
    /// The buffer was inherited by a forked child, which has no mapping for it.
    Forked,
    /// Reading the source of a buffer failed.
    Io(io::Error),
    /// The buffer's lock was still held after [`PURGE_GRACE`](crate::PURGE_GRACE) although no live guard can
    /// hold it: a guard was leaked (`std::mem::forget`, `Box::leak`) or its thread never returns. From
    /// [`LockedBuffer::destroy`](crate::LockedBuffer::destroy), the data was wiped in place and made no-access
    /// (the leaked guard faults if used); its pages are released when the buffer is dropped, or never if the
    /// guard was leaked for the life of the process.
    StillAccessed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidLength { len } => {
                write!(f, "invalid buffer size {len}: must be at least 1 and fit in memory")
            }
            Error::Memory(e) => write!(f, "memory operation failed: {e}"),
            // The address stays in the fields and in `Debug`; user-facing text does not reveal the layout.
            Error::CanaryCorrupted { len, .. } => write!(
                f,
                "canary verification failed for a {len}-byte buffer: memory around it was overwritten (the \
                 buffer was wiped and freed anyway)"
            ),
            Error::DecryptionFailed => {
                f.write_str("decryption failed: key is wrong or ciphertext is corrupt")
            }
            Error::Destroyed => f.write_str("buffer has been destroyed and can no longer be used"),
            Error::Immutable => f.write_str("buffer is frozen (read-only); melt it before writing"),
            Error::OutOfRange { offset, len } => {
                write!(f, "offset {offset} is past the end of a {len}-byte buffer")
            }
            Error::Misaligned { align, .. } => write!(
                f,
                "buffer data is not aligned to {align} bytes or too short for this view"
            ),
            Error::Utf8(e) => write!(f, "buffer is not valid UTF-8: {e}"),
            Error::Random(e) => write!(f, "the OS random number generator failed: {e}"),
            Error::Forked => f.write_str(
                "the buffer, enclave or coffer belongs to the parent process: a forked child has no mapping \
                 for it or its key",
            ),
            Error::Io(e) => write!(f, "reading the buffer's source failed: {e}"),
            Error::StillAccessed => f.write_str(
                "an access to the buffer never ended (a guard was leaked or its thread is stuck); the buffer \
                 cannot be used any more",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Memory(e) => Some(e),
            Error::Utf8(e) => Some(e),
            Error::Random(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<memcall::Error> for Error {
    fn from(e: memcall::Error) -> Self {
        match e {
            memcall::Error::InvalidLength { len } => Error::InvalidLength { len },
            other => Error::Memory(other),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Random(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::InvalidLength { .. } | Error::OutOfRange { .. } | Error::Misaligned { .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, e)
            }
            Error::Memory(ref m) if m.is_lock_limit() => {
                io::Error::new(io::ErrorKind::OutOfMemory, e)
            }
            Error::DecryptionFailed | Error::Utf8(_) => {
                io::Error::new(io::ErrorKind::InvalidData, e)
            }
            other => io::Error::other(other),
        }
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
