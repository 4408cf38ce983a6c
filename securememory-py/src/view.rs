//! The read-only memoryview a `with_bytes` callback receives, and what happens to it when the window closes.
//!
//! The view points straight at the secret's protected pages (no copy). Once the callback returns, the pages become
//! no-access again, and after `close()` they may back another secret, so nothing may keep using them:
//!
//! - Every view is released: a released memoryview raises `ValueError` on every use instead of touching memory.
//! - Anything that still refers to the view, or to a view derived from it, is an escape, reported as
//!   `BufferError`. Releasing a view is not enough on its own: numpy (`frombuffer`, `asarray`, `array(copy=None)`)
//!   and ctypes keep the raw pointer and merely hold a derived memoryview as their base, and an object holding a
//!   buffer exported from a view (`pickle.PickleBuffer`) prevents its release. The caller quarantines the
//!   secret's pages for as long as any escaped view lives ([`Escaped::hold_until_gone`]), so a stale pointer can
//!   only ever fault, never read another secret.
//!
//! CPython backs a memoryview and everything derived from it (slices, `cast`, `toreadonly`, `memoryview(view)`,
//! the memoryview numpy keeps as an array's base) with one shared "managed buffer" object. Every view holds a
//! reference to it, so its reference count tells whether derived views are alive; the garbage collector's
//! referrer list then finds each one. The view's own reference count tells whether something kept it.
//!
//! The `gc` and `weakref` functions used here are resolved once, when the module is imported ([`init`]), so that
//! replacing `gc.get_referrers` later cannot blind the check.

use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyMemoryView, PyString, PyTuple, PyType};

use crate::call::{call, call1, call_method};

/// `PyBUF_READ` from CPython's `pybuffer.h` (stable since 3.3; pyo3 only exposes it for 3.11+ limited builds).
const PYBUF_READ: std::ffi::c_int = 0x100;

/// `PyBUF_WRITE` from CPython's `pybuffer.h`.
const PYBUF_WRITE: std::ffi::c_int = 0x200;

/// How many exceptions of a `__cause__`/`__context__` chain have their traceback frames cleared.
const CHAIN_LIMIT: usize = 64;

static GC_GET_REFERENTS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GC_GET_REFERRERS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GC_COLLECT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static WEAKREF_FINALIZE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MANAGED_BUFFER_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Byte offset, inside a memoryview object, of its pointer to its managed buffer, as found and checked at import
/// ([`find_managed_buffer_offset`]); `None` when it could not be established, and the garbage collector is asked
/// instead (`gc.get_referents`, which reads the same pointer through the type's `tp_traverse`).
static MANAGED_BUFFER_OFFSET: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// Views of access windows open right now, in any thread: released in a forked child (see [`release_all_open`]).
static OPEN: Mutex<Vec<OpenWindow>> = Mutex::new(Vec::new());

struct OpenWindow {
    view: Py<PyMemoryView>,
    managed_buffer: Py<PyAny>,
}

fn open_windows() -> MutexGuard<'static, Vec<OpenWindow>> {
    // Only ever locked with the GIL held and never across a call into Python, so it is uncontended; a poisoned
    // lock only means a panic mid-push or mid-remove, which leaves a valid vector.
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Resolves, once at import, every Python function the revocation uses.
///
/// # Errors
/// The import error, or `RuntimeError` on an interpreter whose memoryviews have no managed buffer (not CPython).
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    GC_GET_REFERENTS.import(py, "gc", "get_referents")?;
    GC_GET_REFERRERS.import(py, "gc", "get_referrers")?;
    GC_COLLECT.import(py, "gc", "collect")?;
    WEAKREF_FINALIZE.import(py, "weakref", "finalize")?;
    MANAGED_BUFFER_TYPE.get_or_try_init(py, || managed_buffer_type(py))?;
    MANAGED_BUFFER_OFFSET.get_or_init(|| find_managed_buffer_offset(py).ok().flatten());
    Ok(())
}

