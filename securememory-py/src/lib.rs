//! The native module `securememory._native` behind the Python package `securememory`.
//!
//! A thin layer: each Python method delegates to the `securememory` crate. What lives here is only what Python
//! needs and Rust does not: borrowing Python buffers (`source`), the memoryview handed to `with_bytes` callbacks
//! and its release (`view`), the reader's Python face (`reader`) and the one error mapping (`errors`).

mod call;
mod errors;
mod factory;
mod gil;
mod reader;
mod secret;
mod source;
mod view;

use pyo3::prelude::*;

/// Secrets in locked, never-dumped memory, readable only inside `with_bytes`.
#[pymodule(name = "_native")]
mod native {
    #[pymodule_export]
    use crate::factory::{
        MemguardSecretFactory, ProtectedMemorySecretFactory, SealedSecretFactory,
    };
    #[pymodule_export]
    use crate::reader::RawSecretReader;
    #[pymodule_export]
    use crate::secret::Secret;

    use super::*;

    /// Resolves what revoking views needs (so a later monkey-patch of `gc` cannot change it) and releases, in a
    /// forked child, the views of access windows that were open when the parent forked.
    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::view::init(py)?;
        crate::gil::init(py);
        let register_at_fork = py.import("os")?.getattr("register_at_fork");
        // `os.register_at_fork` exists wherever `os.fork` does.
        if let Ok(register_at_fork) = register_at_fork {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item(
                "after_in_child",
                wrap_pyfunction!(crate::release_views_after_fork, m)?,
            )?;
            register_at_fork.call((), Some(&kwargs))?;
        }
        Ok(())
    }

    /// Gives every cached locked page back to the OS and returns how many bytes that freed.
    ///
    /// Closed secrets' pages are wiped and may be kept (still locked) for reuse; call this before measuring
    /// locked memory or to shrink the process after a burst.
    #[pyfunction]
    fn trim_caches(py: Python<'_>) -> usize {
        py.detach(memcall::pool::trim_all)
    }
}

/// Runs in a forked child: views of the parent's open access windows point at pages the child does not have.
#[pyfunction]
fn release_views_after_fork(py: Python<'_>) {
    view::release_all_open(py);
}
