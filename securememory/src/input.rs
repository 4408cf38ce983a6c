//! Getting a secret in without a copy in ordinary memory: readers of unknown length and standard input.
//!
//! [`SecretFactory::from_reader`] and [`SecretFactory::from_reader_to_end`] read straight into locked pages; what
//! they cannot control is the reader itself. A buffered reader (`std::io::stdin()`, `BufReader`) keeps its own
//! copy of what passes through it, so open standard input unbuffered with [`stdin_unbuffered`].
//!
//! [`from_env`] moves an environment variable's value into a secret, wipes it where the C library keeps it and
//! removes the variable.

use std::io::Read;

use crate::error::{Error, Result};
use crate::mg::LockedBuffer;
use crate::SecretFactory;

/// The first scratch buffer of a read of unknown length; it doubles as the input grows.
const FIRST_SCRATCH: usize = 4096;

/// Standard input as an unbuffered reader (a duplicate of file descriptor 0, or the standard input handle on
/// Windows): each read goes straight from the OS into the caller's buffer.
///
/// # Errors
/// When the descriptor cannot be duplicated.
#[cfg(unix)]
#[cfg_attr(docsrs, doc(cfg(any(unix, windows))))]
pub fn stdin_unbuffered() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        std::io::stdin().as_fd().try_clone_to_owned()?,
    ))
}

/// Standard input as an unbuffered reader (a duplicate of file descriptor 0, or the standard input handle on
/// Windows): each read goes straight from the OS into the caller's buffer.
///
/// # Errors
/// When the handle cannot be duplicated.
#[cfg(windows)]
#[cfg_attr(docsrs, doc(cfg(any(unix, windows))))]
pub fn stdin_unbuffered() -> std::io::Result<std::fs::File> {
    use std::os::windows::io::AsHandle;
    Ok(std::fs::File::from(
        std::io::stdin().as_handle().try_clone_to_owned()?,
    ))
}

/// Moves the value of the environment variable `name` into a new secret made by `factory`, then overwrites the
/// value with zeros where it sits in the environment and removes the variable.
///
/// The value is read in place (`getenv`, no `String` or `OsString` copy) and copied straight into the secret's
/// locked pages. On any error the environment is left exactly as it was (except for an `unsetenv` failure,
/// reported after the wipe).
///
/// ```
/// # #[cfg(unix)] {
/// use securememory::{input, ProtectedMemorySecretFactory, SecretExtensions};
///
/// std::env::set_var("DOC_API_KEY", "s3cr3t-token");
/// let factory = ProtectedMemorySecretFactory::new();
/// let key = input::from_env(&factory, "DOC_API_KEY")?;
/// assert_eq!(key.with_bytes(|b| Ok(b == b"s3cr3t-token"))?, true);
/// assert!(std::env::var_os("DOC_API_KEY").is_none());
/// # }
/// # Ok::<(), securememory::Error>(())
/// ```
///
/// # Limits
/// - Another thread that changes the environment meanwhile (`setenv`, `std::env::set_var`, ...) is a data race:
///   std's environment lock does not cover the C library's `getenv`. Call this early, before such threads run.
/// - Copies made before the call cannot be reached: the shell or parent that exported the variable, a runtime's
///   own table (Python's `os.environ`), `std::env::vars()` results. `/proc/self/environ` shows the block the
///   process started with, which is wiped in place (it then reads `NAME=` followed by zero bytes).
/// - On Unix only; elsewhere the call fails with `ErrorKind::Unsupported`.
///
/// `memcall::take_env_var` documents the details.
///
/// # Errors
/// [`Error::Io`] with `ErrorKind::NotFound` when the variable is not set, `ErrorKind::InvalidInput` when `name`
/// is empty or contains `=` or NUL, `ErrorKind::Unsupported` off Unix, or the OS error of `unsetenv`;
/// [`Error::InvalidLength`] (`len: 0`) when the value is empty (the variable is then left set); otherwise as
/// [`SecretFactory::new`].
pub fn from_env<F: SecretFactory + ?Sized>(
    factory: &F,
    name: impl AsRef<std::ffi::OsStr>,
) -> Result<F::Secret> {
    #[cfg(unix)]
    {
        /// `take_env_var`'s errors and the factory's, apart until the end.
        struct Failed(Error);
        impl From<std::io::Error> for Failed {
            fn from(e: std::io::Error) -> Failed {
                Failed(Error::Io(e))
            }
        }
        memcall::take_env_var(name, |value| {
            if value.is_empty() {
                return Err(Failed(Error::InvalidLength { len: 0 }));
            }
            factory
                .create_with(value.len(), &mut |pages| {
                    pages.copy_from_slice(value);
                    Ok(())
                })
                .map_err(Failed)
        })
        .map_err(|Failed(e)| e)
    }
    #[cfg(not(unix))]
    {
        let _ = (factory, name);
        Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "taking a secret out of the environment in place is implemented on Unix only",
        )))
    }
}

/// Reads `reader` to its end into locked scratch buffers that double as needed (each copy goes from locked
/// pages to locked pages), then moves the bytes into a secret of exactly their length.
pub(crate) fn read_to_end<F: SecretFactory + ?Sized, R: Read + ?Sized>(
    factory: &F,
    reader: &mut R,
    max_len: usize,
) -> Result<F::Secret> {
    // One byte past the limit tells "exactly max_len" from "longer".
    let limit = max_len
        .checked_add(1)
        .ok_or(Error::InvalidLength { len: max_len })?;
    let mut scratch = LockedBuffer::new(FIRST_SCRATCH.min(limit))?;
    let mut filled = 0;
    loop {
        if filled == scratch.size() {
            if filled == limit {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("the input is longer than the limit of {max_len} bytes"),
                )));
            }
            scratch = grow(scratch, filled, limit)?;
        }
        let n = {
            let mut bytes = scratch.bytes_mut()?;
            match reader.read(&mut bytes[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        };
        if n == 0 {
            break;
        }
        filled += n;
    }
    if filled == 0 {
        return Err(Error::InvalidLength { len: 0 });
    }
    let bytes = scratch.bytes()?;
    factory.create_with(filled, &mut |pages| {
        pages.copy_from_slice(&bytes[..filled]);
        Ok(())
    })
}

/// A scratch buffer twice as large (at most `limit`) holding the first `filled` bytes of `old`, which is
/// destroyed (wiped).
fn grow(mut old: LockedBuffer, filled: usize, limit: usize) -> Result<LockedBuffer> {
    let mut new = LockedBuffer::new(filled.saturating_mul(2).min(limit))?;
    new.bytes_mut()?[..filled].copy_from_slice(&old.bytes()?[..filled]);
    old.destroy()?;
    Ok(new)
}