fn resolved<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get(py)
        .map(|function| function.bind(py))
        .ok_or_else(|| PyRuntimeError::new_err("securememory._native was not initialised"))
}

/// What a callback run by [`call_with_view`] gave back, and which views of the secret outlived it.
pub(crate) struct Called {
    pub(crate) result: PyResult<Py<PyAny>>,
    pub(crate) escaped: Option<Escaped>,
}

/// Calls `callback(view)` with a read-only memoryview over `bytes`, then releases every view of `bytes` and
/// reports those that outlived the callback.
///
/// # Errors
/// The outer error is only for failing to make the view at all (the callback did not run).
pub(crate) fn call_with_view(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    bytes: &[u8],
) -> PyResult<Called> {
    // A read-only view never writes through the pointer it is given.
    let window = Window::open(py, bytes.as_ptr().cast_mut(), bytes.len(), PYBUF_READ)?;
    let result = call1(callback, window.view.as_any());
    let escaped = window.close(py, &result);
    Ok(Called {
        result: result.map(Bound::unbind),
        escaped,
    })
}

/// Runs `fill` with a writable memoryview over `bytes` (a new secret's pages, before they are sealed), then
/// releases every view of `bytes` and reports those that outlived `fill`, as [`call_with_view`] does.
///
/// # Errors
/// The outer error is only for failing to make the view at all (`fill` did not run).
pub(crate) fn with_writable_view<'py, R>(
    py: Python<'py>,
    bytes: &mut [u8],
    fill: impl FnOnce(&Bound<'py, PyMemoryView>) -> PyResult<R>,
) -> PyResult<(PyResult<R>, Option<Escaped>)> {
    let window = Window::open(py, bytes.as_mut_ptr(), bytes.len(), PYBUF_WRITE)?;
    let result = fill(&window.view);
    let outcome = match &result {
        Ok(_) => Ok(py.None().into_bound(py)),
        Err(error) => Err(error.clone_ref(py)),
    };
    let escaped = window.close(py, &outcome);
    Ok((result, escaped))
}

/// Views that outlived a callback: already released where possible, and still referenced.
pub(crate) struct Escaped {
    views: Vec<Py<PyMemoryView>>,
    descriptions: Vec<String>,
}

impl Escaped {
    /// The `BufferError` naming what escaped.
    pub(crate) fn error(&self, quarantine: &str) -> PyErr {
        self.error_with(
            quarantine,
            "the with_bytes callback",
            "Copy what must outlive the callback (bytes(view)) or finish with it inside the callback.",
        )
    }

    /// The `BufferError` naming what kept a view of a new secret's pages past the `readinto` calls that filled
    /// them.
    pub(crate) fn readinto_error(&self, quarantine: &str) -> PyErr {
        self.error_with(
            quarantine,
            "the readinto calls that filled it",
            "readinto must not keep the buffer it is given.",
        )
    }

    fn error_with(&self, quarantine: &str, outlived: &str, advice: &str) -> PyErr {
        PyBufferError::new_err(format!(
            "{} view(s) of the secret outlived {outlived}: {}. They were released where possible, but \
             whatever kept them (such as a numpy array or ctypes object, which keep a raw pointer) must not be \
             used: {quarantine} {advice}",
            self.views.len(),
            self.descriptions.join("; "),
        ))
    }

    /// Keeps `keep` alive for as long as any escaped view lives: a `weakref.finalize(view, keep)` per view, which
    /// holds `keep` (a callable) until `view` dies, then calls it and drops it. Returns `false` when some view
    /// could not be weakly referenced; `keep` then stays alive for the life of the process.
    pub(crate) fn hold_until_gone(&self, py: Python<'_>, keep: &Bound<'_, PyAny>) -> bool {
        let Ok(finalize) = resolved(py, &WEAKREF_FINALIZE) else {
            return leak(keep);
        };
        let hold = |view: &Py<PyMemoryView>| -> PyResult<()> {
            let args = PyTuple::new(py, [view.bind(py).as_any(), keep])?;
            let finalizer = call(finalize, &args)?;
            // Nothing to do at interpreter exit: the handle goes with the process.
            finalizer.setattr(pyo3::intern!(py, "atexit"), false)
        };
        let mut all = true;
        for view in &self.views {
            all &= hold(view).is_ok();
        }
        all || leak(keep)
    }
}

