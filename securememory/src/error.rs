//! The one error type of this crate. Messages name what failed and never contain secret bytes.

use std::fmt;

/// Everything that can go wrong with a secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The secret was closed (or is being closed); the closure was not run.
    Closed,
    /// A secret must hold at least one byte and fit in the address space.
    InvalidLength {
        /// The length asked for.
        len: usize,
    },
    /// Allocating, locking, protecting or freeing the pages failed. A locked-memory limit shows up here as
    /// [`memcall::Error::LockLimit`], whose message names the limit and how to raise it.
    Memory(memcall::Error),
    /// The guarded-buffer layer failed (memguard flavour), e.g. a corrupted canary found on close.
    Memguard(crate::mg::Error),
    /// The operating system's random number generator failed.
    Random(getrandom::Error),
    /// The caller's closure failed; its error is kept as is.
    Action(Box<dyn std::error::Error + Send + Sync>),
    /// The pages could not be made readable, so the closure was not run.
    ReadOnly(memcall::Error),
    /// The closure ran but the pages could not be made no-access again afterwards. The closure's own error, if
    /// any, is kept too.
    Released {
        /// Why the pages could not be protected.
        protect: memcall::Error,
        /// What the closure returned, when it failed.
        action: Option<Box<Error>>,
    },
    /// `close()` was called from inside a closure running on the same secret on the same thread; closing would
    /// wait for that closure forever.
    CloseInsideAccess,
    /// The secret was created before a `fork()` and is being used in the child, which has no copy of its pages.
    Forked,
    /// Reading the secret's bytes from a file, pipe or other reader failed.
    Io(std::io::Error),
    /// Something failed, and releasing what had been set up failed too (the memory was released anyway where
    /// the OS allowed it).
    Cleanup {
        /// The first failure.
        error: Box<Error>,
        /// What went wrong while releasing.
        cleanup: Box<Error>,
    },
}

impl Error {
    /// Wraps a closure's own error so it can be returned from `with_bytes` and friends.
    pub fn action(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Action(error.into())
    }

    /// True for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// The memory error behind this one, looking through wrappers, when there is one.
    pub fn memory_error(&self) -> Option<&memcall::Error> {
        match self {
            Error::Memory(e) | Error::ReadOnly(e) => Some(e),
            Error::Released { protect, .. } => Some(protect),
            Error::Cleanup { error, .. } => error.memory_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("secret has already been destroyed"),
            Error::InvalidLength { .. } => f.write_str("invalid secret length"),
            Error::Memory(e) => fmt::Display::fmt(e, f),
            Error::Memguard(e) => fmt::Display::fmt(e, f),
            Error::Random(e) => write!(f, "could not read random bytes: {e}"),
            Error::Action(e) => fmt::Display::fmt(e, f),
            Error::ReadOnly(e) => write!(f, "unable to mark memory as read-only: {e}"),
            Error::Released { protect, action } => {
                write!(f, "unable to mark memory as no-access: {protect}")?;
                match action {
                    Some(action) => write!(f, ": {action}"),
                    None => Ok(()),
                }
            }
            Error::CloseInsideAccess => f.write_str(
                "cannot close a secret from inside its own with_bytes closure (it would wait for itself)",
            ),
            Error::Forked => f.write_str(
                "secret was created before fork() and cannot be used in the child process (its pages are not inherited)",
            ),
            Error::Io(e) => write!(f, "could not read the secret: {e}"),
            Error::Cleanup { error, cleanup } => write!(f, "{cleanup}: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Memory(e) | Error::ReadOnly(e) => Some(e),
            Error::Memguard(e) => Some(e),
            Error::Random(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Action(e) => Some(e.as_ref()),
            Error::Released { protect, .. } => Some(protect),
            Error::Cleanup { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }
}

impl From<memcall::Error> for Error {
    fn from(e: memcall::Error) -> Error {
        Error::Memory(e)
    }
}

impl From<crate::mg::Error> for Error {
    fn from(e: crate::mg::Error) -> Error {
        match e {
            crate::mg::Error::Memory(e) => Error::Memory(e),
            crate::mg::Error::InvalidLength { len } => Error::InvalidLength { len },
            crate::mg::Error::Random(e) => Error::Random(e),
            crate::mg::Error::Forked => Error::Forked,
            e => Error::Memguard(e),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        let kind = match &e {
            Error::InvalidLength { .. } => std::io::ErrorKind::InvalidInput,
            Error::Io(io) => io.kind(),
            Error::Memory(m) if m.is_lock_limit() => std::io::ErrorKind::OutOfMemory,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
