//! The read-only memoryview a `with_bytes` callback receives, and its release when the access window closes.
//!
//! The view points straight at the secret's protected pages (no copy). Once the callback returns, the pages become
//! no-access again (or are freed by a later `close()`), so any view the callback kept must stop working before
//! that happens: a released memoryview raises `ValueError` on every use instead of touching the pages.
//!
//! CPython backs a memoryview and everything derived from it (slices, `cast`, `toreadonly`, `memoryview(view)`)
//! with one shared "managed buffer" object. Every view holds a reference to it, so its reference count tells
//! whether the callback derived views; if so, the garbage collector's referrer list finds them all and each is
//! released. A view whose buffer is itself still exported (another object called `PyObject_GetBuffer` on it and
//! has not released it) cannot be released; that is reported as `BufferError`.

use std::ffi::c_char;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyMemoryView, PyType};

use crate::errors;

/// `PyBUF_READ` from CPython's `pybuffer.h` (stable since 3.3; pyo3 only exposes it for 3.11+ limited builds).
const PYBUF_READ: std::ffi::c_int = 0x100;

static GET_REFERENTS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GET_REFERRERS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MANAGED_BUFFER_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Calls `callback(view)` with a read-only memoryview over `bytes` and returns its result, after releasing every
/// view of `bytes` the callback may have kept.
///
/// If the callback raised, that exception comes back unchanged, unless some view could not be released; then
/// the `BufferError` saying so comes back with the callback's exception as its cause.
pub(crate) fn call_with_view(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    bytes: &[u8],
) -> PyResult<Py<PyAny>> {
    let window = Window::open(py, bytes)?;
    let outcome = callback.call1((&window.view,));
    match (outcome, window.close(py)) {
        (outcome, Ok(())) => outcome.map(Bound::unbind),
        (Ok(_), Err(release_error)) => Err(release_error),
        (Err(callback_error), Err(release_error)) => {
            release_error.set_cause(py, Some(callback_error));
            Err(release_error)
        }
    }
}

/// A memoryview over borrowed bytes plus what is needed to find the views derived from it.
struct Window<'py> {
    view: Bound<'py, PyMemoryView>,
    managed_buffer: Bound<'py, PyAny>,
    /// Reference count of the managed buffer when only `view` and this struct refer to it.
    undivided_refcount: isize,
}

impl<'py> Window<'py> {
    fn open(py: Python<'py>, bytes: &[u8]) -> PyResult<Self> {
        let len = ffi::Py_ssize_t::try_from(bytes.len())
            .map_err(|_| PyRuntimeError::new_err("secret too large for a memoryview"))?;
        // SAFETY:
        // - `bytes` is valid for reads of `len` bytes until this function's caller returns, and the view is
        //   released (`Window::close`) before then; a released view never reads its memory again.
        // - `PYBUF_READ` makes the view read-only, so CPython never writes through the `*mut` it is given.
        // - The GIL is held (`py`), as the call requires.
        let raw = unsafe {
            ffi::PyMemoryView_FromMemory(
                bytes.as_ptr().cast::<c_char>().cast_mut(),
                len,
                PYBUF_READ,
            )
        };
        // SAFETY: `raw` is a new (owned) reference or null with an exception set, as this call documents.
        let view = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?.cast_into::<PyMemoryView>()?;
        let managed_buffer = match managed_buffer_of(py, &view) {
            Ok(managed_buffer) => managed_buffer,
            Err(error) => {
                release(&view)?;
                return Err(error);
            }
        };
        let undivided_refcount = refcount(&managed_buffer);
        Ok(Window {
            view,
            managed_buffer,
            undivided_refcount,
        })
    }

    /// Releases the view and every view derived from it.
    fn close(self, py: Python<'py>) -> PyResult<()> {
        if refcount(&self.managed_buffer) <= self.undivided_refcount {
            return release(&self.view).map_err(|_| errors::view_still_exported(1));
        }
        let referrers = gc_function(py, &GET_REFERRERS, "get_referrers")?
            .call1((&self.managed_buffer,))?
            .cast_into::<PyList>()?;
        let mut still_exported = 0;
        for referrer in referrers.iter() {
            if let Ok(view) = referrer.cast::<PyMemoryView>() {
                if release(view).is_err() {
                    still_exported += 1;
                }
            }
        }
        match still_exported {
            0 => Ok(()),
            held => Err(errors::view_still_exported(held)),
        }
    }
}

/// The managed buffer behind `view`: a memoryview's only GC referent, checked to be CPython's `managedbuffer`.
fn managed_buffer_of<'py>(
    py: Python<'py>,
    view: &Bound<'py, PyMemoryView>,
) -> PyResult<Bound<'py, PyAny>> {
    let expected = MANAGED_BUFFER_TYPE
        .get_or_try_init(py, || managed_buffer_type(py))?
        .bind(py);
    let referents = gc_function(py, &GET_REFERENTS, "get_referents")?
        .call1((view,))?
        .cast_into::<PyList>()?;
    if referents.len() == 1 {
        let referent = referents.get_item(0)?;
        if referent.get_type().is(expected) {
            return Ok(referent);
        }
    }
    Err(no_managed_buffer())
}

/// The type of CPython's managed buffer object, found once through a probe memoryview.
fn managed_buffer_type(py: Python<'_>) -> PyResult<Py<PyType>> {
    let probe = PyMemoryView::from(PyBytes::new(py, b"").as_any())?;
    let referents = gc_function(py, &GET_REFERENTS, "get_referents")?
        .call1((&probe,))?
        .cast_into::<PyList>()?;
    if referents.len() == 1 {
        let class = referents.get_item(0)?.get_type();
        if class.name()?.to_cow()? == "managedbuffer" {
            return Ok(class.unbind());
        }
    }
    Err(no_managed_buffer())
}

fn no_managed_buffer() -> PyErr {
    PyRuntimeError::new_err(
        "this Python does not expose a memoryview's managed buffer, so views of a secret could not be revoked",
    )
}

/// `memoryview.release()`: fails with `BufferError` while something holds a buffer exported from this view.
fn release(view: &Bound<'_, PyMemoryView>) -> PyResult<()> {
    view.call_method0(pyo3::intern!(view.py(), "release"))
        .map(drop)
}

fn refcount(object: &Bound<'_, PyAny>) -> ffi::Py_ssize_t {
    // SAFETY: `object` is a live object (the `Bound` owns a reference) and the GIL is held (`Bound` proves it).
    unsafe { ffi::Py_REFCNT(object.as_ptr()) }
}

fn gc_function<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "gc", name)
}