/// Keeps `object` alive until the process exits.
fn leak(object: &Bound<'_, PyAny>) -> bool {
    std::mem::forget(object.clone().unbind());
    false
}

/// A memoryview over borrowed bytes plus what is needed to find the views derived from it.
struct Window<'py> {
    view: Bound<'py, PyMemoryView>,
    managed_buffer: Bound<'py, PyAny>,
    /// Reference count of the view when only this struct refers to it.
    own_view_refcount: isize,
    /// Reference count of the managed buffer when only `view` and this struct refer to it.
    own_buffer_refcount: isize,
}

impl<'py> Window<'py> {
    /// A view of `len` bytes at `ptr`: read-only with `PYBUF_READ`, writable with `PYBUF_WRITE`.
    ///
    /// The callers pass the pointer and length of a slice they borrow (shared for `PYBUF_READ`, exclusive for
    /// `PYBUF_WRITE`) for longer than the window lives.
    fn open(py: Python<'py>, ptr: *mut u8, len: usize, flags: std::ffi::c_int) -> PyResult<Self> {
        let len = ffi::Py_ssize_t::try_from(len)
            .map_err(|_| PyRuntimeError::new_err("secret too large for a memoryview"))?;
        // SAFETY:
        // - `ptr` is valid for reads of `len` bytes (and for writes with `PYBUF_WRITE`, whose caller holds the
        //   bytes exclusively) until this function's caller returns, and the view is released
        //   (`Window::close`, or `release_all_open` in a forked child) before then; a released view never
        //   touches its memory again.
        // - With `PYBUF_READ` the view is read-only, so CPython never writes through the `*mut` it is given.
        // - The GIL is held (`py`), as the call requires.
        let raw = unsafe { ffi::PyMemoryView_FromMemory(ptr.cast::<c_char>(), len, flags) };
        // SAFETY: `raw` is a new (owned) reference or null with an exception set, as this call documents.
        let view = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?.cast_into::<PyMemoryView>()?;
        let managed_buffer = match managed_buffer_of(py, &view) {
            Ok(managed_buffer) => managed_buffer,
            Err(error) => {
                release(&view)?;
                return Err(error);
            }
        };
        // Measured before the registry takes its own references, which `close` gives back first.
        let own_view_refcount = refcount(view.as_any());
        let own_buffer_refcount = refcount(&managed_buffer);
        open_windows().push(OpenWindow {
            view: view.clone().unbind(),
            managed_buffer: managed_buffer.clone().unbind(),
        });
        Ok(Window {
            view,
            managed_buffer,
            own_view_refcount,
            own_buffer_refcount,
        })
    }

    /// Whether the view, or views derived from it, are referenced from anywhere but this struct.
    fn outlived(&self) -> (bool, bool) {
        (
            refcount(self.view.as_any()) > self.own_view_refcount,
            refcount(&self.managed_buffer) > self.own_buffer_refcount,
        )
    }

    /// The view if something else refers to it, and every live view derived from it, with what each one is.
    fn candidates(&self, py: Python<'py>) -> Vec<(Bound<'py, PyMemoryView>, &'static str)> {
        let (view_kept, derived_alive) = self.outlived();
        let mut candidates = Vec::new();
        if view_kept {
            candidates.push((self.view.clone(), "the memoryview passed to the callback"));
        }
        if derived_alive {
            for view in derived_views(py, &self.managed_buffer, &self.view) {
                candidates.push((view, "a memoryview derived from it"));
            }
        }
        candidates
    }

