use crate::access::{ProtectedPages, Unsealed};
use crate::error::{Error, Result};
use crate::metrics::{AllocTimer, Flavour};
use crate::report::ProtectionReport;
use crate::shared::{discard, SecretCore};
use crate::Locking;
use crate::SecretFactory;
use memcall::LockMode;

use super::ProtectedMemorySecret;

/// Makes [`ProtectedMemorySecret`]s.
///
/// [`ProtectedMemorySecretFactory::new`] (and `Default`) require every secret's pages to be locked in RAM:
/// when the locked-memory limit is reached, creation fails with [`Error::Memory`] holding
/// [`memcall::Error::LockLimit`] (which says how to raise the limit), nothing is leaked and other secrets are
/// untouched. [`Locking::BestEffort`] (through [`ProtectedMemorySecretFactory::with_locking`]) accepts pages that
/// could not be locked, which may then be swapped; each secret's
/// [`protections()`](crate::Secret::protections) says `locked: false` then.
///
/// Creating the first factory of the process disables core dumps, see [the crate docs](crate#core-dumps).
#[derive(Clone, Copy, Debug)]
pub struct ProtectedMemorySecretFactory {
    locking: Locking,
    backing: crate::Backing,
}

crate::shared::impl_factory!(
    ProtectedMemorySecretFactory,
    ProtectedMemorySecretFactoryBuilder
);

impl ProtectedMemorySecretFactory {
    /// Maps and locks pages for `len` bytes; returns them with the number of bytes locked.
    fn alloc(&self, len: usize) -> Result<(Unsealed<ProtectedPages>, usize)> {
        let (mut unsealed, _, fallback) = self.backing.allocate(
            |backing| self.alloc_in(len, backing),
            |e| matches!(e, Error::Memory(m) if m.is_secret_mem_unavailable()),
        )?;
        unsealed.set_fallback(fallback);
        let locked = if unsealed.is_locked() {
            unsealed.region().len()
        } else {
            log::debug!("secret pages not locked (best-effort locking)");
            0
        };
        Ok((unsealed, locked))
    }

    fn alloc_in(&self, len: usize, backing: memcall::Backing) -> Result<Unsealed<ProtectedPages>> {
        if len == 0 {
            return Err(Error::InvalidLength { len });
        }
        let mode = match self.locking {
            Locking::Required => LockMode::Required,
            Locking::BestEffort => LockMode::BestEffort,
        };
        ProtectedPages::alloc(len, mode, backing).map_err(|e| match e {
            memcall::Error::InvalidLength { .. } => Error::InvalidLength { len },
            e => Error::Memory(e),
        })
    }

    fn finish(
        unsealed: Unsealed<ProtectedPages>,
        len: usize,
        locked: usize,
    ) -> Result<ProtectedMemorySecret> {
        let (backing, fallback) = unsealed.backing();
        let report = ProtectionReport::new(unsealed.region().hardening(), locked)
            .in_backing(backing, fallback);
        SecretCore::seal(unsealed, len, report).map(ProtectedMemorySecret::from_core)
    }

    /// A secret whose fresh, writable pages `fill` writes before they are sealed (random bytes, a reader).
    pub(crate) fn create_filled(
        &self,
        size: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<ProtectedMemorySecret> {
        let _timer = AllocTimer::start(Flavour::ProtectedMemory);
        let (mut unsealed, locked) = self.alloc(size)?;
        if let Err(e) = fill(unsealed.bytes_mut()) {
            return Err(discard(e, unsealed.into_pages()));
        }
        Self::finish(unsealed, size, locked)
    }

    /// Locked, writable pages for a stream chunk of up to `capacity` bytes.
    pub(crate) fn chunk(&self, capacity: usize) -> Result<(Unsealed<ProtectedPages>, usize)> {
        self.alloc(capacity)
    }

    /// Seals a filled stream chunk into a secret of `len` bytes.
    pub(crate) fn seal_chunk(
        mut unsealed: Unsealed<ProtectedPages>,
        len: usize,
        locked: usize,
    ) -> Result<ProtectedMemorySecret> {
        unsealed.truncate(len);
        Self::finish(unsealed, len, locked)
    }
}

impl SecretFactory for ProtectedMemorySecretFactory {
    type Secret = ProtectedMemorySecret;

    fn new(&self, source: &mut [u8]) -> Result<ProtectedMemorySecret> {
        let _timer = AllocTimer::start(Flavour::ProtectedMemory);
        let (mut unsealed, locked) = self.alloc(source.len())?;
        // A plain copy: its timing depends on the length only, never on the bytes.
        unsealed.bytes_mut().copy_from_slice(source);
        // The source is wiped only once the secret exists: on any error it is left as it was.
        let secret = Self::finish(unsealed, source.len(), locked)?;
        memcall::wipe_bytes(source);
        Ok(secret)
    }

    fn create_random(&self, size: usize) -> Result<ProtectedMemorySecret> {
        self.create_filled(size, |pages| getrandom::fill(pages).map_err(Error::Random))
    }

    fn create_with(
        &self,
        size: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<ProtectedMemorySecret> {
        self.create_filled(size, fill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_source_failure_is_reported_and_cleaned_up() {
        let factory = ProtectedMemorySecretFactory::new();
        let err = factory
            .create_filled(8, |_| Err(Error::Random(getrandom::Error::UNSUPPORTED)))
            .unwrap_err();
        assert!(matches!(err, Error::Random(_)), "{err:?}");
        assert!(err.to_string().starts_with("could not read random bytes: "));
        // And when releasing fails too, both are reported.
        let _guard = memcall::fault::fail(memcall::Op::Protect).arm();
        let err = factory
            .create_filled(8, |_| Err(Error::Random(getrandom::Error::UNSUPPORTED)))
            .unwrap_err();
        let Error::Cleanup { error, cleanup } = &err else {
            panic!("{err:?}")
        };
        assert!(matches!(**error, Error::Random(_)));
        assert_eq!(
            cleanup.memory_error().and_then(|e| e.op()),
            Some(memcall::Op::Protect)
        );
        let ok = factory.create_filled(8, |b| {
            b.fill(7);
            Ok(())
        });
        assert!(ok.unwrap().with_bytes(|b| Ok(b == [7; 8])).unwrap());
    }
}
