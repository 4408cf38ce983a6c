//! The factories: `ProtectedMemorySecretFactory`, `MemguardSecretFactory` and `SealedSecretFactory`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use pyo3::exceptions::{PyBlockingIOError, PyEOFError, PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyMemoryView, PySlice, PyString, PyTuple};
use securememory::{Backing, Locking, SecretFactory};

use crate::call::call;
use crate::errors::{self, Result};
use crate::gil;
use crate::secret::{self, Secret};
use crate::{source, view};

/// The default limit of `from_file` and `from_fd`: far above any key, token or certificate.
const DEFAULT_MAX_LEN: i64 = 1 << 20;

fn locking(best_effort_locking: bool) -> Locking {
    if best_effort_locking {
        Locking::BestEffort
    } else {
        Locking::Required
    }
}

/// The `backing=` keyword: where the secrets' pages come from.
fn backing(name: &str) -> PyResult<Backing> {
    match name {
        "anonymous" => Ok(Backing::Anonymous),
        "secret_memory" => Ok(Backing::SecretMem),
        "secret_memory_or_anonymous" => Ok(Backing::SecretMemOrAnonymous),
        other => Err(PyValueError::new_err(format!(
            "backing must be 'anonymous', 'secret_memory' or 'secret_memory_or_anonymous', not {other:?}"
        ))),
    }
}

fn backing_name(backing: Backing) -> &'static str {
    match backing {
        Backing::SecretMem => "secret_memory",
        Backing::SecretMemOrAnonymous => "secret_memory_or_anonymous",
        _ => "anonymous",
    }
}

fn repr(class: &str, locking: Locking, backing: Backing) -> String {
    let best_effort = if locking == Locking::BestEffort {
        "True"
    } else {
        "False"
    };
    let backing = backing_name(backing);
    format!("{class}(best_effort_locking={best_effort}, backing='{backing}')")
}

/// `factory.new(source)`: copies the buffer into a secret, then wipes it (a read-only buffer is copied first and
/// only the copy is wiped). On any error the source is left as it was. Allocation runs with the GIL released.
fn new_secret<F>(py: Python<'_>, factory: &F, source: &Bound<'_, PyAny>) -> Result<Secret>
where
    F: SecretFactory,
{
    let made = source::with_source_bytes(py, source, |bytes| factory.new(bytes))?;
    Ok(Secret::new(made?))
}

/// `factory.create_random(size)`.
fn create_random<F>(py: Python<'_>, factory: &F, size: i64) -> Result<Secret>
where
    F: SecretFactory,
{
    let size = usize::try_from(size).map_err(|_| errors::invalid_length(py, size))?;
    Ok(Secret::new(gil::release_if_shared(py, || {
        factory.create_random(size)
    })?))
}

/// A `max_len` argument as a byte count.
fn max_len(py: Python<'_>, max_len: i64) -> Result<usize> {
    Ok(usize::try_from(max_len).map_err(|_| errors::invalid_length(py, max_len))?)
}

/// `factory.from_file(path, max_len)`: read with the GIL released.
fn from_file<F>(py: Python<'_>, factory: &F, path: PathBuf, limit: i64) -> Result<Secret>
where
    F: SecretFactory,
{
    let limit = max_len(py, limit)?;
    match py.detach(|| factory.from_file(&path, limit)) {
        Ok(made) => Ok(Secret::new(made)),
        Err(securememory::Error::Io(e)) if e.raw_os_error().is_some() => {
            let code = e.raw_os_error().unwrap_or_default();
            Err(errors::os_error(py, code, Some(&path)).into())
        }
        Err(error) => Err(error.into()),
    }
}

/// `factory.from_fd(fd, max_len)`: reads a duplicate of `fd` (so the caller keeps its descriptor) to its end,
/// with the GIL released.
#[cfg(unix)]
fn from_fd<F>(py: Python<'_>, factory: &F, fd: i32, limit: i64) -> Result<Secret>
where
    F: SecretFactory,
{
    use std::os::fd::FromRawFd;
    let limit = max_len(py, limit)?;
    // `os.dup` checks the descriptor (raising `OSError` as Python code expects) and makes a non-inheritable copy.
    let dup: i32 = py
        .import(pyo3::intern!(py, "os"))?
        .call_method1(pyo3::intern!(py, "dup"), (fd,))?
        .extract()?;
    // SAFETY: `dup` is the descriptor `os.dup` just created; nothing else knows its number, so this `OwnedFd` is
    // its only owner and closes it exactly once.
    let mut file = std::fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) });
    Ok(Secret::new(
        py.detach(|| factory.from_reader_to_end(&mut file, limit))?,
    ))
}

#[cfg(not(unix))]
fn from_fd<F>(_py: Python<'_>, _factory: &F, _fd: i32, _limit: i64) -> Result<Secret>
where
    F: SecretFactory,
{
    Err(pyo3::exceptions::PyOSError::new_err("from_fd is implemented on Unix only").into())
}

/// Stands in, inside the Rust error, for the exception a `readinto` raised (kept aside as a `PyErr`).
#[derive(Debug)]
struct ReadintoFailed;

impl fmt::Display for ReadintoFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reading into the secret failed")
    }
}

