//! `securememory.Secret`: a Python handle on a Rust secret of either flavour.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use securememory::SecretExtensions;

use crate::errors::{self, Result};
use crate::reader::RawSecretReader;
use crate::{gil, view};

/// Bytes kept in locked, never-dumped memory that is readable only inside `with_bytes`.
#[pyclass(frozen, module = "securememory", name = "Secret")]
pub struct Secret {
    inner: Box<dyn securememory::Secret>,
    /// `with_bytes` calls in progress, in any thread: counted with the GIL held before the window is entered
    /// and after it is left. While it is 0, holding the GIL guarantees no callback can be running or start.
    callbacks: AtomicUsize,
}

/// Counts one `with_bytes` call in [`Secret::callbacks`] for as long as it lives.
struct InCallback<'a>(&'a AtomicUsize);

impl<'a> InCallback<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InCallback(count)
    }
}

impl Drop for InCallback<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Secret {
    pub(crate) fn new(inner: impl securememory::Secret + 'static) -> Self {
        Secret {
            inner: Box::new(inner),
            callbacks: AtomicUsize::new(0),
        }
    }

    pub(crate) fn inner(&self) -> &dyn securememory::Secret {
        self.inner.as_ref()
    }
}

/// Keeps a secret's pages quarantined while Python objects that escaped a callback live; `weakref.finalize` calls
/// it (a no-op) and drops it when the last of them dies.
#[pyclass(frozen, module = "securememory._native", name = "_QuarantineHold")]
struct QuarantineHold {
    _quarantine: securememory::Quarantine,
}

#[pymethods]
impl QuarantineHold {
    fn __call__(&self) {}
}

/// Keeps a secret's pages quarantined for as long as the escaped `views` live (for the life of the process when
/// some holder cannot be tracked), and returns the sentence that says which.
pub(crate) fn hold_quarantine(
    py: Python<'_>,
    views: &view::Escaped,
    quarantine: securememory::Quarantine,
) -> &'static str {
    let spare = quarantine.clone();
    let until_gone = match Bound::new(
        py,
        QuarantineHold {
            _quarantine: quarantine,
        },
    ) {
        // Keeps the hold for the life of the process itself when some view cannot be weakly referenced.
        Ok(hold) => {
            drop(spare);
            views.hold_until_gone(py, hold.as_any())
        }
        Err(_) => {
            // No Python object to hold it: the handle stays for the life of the process.
            std::mem::forget(spare);
            false
        }
    };
    if until_gone {
        "the secret's pages are quarantined until every one of them is gone (when the secret is closed they \
         are wiped and left no-access, never reused for another secret)."
    } else {
        "the secret's pages are quarantined for the life of the process, since not every holder can be \
         tracked (when the secret is closed they are wiped and left no-access, never reused)."
    }
}

/// Stands in, inside the Rust error, for the exception the callback raised (kept aside as a `PyErr`).
#[derive(Debug)]
struct CallbackRaised;

impl fmt::Display for CallbackRaised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the with_bytes callback raised an exception")
    }
}

impl std::error::Error for CallbackRaised {}

