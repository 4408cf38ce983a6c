//! The one error type of this crate. Messages name what failed and never contain secret bytes.

use std::fmt;

/// Everything that can go wrong with a secret.
///
/// `Display` is the whole message, the text of the wrapped errors included, as in the Go library
/// (`unable to mark memory as read-only: <memory error>`, `<cleanup error>: <first error>`); a closure's error
/// prints as it is. So that a chain printed as `error: source: …` (as `anyhow`'s `{:#}` does) shows nothing
/// twice, [`source`](std::error::Error::source) never returns an error whose text `Display` already contains:
/// it returns what lies behind the wrapped error (that error's own `source()`). [`Released`] and [`Cleanup`]
/// hold two errors; the chain goes on from the one whose text ends the message: for `Released` the closure's
/// error (the protection error when the closure succeeded), for `Cleanup` the first failure. The wrapped
/// errors themselves are the variants' fields, and [`memory_error`](Self::memory_error) finds the memory
/// error.
///
/// [`Released`]: Error::Released
/// [`Cleanup`]: Error::Cleanup
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
    /// A sealed secret's ciphertext failed its integrity check: it was altered, or swapped with another
    /// secret's. Nothing was decrypted into the closure, which was not run.
    Integrity,
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
            Error::Integrity => f.write_str(
                "sealed secret failed its integrity check: its ciphertext was altered or belongs to another secret",
            ),
            Error::Cleanup { error, cleanup } => write!(f, "{cleanup}: {error}"),
        }
    }
}

impl std::error::Error for Error {
    /// What lies behind the wrapped error, whose own text is already in `Display` (see the type's docs).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Memory(e) | Error::ReadOnly(e) => e.source(),
            Error::Memguard(e) => e.source(),
            Error::Random(e) => e.source(),
            Error::Io(e) => e.source(),
            Error::Action(e) => e.source(),
            Error::Released {
                action: Some(action),
                ..
            } => action.source(),
            Error::Released {
                protect,
                action: None,
            } => protect.source(),
            Error::Cleanup { error, .. } => error.source(),
            Error::Closed
            | Error::InvalidLength { .. }
            | Error::CloseInsideAccess
            | Error::Forked
            | Error::Integrity => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// An error with a cause of its own, so the tests see whether `source()` goes past the wrapped error to it.
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

    fn protect_error() -> memcall::Error {
        memcall::Error::Os {
            op: memcall::Op::Protect,
            addr: 0x1000,
            len: 4096,
            source: io::Error::from_raw_os_error(13),
        }
    }

    const PROTECT_TEXT: &str = "could not protect 4096 bytes: ";

    fn protect_text() -> String {
        format!("{PROTECT_TEXT}{}", io::Error::from_raw_os_error(13))
    }

