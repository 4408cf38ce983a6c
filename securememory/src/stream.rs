//! [`SecretStream`]: large secret payloads kept in protected chunks, never in ordinary memory in between.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};

use crate::access::{Pages, ProtectedPages, Resting, Unsealed};
use crate::error::{Error, Result};
use crate::mg;
use crate::protected_memory::{ProtectedMemorySecret, ProtectedMemorySecretFactory};
use crate::Secret;

/// Size of one chunk: each is its own locked mapping, sealed (no-access) as soon as it is full.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// A first-in, first-out byte stream whose contents live in [`ProtectedMemorySecret`] chunks.
///
/// Writes copy straight into locked pages; a chunk becomes a sealed secret once it is full or on
/// [`seal_tail`](SecretStream::seal_tail) (or `io::Write::flush`). The chunk being filled is read-write only
/// during a write call and no-access between writes, and [`purge`](memguard::purge) reaches it like every
/// sealed chunk (the stream then fails with [`Error::Closed`]). Reads copy out of the chunks in order and
/// release each chunk (wiped) once read.
///
/// What remains: a read copies bytes into the caller's buffer, which is ordinary memory unless it is itself
/// protected; use [`SecretStream::next_chunk`], [`SecretStream::into_secret`] or
/// [`SecretReader::copy_to`](crate::SecretReader::copy_to) to move bytes between protected places without an
/// ordinary buffer in between (`std::io::copy` uses an 8 KiB buffer on the stack).
///
/// ```
/// use std::io::{Read, Write};
/// use securememory::stream::SecretStream;
///
/// let mut stream = SecretStream::new();
/// stream.write_all(&[7u8; 200_000])?;        // four chunks in locked, no-access pages
/// let mut out = vec![0u8; 200_000];
/// stream.read_exact(&mut out)?;
/// assert!(out.iter().all(|&b| b == 7));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SecretStream {
    factory: ProtectedMemorySecretFactory,
    sealed: VecDeque<ProtectedMemorySecret>,
    /// Read position inside the front sealed chunk.
    front_pos: usize,
    tail: Option<Tail>,
    len: usize,
}

/// The chunk being filled: no-access between writes, registered for purge.
struct Tail {
    cell: Arc<TailCell>,
    _registration: mg::Registration,
    filled: usize,
    locked: usize,
}

/// The tail's pages, shared with the purge registry. The stream holds the mutex only for one copy.
struct TailCell {
    pages: Mutex<Option<Resting<ProtectedPages>>>,
    epoch: u64,
}

impl Tail {
    fn new(pages: Unsealed<ProtectedPages>, locked: usize) -> Result<Tail> {
        let pages = pages
            .rest()
            .map_err(|(e, pages)| crate::shared::discard(Error::Memory(e), pages.into_pages()))?;
        let cell = Arc::new(TailCell {
            pages: Mutex::new(Some(pages)),
            epoch: memcall::fork_epoch(),
        });
        let weak: Weak<dyn mg::Purgeable> = Arc::<TailCell>::downgrade(&cell);
        Ok(Tail {
            _registration: mg::register(weak),
            cell,
            filled: 0,
            locked,
        })
    }
}

impl TailCell {
    fn lock(&self) -> MutexGuard<'_, Option<Resting<ProtectedPages>>> {
        // Every critical section leaves the slot holding resting pages or nothing.
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the resting pages and makes them writable; `Closed` once a purge took them.
    fn wake(slot: &mut Option<Resting<ProtectedPages>>) -> Result<Unsealed<ProtectedPages>> {
        let resting = slot.take().ok_or(Error::Closed)?;
        resting.wake().map_err(|(e, resting)| {
            *slot = Some(resting);
            Error::Memory(e)
        })
    }
}

fn release(pages: ProtectedPages) {
    if let Err(failed) = pages.destroy() {
        log::error!("releasing a stream chunk failed: {}", failed.error);
    }
}

