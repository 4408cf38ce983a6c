//! Borrowing a Python buffer as `&mut [u8]` so a factory can copy it into a secret and wipe it, with the GIL
//! released meanwhile.
//!
//! The stable ABI for Python 3.9 has no buffer API (`PyObject_GetBuffer` joined it in 3.11), so the buffer is
//! pinned the way pyca/cryptography pins one through cffi's `from_buffer`: `ctypes` takes a writable export of the
//! object and reports its address. While that export is held the object can neither be resized nor freed (a
//! `bytearray` refuses to resize with `BufferError`), which is what makes handing the address to another thread's
//! worth of Rust code sound.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use crate::gil;

static CTYPES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Runs `consume` on the bytes of `source` with the GIL released, and returns what it returns.
///
/// A writable, C-contiguous buffer (`bytearray`, writable `memoryview`, `array.array`, ...) is passed in place,
/// so `consume` can wipe it. A read-only one (`bytes`, ...) cannot be wiped: it is first copied into a temporary
/// `bytearray`, and that copy is what `consume` receives; it is wiped afterwards whatever `consume` did.
///
/// # Errors
/// `TypeError` for objects without the buffer protocol or with a non-contiguous buffer.
pub(crate) fn with_source_bytes<R: Send>(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    consume: impl FnOnce(&mut [u8]) -> R + Send,
) -> PyResult<R> {
    // The common cases, without going through ctypes.
    if let Ok(array) = source.cast_exact::<PyByteArray>() {
        return with_bytearray(py, array, consume);
    }
    if let Ok(bytes) = source.cast_exact::<PyBytes>() {
        let mut copy = bytes.as_bytes().to_vec();
        return Ok(gil::release_if_shared(py, move || {
            let consumed = consume(&mut copy);
            memcall::wipe_bytes(&mut copy);
            consumed
        }));
    }
    let (readonly, _) = buffer_shape(py, source)?;
    if readonly {
        let copy = PyByteArray::from(source)?;
        // `consume` may leave its input untouched (a factory does when allocation fails); the copy is ours to
        // wipe either way.
        return with_writable_bytes(py, copy.as_any(), |bytes| {
            let consumed = consume(bytes);
            memcall::wipe_bytes(bytes);
            consumed
        });
    }
    with_writable_bytes(py, source, consume)
}

/// Runs `fill` on the bytes of the writable buffer `target` with the GIL released.
///
/// # Errors
/// `TypeError` for objects without the buffer protocol, read-only buffers and non-contiguous ones.
pub(crate) fn with_writable_bytes<R: Send>(
    py: Python<'_>,
    target: &Bound<'_, PyAny>,
    fill: impl FnOnce(&mut [u8]) -> R + Send,
) -> PyResult<R> {
    let (readonly, len) = buffer_shape(py, target)?;
    if readonly {
        return Err(PyTypeError::new_err(
            "a writable bytes-like object is required",
        ));
    }
    if len == 0 {
        return Ok(py.detach(|| fill(&mut [])));
    }
    let ctypes = CTYPES
        .get_or_try_init(py, || py.import("ctypes").map(Bound::unbind))?
        .bind(py);
    let array_type = ctypes.getattr(pyo3::intern!(py, "c_char"))?.mul(len)?;
    // Holds a writable export of `len` bytes of `target` until dropped.
    let pinned = array_type.call_method1(pyo3::intern!(py, "from_buffer"), (target,))?;
    let address: usize = ctypes
        .call_method1(pyo3::intern!(py, "addressof"), (&pinned,))?
        .extract()?;
    let filled = py.detach(|| {
        // SAFETY:
        // - `address` is the start of a writable, C-contiguous buffer of `len` bytes: ctypes' `from_buffer`
        //   checked both and holds the export in `pinned`, which lives until after this closure returns, so the
        //   exporter can neither resize nor free the memory meanwhile.
        // - No other Rust reference to these bytes exists. Python code must not use a buffer while it is being
        //   passed to this package (documented on `new` and `readinto`), the contract every GIL-releasing
        //   buffer consumer has (hashlib, file reads and writes).
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                std::ptr::with_exposed_provenance_mut::<u8>(address),
                len,
            )
        };
        fill(bytes)
    });
    drop(pinned);
    Ok(filled)
}

/// Runs `fill` on the bytes of a `bytearray` (exactly that type, whose buffer is its own storage).
///
/// With the GIL kept (no other Python thread), no Python code can touch or resize the array meanwhile. When it
/// is released, a memoryview of the array holds an export for the duration, which makes every resize fail with
/// `BufferError`, as ctypes' export does in [`with_writable_bytes`].
fn with_bytearray<R: Send>(
    py: Python<'_>,
    array: &Bound<'_, PyByteArray>,
    fill: impl FnOnce(&mut [u8]) -> R + Send,
) -> PyResult<R> {
    let shared = gil::shared(py);
    // Taken before reading the address: while the export lives the storage cannot move.
    let pin = if shared {
        Some(PyMemoryView::from(array.as_any())?)
    } else {
        None
    };
    let len = array.len();
    if len == 0 {
        return Ok(fill(&mut []));
    }
    // SAFETY: `array` is a live `bytearray` (exact type checked by the caller) and the GIL is held.
    let address = unsafe { ffi::PyByteArray_AsString(array.as_ptr()) }
        .cast::<u8>()
        .expose_provenance();
    let run = move || {
        // SAFETY:
        // - `address` is the start of the array's `len` bytes of storage, read after the export was taken (or
        //   with the GIL held throughout): the array can neither be resized nor freed until `pin` is dropped
        //   after this closure returns (or, without a pin, before this thread lets any Python code run, which
        //   `fill` does not).
        // - No other Rust reference to these bytes exists. Python code must not use a buffer while it is being
        //   passed to this package (documented on `new`), as for every GIL-releasing buffer consumer.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                std::ptr::with_exposed_provenance_mut::<u8>(address),
                len,
            )
        };
        fill(bytes)
    };
    let filled = if shared { py.detach(run) } else { run() };
    drop(pin);
    Ok(filled)
}

/// Whether `object`'s buffer is read-only, and its size in bytes.
fn buffer_shape(py: Python<'_>, object: &Bound<'_, PyAny>) -> PyResult<(bool, usize)> {
    let view = PyMemoryView::from(object)?;
    let readonly: bool = view.getattr(pyo3::intern!(py, "readonly"))?.extract()?;
    let len: usize = view.getattr(pyo3::intern!(py, "nbytes"))?.extract()?;
    view.call_method0(pyo3::intern!(py, "release"))?;
    Ok((readonly, len))
}
