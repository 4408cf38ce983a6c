//! The canary: the slack in front of a buffer's data is filled from a random pattern drawn once per process,
//! and compared with it in constant time when the buffer is destroyed. Anything that writes below the data
//! (an underflow, or a stray write into the slack) changes it; writes past the data hit the guard page at once.
//!
//! Go's memguard draws a fresh canary per buffer and keeps copies at the start of both guard pages. The guard
//! copies cannot change while the guards are no-access, so checking them only costs two protection changes;
//! and drawing a page of randomness per buffer was a large share of allocation time. A per-process pattern
//! (like the stack protector's per-process canary) detects the same corruption.

use std::hint::black_box;
use std::sync::OnceLock;

static PATTERN: OnceLock<Box<[u8]>> = OnceLock::new();

/// The process's canary pattern: one page of random bytes, drawn on first use.
fn pattern() -> Result<&'static [u8], getrandom::Error> {
    if let Some(p) = PATTERN.get() {
        return Ok(p);
    }
    let mut fresh = vec![0u8; memcall::page_size()].into_boxed_slice();
    getrandom::fill(&mut fresh)?;
    // Another thread may have won the race; either pattern is as good, and everyone uses the stored one.
    let _ = PATTERN.set(fresh);
    Ok(PATTERN.get().expect("set above"))
}

/// Fills `slack` (shorter than a page) from the pattern.
pub(crate) fn plant(slack: &mut [u8]) -> Result<(), getrandom::Error> {
    if !slack.is_empty() {
        slack.copy_from_slice(&pattern()?[..slack.len()]);
    }
    Ok(())
}

/// True when `slack` still matches the pattern. Constant time: every byte is compared, and the result is
/// only looked at once, at the end.
pub(crate) fn intact(slack: &[u8]) -> bool {
    if slack.is_empty() {
        return true;
    }
    match PATTERN.get() {
        Some(pattern) => constant_time_eq(slack, &pattern[..slack.len()]),
        // No pattern was ever drawn, yet the slack is non-empty: it was never planted.
        None => false,
    }
}

/// Equality of two equal-length slices without data-dependent branches: every byte is compared, eight
/// independent words at a time (a shape the compiler turns into vector code; a canary is most of a page).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    const LANES: usize = 8;
    const BLOCK: usize = 8 * LANES;
    debug_assert_eq!(a.len(), b.len());
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mut lanes = [0u64; LANES];
    let (mut a_blocks, mut b_blocks) = (a.chunks_exact(BLOCK), b.chunks_exact(BLOCK));
    for (x, y) in (&mut a_blocks).zip(&mut b_blocks) {
        for (lane, acc) in lanes.iter_mut().enumerate() {
            *acc |= word(x, lane * 8) ^ word(y, lane * 8);
        }
    }
    let mut diff = lanes.iter().fold(0, |d, &w| d | w);
    for (x, y) in a_blocks.remainder().iter().zip(b_blocks.remainder()) {
        diff |= u64::from(x ^ y);
    }
    black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_canary_is_intact_and_any_change_is_seen() {
        for slack_len in [0usize, 1, 7, 8, 9, 100, 4095] {
            let mut slack = vec![0u8; slack_len];
            plant(&mut slack).unwrap();
            assert!(intact(&slack));
            for i in 0..slack_len {
                for bit in [0x01, 0x80] {
                    slack[i] ^= bit;
                    assert!(!intact(&slack), "slack byte {i}");
                    slack[i] ^= bit;
                }
            }
            assert!(intact(&slack));
        }
    }

    #[test]
    fn pattern_is_random_and_stable() {
        let a = pattern().unwrap();
        assert!(a.iter().any(|&b| b != 0));
        assert_eq!(a.as_ptr(), pattern().unwrap().as_ptr());
    }
}
