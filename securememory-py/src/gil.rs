//! When to give up the GIL around the Rust work of a call (allocating a secret, closing one).
//!
//! Releasing and re-taking the GIL costs a good part of such a call, and it only helps when another Python
//! thread is there to run meanwhile. So the binding releases it only when the interpreter runs other threads
//! (`_thread._count()`: the threads started by `_thread`/`threading` that are still running, besides the main
//! thread). Correctness never depends on this choice: what may run without releasing it never waits for Python
//! code (allocation waits at most for the page cache, entering or leaving an access window for another thread's
//! protection change), while waits that can last as long as Python code does (`close` waiting for callbacks)
//! always release it. `with_bytes` keeps the GIL in every case (see `Secret::with_bytes`).

use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// `_thread._count`, resolved at import.
static THREAD_COUNT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Resolves `_thread._count` once; without it the GIL is always released.
pub(crate) fn init(py: Python<'_>) {
    let _ = THREAD_COUNT.import(py, "_thread", "_count");
}

/// Whether other Python threads may be waiting to run: `_thread._count()` is not 0 (or cannot be read).
pub(crate) fn shared(py: Python<'_>) -> bool {
    let Some(count) = THREAD_COUNT.get(py) else {
        return true;
    };
    count
        .call0(py)
        .and_then(|n| n.extract::<usize>(py))
        .map_or(true, |n| n != 0)
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