    /// Releases the view and every view derived from it; returns those still referenced from elsewhere.
    fn close(self, py: Python<'py>, result: &PyResult<Bound<'py, PyAny>>) -> Option<Escaped> {
        self.unregister();
        // References that end with the call do not count: the locals of the callback's finished frames (kept
        // by a traceback, the one raised or one the callback caught and stored), and garbage cycles.
        if self.outlived() != (false, false) {
            if let Err(error) = result {
                clear_traceback_frames(py, error);
            }
        }
        if self.outlived() != (false, false) {
            clear_finished_frames_holding(py, &self.candidates(py));
        }
        if self.outlived() != (false, false) {
            if let Ok(collect) = resolved(py, &GC_COLLECT) {
                let _ = call(collect, &PyTuple::empty(py));
            }
        }
        let escaped = self.candidates(py);
        if escaped.is_empty() {
            // Nothing else refers to the view (an export holds a reference too) and no view derived from it is
            // alive: this window holds the last reference, and dropping it, when this function returns,
            // deallocates the view, which releases it. Nothing can observe it in between.
            return None;
        }
        let returned = result.as_ref().ok();
        let mut descriptions = Vec::with_capacity(escaped.len());
        for (view, what) in &escaped {
            let holders = holders_of(py, view, returned);
            let released = if release(view).is_ok() {
                ""
            } else {
                ", still exported so it could not be released"
            };
            descriptions.push(format!("{what} ({holders}{released})"));
        }
        // The passed view goes too, whether it escaped or not.
        let _ = release(&self.view);
        Some(Escaped {
            views: escaped.into_iter().map(|(view, _)| view.unbind()).collect(),
            descriptions,
        })
    }

    fn unregister(&self) {
        let removed: Option<OpenWindow> = {
            let mut open = open_windows();
            // Windows nest (a callback opening another) and close in reverse order: search from the end.
            open.iter()
                .rposition(|window| window.view.is(&self.view))
                .map(|at| open.swap_remove(at))
        };
        // Dropped after the lock is released: a reference count reaching zero may run Python code.
        drop(removed);
    }
}

/// In a forked child: releases every view of every access window that was open in the parent when it forked.
///
/// The secret's pages are not inherited (they are mapped `MADV_DONTFORK` or equivalent), so those views point at
/// nothing, or at whatever the child maps there next. A view still exported (a `PickleBuffer`) cannot be released.
pub(crate) fn release_all_open(py: Python<'_>) {
    let windows: Vec<(Py<PyMemoryView>, Py<PyAny>)> = open_windows()
        .iter()
        .map(|open| (open.view.clone_ref(py), open.managed_buffer.clone_ref(py)))
        .collect();
    for (view, managed_buffer) in windows {
        let view = view.into_bound(py);
        for derived in derived_views(py, managed_buffer.bind(py), &view) {
            let _ = release(&derived);
        }
        let _ = release(&view);
    }
}

/// The live memoryviews other than `view` that share `managed_buffer`.
fn derived_views<'py>(
    py: Python<'py>,
    managed_buffer: &Bound<'py, PyAny>,
    view: &Bound<'py, PyMemoryView>,
) -> Vec<Bound<'py, PyMemoryView>> {
    let Ok(get_referrers) = resolved(py, &GC_GET_REFERRERS) else {
        return Vec::new();
    };
    let Ok(args) = PyTuple::new(py, [managed_buffer]) else {
        return Vec::new();
    };
    let Ok(referrers) = call(get_referrers, &args).and_then(|list| Ok(list.cast_into::<PyList>()?))
    else {
        return Vec::new();
    };
    let derived: Vec<Bound<'py, PyMemoryView>> = referrers
        .iter()
        .filter_map(|referrer| referrer.cast_into::<PyMemoryView>().ok())
        .filter(|referrer| !referrer.is(view))
        .collect();
    // Drop the referrer list now: it refers to every view and would count as one of their holders.
    drop(referrers);
    derived
}

