//! The two factories: `ProtectedMemorySecretFactory` and `MemguardSecretFactory`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use securememory::{Backing, Locking, SecretFactory};

use crate::errors::{self, Result};
use crate::secret::Secret;
use crate::source;

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
    Ok(Secret::new(py.detach(|| factory.create_random(size))?))
}

/// One Python factory class over one Rust factory type; both classes have the same methods.
macro_rules! factory_class {
    ($(#[$doc:meta])* $class:ident wraps $rust:ty) => {
        $(#[$doc])*
        #[pyclass(frozen, module = "securememory")]
        pub struct $class {
            inner: $rust,
        }

        #[pymethods]
        impl $class {
            #[new]
            #[pyo3(signature = (*, best_effort_locking = false, backing = "anonymous"))]
            fn py_new(best_effort_locking: bool, backing: &str) -> PyResult<Self> {
                Ok($class {
                    inner: <$rust>::builder()
                        .locking(locking(best_effort_locking))
                        .backing(self::backing(backing)?)
                        .build(),
                })
            }

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

            fn __repr__(&self) -> String {
                repr(stringify!($class), self.inner.locking(), self.inner.backing())
            }
        }
    };
}

factory_class! {
    /// Makes secrets backed by whole protected pages: locked in RAM, left out of core dumps and no-access
    /// except inside `with_bytes`.
    ProtectedMemorySecretFactory wraps securememory::ProtectedMemorySecretFactory
}

factory_class! {
    /// Makes secrets in guarded buffers: protected pages with guard pages on both sides and a canary checked
    /// on close.
    MemguardSecretFactory wraps securememory::MemguardSecretFactory
}
