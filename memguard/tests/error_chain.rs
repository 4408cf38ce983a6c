//! An error printed with its chain of causes (`error: source: source…`, as `anyhow`'s `{:#}` does) shows each
//! message once. Every variant is covered by the unit tests in `src/error.rs` (an exhaustive match over a
//! `#[non_exhaustive]` enum only compiles inside its crate); these tests check the errors that real calls
//! return, through the public API.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};

use memcall::{fault, Op};
use memguard::{Error, LockedBuffer};

/// The messages of `e` and of each `source()` in turn.
fn chain(e: &(dyn StdError + 'static)) -> Vec<String> {
    let mut messages = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        messages.push(cause.to_string());
        next = cause.source();
    }
    messages
}

/// No message of the chain is contained in the message before it; returns the chain joined by ": ".
fn assert_no_repetition(e: &(dyn StdError + 'static)) -> String {
    let messages = chain(e);
    for pair in messages.windows(2) {
        assert!(!pair[0].contains(&pair[1]), "{}", messages.join(": "));
    }
    messages.join(": ")
}

#[test]
fn usage_errors_have_no_cause() {
    let err = LockedBuffer::new(0).unwrap_err();
    assert!(matches!(err, Error::InvalidLength { len: 0 }), "{err:?}");
    assert_eq!(
        assert_no_repetition(&err),
        "invalid buffer size 0: must be at least 1 and fit in memory"
    );

    let mut buf = LockedBuffer::new(8).unwrap();
    let err = buf.copy_at(9, b"x").unwrap_err();
    assert_eq!(
        assert_no_repetition(&err),
        "offset 9 is past the end of a 8-byte buffer"
    );
    buf.freeze().unwrap();
    let err = buf.copy(b"x").unwrap_err();
    assert_eq!(
        assert_no_repetition(&err),
        "buffer is frozen (read-only); melt it before writing"
    );
    buf.destroy().unwrap();
    let err = buf.bytes().unwrap_err();
    assert_eq!(
        assert_no_repetition(&err),
        "buffer has been destroyed and can no longer be used"
    );
}

#[test]
fn a_utf8_error_prints_once() {
    let buf = LockedBuffer::from_bytes(&mut [b'a', 0xff]).unwrap();
    let err = buf.with_str(|_| ()).unwrap_err();
    let Error::Utf8(inner) = &err else {
        panic!("expected a UTF-8 error, got {err:?}")
    };
    assert_eq!(
        assert_no_repetition(&err),
        format!("buffer is not valid UTF-8: {inner}")
    );
}

#[test]
fn a_memory_error_prints_once_and_stays_reachable() {
    let mut buf = LockedBuffer::new(32).unwrap();
    let err = {
        let _f = fault::fail(Op::Protect).errno(libc::EIO).arm();
        buf.freeze().unwrap_err()
    };
    let Error::Memory(inner) = &err else {
        panic!("expected a memory error, got {err:?}")
    };
    assert_eq!(inner.raw_os_error(), Some(libc::EIO));
    let os_text = io::Error::from_raw_os_error(libc::EIO).to_string();
    let rendered = assert_no_repetition(&err);
    assert_eq!(rendered, format!("memory operation failed: {inner}"));
    assert!(rendered.ends_with(&format!(": {os_text}")), "{rendered}");
    assert_eq!(rendered.matches(&os_text).count(), 1, "{rendered}");
    // The `io::Error` form prints the same.
    let io = io::Error::from(err);
    assert_eq!(assert_no_repetition(&io), rendered);
    buf.destroy().unwrap();
}

/// A reader failing with an error that has a cause of its own.
struct Failing;

#[derive(Debug)]
struct Unplugged;

impl fmt::Display for Unplugged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cable unplugged")
    }
}

impl StdError for Unplugged {}

#[derive(Debug)]
struct DeviceGone(Unplugged);

impl fmt::Display for DeviceGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("device went away")
    }
}

impl StdError for DeviceGone {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other(DeviceGone(Unplugged)))
    }
}

#[test]
fn a_reader_error_prints_once_and_keeps_its_causes() {
    let err = LockedBuffer::from_reader(Failing, 8).unwrap_err();
    assert!(err.partial.is_none());
    assert!(matches!(err.error, Error::Io(_)), "{:?}", err.error);
    assert_eq!(
        assert_no_repetition(&err.error),
        "reading the buffer's source failed: device went away: cable unplugged"
    );
}

#[test]
fn wrappers_print_once() {
    let err = LockedBuffer::from_reader(Failing, 8).unwrap_err();
    assert_eq!(
        assert_no_repetition(&err),
        "reading the buffer's source failed: device went away: cable unplugged"
    );
    let err = memguard::DestroyError {
        error: Error::CanaryCorrupted { addr: 0, len: 32 },
        region: None,
    };
    assert_eq!(assert_no_repetition(&err), err.error.to_string());
}