impl std::error::Error for ReadintoFailed {}

/// Fills `view` (`size` bytes) by calling `readinto` on what is left of it until it is full.
fn fill_by_readinto<'py>(
    py: Python<'py>,
    readinto: &Bound<'py, PyAny>,
    view: &Bound<'py, PyMemoryView>,
    size: usize,
) -> PyResult<()> {
    let mut filled = 0;
    while filled < size {
        let start = isize::try_from(filled)?;
        let rest = view
            .as_any()
            .get_item(PySlice::new(py, start, isize::try_from(size)?, 1))?;
        let got = call(readinto, &PyTuple::new(py, [&rest])?);
        // Released now so a well-behaved stream leaves nothing behind; one the stream kept is found afterwards.
        let _ = rest.call_method0(pyo3::intern!(py, "release"));
        let got = got?;
        if got.is_none() {
            return Err(PyBlockingIOError::new_err(format!(
                "readinto returned None after {filled} of {size} bytes: the stream is non-blocking and had no data"
            )));
        }
        let n: i64 = got.extract()?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= size - filled)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "readinto returned {n} for a buffer of {} bytes",
                    size - filled
                ))
            })?;
        if n == 0 {
            return Err(PyEOFError::new_err(format!(
                "the stream ended after {filled} of {size} bytes"
            )));
        }
        filled += n;
    }
    Ok(())
}

/// `factory.from_readable(readable, size)`: `readable.readinto` writes straight into the new secret's pages.
fn from_readable<F>(
    py: Python<'_>,
    factory: &F,
    readable: &Bound<'_, PyAny>,
    size: i64,
) -> Result<Secret>
where
    F: SecretFactory,
{
    let size = usize::try_from(size).map_err(|_| errors::invalid_length(py, size))?;
    let readinto = readable
        .getattr(pyo3::intern!(py, "readinto"))
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "from_readable needs a binary file object with a readinto method, not {}",
                readable.get_type()
            ))
        })?
        .unbind();
    let mut failed: Option<PyErr> = None;
    let mut escaped: Option<view::Escaped> = None;
    let made = py.detach(|| {
        factory.create_with(size, &mut |pages| {
            Python::attach(|py| {
                let len = pages.len();
                let (result, kept) = view::with_writable_view(py, pages, |view| {
                    fill_by_readinto(py, readinto.bind(py), view, len)
                })
                .map_err(|error| {
                    failed = Some(error);
                    securememory::Error::action(ReadintoFailed)
                })?;
                failed = result.err();
                if kept.is_some() {
                    // The pages must become the secret's, whatever else happened, so that they can be
                    // quarantined: on an error they would go back to a cache and another secret could get them.
                    escaped = kept;
                    return Ok(());
                }
                match failed {
                    Some(_) => Err(securememory::Error::action(ReadintoFailed)),
                    None => Ok(()),
                }
            })
        })
    });
    match (made, escaped) {
        (Ok(made), None) => Ok(Secret::new(made)),
        (Ok(made), Some(views)) => {
            let quarantine =
                secret::hold_quarantine(py, &views, securememory::Secret::quarantine(&made));
            let closed = py.detach(|| securememory::Secret::close(&made));
            let error = views.readinto_error(quarantine);
            error.set_cause(py, failed);
            if let Err(close_error) = closed {
                error.set_context(py, Some(errors::to_py_err(py, &close_error)));
            }
            Err(error.into())
        }
        (Err(securememory::Error::Action(_)), None) if failed.is_some() => {
            Err(failed.expect("checked by the guard").into())
        }
        (Err(error), views) => {
            let error = errors::to_py_err(py, &error);
            error.set_cause(py, failed);
            Err(match views {
                Some(views) => {
                    let escape = views.readinto_error(
                        "the secret could not be made, so its pages could not be quarantined.",
                    );
                    escape.set_cause(py, Some(error));
                    escape
                }
                None => error,
            }
            .into())
        }
    }
}

/// `factory.from_env(name)`: see the method's documentation.
fn from_env<F>(py: Python<'_>, factory: &F, name: &Bound<'_, PyString>) -> Result<Secret>
where
    F: SecretFactory,
{
    let os_name: OsString = name.extract()?;
    // The GIL stays held, so no Python thread changes the environment (os.environ, os.putenv) meanwhile.
    let made = match securememory::input::from_env(factory, &os_name) {
        Ok(made) => made,
        Err(securememory::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PyKeyError::new_err(name.clone().unbind()).into());
        }
        Err(securememory::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(PyValueError::new_err(e.to_string()).into());
        }
        Err(error) => return Err(error.into()),
    };
    let secret = Secret::new(made);
    // `del os.environ[name]`: unsets it again (a no-op) and drops Python's own copy from the mapping, without
    // decoding the value once more. The variable may be missing there (set by C code after start-up).
    let environ = py
        .import(pyo3::intern!(py, "os"))?
        .getattr(pyo3::intern!(py, "environ"))?;
    if let Err(error) = environ.del_item(name) {
        if !error.is_instance_of::<PyKeyError>(py) {
            return Err(error.into());
        }
    }
    Ok(secret)
}

