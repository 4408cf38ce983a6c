//! The canary: random bytes filling the slack in front of a buffer's data, with copies at the start of both
//! guard pages. Anything that writes below the data (an underflow) changes the slack; anything that somehow
//! writes a guard page changes a copy. Checked in constant time when the buffer is destroyed.

use subtle::ConstantTimeEq;

/// Fills `slack` with random bytes and copies them to the start of both guard pages.
pub(crate) fn plant(
    pre_guard: &mut [u8],
    slack: &mut [u8],
    post_guard: &mut [u8],
) -> Result<(), getrandom::Error> {
    if slack.is_empty() {
        return Ok(());
    }
    getrandom::fill(slack)?;
    pre_guard[..slack.len()].copy_from_slice(slack);
    post_guard[..slack.len()].copy_from_slice(slack);
    Ok(())
}

/// True when both guard pages are identical and their leading copy matches the slack, compared in constant
/// time (Go memguard's check).
pub(crate) fn intact(pre_guard: &[u8], slack: &[u8], post_guard: &[u8]) -> bool {
    let guards_equal = pre_guard.ct_eq(post_guard);
    let slack_equal = pre_guard[..slack.len()].ct_eq(slack);
    bool::from(guards_equal & slack_equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_canary_is_intact_and_any_change_is_seen() {
        for slack_len in [0usize, 1, 7, 100] {
            let mut pre = vec![0u8; 128];
            let mut post = vec![0u8; 128];
            let mut slack = vec![0u8; slack_len];
            plant(&mut pre, &mut slack, &mut post).unwrap();
            assert!(intact(&pre, &slack, &post));
            for i in 0..slack_len {
                slack[i] ^= 1;
                assert!(!intact(&pre, &slack, &post), "slack byte {i}");
                slack[i] ^= 1;
            }
            post[127] ^= 0x80;
            assert!(!intact(&pre, &slack, &post));
            post[127] ^= 0x80;
            pre[0] ^= 4;
            assert!(!intact(&pre, &slack, &post));
        }
    }
}
