//! [`LockedBuffer`]: an owned, guarded, locked buffer, registered for [`purge`](crate::purge).

use std::fmt;
use std::io;
use std::sync::{Arc, Weak};

use memcall::Hardening;
use subtle::ConstantTimeEq;

use crate::core::access::{ReadGuard, Shared, WriteGuard};
use crate::core::region::{GuardedRegion, Locking};
use crate::core::registry::{register, Purgeable, Registration};
use crate::error::{Error, Result};

/// A buffer of secret bytes in guarded, locked pages (see [`GuardedRegion`]).
///
/// Owned: dropping it destroys it (wipe, canary check, unlock, unmap; errors are logged), and
/// [`destroy`](Self::destroy) does the same with the error returned. Every live buffer is registered, so
/// [`purge`](crate::purge) wipes it; after that every access returns [`Error::Destroyed`]. A constructor
/// registers the buffer only once it is complete, so a purge running meanwhile never makes the constructor
/// fail; such a buffer may survive that purge (it did not exist yet when the purge started).
///
/// Bytes are reached through guards ([`bytes`](Self::bytes), [`bytes_mut`](Self::bytes_mut)) or closures
/// ([`with_bytes`](Self::with_bytes)); a guard holds the buffer's lock, so the bytes cannot be freed or written
/// under it, and a purge waits for it (up to its deadline, see [`purge`](crate::purge)). Mutating methods take
/// `&mut self`, so they can never wait on a live guard of the same buffer.
///
/// # Leaked guards
/// Leaking a guard (`std::mem::forget`, `Box::leak`) is safe and never hangs anything: methods that need the
/// buffer's lock give up after [`PURGE_GRACE`](crate::PURGE_GRACE) with [`Error::StillAccessed`] (flag
/// queries then answer as for a destroyed buffer), [`destroy`](Self::destroy) also wipes the data in place,
/// and dropping the buffer releases its pages at once. A purge treats the leaked guard as an access that
/// never ends: on another thread it is waited for until the purge's deadline, then the data is wiped in place
/// and made no-access under it (reading through the leaked guard faults). On the thread that leaked it, a
/// purge cannot tell it from an access still in progress on that thread (a purge called inside
/// [`with_bytes`](Self::with_bytes)), so it leaves the bytes for the access's end, which never comes: later
/// accesses fail with [`Error::Destroyed`], and the bytes are wiped when the buffer is dropped or destroyed, or
/// by the exit paths ([`safe_exit`](crate::safe_exit), caught signals), which wipe at once. Other buffers are
/// not affected.
pub struct LockedBuffer {
    shared: Arc<Shared>,
    registration: Option<Registration>,
}

impl fmt::Debug for LockedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedBuffer")
            .field("size", &self.size())
            .field("alive", &self.is_alive())
            .field("mutable", &self.is_mutable())
            .finish_non_exhaustive()
    }
}

impl LockedBuffer {
    /// A mutable, zeroed buffer of `size` bytes, locked into RAM.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for zero or a size too large to map; [`Error::Memory`] when mapping, locking or
    /// protecting fails (the lock error names the limit and how to raise it); [`Error::Random`] when no canary
    /// can be drawn. No other buffer is touched: there is no process-wide purge on failure.
    ///
    /// ```
    /// let mut buf = memguard::LockedBuffer::new(32)?; // zeroed, mutable
    /// buf.with_bytes_mut(|b| b[..5].copy_from_slice(b"hello"))?;
    /// buf.freeze()?; // read-only from now on
    /// assert!(buf.with_bytes(|b| b.starts_with(b"hello"))?);
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn new(size: usize) -> Result<LockedBuffer> {
        LockedBuffer::with_locking(size, Locking::Required)
    }

