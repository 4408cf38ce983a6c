//! [`Stream`]: a queue of sealed chunks for payloads too large to keep in locked memory at once.

use std::collections::VecDeque;
use std::io;

use crate::enclave::Enclave;
use crate::error::Result;
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
/// [`flush_buffer`](Self::flush_buffer) drains everything into one.
///
/// Go's `Write` wipes the caller's slice; `io::Write` hands us `&[u8]`, so use
/// [`write_moving`](Self::write_moving) to get that.
#[derive(Debug, Default)]
pub struct Stream {
    chunks: VecDeque<Enclave>,
    size: usize,
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

    fn push(&mut self, enclave: Enclave) {
        self.size += enclave.size();
        self.chunks.push_back(enclave);
    }

    fn pop(&mut self) -> Option<Enclave> {
        let enclave = self.chunks.pop_front()?;
        self.size -= enclave.size();
        Some(enclave)
    }

    fn push_front(&mut self, enclave: Enclave) {
        self.size += enclave.size();
        self.chunks.push_front(enclave);
    }

    /// Seals `data` chunk by chunk, encrypting in place, and wipes it (Go's `Write`). Returns the bytes queued;
    /// on error, the chunks before the failing one are queued (and wiped).
    ///
    /// # Errors
    /// As [`Enclave::new`].
    pub fn write_moving(&mut self, data: &mut [u8]) -> Result<usize> {
        for chunk in data.chunks_mut(stream_chunk_size()) {
            let enclave = Enclave::new(chunk)?;
            self.push(enclave);
        }
        Ok(data.len())
    }

    /// Opens every chunk straight into one new frozen buffer and empties the stream (Go's `Flush`).
    ///
    /// # Errors
    /// [`Error::InvalidLength`](crate::Error::InvalidLength) when the stream is empty; [`Error::Memory`](crate::Error::Memory) when the buffer cannot be made;
    /// [`Error::DecryptionFailed`](crate::Error::DecryptionFailed) after a [`purge`](crate::purge). The stream is left unchanged on error.
    pub fn flush_buffer(&mut self) -> Result<LockedBuffer> {
        let mut out = LockedBuffer::new(self.size)?;
        {
            let mut data = out.bytes_mut()?;
            let mut at = 0;
            for enclave in &self.chunks {
                let end = at + enclave.size();
                enclave.open_into(&mut data[at..end])?;
                at = end;
            }
        }
        self.chunks.clear();
        self.size = 0;
        out.freeze()?;
        Ok(out)
    }

    /// The next whole chunk as a frozen buffer (Go's `Next`); `Ok(None)` when the stream is empty. Not an
    /// `Iterator`: `Read` and `Iterator` share method names (`by_ref`, `take`, `chain`) that would clash.
    ///
    /// # Errors
    /// As [`Enclave::open`]; the chunk stays queued.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<LockedBuffer>> {
        let Some(enclave) = self.pop() else {
            return Ok(None);
        };
        match enclave.open() {
            Ok(buf) => Ok(Some(buf)),
            Err(err) => {
                self.push_front(enclave);
                Err(err)
            }
        }
    }

    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        let Some(enclave) = self.pop() else {
            return Ok(0);
        };
        let size = enclave.size();
        if buf.len() >= size {
            // The whole chunk goes to the caller: decrypt straight into their buffer (the tag is verified before
            // any plaintext is written), with no locked buffer in between.
            return match enclave.open_into(&mut buf[..size]) {
                Ok(()) => Ok(size),
                Err(err) => {
                    self.push_front(enclave);
                    Err(err)
                }
            };
        }
        let opened = enclave.open_mutable();
        let mut chunk = match opened {
            Ok(chunk) => chunk,
            Err(err) => {
                self.push_front(enclave);
                return Err(err);
            }
        };
        let mut data = chunk.bytes_mut()?;
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        if n < data.len() {
            // Re-seal the rest where it lies, inside the locked buffer.
            match Enclave::new(&mut data[n..]) {
                Ok(rest) => self.push_front(rest),
                Err(err) => {
                    crate::util::wipe_bytes(&mut buf[..n]);
                    self.push_front(enclave);
                    return Err(err);
                }
            }
        }
        Ok(n)
    }
}

impl io::Write for Stream {
    /// Seals a copy of `data`, chunk by chunk; `data` is left as is (see [`Stream::write_moving`]).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        for chunk in data.chunks(stream_chunk_size()) {
            match Enclave::from_copy(chunk) {
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
