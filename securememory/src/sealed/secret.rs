use std::sync::Arc;

use crate::access::{AccessState, SealedPages};
use crate::error::Result;
use crate::mg;
use crate::report::ProtectionReport;
use crate::shared::Core;

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
        let (state, registration) = crate::shared::register(pages, 0);
        SealedCore {
            state,
            len_locked: len << 1 | usize::from(locked),
            _registration: registration,
        }
    }
}

impl Core for SealedCore {
    type Pages = SealedPages;

    fn state(&self) -> &AccessState<SealedPages> {
        &self.state
    }

    fn len(&self) -> usize {
        self.len_locked >> 1
    }

    fn report(&self) -> ProtectionReport {
        ProtectionReport::sealed(self.len_locked & 1 != 0)
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
