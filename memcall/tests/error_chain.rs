//! An error printed with its chain of causes (`error: source: source…`, as `anyhow`'s `{:#}` does) shows each
//! message once. Every variant is covered by the unit tests in `src/error.rs` (an exhaustive match over a
//! `#[non_exhaustive]` enum only compiles inside its crate); these tests check the errors that real calls
//! return, through the public API.

use std::error::Error as StdError;
use std::io;

use memcall::{Error, Op, Protection, Region};

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

/// Checks `err` and its `io::Error` form, which prints the same text.
fn check(err: Error) -> String {
    let rendered = assert_no_repetition(&err);
    let text = err.to_string();
    let io = io::Error::from(err);
    assert_eq!(io.to_string(), text);
    assert_eq!(assert_no_repetition(&io), rendered);
    rendered
}

#[test]
fn invalid_arguments_have_no_cause() {
    let err = Region::alloc(0).unwrap_err();
    assert!(matches!(err, Error::InvalidLength { len: 0 }), "{err:?}");
    assert_eq!(
        check(err),
        "invalid length 0: must be at least 1 and fit in the address space when rounded up to whole pages"
    );

    let region = Region::alloc(1).unwrap();
    let err = region
        .protect_range(1, 1, Protection::NoAccess)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRange { .. }), "{err:?}");
    assert!(err.source().is_none());
    check(err);
    region.free().unwrap();
}

#[test]
fn an_os_error_prints_once_and_stays_reachable() {
    let err = Error::Os {
        op: Op::Protect,
        addr: 0x1000,
        len: 4096,
        source: io::Error::from_raw_os_error(13),
    };
    let os_text = io::Error::from_raw_os_error(13).to_string();
    assert_eq!(
        assert_no_repetition(&err),
        format!("could not protect 4096 bytes: {os_text}")
    );
    // The OS error is not repeated as a cause, but the accessors still give it.
    assert!(err.source().is_none());
    assert_eq!(err.raw_os_error(), Some(13));
    assert_eq!(err.io_error().map(ToString::to_string), Some(os_text));
}

#[cfg(feature = "fault-injection")]
mod from_failing_calls {
    use super::*;
    use memcall::fault;

    // An unrelated failure and the lock-limit code: errno on Unix; ERROR_GEN_FAILURE and
    // ERROR_WORKING_SET_QUOTA on Windows (where 5 is ERROR_ACCESS_DENIED, a lock-limit code).
    #[cfg(unix)]
    const EIO: i32 = 5;
    #[cfg(unix)]
    const ENOMEM: i32 = 12;
    #[cfg(windows)]
    const EIO: i32 = 31;
    #[cfg(windows)]
    const ENOMEM: i32 = 1453;

    #[test]
    fn map_protect_and_lock_failures() {
        let eio = io::Error::from_raw_os_error(EIO).to_string();
        {
            let _g = fault::fail(Op::Map).errno(EIO).arm();
            let err = Region::alloc(10).unwrap_err();
            assert_eq!(check(err), format!("could not map 4096 bytes: {eio}"));
        }
        let region = Region::alloc(1).unwrap();
        {
            let _g = fault::fail(Op::Protect).errno(EIO).arm();
            let err = region.protect(Protection::NoAccess).unwrap_err();
            assert_eq!(check(err), format!("could not protect 4096 bytes: {eio}"));
        }
        {
            let _g = fault::fail(Op::Lock).errno(EIO).arm();
            let err = region.lock().unwrap_err();
            assert_eq!(check(err), format!("could not lock 4096 bytes: {eio}"));
        }
        {
            let _g = fault::fail(Op::Lock).errno(ENOMEM).arm();
            let err = region.lock().unwrap_err();
            assert!(err.is_lock_limit());
            let enomem = io::Error::from_raw_os_error(ENOMEM).to_string();
            let rendered = check(err);
            assert!(
                rendered.starts_with(&format!(
                    "could not lock 4096 bytes: the locked-memory limit was reached ({enomem}). "
                )),
                "{rendered}"
            );
            assert_eq!(rendered.matches(&enomem).count(), 1, "{rendered}");
        }
        region.free().unwrap();
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_failed_free_prints_once() {
    let region = Region::alloc(1).unwrap();
    let err = {
        let _g = memcall::fault::fail(Op::Unmap).errno(5).arm();
        region.free().unwrap_err()
    };
    let text = err.error.to_string();
    assert_eq!(err.to_string(), text);
    assert_eq!(assert_no_repetition(&err), text);
    err.region.free().unwrap();
}
