//! Building a [`LockedBuffer`] from a reader, straight into locked memory.

use std::fmt;
use std::io::{self, Read};

use crate::error::Error;
use crate::locked_buffer::LockedBuffer;

/// Reading a buffer's source failed part-way.
#[derive(Debug)]
pub struct ReadError {
    /// Why reading stopped.
    pub error: Error,
    /// What was read before the error, as a frozen buffer (`None` when nothing was).
    pub partial: Option<LockedBuffer>,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        if let Some(partial) = &self.partial {
            write!(f, " ({} bytes were read before)", partial.size())?;
        }
        Ok(())
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<Error> for ReadError {
    fn from(error: Error) -> Self {
        ReadError {
            error,
            partial: None,
        }
    }
}

/// Turns the first `len` bytes of a scratch buffer into the frozen result, or the error plus what was read.
fn finish(
    scratch: LockedBuffer,
    len: usize,
    error: Option<Error>,
) -> Result<LockedBuffer, ReadError> {
    let partial = if len == 0 {
        None
    } else if len == scratch.size() {
        let mut buf = scratch;
        buf.freeze()?;
        Some(buf)
    } else {
        let mut buf = LockedBuffer::new(len)?;
        buf.copy(&scratch.bytes()?[..len])?;
        buf.freeze()?;
        Some(buf)
    };
    match (error, partial) {
        (None, Some(buf)) => Ok(buf),
        (None, None) => Err(Error::InvalidLength { len: 0 }.into()),
        (Some(error), partial) => Err(ReadError { error, partial }),
    }
}

/// A buffer twice as large holding the first `len` bytes of `old` (which is destroyed).
fn grow(old: LockedBuffer, len: usize) -> Result<LockedBuffer, Error> {
    let new_size = old
        .size()
        .checked_mul(2)
        .ok_or(Error::InvalidLength { len: usize::MAX })?;
    let mut new = LockedBuffer::new(new_size)?;
    new.copy(&old.bytes()?[..len])?;
    Ok(new)
}

impl LockedBuffer {
    /// Reads exactly `size` bytes from `reader` into a new frozen buffer (Go's `NewBufferFromReader`).
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for zero; when the reader fails or ends early ([`io::ErrorKind::UnexpectedEof`]),
    /// the error comes with what was read so far as a frozen buffer of that size.
    pub fn from_reader(mut reader: impl Read, size: usize) -> Result<LockedBuffer, ReadError> {
        let mut scratch = LockedBuffer::new(size)?;
        let mut filled = 0;
        let mut error = None;
        {
            let mut data = scratch.bytes_mut()?;
            while filled < size {
                match reader.read(&mut data[filled..]) {
                    Ok(0) => {
                        error = Some(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        error = Some(e.into());
                        break;
                    }
                }
            }
        }
        finish(scratch, filled, error)
    }

    /// Reads from `reader` until `delim` (not included) or the end, one byte per read so nothing past the
    /// delimiter is consumed (Go's `NewBufferFromReaderUntil`).
    ///
    /// # Errors
    /// [`Error::InvalidLength`] when nothing precedes the delimiter or the end; a read error comes with what was
    /// read before it.
    pub fn from_reader_until(mut reader: impl Read, delim: u8) -> Result<LockedBuffer, ReadError> {
        let mut scratch = LockedBuffer::new(memcall::page_size())?;
        let mut len = 0;
        let mut byte = [0u8; 1];
        let error = loop {
            match reader.read(&mut byte) {
                Ok(0) => break None,
                Ok(_) if byte[0] == delim => break None,
                Ok(_) => {
                    if len == scratch.size() {
                        scratch = grow(scratch, len)?;
                    }
                    scratch.copy_at(len, &byte)?;
                    len += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e.into()),
            }
        };
        crate::util::wipe_bytes(&mut byte);
        finish(scratch, len, error)
    }

    /// Reads `reader` to its end into a new frozen buffer of exactly the bytes read (Go's
    /// `NewBufferFromEntireReader`). The scratch space doubles as it fills, so large sources cost O(n).
    ///
    /// # Errors
    /// [`Error::InvalidLength`] when the reader is empty; a read error comes with what was read before it.
    pub fn from_entire_reader(mut reader: impl Read) -> Result<LockedBuffer, ReadError> {
        let mut scratch = LockedBuffer::new(memcall::page_size())?;
        let mut len = 0;
        let error = loop {
            if len == scratch.size() {
                scratch = grow(scratch, len)?;
            }
            let read = reader.read(&mut scratch.bytes_mut()?[len..]);
            match read {
                Ok(0) => break None,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e.into()),
            }
        };
        finish(scratch, len, error)
    }
}
