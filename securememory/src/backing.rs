//! Where a secret's pages come from: ordinary anonymous memory, or secret memory the kernel cannot read.

use std::sync::atomic::{AtomicBool, Ordering};

/// Where a factory puts its secrets' pages, set with the factory builders'
/// [`backing`](crate::protected_memory::ProtectedMemorySecretFactoryBuilder::backing).
///
/// | backing | other processes (root, debuggers, `gcore`, `/proc/<pid>/mem`) | where it is unavailable |
/// |---|---|---|
/// | [`Anonymous`](Backing::Anonymous) (default) | can read the pages | — |
/// | [`SecretMem`](Backing::SecretMem) | cannot: the pages are out of the kernel's direct map | creation fails |
/// | [`SecretMemOrAnonymous`](Backing::SecretMemOrAnonymous) | cannot, where it is available | anonymous, reported |
///
/// Secret memory (Linux `memfd_secret`, 5.14 and later) is always locked: it is charged to the memlock limit
/// when mapped, whatever the factory's [`Locking`](crate::Locking), and reaching that limit is the same typed
/// error as for locked anonymous pages. Each secret's [`ProtectionReport`](crate::ProtectionReport) says which
/// backing it got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backing {
    /// Private anonymous pages: locked, no-dump, no-fork, but readable by a process allowed to trace this one.
    #[default]
    Anonymous,
    /// Secret memory only: creation fails with [`Error::Memory`](crate::Error::Memory) holding
    /// [`memcall::Error::SecretMemUnavailable`] (the kernel has none: the message says why and what to do) or
    /// [`memcall::Error::Unsupported`] (not Linux).
    SecretMem,
    /// Secret memory where the kernel has it, anonymous pages otherwise (the named best-effort mode): a secret
    /// that fell back says so in [`ProtectionReport::secret_memory_fallback`](crate::ProtectionReport).
    SecretMemOrAnonymous,
}

/// Set once secret memory turned out to be unavailable: the best-effort backing then goes straight to anonymous
/// pages (the kernel does not grow the feature while the process runs).
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

impl Backing {
    /// Allocates with `alloc` on the backing this choice asks for; returns what it made, the backing it got,
    /// and whether that is a fallback from secret memory.
    pub(crate) fn allocate<T, E>(
        self,
        mut alloc: impl FnMut(memcall::Backing) -> Result<T, E>,
        unavailable: impl Fn(&E) -> bool,
    ) -> Result<(T, memcall::Backing, bool), E> {
        match self {
            Backing::Anonymous => {
                alloc(memcall::Backing::Anonymous).map(|t| (t, memcall::Backing::Anonymous, false))
            }
            Backing::SecretMem => {
                alloc(memcall::Backing::SecretMem).map(|t| (t, memcall::Backing::SecretMem, false))
            }
            Backing::SecretMemOrAnonymous => {
                if !UNAVAILABLE.load(Ordering::Relaxed) {
                    match alloc(memcall::Backing::SecretMem) {
                        Ok(t) => return Ok((t, memcall::Backing::SecretMem, false)),
                        Err(e) if unavailable(&e) => {
                            if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
                                log::warn!(
                                    "secret memory unavailable, secrets go to anonymous pages instead (best effort)"
                                );
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                alloc(memcall::Backing::Anonymous).map(|t| (t, memcall::Backing::Anonymous, true))
            }
        }
    }
}