    /// As [`new`](Self::new), choosing whether locking may fail ([`Locking::BestEffort`]).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_locking(size: usize, locking: Locking) -> Result<LockedBuffer> {
        Ok(LockedBuffer::unregistered(size, locking)?.registered())
    }

    /// A buffer that [`purge`](crate::purge) does not reach yet: constructors fill it, then register it with
    /// [`registered`](Self::registered), so a purge running meanwhile cannot destroy it half-built.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub(crate) fn unregistered(size: usize, locking: Locking) -> Result<LockedBuffer> {
        let region = GuardedRegion::new(size, locking)?;
        Ok(LockedBuffer {
            shared: Arc::new(Shared::new(region)),
            registration: None,
        })
    }

    /// Registers the buffer for [`purge`](crate::purge) (a no-op when it already is).
    pub(crate) fn registered(mut self) -> LockedBuffer {
        if self.registration.is_none() {
            let weak: Weak<dyn Purgeable> = Arc::downgrade(&self.shared) as Weak<dyn Purgeable>;
            self.registration = Some(register(weak));
        }
        self
    }

    /// A frozen buffer holding `src`, which is wiped (Go's `NewBufferFromBytes`, a move).
    ///
    /// `src` is wiped only once the buffer is complete; on any error it still holds its bytes. The buffer is
    /// registered for [`purge`](crate::purge) when complete, so a concurrent purge cannot make this fail.
    ///
    /// # Errors
    /// As [`new`](Self::new) (an empty `src` is [`Error::InvalidLength`]); [`Error::Memory`] when the pages
    /// cannot be made read-only. `src` is left untouched on error.
    ///
    /// ```
    /// let mut key = *b"0123456789abcdef0123456789abcdef";
    /// let buf = memguard::LockedBuffer::from_bytes(&mut key)?;
    /// assert_eq!(key, [0u8; 32]); // moved: the source is wiped
    /// assert!(buf.equal_to(b"0123456789abcdef0123456789abcdef"));
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn from_bytes(src: &mut [u8]) -> Result<LockedBuffer> {
        let mut buf = LockedBuffer::unregistered(src.len(), Locking::Required)?;
        buf.copy(src)?;
        buf.freeze()?;
        let buf = buf.registered();
        memcall::wipe_bytes(src);
        Ok(buf)
    }

    /// A frozen buffer of `size` random bytes from the OS. Registered for [`purge`](crate::purge) once
    /// complete, so a concurrent purge cannot make this fail.
    ///
    /// # Errors
    /// As [`new`](Self::new); [`Error::Random`] when the OS generator fails; [`Error::Memory`] when the pages
    /// cannot be made read-only.
    ///
    /// ```
    /// let key = memguard::LockedBuffer::random(32)?; // frozen, never in ordinary memory
    /// assert_eq!(key.len(), 32);
    /// assert!(!key.is_mutable());
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn random(size: usize) -> Result<LockedBuffer> {
        let mut buf = LockedBuffer::unregistered(size, Locking::Required)?;
        buf.scramble()?;
        buf.freeze()?;
        Ok(buf.registered())
    }

    /// Makes the data read-only. A no-op when already frozen.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after destroy or purge; [`Error::Forked`] in a forked child; [`Error::Memory`]
    /// when `mprotect` fails (the state is unchanged then); [`Error::StillAccessed`] when a leaked guard
    /// holds the buffer.
    ///
    /// ```
    /// let mut buf = memguard::LockedBuffer::new(4)?;
    /// buf.copy(b"abcd")?;
    /// buf.freeze()?;
    /// assert!(buf.bytes_mut().is_err()); // Error::Immutable
    /// buf.melt()?;
    /// buf.with_bytes_mut(|b| b[0] = b'x')?;
    /// assert!(buf.equal_to(b"xbcd"));
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn freeze(&mut self) -> Result<()> {
        self.shared.set_mutable(false)
    }

    /// Makes the data read-write. A no-op when already mutable.
    ///
    /// # Errors
    /// As [`freeze`](Self::freeze).
    pub fn melt(&mut self) -> Result<()> {
        self.shared.set_mutable(true)
    }

    /// Read access to the bytes, held until the guard is dropped. The guard also offers typed views
    /// ([`as_array`](ReadGuard::as_array), [`as_u64s`](ReadGuard::as_u64s), ...).
    ///
    /// # Errors
    /// [`Error::Destroyed`] after destroy or purge (also while a purge is waiting for other accesses to end);
    /// [`Error::Forked`] in a forked child; [`Error::StillAccessed`] when a leaked write guard holds the
    /// buffer.
    ///
    /// ```
    /// let buf = memguard::LockedBuffer::random(32)?;
    /// {
    ///     let bytes = buf.bytes()?; // readable while the guard lives
    ///     let _key: &[u8; 32] = bytes.byte_array32().expect("32 bytes");
    /// } // no-access again
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn bytes(&self) -> Result<ReadGuard<'_>> {
        self.shared.read()
    }

    /// Write access to the bytes of a mutable buffer.
    ///
    /// # Errors
    /// [`Error::Immutable`] when frozen; [`Error::StillAccessed`] when a leaked guard holds the buffer;
    /// otherwise as [`bytes`](Self::bytes).
    ///
    /// ```
    /// let mut buf = memguard::LockedBuffer::new(8)?;
    /// buf.bytes_mut()?.copy_from_slice(b"password");
    /// assert!(buf.equal_to(b"password"));
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn bytes_mut(&mut self) -> Result<WriteGuard<'_>> {
        self.shared.write()
    }

    /// Runs `f` on the bytes.
    ///
    /// # Errors
    /// As [`bytes`](Self::bytes).
    ///
    /// ```
    /// let buf = memguard::LockedBuffer::from_bytes(&mut *b"secret".to_vec())?;
    /// let len = buf.with_bytes(|b| b.len())?;
    /// assert_eq!(len, 6);
    /// # Ok::<(), memguard::Error>(())
    /// ```
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        Ok(f(&self.bytes()?))
    }

    /// Runs `f` on the bytes of a mutable buffer.
    ///
    /// # Errors
    /// As [`bytes_mut`](Self::bytes_mut).
    pub fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        Ok(f(&mut self.bytes_mut()?))
    }

    /// Runs `f` on the bytes as UTF-8 text. (Go's `String()` aliases the protected memory with an immutable
    /// string that outlives the buffer; this borrow cannot.)
    ///
    /// # Errors
    /// [`Error::Utf8`] when the bytes are not UTF-8; otherwise as [`bytes`](Self::bytes).
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> Result<R> {
        let bytes = self.bytes()?;
        let text = std::str::from_utf8(&bytes).map_err(Error::Utf8)?;
        Ok(f(text))
    }

    /// A reader over the bytes (`std::io::Read`, `Seek`, `BufRead`); it holds read access while it lives.
    ///
    /// # Errors
    /// As [`bytes`](Self::bytes).
    pub fn reader(&self) -> Result<io::Cursor<ReadGuard<'_>>> {
        Ok(io::Cursor::new(self.bytes()?))
    }

    /// Copies `src` into the start of the buffer, as much as fits; returns how many bytes were copied. The
    /// copy's timing depends on the lengths only, never on the bytes.
    ///
    /// # Errors
    /// As [`bytes_mut`](Self::bytes_mut).
    pub fn copy(&mut self, src: &[u8]) -> Result<usize> {
        self.copy_at(0, src)
    }

    /// Copies `src` into the buffer from `offset` on, as much as fits; returns how many bytes were copied.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] when `offset` is past the end; otherwise as [`bytes_mut`](Self::bytes_mut).
    pub fn copy_at(&mut self, offset: usize, src: &[u8]) -> Result<usize> {
        let mut data = self.bytes_mut()?;
        let len = data.len();
        let dst = data
            .get_mut(offset..)
            .ok_or(Error::OutOfRange { offset, len })?;
        let n = dst.len().min(src.len());
        dst[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    /// As [`copy`](Self::copy), then wipes all of `src` (Go's `Move`).
    ///
    /// # Errors
    /// As [`copy`](Self::copy); `src` is not wiped on error.
    pub fn move_from(&mut self, src: &mut [u8]) -> Result<usize> {
        self.move_at(0, src)
    }

    /// As [`copy_at`](Self::copy_at), then wipes all of `src` (Go's `MoveAt`).
    ///
    /// # Errors
    /// As [`copy_at`](Self::copy_at); `src` is not wiped on error.
    pub fn move_at(&mut self, offset: usize, src: &mut [u8]) -> Result<usize> {
        let n = self.copy_at(offset, src)?;
        memcall::wipe_bytes(src);
        Ok(n)
    }

    /// Overwrites the bytes with random ones from the OS.
    ///
    /// # Errors
    /// [`Error::Random`]; otherwise as [`bytes_mut`](Self::bytes_mut).
    pub fn scramble(&mut self) -> Result<()> {
        crate::util::scramble_bytes(&mut self.bytes_mut()?)
    }

    /// Overwrites the bytes with zeros.
    ///
    /// # Errors
    /// As [`bytes_mut`](Self::bytes_mut).
    pub fn wipe(&mut self) -> Result<()> {
        memcall::wipe_bytes(&mut self.bytes_mut()?);
        Ok(())
    }

    /// Size in bytes; 0 once destroyed (and while a leaked write guard holds the buffer).
    pub fn size(&self) -> usize {
        self.shared
            .state()
            .ok()
            .and_then(|state| state.region().ok().map(GuardedRegion::len))
            .unwrap_or(0)
    }

    /// Same as [`size`](Self::size).
    pub fn len(&self) -> usize {
        self.size()
    }

    /// True once destroyed (a live buffer is never empty).
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// True until destroyed or purged.
    pub fn is_alive(&self) -> bool {
        self.shared
            .state()
            .is_ok_and(|state| state.region().is_ok())
    }

    /// True when alive and writable (not frozen).
    pub fn is_mutable(&self) -> bool {
        self.shared
            .state()
            .is_ok_and(|state| state.region().is_ok() && state.mutable)
    }

    /// True when the data pages are locked into RAM (always, unless made with [`Locking::BestEffort`]).
    pub fn is_locked(&self) -> bool {
        self.shared
            .state()
            .is_ok_and(|state| state.region().is_ok_and(GuardedRegion::is_locked))
    }

    /// Which per-region hardening took effect, while alive.
    pub fn hardening(&self) -> Option<Hardening> {
        self.shared
            .state()
            .ok()
            .and_then(|state| state.region().ok().map(GuardedRegion::hardening))
    }

    /// Constant-time comparison with `other` (the lengths are not secret). A destroyed buffer equals nothing,
    /// not even an empty slice (Go's says otherwise despite its documentation).
    pub fn equal_to(&self, other: &[u8]) -> bool {
        self.bytes()
            .map(|data| bool::from(data.ct_eq(other)))
            .unwrap_or(false)
    }

    /// Wipes the data, verifies the canary, then unlocks and unmaps the pages. Idempotent. In a forked child it
    /// only forgets the buffer: the pages belong to the parent.
    ///
    /// Waits at most [`PURGE_GRACE`](crate::PURGE_GRACE) for the buffer's lock, which only a leaked guard can
    /// hold for longer.
    ///
    /// # Errors
    /// [`Error::CanaryCorrupted`] when something wrote around the data (the pages are released anyway, and the
    /// buffer is dead); [`Error::Memory`] when a page operation fails, in which case the buffer stays alive and
    /// `destroy` can be retried; [`Error::StillAccessed`] when a leaked guard holds the buffer: the data is
    /// then wiped in place and made no-access (the leaked guard faults if used), the buffer is dead, and its
    /// pages are released when it is dropped.
    pub fn destroy(&mut self) -> Result<()> {
        self.shared.destroy()
    }
}

impl PartialEq<[u8]> for LockedBuffer {
    fn eq(&self, other: &[u8]) -> bool {
        self.equal_to(other)
    }
}

impl Drop for LockedBuffer {
    fn drop(&mut self) {
        // Never waits: a lock held now belongs to a leaked guard or a purge finishing the buffer, and the
        // buffer's state releases the pages when its last owner lets go of it.
        self.shared.release();
    }
}
