//! The pages a secret lives in, for both flavours, and the only places their bytes are touched.

use memcall::{Acquired, LockMode, Protection, Region, RegionPool};

use crate::error::Error;

/// Pages holding one secret's data: what the access state machine needs from a flavour.
pub trait Pages: Send + Sync + Sized + 'static {
    /// Changes the protection of the pages that hold the data (guard pages, if any, stay no-access).
    ///
    /// # Errors
    /// The failed system call.
    fn protect(&self, prot: Protection) -> memcall::Result<()>;

    /// Opens the access window: makes the data readable. Called by the access state under its mutex, on the
    /// 0 → 1 reader transition only.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] with the failed system call; a sealed secret's integrity or memory error.
    fn open_window(&self) -> Result<(), Error> {
        self.protect(Protection::ReadOnly).map_err(Error::ReadOnly)
    }

    /// Closes the access window: makes the data unreadable. Called by the access state under its mutex, on the
    /// 1 → 0 reader transition only. With `retire`, memory that something outside the window may still point
    /// into must never be reused: it is returned, wiped and no-access, for a [`Quarantine`](crate::Quarantine)
    /// to keep (page-backed flavours keep their pages anyway and return nothing).
    ///
    /// # Errors
    /// The failed system call.
    fn close_window(&self, retire: bool) -> memcall::Result<Option<Box<dyn std::any::Any + Send>>> {
        let _ = retire;
        self.protect(Protection::NoAccess).map(|()| None)
    }

    /// The secret's bytes.
    ///
    /// # Safety
    /// - The pages must be readable for as long as the slice lives.
    /// - Nothing may write them while the slice lives.
    unsafe fn data(&self) -> &[u8];

    /// The secret's bytes, writable.
    ///
    /// # Safety
    /// The pages must be read-write for as long as the slice lives.
    unsafe fn data_mut(&mut self) -> &mut [u8];

    /// Makes the data pages writable, overwrites the data with zeros and leaves the pages no-access; the
    /// mapping stays (a later read faults).
    ///
    /// # Errors
    /// The failed protection change.
    ///
    /// # Safety
    /// Nothing else may write the pages, nor open or close their window, meanwhile. Readers on other threads may exist only where the caller
    /// accepts that they read zeros or fault: a purge past its grace period, or a process about to exit.
    unsafe fn wipe_in_place(&self) -> memcall::Result<()>;

    /// Makes the pages writable, wipes them, unlocks and frees them.
    ///
    /// # Errors
    /// The failed step; the pages come back inside the error when they are still mapped, so the caller can
    /// retry.
    fn destroy(self) -> Result<(), DestroyFailed<Self>>;
}

/// [`Pages::destroy`] failed.
#[derive(Debug)]
pub struct DestroyFailed<P> {
    /// Why.
    pub error: Error,
    /// The pages, when they are still mapped (`None` when the failure was found after freeing, e.g. a corrupted
    /// canary).
    pub pages: Option<P>,
}

/// Pages that are read-write and owned by nobody else yet: fresh from the allocator. The only way to write
/// into a secret's pages, and only before it is sealed (made no-access) and shared.
pub(crate) struct Unsealed<P: Pages> {
    pages: P,
}

impl<P: Pages> Unsealed<P> {
    /// The data bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY:
        // - `Unsealed` is only built from freshly allocated, read-write pages and offers no way to change
        //   their protection before `seal` consumes it, so they are still read-write.
        // - `&mut self` makes this the only borrow of the pages.
        unsafe { self.pages.data_mut() }
    }

    /// Makes the pages no-access and hands them over for sharing.
    ///
    /// # Errors
    /// The failed `mprotect`, with the pages so the caller can destroy them.
    pub(crate) fn seal(self) -> Result<P, (memcall::Error, P)> {
        match self.pages.protect(Protection::NoAccess) {
            Ok(()) => Ok(self.pages),
            Err(e) => Err((e, self.pages)),
        }
    }

    /// Gives up on the pages (to destroy them after a failure).
    pub(crate) fn into_pages(self) -> P {
        self.pages
    }

    /// Makes the pages no-access between writes, without sharing them (a stream's partly filled chunk).
    ///
    /// # Errors
    /// The failed `mprotect`, with the pages still read-write.
    pub(crate) fn rest(self) -> Result<Resting<P>, (memcall::Error, Unsealed<P>)> {
        match self.pages.protect(Protection::NoAccess) {
            Ok(()) => Ok(Resting { pages: self.pages }),
            Err(e) => Err((e, self)),
        }
    }
}

/// Pages that are owned by nobody else, no-access between writes (see [`Unsealed::rest`]).
pub(crate) struct Resting<P: Pages> {
    pages: P,
}

impl<P: Pages> Resting<P> {
    /// Makes the pages read-write again for the next write.
    ///
    /// # Errors
    /// The failed `mprotect`, with the pages still resting.
    pub(crate) fn wake(self) -> Result<Unsealed<P>, (memcall::Error, Resting<P>)> {
        match self.pages.protect(Protection::ReadWrite) {
            Ok(()) => Ok(Unsealed { pages: self.pages }),
            Err(e) => Err((e, self)),
        }
    }

    /// Gives up on the pages (to destroy them).
    pub(crate) fn into_pages(self) -> P {
        self.pages
    }
}

/// Whole pages from [`memcall::Region`], data at offset 0 (the `protected_memory` flavour).
///
/// Small regions come from and go back to [`RegionPool::global`]: already mapped, advised and locked, and
/// always wiped before they are cached, so creating and closing a secret costs no map, lock or unmap.
#[derive(Debug)]
pub struct ProtectedPages {
    region: Region,
    len: usize,
    locked: bool,
    /// Anonymous pages standing in for unavailable secret memory (best-effort backing).
    fallback: bool,
}

