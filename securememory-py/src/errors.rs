//! The one place where Rust errors become Python exceptions.
//!
//! The exception classes are defined in Python (`securememory/exceptions.py`) so that some of them can also derive
//! from a builtin (`InvalidLengthError` is a `ValueError`); they are imported once, on the first error. Messages are
//! the Rust errors' `Display`, which names sizes, limits and fixes and never secret bytes.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

const EXCEPTIONS_MODULE: &str = "securememory.exceptions";

/// A Python exception class from `securememory.exceptions`, imported on first use.
struct ExceptionClass {
    name: &'static str,
    class: PyOnceLock<Py<PyType>>,
}

impl ExceptionClass {
    const fn new(name: &'static str) -> Self {
        ExceptionClass {
            name,
            class: PyOnceLock::new(),
        }
    }

    /// An instance of this class carrying `message`; if the class cannot be imported (a broken installation),
    /// the import error itself, which says why.
    fn error(&self, py: Python<'_>, message: String) -> PyErr {
        match self.class.import(py, EXCEPTIONS_MODULE, self.name) {
            Ok(class) => PyErr::from_type(class.clone(), message),
            Err(import_error) => import_error,
        }
    }
}

static SECURE_MEMORY_ERROR: ExceptionClass = ExceptionClass::new("SecureMemoryError");
static SECRET_CLOSED: ExceptionClass = ExceptionClass::new("SecretClosedError");
static INVALID_LENGTH: ExceptionClass = ExceptionClass::new("InvalidLengthError");
static MEMORY_LOCK: ExceptionClass = ExceptionClass::new("MemoryLockError");
static MEMORY_PROTECTION: ExceptionClass = ExceptionClass::new("MemoryProtectionError");
static INTEGRITY: ExceptionClass = ExceptionClass::new("IntegrityError");
static CLOSE_INSIDE_ACCESS: ExceptionClass = ExceptionClass::new("CloseInsideAccessError");
static FORKED: ExceptionClass = ExceptionClass::new("ForkedProcessError");
static RANDOM_SOURCE: ExceptionClass = ExceptionClass::new("RandomSourceError");

/// Which Python class stands for `error`.
fn class_of(error: &securememory::Error) -> &'static ExceptionClass {
    use securememory::Error as E;
    if error
        .memory_error()
        .is_some_and(memcall::Error::is_lock_limit)
    {
        return &MEMORY_LOCK;
    }
    match error {
        E::Closed => &SECRET_CLOSED,
        E::InvalidLength { .. } => &INVALID_LENGTH,
        E::Memory(_) | E::ReadOnly(_) | E::Released { .. } => &MEMORY_PROTECTION,
        E::Memguard(inner) => memguard_class_of(inner),
        E::Random(_) => &RANDOM_SOURCE,
        E::CloseInsideAccess => &CLOSE_INSIDE_ACCESS,
        E::Forked => &FORKED,
        E::Integrity => &INTEGRITY,
        E::Cleanup { error, .. } => class_of(error),
        _ => &SECURE_MEMORY_ERROR,
    }
}

fn memguard_class_of(error: &memguard::Error) -> &'static ExceptionClass {
    use memguard::Error as E;
    match error {
        E::InvalidLength { .. } => &INVALID_LENGTH,
        E::Memory(e) if e.is_lock_limit() => &MEMORY_LOCK,
        E::Memory(_) => &MEMORY_PROTECTION,
        E::CanaryCorrupted { .. } | E::DecryptionFailed => &INTEGRITY,
        E::Destroyed => &SECRET_CLOSED,
        E::Forked => &FORKED,
        E::Random(_) => &RANDOM_SOURCE,
        _ => &SECURE_MEMORY_ERROR,
    }
}

/// The Python exception for a Rust error.
///
/// Reading errors (`Error::Io`) become Python's own `OSError` subclasses (`FileNotFoundError`,
/// `PermissionError`, ... with the errno when the OS gave one), except an input longer than its limit, which is an
/// `InvalidLengthError`.
pub(crate) fn to_py_err(py: Python<'_>, error: &securememory::Error) -> PyErr {
    if let securememory::Error::Io(io) = error {
        if io.kind() == std::io::ErrorKind::FileTooLarge {
            return INVALID_LENGTH.error(py, error.to_string());
        }
        return match io.raw_os_error() {
            Some(code) => os_error(py, code, None),
            None => PyErr::from(std::io::Error::new(io.kind(), error.to_string())),
        };
    }
    class_of(error).error(py, error.to_string())
}

/// `OSError(errno, strerror[, filename])`, which Python turns into the subclass for `errno`
/// (`FileNotFoundError`, `PermissionError`, ...).
pub(crate) fn os_error(py: Python<'_>, code: i32, filename: Option<&std::path::Path>) -> PyErr {
    let strerror = py
        .import(pyo3::intern!(py, "os"))
        .and_then(|os| os.call_method1(pyo3::intern!(py, "strerror"), (code,)))
        .and_then(|text| text.extract::<String>())
        .unwrap_or_else(|_| std::io::Error::from_raw_os_error(code).to_string());
    match filename {
        Some(filename) => PyOSError::new_err((code, strerror, filename.as_os_str().to_os_string())),
        None => PyOSError::new_err((code, strerror)),
    }
}

/// A length that cannot name a secret's size (negative), rejected before it reaches Rust.
pub(crate) fn invalid_length(py: Python<'_>, len: i64) -> PyErr {
    INVALID_LENGTH.error(
        py,
        format!("invalid secret length {len}: a secret holds at least one byte"),
    )
}

/// Errors of the binding: a Rust error to translate, or a Python exception to pass on as it is.
pub(crate) enum BindingError {
    Secret(securememory::Error),
    Python(PyErr),
}

impl From<securememory::Error> for BindingError {
    fn from(error: securememory::Error) -> Self {
        BindingError::Secret(error)
    }
}

impl From<PyErr> for BindingError {
    fn from(error: PyErr) -> Self {
        BindingError::Python(error)
    }
}

impl From<BindingError> for PyErr {
    fn from(error: BindingError) -> PyErr {
        match error {
            BindingError::Python(error) => error,
            BindingError::Secret(error) => Python::attach(|py| to_py_err(py, &error)),
        }
    }
}

/// The result type of the binding's methods.
pub(crate) type Result<T, E = BindingError> = std::result::Result<T, E>;

/// `fork()` was called inside a `with_bytes` callback and the callback returned in the child.
pub(crate) fn forked_inside_callback(py: Python<'_>) -> PyErr {
    FORKED.error(
        py,
        "fork() was called inside a with_bytes callback: the child has no copy of the secret's pages, so the \
         view was released in the child when it started and this call fails there (the parent is unaffected)"
            .to_owned(),
    )
}

/// Whether `error` only says that this process is a forked child of the one that made the secret.
pub(crate) fn is_forked(error: &securememory::Error) -> bool {
    match error {
        securememory::Error::Forked => true,
        securememory::Error::Memguard(memguard::Error::Forked) => true,
        securememory::Error::Cleanup { error, .. } => is_forked(error),
        _ => false,
    }
}
