//! Typed views of a buffer's bytes: fixed-size arrays by reference, and integer slices where the data is
//! aligned for them (Go's memguard builds these without checking alignment).

use std::mem::{align_of, size_of};

mod sealed {
    pub trait Sealed {}
}

/// Integer types a buffer can be viewed as: every bit pattern is a valid value and there is no padding.
pub trait Plain: sealed::Sealed + Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Plain for $t {}
    )*};
}
plain!(u16, u32, u64, i8, i16, i32, i64);

/// `bytes` as `&[T]` (trailing bytes that do not fill a whole `T` are left out), or `None` when the start is
/// not aligned for `T` or not even one `T` fits.
pub(crate) fn cast<T: Plain>(bytes: &[u8]) -> Option<&[T]> {
    let n = bytes.len() / size_of::<T>();
    if n == 0 || bytes.as_ptr() as usize % align_of::<T>() != 0 {
        return None;
    }
    // SAFETY:
    // - the pointer is aligned for `T` (checked) and `n * size_of::<T>() <= bytes.len()`, so the new slice
    //   covers only initialised bytes of `bytes`;
    // - `T: Plain` is an integer type: every bit pattern is valid and it has no padding or drop glue;
    // - the returned slice borrows `bytes`, so it cannot outlive it or coexist with a mutable borrow.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), n) })
}

/// Mutable form of [`cast`].
pub(crate) fn cast_mut<T: Plain>(bytes: &mut [u8]) -> Option<&mut [T]> {
    let n = bytes.len() / size_of::<T>();
    if n == 0 || bytes.as_ptr() as usize % align_of::<T>() != 0 {
        return None;
    }
    // SAFETY: as `cast`; the exclusive borrow of `bytes` moves to the returned slice, and any `T` written is
    // a valid sequence of bytes.
    Some(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_respect_alignment_and_drop_the_remainder() {
        let words = [0x0102_0304_0506_0708u64, 0x1112_1314_1516_1718u64];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut storage = vec![0u64; 4];
        let raw: &mut [u8] = {
            let p = storage.as_mut_ptr().cast::<u8>();
            // SAFETY: `storage` is 32 initialised bytes, 8-aligned, borrowed mutably here only.
            unsafe { std::slice::from_raw_parts_mut(p, 32) }
        };
        raw[..16].copy_from_slice(&bytes);
        assert_eq!(cast::<u64>(&raw[..16]).unwrap(), &words);
        assert_eq!(cast::<u64>(&raw[..15]).unwrap().len(), 1);
        assert!(cast::<u64>(&raw[..7]).is_none());
        assert!(cast::<u64>(&raw[1..17]).is_none());
        assert!(cast::<u16>(&raw[1..5]).is_none());
        assert_eq!(cast::<u16>(&raw[2..7]).unwrap().len(), 2);
        assert_eq!(cast::<i8>(&raw[1..4]).unwrap().len(), 3);
        cast_mut::<u32>(&mut raw[4..12]).unwrap()[0] = u32::MAX;
        assert_eq!(&raw[4..8], &[0xff; 4]);
    }
}