#[pymethods]
impl Secret {
    /// Calls `func(view)` with a read-only memoryview over the secret's bytes and returns what it returns.
    ///
    /// Every view is released when `func` returns. If anything still refers to the view or a view derived from
    /// it (a kept slice, a numpy array over it, a `PickleBuffer`), this raises `BufferError` instead and the
    /// secret's pages are quarantined for as long as those objects live.
    fn with_bytes(&self, py: Python<'_>, func: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let epoch = memcall::fork_epoch();
        let counted = InCallback::enter(&self.callbacks);
        let mut raised: Option<PyErr> = None;
        let mut escaped: Option<(view::Escaped, securememory::Quarantine)> = None;
        // The GIL is kept throughout. Entering and leaving the window never wait for Python code (at most for
        // another thread's protection change, see `gil`), and keeping it is what lets threads share a window:
        // when the interpreter switches threads inside a callback, the window stays open (that callback is still
        // in progress) and the other threads' calls enter and leave it without changing the protection at all.
        // Releasing it around entering and leaving would cost as much as the rest of the call, and with several
        // threads a GIL hand-over per access on top.
        let outcome = self.inner.with_bytes(|bytes| {
            let called = view::call_with_view(py, func.bind(py), bytes).and_then(|called| {
                if let Some(views) = called.escaped {
                    // Quarantined while the window is still open, so that a `close` waiting for it cannot hand
                    // the pages to another secret first.
                    escaped = Some((views, py.detach(|| self.inner.quarantine())));
                }
                called.result
            });
            called.map_err(|error| {
                raised = Some(error);
                securememory::Error::action(CallbackRaised)
            })
        });
        drop(counted);
        let result = match (outcome, raised) {
            (Ok(value), _) => Ok(value),
            (Err(securememory::Error::Action(_)), Some(callback_error)) => Err(callback_error),
            (Err(error), callback_error) => {
                let error = errors::to_py_err(py, &error);
                if callback_error.is_some() {
                    error.set_cause(py, callback_error);
                }
                Err(error)
            }
        };
        let escape_error = escaped.map(|(views, quarantine)| {
            let quarantine = hold_quarantine(py, &views, quarantine);
            views.error(quarantine)
        });
        // `fork()` ran inside the callback and this is the child: the pages were never inherited, and the views
        // were released in the child as it started (`view::release_all_open`).
        let forked = (memcall::fork_epoch() != epoch).then(|| errors::forked_inside_callback(py));
        let chain = |outer: PyErr, inner: Option<PyErr>| {
            outer.set_cause(py, inner);
            outer
        };
        match (result, escape_error, forked) {
            (Ok(value), None, None) => Ok(value),
            (Ok(_), escape_error, Some(forked)) => Err(chain(forked, escape_error)),
            (Ok(_), Some(escape_error), None) => Err(escape_error),
            (Err(error), escape_error, forked) => {
                let error = match escape_error {
                    Some(escape_error) => chain(escape_error, Some(error)),
                    None => error,
                };
                Err(match forked {
                    Some(forked) => chain(forked, Some(error)),
                    None => error,
                })
            }
        }
    }

    /// A binary, read-only file object over the secret's bytes.
    fn reader(slf: Bound<'_, Self>) -> Result<Bound<'_, PyAny>> {
        RawSecretReader::open(slf)
    }

    /// Which protections took effect for this secret, as found when it was created.
    fn protections<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let report = self.inner.protections();
        let dict = PyDict::new(py);
        dict.set_item("locked", report.locked)?;
        dict.set_item("locked_bytes", report.locked_bytes)?;
        dict.set_item("no_dump", report.no_dump.to_string())?;
        dict.set_item("no_fork", report.no_fork.to_string())?;
        dict.set_item("no_huge_pages", report.no_huge_pages.to_string())?;
        dict.set_item("guard_pages", report.guard_pages)?;
        dict.set_item("canary", report.canary)?;
        dict.set_item("fork_detection", report.fork_detection)?;
        let secret_memory = report.backing == memcall::Backing::SecretMem;
        dict.set_item("secret_memory", secret_memory)?;
        dict.set_item("secret_memory_fallback", report.secret_memory_fallback)?;
        dict.set_item("sealed", report.sealed)?;
        Ok(dict)
    }

    /// Wipes and releases the memory, waiting for callbacks running in other threads. Idempotent.
    fn close(&self, py: Python<'_>) -> Result<()> {
        // Waiting for a callback means waiting for Python code, which needs the GIL: release it unless no
        // callback runs (none can start while this thread holds the GIL) and no other thread could use it.
        // What is left to wait for then is a reader's copy or another thread's protection change.
        if self.callbacks.load(Ordering::Relaxed) == 0 {
            Ok(gil::release_if_shared(py, || self.inner.close())?)
        } else {
            Ok(py.detach(|| self.inner.close())?)
        }
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (exc_type, exc_value, traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyType>>,
        exc_value: Option<Bound<'_, PyAny>>,
        traceback: Option<Bound<'_, PyAny>>,
    ) -> Result<bool> {
        let _ = (exc_type, exc_value, traceback);
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<securememory.Secret len={} closed={}>",
            self.inner.len(),
            if self.inner.is_closed() {
                "True"
            } else {
                "False"
            }
        )
    }
}

impl Drop for Secret {
    /// Close on garbage collection. No callback can be running (it would hold a reference), so this does not
    /// wait; a failure is reported the way Python reports an exception in `__del__`. In a forked child there is
    /// nothing to close (the pages were never inherited), so collecting an inherited secret says nothing.
    fn drop(&mut self) {
        if let Err(error) = self.inner.close() {
            if errors::is_forked(&error) {
                return;
            }
            let reported =
                Python::try_attach(|py| errors::to_py_err(py, &error).write_unraisable(py, None));
            if reported.is_none() {
                // The interpreter is shutting down; stderr is all that is left.
                eprintln!("securememory: closing a secret on garbage collection failed: {error}");
            }
        }
    }
}