/// One Python factory class over one Rust factory type; every class has the same methods, and its own constructor
/// (`signature` and `fn py_new`) and `__repr__`.
macro_rules! factory_class {
    // The page-backed factories' constructor (`best_effort_locking`, `backing`) and `__repr__`.
    ($(#[$doc:meta])* $class:ident wraps $rust:ty; page_backed) => {
        factory_class! {
            $(#[$doc])* $class wraps $rust;
            signature (*, best_effort_locking = false, backing = "anonymous");
            fn py_new(best_effort_locking: bool, backing: &str) -> PyResult<Self> {
                Ok($class {
                    inner: <$rust>::builder()
                        .locking(locking(best_effort_locking))
                        .backing(self::backing(backing)?)
                        .build(),
                })
            }

            fn __repr__(&self) -> String {
                repr(stringify!($class), self.inner.locking(), self.inner.backing())
            }
        }
    };
    (
        $(#[$doc:meta])* $class:ident wraps $rust:ty;
        signature ($($sig:tt)*);
        $($constructor_and_repr:tt)*
    ) => {
        $(#[$doc])*
        #[pyclass(frozen, module = "securememory")]
        pub struct $class {
            inner: $rust,
        }

        // `from_*` names follow the Rust factories' constructors (`SecretFactory::from_file`, ...).
        #[pymethods]
        #[allow(clippy::wrong_self_convention)]
        impl $class {
            #[new]
            #[pyo3(signature = ($($sig)*))]
            $($constructor_and_repr)*

            /// Copies `source` into a new secret, then zeroes `source` if it is writable; on any error `source` is
            /// left exactly as it was.
            #[pyo3(name = "new")]
            fn new_secret(&self, py: Python<'_>, source: &Bound<'_, PyAny>) -> Result<Secret> {
                new_secret(py, &self.inner, source)
            }

            /// A new secret of `size` random bytes.
            fn create_random(&self, py: Python<'_>, size: i64) -> Result<Secret> {
                create_random(py, &self.inner, size)
            }

            /// Reads the file at `path` to its end straight into a new secret (at most `max_len` bytes).
            #[pyo3(
                signature = (path, *, max_len = DEFAULT_MAX_LEN),
                text_signature = "(self, /, path, *, max_len=1048576)"
            )]
            fn from_file(&self, py: Python<'_>, path: PathBuf, max_len: i64) -> Result<Secret> {
                from_file(py, &self.inner, path, max_len)
            }

            /// Reads the open file descriptor `fd` to its end straight into a new secret (at most `max_len`
            /// bytes); `fd` stays open.
            #[pyo3(
                signature = (fd, *, max_len = DEFAULT_MAX_LEN),
                text_signature = "(self, /, fd, *, max_len=1048576)"
            )]
            fn from_fd(&self, py: Python<'_>, fd: i32, max_len: i64) -> Result<Secret> {
                from_fd(py, &self.inner, fd, max_len)
            }

            /// A new secret of exactly `size` bytes that `readable.readinto` writes straight into.
            fn from_readable(
                &self,
                py: Python<'_>,
                readable: &Bound<'_, PyAny>,
                size: i64,
            ) -> Result<Secret> {
                from_readable(py, &self.inner, readable, size)
            }

            /// Moves the environment variable `name` into a new secret, wipes its value in place and removes it.
            fn from_env(&self, py: Python<'_>, name: &Bound<'_, PyString>) -> Result<Secret> {
                from_env(py, &self.inner, name)
            }
        }
    };
}

factory_class! {
    /// Makes secrets backed by whole protected pages: locked in RAM, left out of core dumps and no-access
    /// except inside `with_bytes`.
    ProtectedMemorySecretFactory wraps securememory::ProtectedMemorySecretFactory;
    page_backed
}

factory_class! {
    /// Makes secrets in guarded buffers: protected pages with guard pages on both sides and a canary checked
    /// on close.
    MemguardSecretFactory wraps securememory::MemguardSecretFactory;
    page_backed
}

factory_class! {
    /// Makes sealed secrets: encrypted at rest in ordinary memory (AES-256-GCM under a per-process key that no
    /// thread can read at rest) and decrypted into locked scratch pages only while `with_bytes` runs. They cost
    /// no locked memory each, so a process can hold millions whatever its memlock limit.
    SealedSecretFactory wraps securememory::SealedSecretFactory;
    signature (*, best_effort_locking = false);
    fn py_new(best_effort_locking: bool) -> Self {
        SealedSecretFactory {
            inner: securememory::SealedSecretFactory::with_locking(locking(best_effort_locking)),
        }
    }

    fn __repr__(&self) -> String {
        let best_effort = if self.inner.locking() == Locking::BestEffort { "True" } else { "False" };
        format!("SealedSecretFactory(best_effort_locking={best_effort})")
    }
}
