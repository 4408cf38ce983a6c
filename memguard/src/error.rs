//! The crate's error type. Messages carry sizes, never buffer contents or addresses (those stay in the fields
//! and in `Debug`).

use std::fmt;
use std::io;

/// Everything that can go wrong in this crate.
///
/// `Display` is the whole message, the text of the wrapped error included (a memory error, for example, names
/// the locked-memory limit and how to raise it). So that a chain printed as `error: source: …` (as `anyhow`'s
/// `{:#}` does) shows nothing twice, [`source`](std::error::Error::source) never returns an error whose text
/// `Display` already contains: it returns what lies behind the wrapped error (that error's own `source()`),
/// usually nothing. The wrapped error itself is the variant's field.
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
    /// What lies behind the wrapped error, whose own text is already in `Display` (see the type's docs).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Memory(e) => e.source(),
            Error::Utf8(e) => e.source(),
            Error::Random(e) => e.source(),
            Error::Io(e) => e.source(),
            Error::InvalidLength { .. }
            | Error::CanaryCorrupted { .. }
            | Error::DecryptionFailed
            | Error::Destroyed
            | Error::Immutable
            | Error::OutOfRange { .. }
            | Error::Misaligned { .. }
            | Error::Forked
            | Error::StillAccessed => None,
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn os_error(errno: i32) -> memcall::Error {
        memcall::Error::Os {
            op: memcall::Op::Protect,
            addr: 0x1000,
            len: 4096,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    fn utf8_error() -> std::str::Utf8Error {
        String::from_utf8(vec![b'a', 0xff])
            .expect_err("0xff is never UTF-8")
            .utf8_error()
    }

    /// One value of every variant (the ones wrapping an error with causes twice), with its expected `Display`.
    fn every_variant() -> Vec<(Error, String)> {
        let all = vec![
            (
                Error::InvalidLength { len: 0 },
                "invalid buffer size 0: must be at least 1 and fit in memory".to_owned(),
            ),
            (
                Error::Memory(os_error(13)),
                format!("memory operation failed: could not protect 4096 bytes: {}", io::Error::from_raw_os_error(13)),
            ),
            (
                Error::Memory(memcall::Error::Os {
                    op: memcall::Op::Map,
                    addr: 0,
                    len: 8192,
                    source: layered_io(),
                }),
                "memory operation failed: could not map 8192 bytes: device went away".to_owned(),
            ),
            (
                Error::CanaryCorrupted { addr: 0x1000, len: 32 },
                "canary verification failed for a 32-byte buffer: memory around it was overwritten (the buffer \
                 was wiped and freed anyway)"
                    .to_owned(),
            ),
            (
                Error::DecryptionFailed,
                "decryption failed: key is wrong or ciphertext is corrupt".to_owned(),
            ),
            (
                Error::Destroyed,
                "buffer has been destroyed and can no longer be used".to_owned(),
            ),
            (
                Error::Immutable,
                "buffer is frozen (read-only); melt it before writing".to_owned(),
            ),
            (
                Error::OutOfRange { offset: 40, len: 32 },
                "offset 40 is past the end of a 32-byte buffer".to_owned(),
            ),
            (
                Error::Misaligned { align: 8, addr: 0x1001 },
                "buffer data is not aligned to 8 bytes or too short for this view".to_owned(),
            ),
            (
                Error::Utf8(utf8_error()),
                format!("buffer is not valid UTF-8: {}", utf8_error()),
            ),
            (
                Error::Random(getrandom::Error::UNEXPECTED),
                format!("the OS random number generator failed: {}", getrandom::Error::UNEXPECTED),
            ),
            (
                Error::Forked,
                "the buffer, enclave or coffer belongs to the parent process: a forked child has no mapping for \
                 it or its key"
                    .to_owned(),
            ),
            (
                Error::Io(io::ErrorKind::UnexpectedEof.into()),
                format!(
                    "reading the buffer's source failed: {}",
                    io::Error::from(io::ErrorKind::UnexpectedEof)
                ),
            ),
            (
                Error::Io(layered_io()),
                "reading the buffer's source failed: device went away".to_owned(),
            ),
            (
                Error::StillAccessed,
                "an access to the buffer never ended (a guard was leaked or its thread is stuck); the buffer \
                 cannot be used any more"
                    .to_owned(),
            ),
        ];
        // No wildcard arm: a new variant does not compile until it has a flag here, and its flag is unused
        // (a warning, an error under `-D warnings`) until it is checked below.
        let mut invalid_length = false;
        let mut memory = false;
        let mut canary_corrupted = false;
        let mut decryption_failed = false;
        let mut destroyed = false;
        let mut immutable = false;
        let mut out_of_range = false;
        let mut misaligned = false;
        let mut utf8 = false;
        let mut random = false;
        let mut forked = false;
        let mut io = false;
        let mut still_accessed = false;
        for (e, _) in &all {
            match e {
                Error::InvalidLength { .. } => invalid_length = true,
                Error::Memory(_) => memory = true,
                Error::CanaryCorrupted { .. } => canary_corrupted = true,
                Error::DecryptionFailed => decryption_failed = true,
                Error::Destroyed => destroyed = true,
                Error::Immutable => immutable = true,
                Error::OutOfRange { .. } => out_of_range = true,
                Error::Misaligned { .. } => misaligned = true,
                Error::Utf8(_) => utf8 = true,
                Error::Random(_) => random = true,
                Error::Forked => forked = true,
                Error::Io(_) => io = true,
                Error::StillAccessed => still_accessed = true,
            }
        }
        assert!(
            invalid_length
                && memory
                && canary_corrupted
                && decryption_failed
                && destroyed
                && immutable
                && out_of_range
                && misaligned
                && utf8
                && random
                && forked
                && io
                && still_accessed
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

    #[test]
    fn no_message_repeats_in_a_chain() {
        for (e, _) in every_variant() {
            let messages = chain(&e);
            for pair in messages.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{}", messages.join(": "));
            }
            // Nothing is lost either: the deepest cause ends the chain, each message appears once.
            let rendered = messages.join(": ");
            if rendered.contains("device went away") {
                assert!(
                    rendered.ends_with(": device went away: cable unplugged"),
                    "{rendered}"
                );
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
        for (e, text) in every_variant() {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn the_io_form_prints_each_message_once() {
        for (e, text) in every_variant() {
            // `Io` hands back the reader's own error.
            let unwrapped = matches!(e, Error::Io(_));
            let io = io::Error::from(e);
            if !unwrapped {
                assert_eq!(io.to_string(), text);
            }
            let messages = chain(&io);
            for pair in messages.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{}", messages.join(": "));
            }
        }
    }
}
