//! The native half of `securememory.SecretReader`: a Rust `SecretReader` kept next to the secret it borrows.
//!
//! The Python half (`securememory/reader.py`) derives from `io.RawIOBase`, which builds `read`, `readall`,
//! `readline` and iteration on top of `readinto`.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::errors::Result;
use crate::secret::Secret;
use crate::source;

static PYTHON_READER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Reads a secret's bytes into caller buffers, one access window per call. Made by `Secret.reader()`.
#[pyclass(frozen, module = "securememory._native", name = "RawSecretReader")]
pub struct RawSecretReader {
    // Declared before `secret` so it is dropped first: it borrows from the secret.
    reader: Mutex<securememory::SecretReader<'static>>,
    secret: Py<Secret>,
}

impl RawSecretReader {
    /// `securememory.SecretReader(RawSecretReader(secret))`.
    pub(crate) fn open(secret: Bound<'_, Secret>) -> Result<Bound<'_, PyAny>> {
        let py = secret.py();
        let reader = securememory::SecretReader::new(secret.get().inner())?;
        // SAFETY: extends the borrow of the `dyn Secret` inside `secret` to 'static. It is sound because:
        // - the secret lives in a `Box` owned by a frozen pyclass, so it never moves and is never replaced;
        // - `RawSecretReader` owns a strong reference to that pyclass object (`secret` field), so the object
        //   (and the Box) outlives the reader, which is dropped before that reference (field order above);
        // - the 'static reader never leaves this struct.
        let reader = unsafe {
            std::mem::transmute::<securememory::SecretReader<'_>, securememory::SecretReader<'static>>(
                reader,
            )
        };
        let raw = Bound::new(
            py,
            RawSecretReader {
                reader: Mutex::new(reader),
                secret: secret.unbind(),
            },
        )?;
        let class = PYTHON_READER.import(py, "securememory.reader", "SecretReader")?;
        Ok(class.call1((raw,))?)
    }

    fn lock(&self) -> MutexGuard<'_, securememory::SecretReader<'static>> {
        // A poisoned lock only means another thread panicked mid-read; the position is still a valid count.
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl RawSecretReader {
    /// Copies the next bytes into the writable buffer `buffer`; returns how many (0 at the end).
    fn readinto(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> Result<usize> {
        let read = source::with_writable_bytes(py, buffer, |bytes| {
            self.lock().read_with_eof(bytes).map(|(count, _end)| count)
        })?;
        Ok(read?)
    }

    /// Bytes not read yet.
    #[getter]
    fn remaining(&self) -> usize {
        self.lock().remaining()
    }

    /// Bytes read so far.
    #[getter]
    fn position(&self) -> usize {
        self.lock().position()
    }

    /// The secret being read.
    #[getter]
    fn secret(&self, py: Python<'_>) -> Py<Secret> {
        self.secret.clone_ref(py)
    }
}
