//! Typed views on buffer guards: fixed arrays by reference, integer slices only where aligned.

use crate::core::access::{ReadGuard, WriteGuard};
pub use crate::core::views::Plain;
use crate::core::views::{cast, cast_mut};

macro_rules! read_views {
    ($guard:ty) => {
        impl $guard {
            /// The first `N` bytes as an array, or `None` when the buffer is shorter.
            pub fn as_array<const N: usize>(&self) -> Option<&[u8; N]> {
                self.get(..N)?.try_into().ok()
            }

            /// The first 8 bytes (Go's `ByteArray8`).
            pub fn byte_array8(&self) -> Option<&[u8; 8]> {
                self.as_array()
            }

            /// The first 16 bytes (Go's `ByteArray16`).
            pub fn byte_array16(&self) -> Option<&[u8; 16]> {
                self.as_array()
            }

            /// The first 32 bytes (Go's `ByteArray32`).
            pub fn byte_array32(&self) -> Option<&[u8; 32]> {
                self.as_array()
            }

            /// The first 64 bytes (Go's `ByteArray64`).
            pub fn byte_array64(&self) -> Option<&[u8; 64]> {
                self.as_array()
            }

            /// The data as a slice of `T` (trailing bytes short of a whole `T` left out), or `None` when the
            /// data is not aligned for `T` or shorter than one `T`. The data is right-aligned against a page
            /// end, so it is aligned for `T` exactly when its size is a multiple of `T`'s alignment.
            pub fn as_slice_of<T: Plain>(&self) -> Option<&[T]> {
                cast(self)
            }

            /// [`as_slice_of::<u16>`](Self::as_slice_of) (Go's `Uint16`).
            pub fn as_u16s(&self) -> Option<&[u16]> {
                cast(self)
            }

            /// [`as_slice_of::<u32>`](Self::as_slice_of) (Go's `Uint32`).
            pub fn as_u32s(&self) -> Option<&[u32]> {
                cast(self)
            }

            /// [`as_slice_of::<u64>`](Self::as_slice_of) (Go's `Uint64`).
            pub fn as_u64s(&self) -> Option<&[u64]> {
                cast(self)
            }

            /// [`as_slice_of::<i8>`](Self::as_slice_of) (Go's `Int8`).
            pub fn as_i8s(&self) -> Option<&[i8]> {
                cast(self)
            }

            /// [`as_slice_of::<i16>`](Self::as_slice_of) (Go's `Int16`).
            pub fn as_i16s(&self) -> Option<&[i16]> {
                cast(self)
            }

            /// [`as_slice_of::<i32>`](Self::as_slice_of) (Go's `Int32`).
            pub fn as_i32s(&self) -> Option<&[i32]> {
                cast(self)
            }

            /// [`as_slice_of::<i64>`](Self::as_slice_of) (Go's `Int64`).
            pub fn as_i64s(&self) -> Option<&[i64]> {
                cast(self)
            }
        }
    };
}

read_views!(ReadGuard<'_>);
read_views!(WriteGuard<'_>);

impl WriteGuard<'_> {
    /// The first `N` bytes as a mutable array, or `None` when the buffer is shorter.
    pub fn as_array_mut<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        self.get_mut(..N)?.try_into().ok()
    }

    /// The data as a mutable slice of `T`, under the rules of [`as_slice_of`](Self::as_slice_of).
    pub fn as_slice_of_mut<T: Plain>(&mut self) -> Option<&mut [T]> {
        cast_mut(self)
    }
}
