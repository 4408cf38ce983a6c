//! Building a [`LockedBuffer`] from a reader, straight into locked memory.

use std::fmt;
use std::io::{self, Read};

use crate::core::region::Locking;
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
    /// What lies behind [`error`](Self::error), whose text starts this error's `Display` (so a chain never repeats it).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl ReadError {
    /// True when the source ended before the size asked for ([`LockedBuffer::from_reader`]) or before the
    /// delimiter ([`LockedBuffer::from_reader_until`]): [`partial`](Self::partial) then holds everything the
    /// source had.
    pub fn ended_early(&self) -> bool {
        matches!(&self.error, Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof)
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

/// Turns the first `len` bytes of a scratch buffer into the frozen result, or the error plus what was read. The
/// result is registered for [`purge`](crate::purge) only now, complete, so a purge running meanwhile never makes
/// the read fail or lose what was read.
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
        Some(buf.registered())
    } else {
        let mut buf = LockedBuffer::unregistered(len, Locking::Required)?;
        buf.copy(&scratch.bytes()?[..len])?;
        buf.freeze()?;
        Some(buf.registered())
    };
    match (error, partial) {
        (None, Some(buf)) => Ok(buf),
        (None, None) => Err(Error::InvalidLength { len: 0 }.into()),
        (Some(error), partial) => Err(ReadError { error, partial }),
    }
}

/// An unregistered scratch buffer (see [`finish`]).
fn scratch(size: usize) -> Result<LockedBuffer, Error> {
    LockedBuffer::unregistered(size, Locking::Required)
}

/// A scratch buffer twice as large holding the first `len` bytes of `old` (which is destroyed).
fn grow(old: LockedBuffer, len: usize) -> Result<LockedBuffer, Error> {
    let new_size = old
        .size()
        .checked_mul(2)
        .ok_or(Error::InvalidLength { len: usize::MAX })?;
    let mut new = scratch(new_size)?;
    new.copy(&old.bytes()?[..len])?;
    Ok(new)
}

/// The error for a source that ended before the delimiter or the size asked for.
fn ended_early() -> Error {
    io::Error::from(io::ErrorKind::UnexpectedEof).into()
}

impl LockedBuffer {
    /// Reads exactly `size` bytes from `reader` into a new frozen buffer (Go's `NewBufferFromReader`).
    ///
    /// The buffer is registered for [`purge`](crate::purge) once complete, so a purge running meanwhile never
    /// makes this fail (the new buffer may survive that purge).
    ///
    /// # Errors
    /// - [`Error::InvalidLength`] for zero or a size too large to map;
    /// - [`Error::Memory`] or [`Error::Random`] when the buffer cannot be made (as [`new`](Self::new)) or made
    ///   read-only;
    /// - [`Error::Io`] when the reader fails, or ends early ([`io::ErrorKind::UnexpectedEof`]): the error
    ///   comes with what was read so far as a frozen buffer of that size ([`ReadError::partial`]).
    ///
    /// ```
    /// // In real code: a `File`, a socket or an unbuffered stdin, so no copy is left in a userspace buffer.
    /// let mut input: &[u8] = b"0123456789abcdef and the rest";
    /// let key = memguard::LockedBuffer::from_reader(&mut input, 16)?;
    /// assert!(key.equal_to(b"0123456789abcdef"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_reader(mut reader: impl Read, size: usize) -> Result<LockedBuffer, ReadError> {
        let mut scratch = scratch(size)?;
        let mut filled = 0;
        let mut error = None;
        {
            let mut data = scratch.bytes_mut()?;
            while filled < size {
                match reader.read(&mut data[filled..]) {
                    Ok(0) => {
                        error = Some(ended_early());
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
    /// `Ok` means the delimiter was found. When the input ends first, the error is
    /// [`io::ErrorKind::UnexpectedEof`] and [`ReadError::partial`] holds what was read (Go returns the bytes
    /// together with `io.EOF`); [`ReadError::ended_early`] tells that case apart. Registered for
    /// [`purge`](crate::purge) once complete, as [`from_reader`](Self::from_reader).
    ///
    /// # Errors
    /// - [`Error::InvalidLength`] when the delimiter comes first (nothing precedes it);
    /// - [`Error::Io`] with [`io::ErrorKind::UnexpectedEof`] when the input ends before the delimiter, with what
    ///   was read (`None` when the input was empty);
    /// - [`Error::Io`] when the reader fails, with what was read before;
    /// - [`Error::Memory`], [`Error::Random`] or [`Error::InvalidLength`] when a buffer cannot be made or grown
    ///   (as [`new`](Self::new)).
    ///
    /// ```
    /// let mut input: &[u8] = b"hunter2\nnext line";
    /// let password = memguard::LockedBuffer::from_reader_until(&mut input, b'\n')?;
    /// assert!(password.equal_to(b"hunter2"));
    /// assert_eq!(input, b"next line"); // nothing past the delimiter was consumed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_reader_until(mut reader: impl Read, delim: u8) -> Result<LockedBuffer, ReadError> {
        let mut scratch = scratch(memcall::page_size())?;
        let mut len = 0;
        let mut byte = [0u8; 1];
        let error = loop {
            match reader.read(&mut byte) {
                Ok(0) => break Some(ended_early()),
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
    /// Registered for [`purge`](crate::purge) once complete, as [`from_reader`](Self::from_reader).
    ///
    /// # Errors
    /// - [`Error::InvalidLength`] when the reader is empty;
    /// - [`Error::Io`] when the reader fails, with what was read before it;
    /// - [`Error::Memory`], [`Error::Random`] or [`Error::InvalidLength`] when a buffer cannot be made or grown
    ///   (as [`new`](Self::new)).
    ///
    /// ```
    /// let input: &[u8] = b"-----BEGIN PRIVATE KEY-----";
    /// let pem = memguard::LockedBuffer::from_entire_reader(input)?;
    /// assert_eq!(pem.len(), 27);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_entire_reader(mut reader: impl Read) -> Result<LockedBuffer, ReadError> {
        let mut scratch = scratch(memcall::page_size())?;
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
