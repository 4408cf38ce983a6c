//! [`Stream`]: a queue of sealed chunks for payloads too large to keep in locked memory at once.

use std::collections::VecDeque;
use std::io;

use crate::core::crypto::NONCE_LEN;
use crate::enclave::{Enclave, ID_LEN};
use crate::error::{Error, Result};
use crate::locked_buffer::LockedBuffer;

/// Size of each sealed chunk: four pages (16 KiB with 4 KiB pages), as in Go.
pub fn stream_chunk_size() -> usize {
    4 * memcall::page_size()
}

/// A FIFO of encrypted chunks ([`Enclave`]s of at most [`stream_chunk_size`] bytes).
///
/// [`Write`](io::Write) splits the data into chunks and seals each; [`Read`](io::Read) opens the front chunk,
/// hands out at most that one chunk per call (a short read, as in Go) and re-seals any rest at the front;
/// `Ok(0)` means the stream is empty. A read that takes a whole chunk decrypts it straight into the caller's
/// buffer (the tag is checked before any plaintext is written); a shorter one goes through a locked buffer, so
/// the rest never leaves locked memory in the clear. [`next`](Self::next) yields whole chunks as frozen [`LockedBuffer`]s, and
/// [`flush_buffer`](Self::flush_buffer) drains everything into one. The allocations of chunks read (which held
/// only ciphertext) are kept, about 1 MiB of them, for the next chunks written, so a stream used as a pipe does not go
/// back to the allocator for every chunk; they are freed with the stream.
///
/// Go's `Write` wipes the caller's slice; `io::Write` hands us `&[u8]`, so use
/// [`write_moving`](Self::write_moving) to get that, or [`write_from`](Self::write_from) to move a
/// [`LockedBuffer`]'s bytes in without any plaintext copy in ordinary memory.
///
/// # Integrity
/// Each chunk is bound (as associated data) to this stream's random identity and to its position, and the
/// stream counts the chunks written and read: a chunk from another stream, chunks reordered, a chunk dropped or
/// the end cut off all make the next read fail with [`Error::DecryptionFailed`], returning nothing and leaving
/// the stream as it was.
///
/// # Copies in ordinary memory
/// Whatever a [`Read`](io::Read) call returns is plaintext in the caller's buffer. [`std::io::copy`] goes
/// through an 8 KiB stack buffer and `read_to_end` through a `Vec` that reallocates as it grows, each move
/// leaving an unwiped copy behind in ordinary (swappable, dumpable) memory. Prefer [`next`](Self::next) or
/// [`flush_buffer`](Self::flush_buffer), which decrypt into locked buffers, and [`write_from`](Self::write_from)
/// to fill a stream from a [`LockedBuffer`].
///
/// # Example
/// ```
/// use std::io::{Read, Write};
///
/// let mut stream = memguard::Stream::new();
/// let mut payload = vec![7u8; 40_000]; // several chunks of `stream_chunk_size()` bytes (16 KiB)
/// stream.write_moving(&mut payload)?; // sealed chunk by chunk, `payload` wiped
/// assert!(payload.iter().all(|&b| b == 0));
/// stream.write_all(b"tail")?; // io::Write (the caller's slice is left as is)
///
/// let first = stream.next()?.expect("a chunk"); // a whole chunk, in a frozen LockedBuffer
/// assert!(first.len() <= memguard::stream_chunk_size());
/// let rest = stream.flush_buffer()?; // everything else in one locked buffer
/// assert_eq!(rest.len(), 40_000 + 4 - first.len());
/// let mut buf = [0u8; 4];
/// assert_eq!(stream.read(&mut buf)?, 0); // empty now
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Stream {
    chunks: VecDeque<Enclave>,
    /// Allocations of chunks read, for the next chunks written.
    spare: Spare,
    size: usize,
    /// Random identity, drawn with the first chunk.
    id: Option<[u8; ID_LEN]>,
    /// Chunks written so far: the index the next one gets.
    written: u64,
    /// Index of the front chunk: chunks read so far.
    read: u64,
}

/// Bytes of chunk allocations a stream keeps for reuse once their chunks are read: a stream used as a pipe
/// (write some, read it back, again) then seals into the same allocations instead of going back to the
/// allocator (and the kernel, which the allocator returns freed memory to) for every chunk.
const SPARE_BYTES: usize = 1 << 20;

/// Emptied chunk allocations (they held ciphertext only): as many as [`SPARE_BYTES`] of chunks, each a
/// chunk's ciphertext at most.
#[derive(Default)]
struct Spare(Vec<Vec<u8>>);

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} spare chunk allocations", self.0.len())
    }
}