impl mg::Purgeable for TailCell {
    fn purge(&self, request: &mg::PurgeRequest) {
        // The stream holds the lock only for one copy into the chunk; wait for it no longer than allowed.
        let mut slot = loop {
            match self.pages.try_lock() {
                Ok(slot) => break slot,
                Err(TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
                Err(TryLockError::WouldBlock) if !request.expired() => std::thread::yield_now(),
                Err(TryLockError::WouldBlock) => {
                    log::error!("purge could not reach a stream chunk being written");
                    return;
                }
            }
        };
        if let Some(resting) = slot.take() {
            release(resting.into_pages());
        }
    }
}

impl Drop for TailCell {
    fn drop(&mut self) {
        let pages = self.lock().take();
        match pages {
            // In a forked child the pages are the parent's: not ours to release.
            Some(resting) if memcall::fork_epoch() != self.epoch => std::mem::forget(resting),
            Some(resting) => release(resting.into_pages()),
            None => {}
        }
    }
}

impl SecretStream {
    /// An empty stream whose chunks must be locked.
    pub fn new() -> Self {
        Self::with_factory(ProtectedMemorySecretFactory::new())
    }

    /// An empty stream whose chunks come from `factory` (and follow its locking policy).
    pub fn with_factory(factory: ProtectedMemorySecretFactory) -> Self {
        SecretStream {
            factory,
            sealed: VecDeque::new(),
            front_pos: 0,
            tail: None,
            len: 0,
        }
    }

    /// Bytes written and not yet read.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is left to read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`.
    ///
    /// # Errors
    /// When a chunk cannot be allocated, locked, protected or sealed: what was written before stays readable,
    /// except the bytes of a chunk that could not be made no-access again (wiped; [`len`](Self::len) says
    /// what is left). [`Error::Closed`] after a [`purge`](memguard::purge).
    pub fn write_secret(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let tail = match &mut self.tail {
                Some(tail) => tail,
                None => {
                    let (pages, locked) = self.factory.chunk(CHUNK_SIZE)?;
                    self.tail.insert(Tail::new(pages, locked)?)
                }
            };
            let mut slot = tail.cell.lock();
            let mut pages = TailCell::wake(&mut slot)?;
            let room = &mut pages.bytes_mut()[tail.filled..];
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            tail.filled += n;
            self.len += n;
            data = &data[n..];
            let rested = if tail.filled == CHUNK_SIZE {
                Err(pages)
            } else {
                pages.rest().map_err(|(e, pages)| {
                    log::error!(
                        "a stream chunk could not be made no-access; its bytes are dropped: {e}"
                    );
                    pages
                })
            };
            match rested {
                Ok(resting) => *slot = Some(resting),
                Err(pages) => {
                    let full = tail.filled == CHUNK_SIZE;
                    let (filled, locked) = (tail.filled, tail.locked);
                    drop(slot);
                    self.tail = None;
                    if !full {
                        self.len -= filled;
                        release(pages.into_pages());
                        return Err(Error::Closed);
                    }
                    self.push_sealed(pages, filled, locked)?;
                }
            }
        }
        Ok(())
    }

    fn push_sealed(
        &mut self,
        pages: Unsealed<ProtectedPages>,
        filled: usize,
        locked: usize,
    ) -> Result<()> {
        match ProtectedMemorySecretFactory::seal_chunk(pages, filled, locked) {
            Ok(secret) => {
                self.sealed.push_back(secret);
                Ok(())
            }
            Err(e) => {
                self.len -= filled;
                Err(e)
            }
        }
    }

    /// Appends `source`, then wipes it.
    ///
    /// # Errors
    /// As [`SecretStream::write_secret`]; `source` is wiped either way.
    pub fn write_from(&mut self, source: &mut [u8]) -> Result<()> {
        let result = self.write_secret(source);
        memcall::wipe_bytes(source);
        result
    }

