//! An error printed with its chain of causes (`error: source: source…`, as `anyhow`'s `{:#}` does) shows each
//! message once, and the Go texts are unchanged. Every variant is covered by the unit tests in `src/error.rs`
//! (an exhaustive match over a `#[non_exhaustive]` enum only compiles inside its crate); these tests check the
//! errors that real calls return, through the public API, for both flavours.

mod common;

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};

use common::{secret_of, Flavour, KEY};
use memcall::{fault, Op};
use securememory::{Error, Secret, SecretExtensions, SecretFactory};

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

/// A closure or reader error with a cause of its own.
#[derive(Debug)]
struct DeviceGone(Unplugged);

#[derive(Debug)]
struct Unplugged;

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

impl fmt::Display for Unplugged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cable unplugged")
    }
}

impl StdError for Unplugged {}

fn usage_errors<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    s.close().unwrap();
    let err = s.with_bytes(|_| Ok(())).unwrap_err();
    assert_eq!(
        assert_no_repetition(&err),
        "secret has already been destroyed"
    );
    let err = F::factory().new(&mut []).unwrap_err();
    assert!(matches!(err, Error::InvalidLength { .. }), "{err:?}");
    assert_eq!(assert_no_repetition(&err), "invalid secret length");
}

fn a_closure_error_prints_as_it_is_with_its_causes<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let err = s
        .with_bytes(|_| -> securememory::Result<()> { Err(Error::action(DeviceGone(Unplugged))) })
        .unwrap_err();
    assert!(matches!(err, Error::Action(_)), "{err:?}");
    assert_eq!(
        assert_no_repetition(&err),
        "device went away: cable unplugged"
    );
    s.close().unwrap();
}

fn protection_failures_keep_go_texts_and_print_once<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    {
        let _guard = fault::fail(Op::Protect).arm();
        let err = s.with_bytes(|_| Ok(())).unwrap_err();
        let Error::ReadOnly(protect) = &err else {
            panic!("expected ReadOnly, got {err:?}")
        };
        assert_eq!(
            assert_no_repetition(&err),
            format!("unable to mark memory as read-only: {protect}")
        );
        assert_eq!(err.memory_error().and_then(|e| e.op()), Some(Op::Protect));
    }
    {
        let _guard = fault::fail(Op::Protect).after(1).arm();
        let err = s.with_bytes(|_| Ok(())).unwrap_err();
        let Error::Released { protect, .. } = &err else {
            panic!("expected Released, got {err:?}")
        };
        assert_eq!(
            assert_no_repetition(&err),
            format!("unable to mark memory as no-access: {protect}")
        );
    }
    {
        let _guard = fault::fail(Op::Protect).after(1).arm();
        let err = s
            .with_bytes(|_| -> securememory::Result<()> { Err(Error::action("action failed")) })
            .unwrap_err();
        let Error::Released { protect, .. } = &err else {
            panic!("expected Released, got {err:?}")
        };
        assert_eq!(
            assert_no_repetition(&err),
            format!("unable to mark memory as no-access: {protect}: action failed")
        );
    }
    {
        // The closure's error ends the message, so its causes continue the chain.
        let _guard = fault::fail(Op::Protect).after(1).arm();
        let err = s
            .with_bytes(|_| -> securememory::Result<()> {
                Err(Error::action(DeviceGone(Unplugged)))
            })
            .unwrap_err();
        let Error::Released { protect, .. } = &err else {
            panic!("expected Released, got {err:?}")
        };
        assert_eq!(
            assert_no_repetition(&err),
            format!(
                "unable to mark memory as no-access: {protect}: device went away: cable unplugged"
            )
        );
        assert!(err.memory_error().is_some());
    }
    s.close().unwrap();
}

fn a_creation_failure_and_its_cleanup_print_once<F: Flavour>() {
    // The seal fails, then making the pages writable to wipe them fails too.
    let _guard = fault::fail(Op::Protect)
        .after(F::PROTECTS_BEFORE_SEAL)
        .times(2)
        .arm();
    let err = F::factory().create_random(32).unwrap_err();
    let Error::Cleanup { error, cleanup } = &err else {
        panic!("expected a cleanup error, got {err:?}")
    };
    assert_eq!(assert_no_repetition(&err), format!("{cleanup}: {error}"));
    assert_eq!(err.memory_error().and_then(|e| e.op()), Some(Op::Protect));
    // The `io::Error` form prints the same chain.
    let text = assert_no_repetition(&err);
    assert_eq!(assert_no_repetition(&io::Error::from(err)), text);
}

fn a_reader_error_prints_once_with_its_causes<F: Flavour>() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other(DeviceGone(Unplugged)))
        }
    }
    let err = F::factory()
        .from_reader_to_end(&mut Broken, 10)
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert_eq!(
        assert_no_repetition(&err),
        "could not read the secret: device went away: cable unplugged"
    );
}

for_both_flavours!(
    usage_errors,
    a_closure_error_prints_as_it_is_with_its_causes,
    protection_failures_keep_go_texts_and_print_once,
    a_creation_failure_and_its_cleanup_print_once,
    a_reader_error_prints_once_with_its_causes,
);
