//! When to give up the GIL around the Rust work of a call (allocating a secret, closing one).
//!
//! Releasing and re-taking the GIL costs a good part of such a call, and it only helps when another Python
//! thread is there to run meanwhile. So the binding releases it only when the interpreter has other threads:
//! when `threading`'s registry of live threads (`threading._active`: the main thread, every running
//! `threading.Thread`, and a stand-in for each thread started elsewhere that called into `threading`) holds more
//! than one. Reading its size costs a few instructions, where calling `_thread._count()` would cost as much as the
//! rest of a `close`. Correctness never depends on this choice: what may run without releasing it never waits
//! for Python code (allocation waits at most for the page cache, entering or leaving an access window for
//! another thread's protection change), while waits that can last as long as Python code does (`close` waiting
//! for callbacks) always release it. `with_bytes` keeps the GIL in every case (see `Secret::with_bytes`).

use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// `threading._active`, resolved at import. `threading` only ever clears and refills it in place (after a fork),
/// so the dictionary stays the live registry.
static THREADS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// Resolves `threading._active` once; without it the GIL is always released.
pub(crate) fn init(py: Python<'_>) {
    let _ = THREADS.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        Ok(py
            .import("threading")?
            .getattr("_active")?
            .cast_into::<PyDict>()?
            .unbind())
    });
}

/// Whether other Python threads may be waiting to run (or that cannot be told).
pub(crate) fn shared(py: Python<'_>) -> bool {
    THREADS
        .get(py)
        .is_none_or(|threads| threads.bind(py).len() > 1)
}

/// Runs `work` with the GIL released when other Python threads may run, and holding it otherwise.
///
/// Only for work that never waits for Python code to finish (see the module documentation).
pub(crate) fn release_if_shared<T, F>(py: Python<'_>, work: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    if shared(py) {
        py.detach(work)
    } else {
        work()
    }
}
