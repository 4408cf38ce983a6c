//! Helpers on ordinary memory.

use crate::error::Result;

/// Fills `buf` with random bytes from the OS (`getrandom`).
///
/// # Errors
/// [`Error::Random`](crate::Error::Random) when the OS generator fails (Go's memguard panics instead).
pub fn scramble_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)?;
    Ok(())
}

/// Overwrites `buf` with zeros, with writes the compiler cannot remove.
pub fn wipe_bytes(buf: &mut [u8]) {
    memcall::wipe_bytes(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scramble_then_wipe() {
        let mut buf = [0u8; 64];
        scramble_bytes(&mut buf).unwrap();
        // 64 random bytes are all zero with probability 2^-512.
        assert!(buf.iter().any(|&b| b != 0));
        wipe_bytes(&mut buf);
        assert_eq!(buf, [0u8; 64]);
    }
}
