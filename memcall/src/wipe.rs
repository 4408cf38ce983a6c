//! Zeroing that the compiler may not remove.

use std::sync::atomic::{compiler_fence, Ordering};

/// Overwrites `buf` with zeros using volatile stores (a word at a time where aligned), so the writes survive
/// optimisation even when `buf` is never read again.
pub fn wipe_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is a valid, writable, exclusively borrowed slice of `buf.len()` bytes.
    unsafe { wipe_raw(buf.as_mut_ptr(), buf.len()) }
}

/// # Safety
/// `ptr..ptr+len` must be valid for writes (mapped read-write) and not accessed concurrently.
pub(crate) unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    const WORD: usize = std::mem::size_of::<u64>();
    let head = ptr.align_offset(WORD).min(len);
    let words = (len - head) / WORD;
    let tail = len - head - words * WORD;
    for i in 0..head {
        // SAFETY: `i < head <= len`, so the byte is inside the caller's writable range.
        unsafe { ptr.add(i).write_volatile(0) };
    }
    // SAFETY: `head <= len`; `ptr + head` is 8-byte aligned (by `align_offset`) unless `head == len`, in
    // which case `words == 0` and the pointer is never dereferenced.
    let wptr = unsafe { ptr.add(head) }.cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` covers bytes `head + 8i .. head + 8i + 8 <= len`, aligned as shown above.
        unsafe { wptr.add(i).write_volatile(0) };
    }
    let tail_start = head + words * WORD;
    for i in 0..tail {
        // SAFETY: `tail_start + i < len`.
        unsafe { ptr.add(tail_start + i).write_volatile(0) };
    }
    compiler_fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::wipe_bytes;

    #[test]
    fn wipes_every_offset_and_length() {
        let mut buf = [0xAAu8; 64];
        for start in 0..9 {
            for len in 0..40 {
                buf.fill(0xAA);
                wipe_bytes(&mut buf[start..start + len]);
                assert!(buf[start..start + len].iter().all(|&b| b == 0));
                assert!(buf[..start].iter().all(|&b| b == 0xAA));
                assert!(buf[start + len..].iter().all(|&b| b == 0xAA));
            }
        }
    }
}
