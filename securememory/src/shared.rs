//! What both flavours' secrets share: the access state, registration for purge, metrics and the
//! dropped-without-close report.

use std::sync::{Arc, Weak};

use crate::access::{AccessState, Pages, Unsealed};
use crate::error::{Error, Result};
use crate::mg;
use crate::report::ProtectionReport;

/// One live secret, flavour-independent.
pub(crate) struct SecretCore<P: Pages> {
    state: Arc<AccessState<P>>,
    len: usize,
    report: ProtectionReport,
    /// Removes the secret from the purge registry when dropped (declared after `state` so a purge never sees a
    /// half-dropped secret: it only holds a `Weak`).
    _registration: mg::Registration,
    #[cfg(feature = "debug_backtrace")]
    created_at: Option<Box<std::backtrace::Backtrace>>,
}

/// What the shared secret surface ([`impl_secret`]) needs from a flavour's core: its access state, length and
/// report. Everything else is the access state's.
pub(crate) trait Core {
    type Pages: Pages;
    fn state(&self) -> &AccessState<Self::Pages>;
    fn len(&self) -> usize;
    fn report(&self) -> ProtectionReport;
}

/// Shares `pages` behind a new access state registered for purge, and counts the secret in the metrics.
pub(crate) fn register<P: Pages>(
    pages: P,
    locked_bytes: usize,
) -> (Arc<AccessState<P>>, mg::Registration) {
    let state = Arc::new(AccessState::new(pages, locked_bytes));
    let weak: Weak<dyn mg::Purgeable> = Arc::<AccessState<P>>::downgrade(&state);
    let registration = mg::register(weak);
    crate::metrics::secret_created(locked_bytes);
    (state, registration)
}

impl<P: Pages> SecretCore<P> {
    /// Seals freshly written pages (no-access) and makes them a secret; on failure the pages are destroyed
    /// and nothing is leaked.
    pub(crate) fn seal(
        unsealed: Unsealed<P>,
        len: usize,
        report: ProtectionReport,
    ) -> Result<Self> {
        let pages = match unsealed.seal() {
            Ok(pages) => pages,
            Err((error, pages)) => return Err(discard(Error::Memory(error), pages)),
        };
        let (state, registration) = register(pages, report.locked_bytes);
        Ok(SecretCore {
            state,
            len,
            report,
            _registration: registration,
            #[cfg(feature = "debug_backtrace")]
            created_at: log::log_enabled!(log::Level::Debug)
                .then(|| Box::new(std::backtrace::Backtrace::force_capture())),
        })
    }
}

impl<P: Pages> Core for SecretCore<P> {
    type Pages = P;

    fn state(&self) -> &AccessState<P> {
        &self.state
    }

    fn len(&self) -> usize {
        self.len
    }

    fn report(&self) -> ProtectionReport {
        self.report
    }
}

impl<P: Pages> Drop for SecretCore<P> {
    fn drop(&mut self) {
        if self.state.is_closed() || self.state.is_forked() {
            return;
        }
        if log::log_enabled!(log::Level::Debug) {
            #[cfg(feature = "debug_backtrace")]
            if let Some(bt) = &self.created_at {
                log::debug!(
                    "secret of {} bytes dropped before close; created at:\n{bt}",
                    self.len
                );
            }
            #[cfg(not(feature = "debug_backtrace"))]
            log::debug!(
                "secret of {} bytes dropped before close (enable the `debug_backtrace` feature to see where it was created)",
                self.len
            );
        }
        if let Err(e) = self.state.close() {
            log::error!("closing a dropped secret failed: {e}");
        }
    }
}

impl<P: Pages> mg::Purgeable for AccessState<P> {
    fn purge(&self, request: &mg::PurgeRequest) {
        if let Err(e) = self.purge_by(request.deadline(), request.is_exiting()) {
            log::error!("purge could not close a secret: {e}");
        }
    }
}

/// Destroys pages after `error`; if that fails too, both are reported (and the pages' own `Drop` still releases
/// the mapping as best it can).
pub(crate) fn discard<P: Pages>(error: Error, pages: P) -> Error {
    match pages.destroy() {
        Ok(()) => error,
        Err(failed) => {
            drop(failed.pages);
            Error::Cleanup {
                error: Box::new(error),
                cleanup: Box::new(failed.error),
            }
        }
    }
}

