use std::sync::{Arc, Weak};

use crate::access::{AccessState, SealedPages};
use crate::error::Result;
use crate::mg;
use crate::report::ProtectionReport;

/// A secret kept encrypted in ordinary memory and decrypted into locked scratch pages only while a closure
/// runs on it (see [the module docs](crate::sealed)).
///
/// Made by [`SealedSecretFactory`](super::SealedSecretFactory). Dropping it closes it.
pub struct SealedSecret {
    core: SealedCore,
}

crate::shared::impl_secret!(SealedSecret, SealedCore);

/// The flavour-independent part of a sealed secret, kept small: a sealed secret costs no page, so its few
/// words of bookkeeping are most of what it costs.
pub(crate) struct SealedCore {
    state: Arc<AccessState<SealedPages>>,
    /// The length, shifted left by one, with the lowest bit set when scratch copies are locked (one word).
    len_locked: usize,
    /// Removes the secret from the purge registry when dropped (after `state`: a purge only holds a `Weak`).
    _registration: mg::Registration,
}

impl SealedCore {
    pub(crate) fn new(pages: SealedPages, locked: bool) -> SealedCore {
        let len = pages.len();
        let state = Arc::new(AccessState::new(pages, 0));
        let weak: Weak<dyn mg::Purgeable> = Arc::<AccessState<SealedPages>>::downgrade(&state);
        let registration = mg::register(weak);
        crate::metrics::secret_created(0);
        SealedCore {
            state,
            len_locked: len << 1 | usize::from(locked),
            _registration: registration,
        }
    }

    #[inline]
    pub(crate) fn with_bytes<R>(&self, action: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        self.state.with_bytes(action)
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.state.close()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    pub(crate) fn len(&self) -> usize {
        self.len_locked >> 1
    }

    pub(crate) fn report(&self) -> ProtectionReport {
        ProtectionReport::sealed(self.len_locked & 1 != 0)
    }

    pub(crate) fn readers(&self) -> usize {
        self.state.readers()
    }

    pub(crate) fn quarantine(&self) -> crate::Quarantine {
        self.state.quarantine()
    }
}

impl Drop for SealedCore {
    fn drop(&mut self) {
        if self.state.is_closed() || self.state.is_forked() {
            return;
        }
        if let Err(e) = self.state.close() {
            log::error!("closing a dropped sealed secret failed: {e}");
        }
    }
}

impl SealedSecret {
    /// The identity the ciphertext is bound to and a copy of `tag || ciphertext`, for tests that look for the
    /// key or the ciphertext in memory.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) once closed, or while a closure runs on the secret.
    #[doc(hidden)]
    pub fn sealed_parts(&self) -> Result<(u64, Vec<u8>)> {
        self.core.state.sealed_parts()
    }

    /// Runs `f` on the secret's `tag || ciphertext`, writable, for tamper tests.
    ///
    /// # Errors
    /// As [`sealed_parts`](Self::sealed_parts).
    #[doc(hidden)]
    pub fn tamper(&self, f: impl FnOnce(&mut [u8])) -> Result<()> {
        self.core.state.tamper(f)
    }
}
