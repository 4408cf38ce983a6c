use memcall::LockMode;

use super::secret::{SealedCore, SealedSecret};
use crate::access::SealedPages;
use crate::error::{Error, Result};
use crate::metrics::{AllocTimer, Flavour};
use crate::{Locking, Secret, SecretFactory};

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

    /// `new`, running `after_sealing` between sealing and registering for purges.
    fn new_then(&self, source: &mut [u8], mut after_sealing: impl FnMut()) -> Result<SealedSecret> {
        let secret = self.make_registered(true, || {
            let pages = SealedPages::seal_copy(source, self.lock_mode())?;
            after_sealing();
            Ok(pages)
        })?;
        // The source is wiped only once the secret exists: on any error it is left as it was.
        memcall::wipe_bytes(source);
        Ok(secret)
    }

    /// [`new`](SecretFactory::new) with a purge between sealing the copy and registering the secret for
    /// purges: the race a test cannot hit reliably otherwise.
    #[doc(hidden)]
    pub fn new_purged_before_registration(&self, source: &mut [u8]) -> Result<SealedSecret> {
        let mut first = true;
        self.new_then(source, || {
            if std::mem::take(&mut first) {
                crate::mg::purge();
            }
        })
    }

    /// Makes a secret with `make`, which seals, and registers it for purges. A purge that destroys the
    /// sealing key between the two may not reach the secret although its key is gone: such a secret is closed
    /// (its ciphertext wiped) and made again, so a creation racing a purge gives a secret that opens, as with
    /// the page-backed flavours. `Error::Closed` if purges keep winning, or when `make` cannot run twice.
    fn make_registered(
        &self,
        retry: bool,
        mut make: impl FnMut() -> Result<SealedPages>,
    ) -> Result<SealedSecret> {
        for _ in 0..MAX_ATTEMPTS {
            let generation = crate::mg::sealing::key_generation();
            let secret = self.finish(make()?);
            if crate::mg::sealing::key_generation() == generation {
                return Ok(secret);
            }
            if let Err(e) = secret.close() {
                log::error!("closing a secret sealed under a destroyed key failed: {e}");
            }
            if !retry {
                break;
            }
        }
        Err(Error::Closed)
    }
}

/// Creations tried while purges keep destroying the sealing key under them.
const MAX_ATTEMPTS: usize = 4;

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
        self.new_then(source, || {})
    }

    fn create_random(&self, size: usize) -> Result<SealedSecret> {
        let _timer = AllocTimer::start(Flavour::Sealed);
        self.make_registered(true, || SealedPages::random(size, self.lock_mode()))
    }

    fn create_with(
        &self,
        size: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<SealedSecret> {
        let _timer = AllocTimer::start(Flavour::Sealed);
        // `fill` may consume its input (a reader): a creation that a purge overtakes is not repeated.
        let mut fill = Some(fill);
        self.make_registered(false, || match fill.take() {
            Some(fill) => SealedPages::filled(size, self.lock_mode(), fill),
            None => Err(Error::Closed),
        })
    }
}