/// Says what keeps `view` alive, by type name, as far as the garbage collector can see.
fn holders_of(
    py: Python<'_>,
    view: &Bound<'_, PyMemoryView>,
    returned: Option<&Bound<'_, PyAny>>,
) -> String {
    let mut names: Vec<String> = Vec::new();
    if returned.is_some_and(|value| value.is(view)) {
        names.push("returned by the callback".to_owned());
    }
    if let (Ok(get_referrers), Ok(args)) =
        (resolved(py, &GC_GET_REFERRERS), PyTuple::new(py, [view]))
    {
        let referrers = call(get_referrers, &args).and_then(|list| Ok(list.cast_into::<PyList>()?));
        if let Ok(referrers) = referrers {
            // The argument tuple refers to the view too.
            for referrer in referrers.iter().filter(|referrer| !referrer.is(&args)) {
                let name = format!("held by {}", type_name(&referrer.get_type()));
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    if names.is_empty() {
        "held by an object the garbage collector does not track, such as a numpy array".to_owned()
    } else {
        names.join(", ")
    }
}

/// `module.QualifiedName`, or just the name for builtins.
fn type_name(class: &Bound<'_, PyType>) -> String {
    let qualname = class
        .qualname()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    match class.module() {
        Ok(module) if module.to_cow().is_ok_and(|m| m != "builtins") => {
            format!("{module}.{qualname}")
        }
        _ => qualname,
    }
}

/// Clears the locals of the (finished) frames in the tracebacks of `error` and of its cause/context chain.
///
/// Those frames are the callback's and what it called; a local there may be the view or an array over it, and
/// the traceback would keep it alive long after `with_bytes` returned.
fn clear_traceback_frames(py: Python<'_>, error: &PyErr) {
    let clear = pyo3::intern!(py, "clear");
    let mut exception: Option<Bound<'_, PyAny>> = Some(error.value(py).clone().into_any());
    // The raised exception's traceback is kept by the error itself (before 3.12 it is not yet the
    // exception's `__traceback__`); those of its cause and context are theirs.
    let mut traceback = error.traceback(py).map(Bound::into_any);
    for _ in 0..CHAIN_LIMIT {
        let Some(current) = exception.take() else {
            break;
        };
        let mut traceback = traceback
            .take()
            .or_else(|| current.getattr(pyo3::intern!(py, "__traceback__")).ok());
        while let Some(tb) = traceback.filter(|tb| !tb.is_none()) {
            if let Ok(frame) = tb.getattr(pyo3::intern!(py, "tb_frame")) {
                // A frame still executing refuses (RuntimeError); the callback's frames have all finished.
                let _ = call_method(&frame, clear, &PyTuple::empty(py));
            }
            traceback = tb.getattr(pyo3::intern!(py, "tb_next")).ok();
        }
        exception = ["__cause__", "__context__"]
            .into_iter()
            .filter_map(|name| current.getattr(name).ok())
            .find(|linked| !linked.is_none());
    }
}

/// `CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR` from CPython's `code.h`.
const SUSPENDABLE_CODE: u32 = 0x20 | 0x80 | 0x100 | 0x200;

/// Clears the locals of finished function frames that refer to one of `views`.
///
/// A frame kept alive by a traceback (an exception the callback caught and stored) holds the callback's locals,
/// the view among them, although it will never run again. A frame that is still running refuses to be cleared
/// and a generator's or coroutine's frame is left alone (it may resume and use the view): those are escapes.
fn clear_finished_frames_holding(py: Python<'_>, views: &[(Bound<'_, PyMemoryView>, &str)]) {
    let Ok(get_referrers) = resolved(py, &GC_GET_REFERRERS) else {
        return;
    };
    for (view, _) in views {
        let Ok(args) = PyTuple::new(py, [view]) else {
            continue;
        };
        let Ok(referrers) =
            call(get_referrers, &args).and_then(|list| Ok(list.cast_into::<PyList>()?))
        else {
            continue;
        };
        for referrer in referrers.iter() {
            if !is_frame(&referrer) {
                continue;
            }
            let suspendable = referrer
                .getattr(pyo3::intern!(py, "f_code"))
                .and_then(|code| code.getattr(pyo3::intern!(py, "co_flags")))
                .and_then(|flags| flags.extract::<u32>())
                .map_or(true, |flags| flags & SUSPENDABLE_CODE != 0);
            if !suspendable {
                // A running frame refuses (RuntimeError): it is a real holder.
                let _ = call_method(&referrer, pyo3::intern!(py, "clear"), &PyTuple::empty(py));
            }
        }
    }
}

fn is_frame(object: &Bound<'_, PyAny>) -> bool {
    let class = object.get_type();
    class
        .name()
        .is_ok_and(|name| name.to_cow().is_ok_and(|name| name == "frame"))
        && class
            .module()
            .is_ok_and(|module| module.to_cow().is_ok_and(|module| module == "builtins"))
}

/// The managed buffer behind `view`, checked to be CPython's `managedbuffer`: read from the memoryview at the
/// offset checked at import, or else asked of the garbage collector (a memoryview's only GC referent).
fn managed_buffer_of<'py>(
    py: Python<'py>,
    view: &Bound<'py, PyMemoryView>,
) -> PyResult<Bound<'py, PyAny>> {
    let expected = MANAGED_BUFFER_TYPE
        .get(py)
        .ok_or_else(no_managed_buffer)?
        .bind(py);
    if let Some(offset) = MANAGED_BUFFER_OFFSET.get().copied().flatten() {
        // SAFETY:
        // - `view` is a live memoryview (the `Bound` owns a reference and was checked to be one) and `offset` is
        //   the pointer-aligned offset, below the type's `__basicsize__`, at which this interpreter's memoryviews
        //   were found at import to keep their managed buffer (`find_managed_buffer_offset`): the read stays
        //   inside the object and yields the pointer CPython stored there when it made the view.
        // - That pointer is set when the view is made and never changes nor is cleared while the view lives
        //   (releasing a view keeps it), and the view holds a reference to the object it points to.
        let raw = unsafe { read_pointer_at(view.as_ptr(), offset) };
        // SAFETY: `raw`, when not null, is the live managed buffer (above); `Py_TYPE` only reads its header.
        if !raw.is_null() && unsafe { ffi::Py_TYPE(raw) } == expected.as_type_ptr() {
            // SAFETY: a live object (kept alive by `view`) and the GIL is held; this takes a new reference.
            return Ok(unsafe { Bound::from_borrowed_ptr(py, raw) });
        }
    }
    let referents = call(resolved(py, &GC_GET_REFERENTS)?, &PyTuple::new(py, [view])?)?
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
    let referents = call(
        resolved(py, &GC_GET_REFERENTS)?,
        &PyTuple::new(py, [&probe])?,
    )?
    .cast_into::<PyList>()?;
    if referents.len() == 1 {
        let class = referents.get_item(0)?.get_type();
        if class.name()?.to_cow()? == "managedbuffer" {
            return Ok(class.unbind());
        }
    }
    Err(no_managed_buffer())
}