    /// Seals the chunk being filled, so every byte written is no-access at rest.
    ///
    /// # Errors
    /// When `mprotect` fails; the chunk's bytes are then wiped and lost, and [`len`](SecretStream::len) says
    /// what is left.
    pub fn seal_tail(&mut self) -> Result<()> {
        let Some(tail) = self.tail.take() else {
            return Ok(());
        };
        if tail.filled == 0 {
            return Ok(());
        }
        let woken = TailCell::wake(&mut tail.cell.lock());
        match woken {
            Ok(pages) => self.push_sealed(pages, tail.filled, tail.locked),
            Err(e) => {
                // Purged, or the pages cannot be made writable: the chunk's bytes are gone.
                self.len -= tail.filled;
                Err(e)
            }
        }
    }

    /// Copies the next bytes into `buf` and returns how many (0 at the end).
    ///
    /// # Errors
    /// When a chunk cannot be made readable or no-access again.
    pub fn read_secret(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.sealed.is_empty() {
            self.seal_tail()?;
        }
        let mut total = 0;
        while total < buf.len() {
            let Some(front) = self.sealed.front() else {
                break;
            };
            let pos = self.front_pos;
            let out = &mut buf[total..];
            let n = front.with_bytes(|bytes| {
                let n = (bytes.len() - pos).min(out.len());
                out[..n].copy_from_slice(&bytes[pos..pos + n]);
                Ok(n)
            })?;
            total += n;
            self.front_pos += n;
            self.len -= n;
            if self.front_pos == front.len() {
                self.pop_front()?;
            }
        }
        Ok(total)
    }

    fn pop_front(&mut self) -> Result<()> {
        self.front_pos = 0;
        match self.sealed.pop_front() {
            Some(done) => done.close(),
            None => Ok(()),
        }
    }

    /// Takes the next unread bytes (at most one chunk) as a secret of their own.
    ///
    /// # Errors
    /// When sealing or copying fails.
    pub fn next_chunk(&mut self) -> Result<Option<ProtectedMemorySecret>> {
        if self.sealed.is_empty() {
            self.seal_tail()?;
        }
        if self.front_pos == 0 {
            let chunk = self.sealed.pop_front();
            if let Some(chunk) = &chunk {
                self.len -= chunk.len();
            }
            return Ok(chunk);
        }
        // Partly read: move the rest into a fresh chunk, protected memory to protected memory.
        let Some(front) = self.sealed.front() else {
            return Ok(None);
        };
        let rest = front.len() - self.front_pos;
        let (mut pages, locked) = self.factory.chunk(rest)?;
        let pos = self.front_pos;
        front.with_bytes(|bytes| {
            pages.bytes_mut()[..rest].copy_from_slice(&bytes[pos..]);
            Ok(())
        })?;
        let chunk = ProtectedMemorySecretFactory::seal_chunk(pages, rest, locked)?;
        self.len -= rest;
        self.pop_front()?;
        Ok(Some(chunk))
    }

    /// Everything not yet read, as one secret.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] when the stream is empty; allocation and access errors.
    pub fn into_secret(mut self) -> Result<ProtectedMemorySecret> {
        let len = self.len;
        if len == 0 {
            return Err(Error::InvalidLength { len });
        }
        let (mut pages, locked) = self.factory.chunk(len)?;
        let mut filled = 0;
        while filled < len {
            let n = self.read_secret(&mut pages.bytes_mut()[filled..len])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        ProtectedMemorySecretFactory::seal_chunk(pages, filled, locked)
    }
}

impl Default for SecretStream {
    fn default() -> Self {
        Self::new()
    }
}

impl io::Write for SecretStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_secret(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(self.seal_tail()?)
    }
}

impl io::Read for SecretStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_secret(buf)?)
    }
}

impl fmt::Debug for SecretStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStream")
            .field("len", &self.len)
            .field("sealed_chunks", &self.sealed.len())
            .finish_non_exhaustive()
    }
}
