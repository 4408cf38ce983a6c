//! Calling Python from inside Rust frames, safe against a thread being ended at interpreter shutdown.
//!
//! On CPython before 3.14, a non-main thread that asks for the GIL after `Py_FinalizeEx` has started (a daemon
//! thread still running when the program exits) is ended on the spot with `pthread_exit`. That is a forced unwind:
//! the unwinder walks the thread's stack up from `take_gil`. When Python code runs inside a `with_bytes`
//! callback, the frames above it are this module's Rust frames, and the unwinder reaching a Rust call site that
//! was declared unable to unwind (every `extern "C"` import, such as pyo3's `PyObject_Call`) aborts the whole
//! process: a daemon thread inside a callback turned every clean exit into SIGABRT.
//!
//! [`call`] therefore imports `PyObject_Call` with the `"C-unwind"` ABI, so its call site is a valid unwinding
//! edge, and keeps a guard alive across it whose destructor parks the thread forever. A normal return forgets the
//! guard; a forced unwind runs its destructor and stops there, so no frame above it is ever unwound and the
//! thread simply never runs again, which is what CPython 3.14 itself does with such threads. The process then
//! exits normally. PyO3 guards its own re-attaching (`Python::attach`, the end of `Python::detach`) the same way.
//!
//! Only a thread that would have been ended anyway is affected: the access window it was in stays open until the
//! process exits a moment later. Every call into Python made while a window is open goes through [`call`]; what
//! is not covered is Python code run by a `__del__` when one of these frames drops the last reference to an
//! object (the callback's return value, say) at the very moment the interpreter starts finalizing.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// `callable(*args)`, run so that a thread ended by the interpreter's shutdown parks instead of aborting.
pub(crate) fn call<'py>(
    callable: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    // SAFETY:
    // - `callable` and `args` are live objects (each `Bound` owns a reference) and `args` is a tuple, as
    //   `PyObject_Call` requires; a null `kwargs` means no keyword arguments.
    // - The GIL is held (`Bound` proves it), as the call requires.
    let raw = unsafe { guarded::py_object_call(callable.as_ptr(), args.as_ptr()) };
    // SAFETY: `PyObject_Call` returns a new reference, or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// `callable(arg)` through the same guard as [`call`], without building an argument tuple (the interpreter's
/// vectorcall path passes `arg` on the stack).
pub(crate) fn call1<'py>(
    callable: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    // SAFETY:
    // - `callable` and `arg` are live objects (each `Bound` owns a reference); the argument list ends with the
    //   null pointer `PyObject_CallFunctionObjArgs` requires (added by `py_object_call1`).
    // - The GIL is held (`Bound` proves it), as the call requires.
    let raw = unsafe { guarded::py_object_call1(callable.as_ptr(), arg.as_ptr()) };
    // SAFETY: `PyObject_CallFunctionObjArgs` returns a new reference, or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// `object.name(*args)` through [`call`].
pub(crate) fn call_method<'py>(
    object: &Bound<'py, PyAny>,
    name: &Bound<'py, pyo3::types::PyString>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    call(&object.getattr(name)?, args)
}

#[cfg(all(unix, not(target_arch = "wasm32")))]
mod guarded {
    use pyo3::ffi::PyObject;

    extern "C-unwind" {
        // Part of the stable ABI since Python 3.2; resolved from the interpreter that loads the module, like
        // every symbol pyo3-ffi declares. Declared here with the unwinding ABI: `pthread_exit` inside it is a
        // forced unwind, which must be able to reach the guard in `py_object_call`.
        fn PyObject_Call(
            callable: *mut PyObject,
            args: *mut PyObject,
            kwargs: *mut PyObject,
        ) -> *mut PyObject;

        // Stable ABI since Python 3.2, declared with the unwinding ABI for the same reason.
        fn PyObject_CallFunctionObjArgs(callable: *mut PyObject, ...) -> *mut PyObject;
    }

    /// Parks the thread forever when dropped; only ever dropped by a forced unwind.
    struct ParkOnUnwind;

    impl Drop for ParkOnUnwind {
        fn drop(&mut self) {
            loop {
                std::thread::park();
            }
        }
    }

    /// `PyObject_Call(callable, args, NULL)`; a thread the interpreter ends meanwhile parks here for good.
    ///
    /// # Safety
    /// As `PyObject_Call`: the GIL is held, `callable` is a live object and `args` a live tuple.
    pub(super) unsafe fn py_object_call(
        callable: *mut PyObject,
        args: *mut PyObject,
    ) -> *mut PyObject {
        let park = ParkOnUnwind;
        // SAFETY: the caller's obligations are exactly `PyObject_Call`'s; a null `kwargs` is allowed.
        let result = unsafe { PyObject_Call(callable, args, std::ptr::null_mut()) };
        std::mem::forget(park);
        result
    }

    /// `PyObject_CallFunctionObjArgs(callable, arg, NULL)`, parked like [`py_object_call`].
    ///
    /// # Safety
    /// As `PyObject_CallFunctionObjArgs`: the GIL is held, `callable` and `arg` are live objects.
    pub(super) unsafe fn py_object_call1(
        callable: *mut PyObject,
        arg: *mut PyObject,
    ) -> *mut PyObject {
        let park = ParkOnUnwind;
        // SAFETY: the caller's obligations are exactly the call's; the argument list is null-terminated.
        let result = unsafe {
            PyObject_CallFunctionObjArgs(callable, arg, std::ptr::null_mut::<PyObject>())
        };
        std::mem::forget(park);
        result
    }
}

#[cfg(not(all(unix, not(target_arch = "wasm32"))))]
mod guarded {
    use pyo3::ffi::{self, PyObject};

    /// `PyObject_Call(callable, args, NULL)`. Elsewhere CPython ends such threads without unwinding their
    /// stack (Windows' `_endthreadex`), so there is nothing to guard against.
    ///
    /// # Safety
    /// As `PyObject_Call`: the GIL is held, `callable` is a live object and `args` a live tuple.
    pub(super) unsafe fn py_object_call(
        callable: *mut PyObject,
        args: *mut PyObject,
    ) -> *mut PyObject {
        // SAFETY: the caller's obligations are exactly `PyObject_Call`'s; a null `kwargs` is allowed.
        unsafe { ffi::PyObject_Call(callable, args, std::ptr::null_mut()) }
    }

    /// `PyObject_CallFunctionObjArgs(callable, arg, NULL)`.
    ///
    /// # Safety
    /// As `PyObject_CallFunctionObjArgs`: the GIL is held, `callable` and `arg` are live objects.
    pub(super) unsafe fn py_object_call1(
        callable: *mut PyObject,
        arg: *mut PyObject,
    ) -> *mut PyObject {
        // SAFETY: the caller's obligations are exactly the call's; the argument list is null-terminated.
        unsafe {
            ffi::PyObject_CallFunctionObjArgs(callable, arg, std::ptr::null_mut::<PyObject>())
        }
    }
}