/// The pointer-sized word at byte `offset` inside the object at `object`.
///
/// # Safety
/// `object` is a live object at least `offset + size_of::<usize>()` bytes long, and `offset` is a multiple of
/// the pointer size (objects are pointer-aligned), and the GIL is held so nothing writes that word meanwhile.
unsafe fn read_pointer_at(object: *mut ffi::PyObject, offset: usize) -> *mut ffi::PyObject {
    // SAFETY: in bounds and aligned, by the caller's obligations.
    unsafe {
        object
            .cast::<u8>()
            .add(offset)
            .cast::<*mut ffi::PyObject>()
            .read()
    }
}

/// Where this interpreter's memoryview objects keep the pointer to their managed buffer.
///
/// Found by looking, in probe views, for the word that holds the managed buffer the garbage collector reports
/// (a memoryview's only GC referent), within the type's `__basicsize__`: exactly one word must match, at the same
/// offset in two probes over different exporters. `None` when that is not so; the garbage collector is then asked
/// for every view.
fn find_managed_buffer_offset(py: Python<'_>) -> PyResult<Option<usize>> {
    let word = std::mem::size_of::<usize>();
    let basic_size: usize = py
        .get_type::<PyMemoryView>()
        .getattr("__basicsize__")?
        .extract()?;
    // The object header (reference count, type, size) comes first: start after it.
    let first = 3 * word;
    let probe_bytes = PyBytes::new(py, b"probe");
    let mut memory = [0u8; 8];
    let probes = [PyMemoryView::from(probe_bytes.as_any())?, {
        // SAFETY: `memory` outlives the view, which is released below before `memory` goes out of scope; it
        // is read-only (`PYBUF_READ`) and the GIL is held.
        let raw = unsafe {
            ffi::PyMemoryView_FromMemory(
                memory.as_mut_ptr().cast::<c_char>(),
                memory.len() as ffi::Py_ssize_t,
                PYBUF_READ,
            )
        };
        // SAFETY: a new reference or null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, raw) }?.cast_into::<PyMemoryView>()?
    }];
    let mut found: Option<usize> = None;
    let mut agree = true;
    for probe in &probes {
        let referents = call(
            resolved(py, &GC_GET_REFERENTS)?,
            &PyTuple::new(py, [probe])?,
        )?
        .cast_into::<PyList>()?;
        let managed_buffer = match referents.len() {
            1 => referents.get_item(0)?,
            _ => return Ok(None),
        };
        let matches: Vec<usize> = (first..basic_size.saturating_sub(word) + 1)
            .step_by(word)
            .filter(|&offset| {
                // SAFETY: `probe` is a live memoryview of at least `basic_size` bytes, `offset + word` is within
                // it and word-aligned, and the GIL is held.
                unsafe { read_pointer_at(probe.as_ptr(), offset) == managed_buffer.as_ptr() }
            })
            .collect();
        match (matches.as_slice(), found) {
            ([offset], None) => found = Some(*offset),
            ([offset], Some(previous)) if *offset == previous => {}
            _ => agree = false,
        }
    }
    for probe in &probes {
        release(probe)?;
    }
    Ok(found.filter(|_| agree))
}

