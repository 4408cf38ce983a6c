use crate::access::{GuardedPages, Unsealed};
use crate::error::{Error, Result};
use crate::metrics::{AllocTimer, Flavour};
use crate::report::ProtectionReport;
use crate::shared::{discard, SecretCore};
use crate::{Locking, SecretFactory};

use super::MemguardSecret;

/// Makes [`MemguardSecret`]s.
///
/// Locking works as for [`ProtectedMemorySecretFactory`](crate::ProtectedMemorySecretFactory): required by
/// default (a reached limit is a typed error, nothing leaked, other secrets untouched), or
/// [`Locking::BestEffort`] through [`MemguardSecretFactory::with_locking`].
///
/// Creating the first factory of the process disables core dumps, see [the crate docs](crate#core-dumps).
#[derive(Clone, Copy, Debug)]
pub struct MemguardSecretFactory {
    locking: Locking,
    backing: crate::Backing,
}

crate::shared::impl_factory!(MemguardSecretFactory, MemguardSecretFactoryBuilder);

impl MemguardSecretFactory {
    fn alloc(&self, len: usize) -> Result<(Unsealed<GuardedPages>, bool)> {
        if len == 0 {
            return Err(Error::InvalidLength { len });
        }
        let (unsealed, _, fallback) = self.backing.allocate(
            |backing| GuardedPages::alloc(len, self.locking, backing).map_err(Error::from),
            |e| matches!(e, Error::Memory(m) if m.is_secret_mem_unavailable()),
        )?;
        Ok((unsealed, fallback))
    }

    fn finish(
        unsealed: Unsealed<GuardedPages>,
        len: usize,
        fallback: bool,
    ) -> Result<MemguardSecret> {
        let region = unsealed.region();
        let locked = if region.is_locked() {
            region.inner_len()
        } else {
            0
        };
        let backing = if region.is_secret() {
            memcall::Backing::SecretMem
        } else {
            memcall::Backing::Anonymous
        };
        let mut report =
            ProtectionReport::new(region.hardening(), locked).in_backing(backing, fallback);
        report.guard_pages = true;
        report.canary = region.canary_len() > 0;
        SecretCore::seal(unsealed, len, report).map(MemguardSecret::from_core)
    }

    /// A secret whose fresh, writable pages `fill` writes before they are sealed (random bytes, a reader).
    pub(crate) fn create_filled(
        &self,
        size: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<MemguardSecret> {
        let _timer = AllocTimer::start(Flavour::Memguard);
        let (mut unsealed, fallback) = self.alloc(size)?;
        if let Err(e) = fill(unsealed.bytes_mut()) {
            return Err(discard(e, unsealed.into_pages()));
        }
        Self::finish(unsealed, size, fallback)
    }
}

impl SecretFactory for MemguardSecretFactory {
    type Secret = MemguardSecret;

    fn new(&self, source: &mut [u8]) -> Result<MemguardSecret> {
        let _timer = AllocTimer::start(Flavour::Memguard);
        let (mut unsealed, fallback) = self.alloc(source.len())?;
        // A plain copy: its timing depends on the length only, never on the bytes.
        unsealed.bytes_mut().copy_from_slice(source);
        // The source is wiped only once the secret exists: on any error it is left as it was.
        let secret = Self::finish(unsealed, source.len(), fallback)?;
        memcall::wipe_bytes(source);
        Ok(secret)
    }

    fn create_random(&self, size: usize) -> Result<MemguardSecret> {
        self.create_filled(size, |pages| getrandom::fill(pages).map_err(Error::Random))
    }

    fn create_with(
        &self,
        size: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<MemguardSecret> {
        self.create_filled(size, fill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_source_failure_is_reported_and_cleaned_up() {
        let factory = MemguardSecretFactory::new();
        let err = factory
            .create_filled(8, |_| Err(Error::Random(getrandom::Error::UNSUPPORTED)))
            .unwrap_err();
        assert!(matches!(err, Error::Random(_)), "{err:?}");
        let secret = factory
            .create_filled(8, |b| {
                b.fill(7);
                Ok(())
            })
            .unwrap();
        assert!(secret.with_bytes(|b| Ok(b == [7; 8])).unwrap());
        let _ = crate::Secret::protections(&secret);
    }
}