impl Spare {
    fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_default()
    }

    fn keep(&mut self, enclave: Enclave) {
        let mut ciphertext = enclave.into_ciphertext();
        if self.0.len() < SPARE_BYTES / stream_chunk_size() {
            ciphertext.clear();
            self.0.push(ciphertext);
        }
    }
}

/// Length of a chunk's associated data: a domain byte, the stream's identity, the chunk's index.
const CHUNK_AD_LEN: usize = 1 + ID_LEN + 8;

fn chunk_ad(id: &[u8; ID_LEN], index: u64) -> [u8; CHUNK_AD_LEN] {
    let mut ad = [0u8; CHUNK_AD_LEN];
    ad[0] = b'S';
    ad[1..1 + ID_LEN].copy_from_slice(id);
    ad[1 + ID_LEN..].copy_from_slice(&index.to_le_bytes());
    ad
}

impl Stream {
    /// An empty stream.
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Total plaintext bytes queued.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The stream's identity, drawn now if this is its first chunk.
    fn id(&mut self) -> Result<[u8; ID_LEN]> {
        if let Some(id) = self.id {
            return Ok(id);
        }
        let mut id = [0u8; ID_LEN];
        crate::core::crypto::public_random(&mut id)?;
        self.id = Some(id);
        Ok(id)
    }

    /// Associated data and a fresh nonce for the next chunk written.
    fn next_binding(&mut self) -> Result<([u8; ID_LEN], [u8; CHUNK_AD_LEN], [u8; NONCE_LEN])> {
        let id = self.id()?;
        let mut nonce = [0u8; NONCE_LEN];
        crate::core::crypto::public_random(&mut nonce)?;
        Ok((id, chunk_ad(&id, self.written), nonce))
    }

    fn push(&mut self, enclave: Enclave) {
        self.size += enclave.size();
        self.written += 1;
        self.chunks.push_back(enclave);
    }

    /// The queue holds exactly the chunks written and not yet read: nothing was dropped, cut off or added.
    fn check_count(&self) -> Result<()> {
        if self.written.checked_sub(self.read) != Some(self.chunks.len() as u64) {
            return Err(Error::DecryptionFailed);
        }
        Ok(())
    }

    /// Associated data the front chunk must have been sealed under.
    fn front_ad(&self) -> [u8; CHUNK_AD_LEN] {
        chunk_ad(&self.id.unwrap_or_default(), self.read)
    }

    /// Seals `data` chunk by chunk, encrypting in place, and wipes it (Go's `Write`). Returns the bytes queued;
    /// on error, the chunks before the failing one are queued (and wiped).
    ///
    /// # Errors
    /// As [`Enclave::new`].
    pub fn write_moving(&mut self, data: &mut [u8]) -> Result<usize> {
        for chunk in data.chunks_mut(stream_chunk_size()) {
            let (id, ad, nonce) = self.next_binding()?;
            let enclave = Enclave::new_bound(chunk, id, &ad, &nonce, self.spare.take())?;
            self.push(enclave);
        }
        Ok(data.len())
    }

    /// Seals a copy of `buffer`'s bytes, chunk by chunk, without the plaintext passing through ordinary
    /// memory: each chunk is copied into a locked scratch buffer and encrypted there in place. `buffer` is
    /// left as is. Returns the bytes queued; on error, the chunks before the failing one are queued.
    ///
    /// # Errors
    /// [`Error::Destroyed`] or [`Error::Forked`] for an unusable `buffer`; otherwise as [`Enclave::new`].
    pub fn write_from(&mut self, buffer: &LockedBuffer) -> Result<usize> {
        let source = buffer.bytes()?;
        let chunk_size = stream_chunk_size();
        let mut scratch = LockedBuffer::new(source.len().min(chunk_size))?;
        let mut result = Ok(source.len());
        {
            let mut scratch_bytes = scratch.bytes_mut()?;
            for chunk in source.chunks(chunk_size) {
                let dst = &mut scratch_bytes[..chunk.len()];
                dst.copy_from_slice(chunk);
                crate::core::secure_stack::clear_vector_registers();
                let spare = self.spare.take();
                let sealed = self
                    .next_binding()
                    .and_then(|(id, ad, nonce)| Enclave::new_bound(dst, id, &ad, &nonce, spare));
                match sealed {
                    Ok(enclave) => self.push(enclave),
                    Err(err) => {
                        crate::util::wipe_bytes(dst);
                        result = Err(err);
                        break;
                    }
                }
            }
        }
        drop(source);
        scratch.destroy()?;
        result
    }