/// The public surface every flavour's secret type shares, over its `core: $core` field (a [`SecretCore`], or
/// any type with the same methods).
macro_rules! impl_secret {
    ($secret:ident, $core:ty) => {
        impl $secret {
            pub(crate) fn from_core(core: $core) -> Self {
                $secret { core }
            }

            /// Runs `action` on the secret's bytes, readable (read-only) only while it runs. Same as
            /// [`SecretExtensions::with_bytes`](crate::SecretExtensions::with_bytes), without the dynamic
            /// call.
            ///
            /// # Errors
            /// See [`Secret::with_bytes_dyn`](crate::Secret::with_bytes_dyn).
            #[inline]
            pub fn with_bytes<R>(
                &self,
                action: impl FnOnce(&[u8]) -> $crate::Result<R>,
            ) -> $crate::Result<R> {
                $crate::shared::Core::state(&self.core).with_bytes(action)
            }

            /// How many closures are running on this secret right now.
            pub fn accessors(&self) -> usize {
                $crate::shared::Core::state(&self.core).readers()
            }
        }

        impl $crate::Secret for $secret {
            fn with_bytes_dyn(
                &self,
                action: &mut dyn FnMut(&[u8]) -> $crate::Result<()>,
            ) -> $crate::Result<()> {
                $crate::shared::Core::state(&self.core).with_bytes(action)
            }

            fn is_closed(&self) -> bool {
                $crate::shared::Core::state(&self.core).is_closed()
            }

            fn close(&self) -> $crate::Result<()> {
                $crate::shared::Core::state(&self.core).close()
            }

            fn len(&self) -> usize {
                $crate::shared::Core::len(&self.core)
            }

            fn reader(&self) -> $crate::Result<$crate::SecretReader<'_>> {
                $crate::SecretReader::new(self)
            }

            fn protections(&self) -> $crate::ProtectionReport {
                $crate::shared::Core::report(&self.core)
            }

            fn quarantine(&self) -> $crate::Quarantine {
                $crate::shared::Core::state(&self.core).quarantine()
            }
        }

        impl ::std::fmt::Debug for $secret {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($secret))
                    .field("len", &$crate::shared::Core::len(&self.core))
                    .field(
                        "closed",
                        &$crate::shared::Core::state(&self.core).is_closed(),
                    )
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use impl_secret;

/// Constructors, builder and `Default` every flavour's factory shares (a factory is
/// `{ locking: Locking, backing: Backing }`).
macro_rules! impl_factory {
    ($factory:ident, $builder:ident) => {
        impl $factory {
            /// A factory that requires locked pages.
            ///
            #[doc = concat!("```\nuse securememory::{Secret, SecretFactory, ", stringify!($factory), "};\n\n")]
            #[doc = concat!("let factory = ", stringify!($factory), "::new(); // cheap: share it or make more\n")]
            #[doc = "let secret = factory.create_random(32)?;"]
            #[doc = "assert!(secret.protections().locked);"]
            #[doc = "secret.close()?;"]
            #[doc = "# Ok::<(), securememory::Error>(())\n```"]
            pub fn new() -> Self {
                Self::with_locking($crate::Locking::Required)
            }

            /// A factory with the given locking policy.
            pub fn with_locking(locking: $crate::Locking) -> Self {
                $crate::core_dumps::disable_once();
                $factory {
                    locking,
                    backing: $crate::Backing::Anonymous,
                }
            }

            /// A builder, for settings beyond the defaults.
            pub fn builder() -> $builder {
                $builder {
                    locking: $crate::Locking::Required,
                    backing: $crate::Backing::Anonymous,
                }
            }

            /// The locking policy of this factory.
            pub fn locking(&self) -> $crate::Locking {
                self.locking
            }

            /// Where this factory puts its secrets' pages.
            pub fn backing(&self) -> $crate::Backing {
                self.backing
            }
        }

        impl Default for $factory {
            fn default() -> Self {
                Self::new()
            }
        }

        #[doc = concat!("Builds a [`", stringify!($factory), "`].")]
        #[derive(Clone, Copy, Debug)]
        #[must_use]
        pub struct $builder {
            locking: $crate::Locking,
            backing: $crate::Backing,
        }

        impl $builder {
            /// Sets the locking policy (default [`Locking::Required`](crate::Locking::Required)).
            pub fn locking(mut self, locking: $crate::Locking) -> Self {
                self.locking = locking;
                self
            }

            /// Sets where the secrets' pages come from (default [`Backing::Anonymous`](crate::Backing)):
            /// [`Backing::SecretMem`](crate::Backing::SecretMem) puts them in memory the kernel cannot read,
            /// nor any other process, root included (Linux 5.14 and later).
            pub fn backing(mut self, backing: $crate::Backing) -> Self {
                self.backing = backing;
                self
            }

            /// The factory.
            pub fn build(self) -> $factory {
                $factory {
                    backing: self.backing,
                    ..$factory::with_locking(self.locking)
                }
            }
        }
    };
}
pub(crate) use impl_factory;
