//! The native module `securememory._native` behind the Python package `securememory`.
//!
//! A thin layer: each Python method delegates to the `securememory` crate. What lives here is only what Python
//! needs and Rust does not: borrowing Python buffers (`source`), the memoryview handed to `with_bytes` callbacks
//! and its release (`view`), the reader's Python face (`reader`) and the one error mapping (`errors`).

mod errors;
mod factory;
mod reader;
mod secret;
mod source;
mod view;

use pyo3::prelude::*;

/// Secrets in locked, never-dumped memory, readable only inside `with_bytes`.
#[pymodule(name = "_native")]
mod native {
    #[pymodule_export]
    use crate::factory::{MemguardSecretFactory, ProtectedMemorySecretFactory};
    #[pymodule_export]
    use crate::reader::RawSecretReader;
    #[pymodule_export]
    use crate::secret::Secret;

    use super::*;

    /// Gives every cached locked page back to the OS and returns how many bytes that freed.
    ///
    /// Closed secrets' pages are wiped and may be kept (still locked) for reuse; call this before measuring
    /// locked memory or to shrink the process after a burst.
    #[pyfunction]
    fn trim_caches(py: Python<'_>) -> usize {
        py.detach(memcall::pool::trim_all)
    }
}
