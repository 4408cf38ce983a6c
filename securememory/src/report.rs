//! Which protections took effect for one secret.

use std::fmt;

use memcall::{Backing, Hardening, Outcome};

/// What protects one secret, as found when it was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtectionReport {
    /// The data pages are locked in RAM (never swapped). False only with
    /// [`Locking::BestEffort`](crate::Locking::BestEffort) when locking failed.
    pub locked: bool,
    /// Left out of core dumps per region (Linux `MADV_DONTDUMP`, BSD `MAP_NOCORE` / `MAP_CONCEAL`).
    pub no_dump: Outcome,
    /// Not inherited by forked children (Linux `MADV_DONTFORK`, BSD/macOS `minherit`).
    pub no_fork: Outcome,
    /// Kept out of transparent huge pages so protection stays per page.
    pub no_huge_pages: Outcome,
    /// No-access guard pages before and after the data (memguard flavour).
    pub guard_pages: bool,
    /// A random canary next to the data, checked on close (memguard flavour; absent when the data fills its
    /// pages exactly).
    pub canary: bool,
    /// Use in a forked child is detected and refused with [`Error::Forked`](crate::Error::Forked).
    pub fork_detection: bool,
    /// Bytes of memory this secret keeps locked (whole pages).
    pub locked_bytes: usize,
    /// Where the pages are: [`Backing::SecretMem`] means no other process can read them, root included (see
    /// [`crate::Backing`]).
    pub backing: Backing,
    /// Secret memory was asked for with [`crate::Backing::SecretMemOrAnonymous`] and the kernel had none: the
    /// secret is in anonymous pages instead.
    pub secret_memory_fallback: bool,
    /// A sealed secret: encrypted at rest in ordinary memory, with no locked byte of its own; the protections
    /// above are those of its scratch copy, which exists only while closures run.
    pub sealed: bool,
}

impl ProtectionReport {
    pub(crate) fn new(hardening: Hardening, locked_bytes: usize) -> Self {
        ProtectionReport {
            locked: locked_bytes > 0,
            no_dump: hardening.no_dump,
            no_fork: hardening.no_fork,
            no_huge_pages: hardening.no_huge_pages,
            guard_pages: false,
            canary: false,
            fork_detection: cfg!(unix),
            locked_bytes,
            backing: Backing::Anonymous,
            secret_memory_fallback: false,
            sealed: false,
        }
    }

    /// The report with the backing the pages got.
    /// The report of a sealed secret: no locked byte of its own; `locked` says whether its scratch copies are
    /// locked; the advice is what this platform applies to the scratch and key pages.
    pub(crate) fn sealed(locked: bool) -> Self {
        static HARDENING: std::sync::OnceLock<Option<Hardening>> = std::sync::OnceLock::new();
        let hardening = *HARDENING.get_or_init(|| {
            let region = memcall::Region::alloc(1).ok()?;
            let hardening = region.hardening();
            let _ = region.free();
            Some(hardening)
        });
        // Reported as failed when nothing could be mapped to find out.
        let unknown = Outcome::Failed(-1);
        ProtectionReport {
            locked,
            no_dump: hardening.map_or(unknown, |h| h.no_dump),
            no_fork: hardening.map_or(unknown, |h| h.no_fork),
            no_huge_pages: hardening.map_or(unknown, |h| h.no_huge_pages),
            guard_pages: false,
            canary: false,
            fork_detection: cfg!(unix),
            locked_bytes: 0,
            backing: Backing::Anonymous,
            secret_memory_fallback: false,
            sealed: true,
        }
    }

    pub(crate) fn in_backing(mut self, backing: Backing, fallback: bool) -> Self {
        self.backing = backing;
        self.secret_memory_fallback = fallback;
        self
    }
}

impl fmt::Display for ProtectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "locked: {} ({} bytes), no-dump: {}, no-fork: {}, no-huge-pages: {}, guard pages: {}, canary: {}, fork detection: {}, backing: {}{}{}",
            yes_no(self.locked),
            self.locked_bytes,
            self.no_dump,
            self.no_fork,
            self.no_huge_pages,
            yes_no(self.guard_pages),
            yes_no(self.canary),
            yes_no(self.fork_detection),
            self.backing,
            if self.secret_memory_fallback {
                " (secret memory unavailable: best-effort fallback)"
            } else {
                ""
            },
            if self.sealed {
                ", sealed: encrypted at rest, decrypted into locked scratch pages only while in use"
            } else {
                ""
            },
        )
    }
}
