//! Getting a secret in without a copy in ordinary memory: readers of unknown length and standard input.
//!
//! [`SecretFactory::from_reader`] and [`SecretFactory::from_reader_to_end`] read straight into locked pages; what
//! they cannot control is the reader itself. A buffered reader (`std::io::stdin()`, `BufReader`) keeps its own
//! copy of what passes through it, so open standard input unbuffered with [`stdin_unbuffered`].

use std::io::Read;

use crate::error::{Error, Result};
use crate::mg::LockedBuffer;
use crate::SecretFactory;

/// The first scratch buffer of a read of unknown length; it doubles as the input grows.
const FIRST_SCRATCH: usize = 4096;

/// Standard input as an unbuffered reader (a duplicate of file descriptor 0, or the standard input handle on
/// Windows): each read goes straight from the OS into the caller's buffer.
///
/// # Errors
/// When the descriptor cannot be duplicated.
#[cfg(unix)]
pub fn stdin_unbuffered() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        std::io::stdin().as_fd().try_clone_to_owned()?,
    ))
}

/// Standard input as an unbuffered reader (a duplicate of file descriptor 0, or the standard input handle on
/// Windows): each read goes straight from the OS into the caller's buffer.
///
/// # Errors
/// When the handle cannot be duplicated.
#[cfg(windows)]
pub fn stdin_unbuffered() -> std::io::Result<std::fs::File> {
    use std::os::windows::io::AsHandle;
    Ok(std::fs::File::from(
        std::io::stdin().as_handle().try_clone_to_owned()?,
    ))
}

/// Reads `reader` to its end into locked scratch buffers that double as needed (each copy goes from locked
/// pages to locked pages), then moves the bytes into a secret of exactly their length.
pub(crate) fn read_to_end<F: SecretFactory + ?Sized, R: Read + ?Sized>(
    factory: &F,
    reader: &mut R,
    max_len: usize,
) -> Result<F::Secret> {
    // One byte past the limit tells "exactly max_len" from "longer".
    let limit = max_len
        .checked_add(1)
        .ok_or(Error::InvalidLength { len: max_len })?;
    let mut scratch = LockedBuffer::new(FIRST_SCRATCH.min(limit))?;
    let mut filled = 0;
    loop {
        if filled == scratch.size() {
            if filled == limit {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("the input is longer than the limit of {max_len} bytes"),
                )));
            }
            scratch = grow(scratch, filled, limit)?;
        }
        let n = {
            let mut bytes = scratch.bytes_mut()?;
            match reader.read(&mut bytes[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        };
        if n == 0 {
            break;
        }
        filled += n;
    }
    if filled == 0 {
        return Err(Error::InvalidLength { len: 0 });
    }
    let bytes = scratch.bytes()?;
    factory.create_with(filled, &mut |pages| {
        pages.copy_from_slice(&bytes[..filled]);
        Ok(())
    })
}

/// A scratch buffer twice as large (at most `limit`) holding the first `filled` bytes of `old`, which is
/// destroyed (wiped).
fn grow(mut old: LockedBuffer, filled: usize, limit: usize) -> Result<LockedBuffer> {
    let mut new = LockedBuffer::new(filled.saturating_mul(2).min(limit))?;
    new.bytes_mut()?[..filled].copy_from_slice(&old.bytes()?[..filled]);
    old.destroy()?;
    Ok(new)
}