    /// Opens every chunk straight into one new frozen buffer and empties the stream (Go's `Flush`).
    ///
    /// # Errors
    /// [`Error::InvalidLength`] when the stream is empty; [`Error::Memory`] when the buffer cannot be made;
    /// [`Error::DecryptionFailed`] after a [`purge`](crate::purge), or when the chunks were tampered with (see
    /// [Integrity](Self#integrity)); [`Error::Forked`] in a forked child for chunks written by the parent. The
    /// stream is left unchanged on error.
    pub fn flush_buffer(&mut self) -> Result<LockedBuffer> {
        self.check_count()?;
        let total: usize = self.chunks.iter().map(Enclave::size).sum();
        if total != self.size {
            return Err(Error::DecryptionFailed);
        }
        let mut out = LockedBuffer::new(self.size)?;
        {
            let mut data = out.bytes_mut()?;
            let mut at = 0;
            let id = self.id.unwrap_or_default();
            for (i, enclave) in self.chunks.iter().enumerate() {
                let end = at + enclave.size();
                let ad = chunk_ad(&id, self.read + i as u64);
                enclave.open_into_bound(&ad, &mut data[at..end])?;
                at = end;
            }
        }
        self.read += self.chunks.len() as u64;
        for enclave in std::mem::take(&mut self.chunks) {
            self.spare.keep(enclave);
        }
        self.size = 0;
        out.freeze()?;
        Ok(out)
    }

    /// The next whole chunk as a frozen buffer (Go's `Next`); `Ok(None)` when the stream is empty. Not an
    /// `Iterator`: `Read` and `Iterator` share method names (`by_ref`, `take`, `chain`) that would clash.
    ///
    /// # Errors
    /// As [`Enclave::open`], and [`Error::DecryptionFailed`] when the chunks were tampered with (see
    /// [Integrity](Self#integrity)); the chunk stays queued.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<LockedBuffer>> {
        self.check_count()?;
        let Some(enclave) = self.chunks.front() else {
            return Ok(None);
        };
        let mut buf = enclave.open_mutable_bound(&self.front_ad())?;
        buf.freeze()?;
        self.consume_front();
        Ok(Some(buf))
    }

    /// Drops the front chunk after it was read in full.
    fn consume_front(&mut self) {
        if let Some(enclave) = self.chunks.pop_front() {
            self.size = self.size.saturating_sub(enclave.size());
            self.read += 1;
            self.spare.keep(enclave);
        }
    }

    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.check_count()?;
        let ad = self.front_ad();
        let Some(enclave) = self.chunks.front() else {
            return Ok(0);
        };
        let size = enclave.size();
        if buf.len() >= size {
            // The whole chunk goes to the caller: decrypt straight into their buffer (the tag is verified before
            // any plaintext is written), with no locked buffer in between.
            enclave.open_into_bound(&ad, &mut buf[..size])?;
            self.consume_front();
            return Ok(size);
        }
        let mut chunk = enclave.open_mutable_bound(&ad)?;
        let mut data = chunk.bytes_mut()?;
        let n = buf.len();
        buf.copy_from_slice(&data[..n]);
        crate::core::secure_stack::clear_vector_registers();
        // Re-seal the rest where it lies, inside the locked buffer, under the same position.
        let mut nonce = [0u8; NONCE_LEN];
        let spare = self.spare.take();
        let rest = crate::core::crypto::public_random(&mut nonce).and_then(|()| {
            Enclave::new_bound(
                &mut data[n..],
                self.id.unwrap_or_default(),
                &ad,
                &nonce,
                spare,
            )
        });
        match rest {
            Ok(rest) => {
                self.size -= n;
                let read = std::mem::replace(&mut self.chunks[0], rest);
                self.spare.keep(read);
                Ok(n)
            }
            Err(err) => {
                crate::util::wipe_bytes(buf);
                Err(err)
            }
        }
    }

    /// The queued chunks, to test that tampering with them is detected.
    #[doc(hidden)]
    pub fn chunks_mut(&mut self) -> &mut VecDeque<Enclave> {
        &mut self.chunks
    }
}

impl io::Write for Stream {
    /// Seals a copy of `data`, chunk by chunk; `data` is left as is (see [`Stream::write_moving`]).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        for chunk in data.chunks(stream_chunk_size()) {
            let spare = self.spare.take();
            let sealed = self.next_binding().and_then(|(id, ad, nonce)| {
                Enclave::from_copy_bound(chunk, id, &ad, &nonce, spare)
            });
            match sealed {
                Ok(enclave) => self.push(enclave),
                Err(err) if written == 0 => return Err(err.into()),
                Err(_) => break,
            }
            written += chunk.len();
        }
        Ok(written)
    }

    /// Nothing to do: every write is sealed at once. (To drain the stream into a buffer, see
    /// [`Stream::flush_buffer`].)
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        Ok(self.read_chunk(buf)?)
    }
}
