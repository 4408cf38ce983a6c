//! [`SecretReader`]: `std::io::Read` over a secret, with Go's `NewReader` semantics.

use std::fmt;
use std::io;

use crate::error::{Error, Result};
use crate::stream::SecretStream;
use crate::Secret;

/// Reads a secret's bytes into the caller's buffer, one access window per call.
///
/// Each reader has its own position; many readers may read one secret. Like Go's reader, every call copies
/// secret bytes into the caller's ordinary memory: keep such buffers short-lived and wipe them
/// ([`memcall::wipe_bytes`]).
///
/// - [`SecretReader::read_with_eof`] mirrors Go exactly: the call that delivers the last byte also reports
///   end of data, later calls return `(0, true)`.
/// - As [`io::Read`], end of data is `Ok(0)`; a read after the secret was closed fails with an error whose
///   message is `secret has already been destroyed` (its inner error is [`Error::Closed`]).
///
/// # Copies that wiping does not reach
/// `std::io::copy(&mut reader, &mut out)` passes every byte through std's 8 KiB buffer on the stack, and
/// `read_to_end` into a `Vec` leaves copies in freed heap memory whenever the vector grows, even if the final
/// vector is wiped. Between protected places, copy directly: [`SecretReader::copy_to`] moves the bytes from
/// the secret's pages into a [`SecretStream`]'s locked chunks with no ordinary buffer in between.
pub struct SecretReader<'a> {
    secret: &'a dyn Secret,
    pos: usize,
}

impl<'a> SecretReader<'a> {
    /// A reader at the start of `secret`.
    ///
    /// # Errors
    /// [`Error::Closed`] when the secret is closed already.
    pub fn new(secret: &'a dyn Secret) -> Result<SecretReader<'a>> {
        if secret.is_closed() {
            return Err(Error::Closed);
        }
        Ok(SecretReader { secret, pos: 0 })
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.secret.len().saturating_sub(self.pos)
    }

    /// Copies the next bytes into `buf`; returns how many, and whether the end of the secret was reached (in
    /// the same call that delivered the last byte, as Go's reader does).
    ///
    /// # Errors
    /// [`Error::Closed`] after close; any error of the access window. When the pages could not be made
    /// no-access again after copying, the copied bytes in `buf` are wiped and the position is not advanced.
    pub fn read_with_eof(&mut self, buf: &mut [u8]) -> Result<(usize, bool)> {
        let pos = self.pos;
        if pos >= self.secret.len() {
            // Nothing left to copy: no access window needed, but a closed secret still reports it.
            return if self.secret.is_closed() {
                Err(Error::Closed)
            } else {
                Ok((0, true))
            };
        }
        let mut copied = 0;
        let result = self.secret.with_bytes_dyn(&mut |bytes| {
            let rest = bytes.get(pos..).unwrap_or_default();
            copied = rest.len().min(buf.len());
            buf[..copied].copy_from_slice(&rest[..copied]);
            Ok(())
        });
        if let Err(e) = result {
            memcall::wipe_bytes(&mut buf[..copied]);
            return Err(e);
        }
        self.pos += copied;
        Ok((copied, self.pos >= self.secret.len()))
    }
}

impl SecretReader<'_> {
    /// Copies the rest of the secret into `stream` straight from the secret's pages to the stream's locked
    /// chunk (no ordinary buffer in between), and returns how many bytes were copied.
    ///
    /// # Errors
    /// [`Error::Closed`] after close; any error of the access window or of [`SecretStream::write_secret`]
    /// (the position is then not advanced, and what reached the stream stays there).
    pub fn copy_to(&mut self, stream: &mut SecretStream) -> Result<usize> {
        let pos = self.pos;
        if pos >= self.secret.len() {
            return if self.secret.is_closed() {
                Err(Error::Closed)
            } else {
                Ok(0)
            };
        }
        let mut copied = 0;
        self.secret.with_bytes_dyn(&mut |bytes| {
            let rest = bytes.get(pos..).unwrap_or_default();
            stream.write_secret(rest)?;
            copied = rest.len();
            Ok(())
        })?;
        self.pos += copied;
        Ok(copied)
    }
}

impl io::Read for SecretReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with_eof(buf)
            .map(|(n, _)| n)
            .map_err(io::Error::from)
    }
}

impl fmt::Debug for SecretReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretReader")
            .field("position", &self.pos)
            .field("len", &self.secret.len())
            .finish()
    }
}