fn no_managed_buffer() -> PyErr {
    PyRuntimeError::new_err(
        "this Python does not expose a memoryview's managed buffer, so views of a secret could not be revoked",
    )
}

/// `memoryview.release()`: fails with `BufferError` while something holds a buffer exported from this view.
///
/// Called straight through `PyObject_CallMethodObjArgs` (no bound method object, no argument tuple). Releasing
/// a memoryview runs no Python code and never gives up the GIL (its exporter is either raw memory or, for a
/// view made from an object, released by C code), so it needs no guard against the thread being ended.
fn release(view: &Bound<'_, PyMemoryView>) -> PyResult<()> {
    let py = view.py();
    let name: &Bound<'_, PyString> = pyo3::intern!(py, "release");
    // SAFETY:
    // - `view` and `name` are live objects and the GIL is held (`Bound` proves both); the argument list is
    //   terminated by the null pointer the call requires.
    let raw = unsafe {
        ffi::PyObject_CallMethodObjArgs(
            view.as_ptr(),
            name.as_ptr(),
            std::ptr::null_mut::<ffi::PyObject>(),
        )
    };
    // SAFETY: a new reference (`None`) or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }.map(drop)
}

fn refcount(object: &Bound<'_, PyAny>) -> ffi::Py_ssize_t {
    // SAFETY: `object` is a live object (the `Bound` owns a reference) and the GIL is held (`Bound` proves it).
    unsafe { ffi::Py_REFCNT(object.as_ptr()) }
}