impl ProtectedPages {
    /// Read-write, zeroed, no-dump, no-fork pages for `len` bytes from `backing`, locked as `mode` asks
    /// (secret memory is always locked).
    pub(crate) fn alloc(
        len: usize,
        mode: LockMode,
        backing: memcall::Backing,
    ) -> memcall::Result<Unsealed<ProtectedPages>> {
        let Acquired { region, locked } = match backing {
            memcall::Backing::SecretMem => Acquired {
                region: Region::alloc_secret(len)?,
                locked: true,
            },
            memcall::Backing::Anonymous => RegionPool::global().acquire(len, mode)?,
        };
        Ok(Unsealed {
            pages: ProtectedPages {
                region,
                len,
                locked,
                fallback: false,
            },
        })
    }
}

impl Unsealed<ProtectedPages> {
    /// Whether the pages are locked in RAM.
    pub(crate) fn is_locked(&self) -> bool {
        self.pages.locked
    }

    /// Records that these anonymous pages stand in for unavailable secret memory.
    pub(crate) fn set_fallback(&mut self, fallback: bool) {
        self.pages.fallback = fallback;
    }

    /// The backing of the pages, and whether it is a fallback from secret memory.
    pub(crate) fn backing(&self) -> (memcall::Backing, bool) {
        let backing = if self.pages.region.is_secret() {
            memcall::Backing::SecretMem
        } else {
            memcall::Backing::Anonymous
        };
        (backing, self.pages.fallback)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.pages.region
    }

    /// Shortens the data to `len` bytes (the tail of a stream chunk); the rest of the pages stays zero.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.pages.len = self.pages.len.min(len);
    }
}

impl Pages for ProtectedPages {
    fn protect(&self, prot: Protection) -> memcall::Result<()> {
        self.region.protect(prot)
    }

    unsafe fn wipe_in_place(&self) -> memcall::Result<()> {
        self.region.wipe()?;
        self.region.protect(Protection::NoAccess)
    }

    unsafe fn data(&self) -> &[u8] {
        // SAFETY: forwarded from this function's contract; `len <= region.len()` by construction.
        unsafe { &self.region.as_slice()[..self.len] }
    }

    unsafe fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        // SAFETY: forwarded from this function's contract; `len <= region.len()` by construction.
        unsafe { &mut self.region.as_mut_slice()[..len] }
    }

    fn destroy(self) -> Result<(), DestroyFailed<Self>> {
        let (len, locked, fallback) = (self.len, self.locked, self.fallback);
        // The pool makes the pages writable and wipes them, then caches them (still locked) or unmaps them.
        RegionPool::global()
            .release(self.region, locked)
            .map_err(|e| DestroyFailed {
                error: Error::Memory(e.error),
                pages: Some(ProtectedPages {
                    region: e.region,
                    len,
                    locked,
                    fallback,
                }),
            })
    }
}

/// Guarded pages from [`memguard::GuardedRegion`](crate::mg::GuardedRegion): guard pages around the data,
/// canary in front of it, data right-aligned (the `memguard` flavour).
#[derive(Debug)]
pub struct GuardedPages {
    region: crate::mg::GuardedRegion,
}

impl GuardedPages {
    /// Maps guarded pages for `len` bytes from `backing`, canary planted, data pages locked per `locking`, data
    /// read-write.
    pub(crate) fn alloc(
        len: usize,
        locking: crate::mg::Locking,
        backing: memcall::Backing,
    ) -> Result<Unsealed<GuardedPages>, crate::mg::Error> {
        let region = crate::mg::GuardedRegion::new_in(len, locking, backing)?;
        Ok(Unsealed {
            pages: GuardedPages { region },
        })
    }
}

impl Unsealed<GuardedPages> {
    pub(crate) fn region(&self) -> &crate::mg::GuardedRegion {
        &self.pages.region
    }
}

impl Pages for GuardedPages {
    fn protect(&self, prot: Protection) -> memcall::Result<()> {
        self.region.protect(prot).map_err(|e| match e {
            crate::mg::Error::Memory(e) => e,
            other => memcall::Error::Os {
                op: memcall::Op::Protect,
                addr: self.region.as_ptr() as usize,
                len: self.region.inner_len(),
                source: std::io::Error::other(other.to_string()),
            },
        })
    }

    unsafe fn data(&self) -> &[u8] {
        // SAFETY: forwarded from this function's contract (readable, no writers).
        unsafe { self.region.data() }
    }

    unsafe fn wipe_in_place(&self) -> memcall::Result<()> {
        self.protect(Protection::ReadWrite)?;
        let (start, len) = (self.region.as_ptr(), self.region.len());
        // SAFETY:
        // - `start..start + len` is the data inside the region's inner pages, which are read-write now;
        // - writing through the raw pointer creates no reference; the caller accepts that readers on other
        //   threads see zeros or fault (this function's contract), and nothing else writes the data.
        unsafe { std::ptr::write_bytes(start, 0, len) };
        // The pages stay mapped and are read again (by a late reader, or wiped again on release): keep the
        // stores from being treated as dead.
        std::hint::black_box(start);
        self.protect(Protection::NoAccess)
    }

    unsafe fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: forwarded from this function's contract (read-write); `&mut self` makes it exclusive.
        unsafe { self.region.data_mut() }
    }

    fn destroy(self) -> Result<(), DestroyFailed<Self>> {
        self.region.destroy().map_err(|e| DestroyFailed {
            error: Error::from(e.error),
            pages: e.region.map(|region| GuardedPages { region }),
        })
    }
}