    /// One value of every variant (the ones wrapping an error with causes twice), with its expected `Display`;
    /// the texts that port the Go library's are Go's.
    fn every_variant() -> Vec<(Error, String)> {
        let p = protect_text();
        let all = vec![
            (
                Error::Closed,
                "secret has already been destroyed".to_owned(),
            ),
            (
                Error::InvalidLength { len: 0 },
                "invalid secret length".to_owned(),
            ),
            (Error::Memory(protect_error()), p.clone()),
            (
                Error::Memory(memcall::Error::Os {
                    op: memcall::Op::Map,
                    addr: 0,
                    len: 8192,
                    source: layered_io(),
                }),
                "could not map 8192 bytes: device went away".to_owned(),
            ),
            (
                Error::Memguard(crate::mg::Error::CanaryCorrupted {
                    addr: 0x1000,
                    len: 32,
                }),
                crate::mg::Error::CanaryCorrupted {
                    addr: 0x1000,
                    len: 32,
                }
                .to_string(),
            ),
            (
                Error::Memguard(crate::mg::Error::Io(layered_io())),
                "reading the buffer's source failed: device went away".to_owned(),
            ),
            (
                Error::Random(getrandom::Error::UNEXPECTED),
                format!("could not read random bytes: {}", getrandom::Error::UNEXPECTED),
            ),
            (Error::action("action failed"), "action failed".to_owned()),
            (Error::action(Outer(Root)), "device went away".to_owned()),
            (
                Error::ReadOnly(protect_error()),
                format!("unable to mark memory as read-only: {p}"),
            ),
            (
                Error::Released {
                    protect: protect_error(),
                    action: None,
                },
                format!("unable to mark memory as no-access: {p}"),
            ),
            (
                Error::Released {
                    protect: protect_error(),
                    action: Some(Box::new(Error::action("action failed"))),
                },
                format!("unable to mark memory as no-access: {p}: action failed"),
            ),
            (
                Error::Released {
                    protect: protect_error(),
                    action: Some(Box::new(Error::action(Outer(Root)))),
                },
                format!("unable to mark memory as no-access: {p}: device went away"),
            ),
            (
                Error::CloseInsideAccess,
                "cannot close a secret from inside its own with_bytes closure (it would wait for itself)"
                    .to_owned(),
            ),
            (
                Error::Forked,
                "secret was created before fork() and cannot be used in the child process (its pages are not \
                 inherited)"
                    .to_owned(),
            ),
            (
                Error::Io(layered_io()),
                "could not read the secret: device went away".to_owned(),
            ),
            (
                Error::Integrity,
                "sealed secret failed its integrity check: its ciphertext was altered or belongs to another \
                 secret"
                    .to_owned(),
            ),
            // Go's `<free>: <unlock>: <protect>` shape, with the Go tests' strings.
            (
                Error::Cleanup {
                    error: Box::new(Error::action("error from protect")),
                    cleanup: Box::new(Error::Cleanup {
                        error: Box::new(Error::action("error from unlock")),
                        cleanup: Box::new(Error::action("error from free")),
                    }),
                },
                "error from free: error from unlock: error from protect".to_owned(),
            ),
            (
                Error::Cleanup {
                    error: Box::new(Error::Io(layered_io())),
                    cleanup: Box::new(Error::Memory(protect_error())),
                },
                format!("{p}: could not read the secret: device went away"),
            ),
        ];
        // No wildcard arm: a new variant does not compile until it has a flag here, and its flag is unused
        // (a warning, an error under `-D warnings`) until it is checked below.
        let mut closed = false;
        let mut invalid_length = false;
        let mut memory = false;
        let mut memguard = false;
        let mut random = false;
        let mut action = false;
        let mut read_only = false;
        let mut released = false;
        let mut close_inside_access = false;
        let mut forked = false;
        let mut io = false;
        let mut integrity = false;
        let mut cleanup = false;
        for (e, _) in &all {
            match e {
                Error::Closed => closed = true,
                Error::InvalidLength { .. } => invalid_length = true,
                Error::Memory(_) => memory = true,
                Error::Memguard(_) => memguard = true,
                Error::Random(_) => random = true,
                Error::Action(_) => action = true,
                Error::ReadOnly(_) => read_only = true,
                Error::Released { .. } => released = true,
                Error::CloseInsideAccess => close_inside_access = true,
                Error::Forked => forked = true,
                Error::Io(_) => io = true,
                Error::Integrity => integrity = true,
                Error::Cleanup { .. } => cleanup = true,
            }
        }
        assert!(
            closed
                && invalid_length
                && memory
                && memguard
                && random
                && action
                && read_only
                && released
                && close_inside_access
                && forked
                && io
                && integrity
                && cleanup
        );
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

    fn assert_no_repetition(e: &(dyn std::error::Error + 'static)) -> String {
        let messages = chain(e);
        for pair in messages.windows(2) {
            assert!(!pair[0].contains(&pair[1]), "{}", messages.join(": "));
        }
        messages.join(": ")
    }

    #[test]
    fn no_message_repeats_in_a_chain() {
        for (e, _) in every_variant() {
            let rendered = assert_no_repetition(&e);
            // Nothing is lost either: the deepest cause ends the chain, each message appears once.
            if rendered.contains("device went away") {
                assert!(
                    rendered.ends_with("device went away: cable unplugged"),
                    "{rendered}"
                );
                assert_eq!(
                    rendered.matches("device went away").count(),
                    1,
                    "{rendered}"
                );
            } else {
                assert_eq!(chain(&e).len(), 1, "{rendered}");
            }
            assert!(rendered.matches(PROTECT_TEXT).count() <= 1, "{rendered}");
            // The `io::Error` form prints the same chain.
            assert_eq!(assert_no_repetition(&io::Error::from(e)), rendered);
        }
    }

    #[test]
    fn display_is_unchanged() {
        for (e, text) in every_variant() {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn accessors_still_find_the_memory_error() {
        for (e, _) in every_variant() {
            let expected = match &e {
                Error::Memory(_) | Error::ReadOnly(_) | Error::Released { .. } => true,
                Error::Cleanup { error, .. } => matches!(**error, Error::Memory(_)),
                _ => false,
            };
            assert_eq!(e.memory_error().is_some(), expected, "{e:?}");
        }
    }
}
