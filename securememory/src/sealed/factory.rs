use memcall::LockMode;

use super::secret::{SealedCore, SealedSecret};
use crate::access::SealedPages;
use crate::error::{Error, Result};
use crate::metrics::{AllocTimer, Flavour};
use crate::{Locking, SecretFactory};

/// Makes [`SealedSecret`]s: secrets encrypted at rest, which cost no locked memory while they are not in use
/// (see [the module docs](crate::sealed)).
///
/// Locked memory is used only for the process key (one page) and for the scratch copies of secrets whose
/// closures are running; [`SealedSecretFactory::new`] requires those scratch pages to be locked (a full memlock
/// limit is then [`Error::Memory`] holding [`memcall::Error::LockLimit`], which names the limit and how to
/// raise it); [`Locking::BestEffort`] accepts unlocked scratch pages.
///
/// Creating the first factory of the process disables core dumps, see [the crate docs](crate#core-dumps).
///
/// ```
/// use securememory::{Secret, SecretExtensions, SecretFactory};
/// use securememory::sealed::SealedSecretFactory;
///
/// let factory = SealedSecretFactory::new();
/// let keys: Vec<_> = (0..1000).map(|_| factory.create_random(32)).collect::<Result<_, _>>()?;
/// assert_eq!(keys[7].protections().locked_bytes, 0); // no locked memory per secret
/// let first = keys[7].with_bytes(|k| Ok(k[0]))?; // decrypted into locked scratch pages for the closure
/// # let _ = first;
/// # Ok::<(), securememory::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SealedSecretFactory {
    locking: Locking,
}

impl SealedSecretFactory {
    /// A factory whose secrets' scratch copies must be locked.
    pub fn new() -> Self {
        Self::with_locking(Locking::Required)
    }

    /// A factory with the given locking policy for the scratch copies.
    pub fn with_locking(locking: Locking) -> Self {
        crate::core_dumps::disable_once();
        SealedSecretFactory { locking }
    }

    /// The locking policy of this factory.
    pub fn locking(&self) -> Locking {
        self.locking
    }

    fn lock_mode(&self) -> LockMode {
        match self.locking {
            Locking::Required => LockMode::Required,
            Locking::BestEffort => LockMode::BestEffort,
        }
    }

    fn finish(&self, pages: SealedPages) -> SealedSecret {
        SealedSecret::from_core(SealedCore::new(pages, self.locking == Locking::Required))
    }
}

impl Default for SealedSecretFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretFactory for SealedSecretFactory {
    type Secret = SealedSecret;

    fn new(&self, source: &mut [u8]) -> Result<SealedSecret> {
        let _timer = AllocTimer::start(Flavour::Sealed);
        if source.is_empty() {
            return Err(Error::InvalidLength { len: 0 });
        }
        let pages = SealedPages::seal_copy(source, self.lock_mode())?;
        // The source is wiped only once the secret exists: on any error it is left as it was.
        memcall::wipe_bytes(source);
        Ok(self.finish(pages))
    }

    fn create_random(&self, size: usize) -> Result<SealedSecret> {
        let _timer = AllocTimer::start(Flavour::Sealed);
        SealedPages::random(size, self.lock_mode()).map(|pages| self.finish(pages))
    }

    fn create_with(
        &self,
        size: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<SealedSecret> {
        let _timer = AllocTimer::start(Flavour::Sealed);
        SealedPages::filled(size, self.lock_mode(), fill).map(|pages| self.finish(pages))
    }
}
