//! Memory protection keys: pages that no thread can read or write except inside a short, per-thread access
//! window, opened and closed without a system call.
//!
//! On Linux on x86_64 CPUs with protection keys (`pku` and `ospke` in `/proc/cpuinfo`), [`ProtectionKey`]
//! tags pages with a key whose access is disabled in every thread's `PKRU` register. [`ProtectionKey::with_access`]
//! enables it on the calling thread only, for the duration of one closure (a `WRPKRU` instruction each way,
//! tens of nanoseconds against about 1.6 µs for an `mprotect` pair), so a stray read of the pages from any
//! other thread, or from this one outside the window, faults. A signal handler runs with the kernel's default
//! `PKRU`, in which the key is disabled, even when the signal interrupts a window.
//!
//! Elsewhere (other CPUs and operating systems, kernels without the feature, valgrind, containers whose seccomp
//! filter refuses `pkey_alloc`) [`ProtectionKey::get`] returns `None` and callers fall back to `mprotect`. So
//! does a process started with [`DISABLE_ENV`] set (for programs that manage protection keys themselves).
//!
//! # Lifecycle
//! - One key per process, allocated on first use and never freed (the CPU has 15).
//! - A forked child inherits the allocation and every thread's `PKRU`, so it keeps using the same key number;
//!   pages tagged in the parent are not in the child when they carry no-fork advice.
//! - A thread created inside a window would inherit the open window, so windows must only run code of this
//!   crate's callers that creates no threads (a key schedule, a copy), never user code.
//! - Pages must be handed back with [`ProtectionKey::untag`] before they are wiped or freed through
//!   [`Region`], whose wipe writes would otherwise fault.

use crate::error::Result;
use crate::region::Region;

/// Set (to any value) in the environment at the first use, this variable turns protection keys off for the
/// process: callers then use their `mprotect` fallback.
pub const DISABLE_ENV: &str = "SECUREMEMORY_DISABLE_PKEYS";

/// The protection key of this process (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectionKey {
    key: u32,
}

impl ProtectionKey {
    /// This process's key, allocated on first use; `None` where protection keys are unavailable.
    pub fn get() -> Option<ProtectionKey> {
        imp::process_key().map(|key| ProtectionKey { key })
    }

    /// The key's number (1 to 15).
    pub fn number(self) -> u32 {
        self.key
    }

    /// Tags the whole of `region` with this key, read-write: from now on only [`with_access`](Self::with_access)
    /// windows can touch it.
    ///
    /// # Errors
    /// [`Error::Os`](crate::Error::Os) with [`Op::Protect`](crate::Op::Protect); [`Error::Forked`](crate::Error::Forked) in a forked child.
    pub fn tag(self, region: &Region) -> Result<()> {
        tag_region(region, self.key)
    }

    /// Gives `region` back to the default key (read-write, accessible to every thread), before it is wiped and
    /// freed.
    ///
    /// # Errors
    /// As [`tag`](Self::tag).
    pub fn untag(region: &Region) -> Result<()> {
        tag_region(region, 0)
    }

    /// Runs `f` with this key's pages readable and writable on the calling thread only, then disables them
    /// again (also when `f` panics). Windows nest.
    ///
    /// `f` must not create threads: they would start with the window open.
    pub fn with_access<R>(self, f: impl FnOnce() -> R) -> R {
        let previous = imp::allow(self.key);
        let _restore = Restore(previous);
        f()
    }
}

fn tag_region(region: &Region, key: u32) -> Result<()> {
    let (p, l) = region.range(0, region.len())?;
    // SAFETY: `p..p+l` is the region's own mapping (`range` refuses a forked child's inherited handle); changing
    // its protection key has no effect on memory safety by itself, only on which accesses fault.
    unsafe { imp::tag(p, l, key) }
        .map_err(|e| crate::Error::os(crate::Op::Protect, p as usize, l, e))
}

/// Puts the thread's previous access rights back on drop.
struct Restore(u32);

impl Drop for Restore {
    fn drop(&mut self) {
        imp::restore(self.0);
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::io;
    use std::sync::OnceLock;

    const PKEY_DISABLE_ACCESS: libc::c_ulong = 1;

    /// Not per-process on purpose: a forked child inherits the allocation and keeps using the key.
    static KEY: OnceLock<Option<u32>> = OnceLock::new();

    pub(super) fn process_key() -> Option<u32> {
        *KEY.get_or_init(alloc)
    }

    // `__cpuid` is an unsafe fn before Rust 1.87 (the MSRV is older) and safe after.
    #[allow(unused_unsafe)]
    fn cpu_has_pku() -> bool {
        // CPUID leaf 7, subleaf 0: ECX bit 3 = PKU, bit 4 = OSPKE (the OS enabled it).
        // SAFETY: CPUID is available on every x86_64 CPU; leaf 7 returns zeros where unsupported.
        let max = unsafe { std::arch::x86_64::__cpuid(0) }.eax;
        if max < 7 {
            return false;
        }
        // SAFETY: as above; leaf 7 is within the maximum leaf.
        let ecx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.ecx;
        ecx & (1 << 3) != 0 && ecx & (1 << 4) != 0
    }

    fn alloc() -> Option<u32> {
        if std::env::var_os(super::DISABLE_ENV).is_some() || !cpu_has_pku() {
            return None;
        }
        // SAFETY: `pkey_alloc(flags = 0, access = disable)` allocates a key and disables it on this thread; it
        // touches no memory of ours.
        let key = unsafe {
            libc::syscall(
                libc::SYS_pkey_alloc,
                0 as libc::c_ulong,
                PKEY_DISABLE_ACCESS,
            )
        };
        if key <= 0 || key > 15 {
            return None;
        }
        let key = key as u32;
        // Every other thread starts with the kernel's default rights, in which keys 1-15 are disabled, unless
        // something in the process changed its own PKRU. Check that this thread now has the key disabled.
        if rights(rdpkru(), key) & 1 == 0 {
            return None;
        }
        Some(key)
    }

    fn rights(pkru: u32, key: u32) -> u32 {
        (pkru >> (2 * key)) & 3
    }

    fn rdpkru() -> u32 {
        let eax: u32;
        // SAFETY: RDPKRU (with ECX = 0) reads the PKRU register; it exists because the CPU has PKU and the OS
        // enabled it (checked before any key was handed out).
        unsafe {
            std::arch::asm!("rdpkru", in("ecx") 0u32, out("eax") eax, out("edx") _, options(nomem, nostack, preserves_flags));
        }
        eax
    }

    fn wrpkru(value: u32) {
        // SAFETY: WRPKRU (with ECX = EDX = 0) writes the PKRU register, as above. Not `nomem`: loads and stores
        // of the keyed pages must not move across it.
        unsafe {
            std::arch::asm!("wrpkru", in("eax") value, in("ecx") 0u32, in("edx") 0u32, options(nostack, preserves_flags));
        }
    }

    pub(super) fn allow(key: u32) -> u32 {
        let previous = rdpkru();
        wrpkru(previous & !(3 << (2 * key)));
        previous
    }

    pub(super) fn restore(previous: u32) {
        wrpkru(previous);
    }

    /// # Safety
    /// `ptr..ptr+len` must be a page-aligned range mapped by this process.
    pub(super) unsafe fn tag(ptr: *mut u8, len: usize, key: u32) -> io::Result<()> {
        // SAFETY: forwarded precondition; `pkey_mprotect` only changes protection and key.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pkey_mprotect,
                ptr,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                key as libc::c_int,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod imp {
    use std::io;

    pub(super) fn process_key() -> Option<u32> {
        None
    }

    // Unreachable without a key: `ProtectionKey` values exist only where `process_key` returned one.
    pub(super) fn allow(_key: u32) -> u32 {
        0
    }

    pub(super) fn restore(_previous: u32) {}

    /// # Safety
    /// None needed: this platform has no protection keys.
    pub(super) unsafe fn tag(_ptr: *mut u8, _len: usize, _key: u32) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_pages_are_readable_inside_a_window_only_on_this_thread() {
        let Some(key) = ProtectionKey::get() else {
            eprintln!("no protection keys here: nothing to test");
            return;
        };
        let region = Region::alloc(64).unwrap();
        key.tag(&region).unwrap();
        let p = region.as_ptr();
        // SAFETY: the window is open on this thread and the region is read-write.
        key.with_access(|| unsafe { p.write_volatile(42) });
        // SAFETY: as above.
        let v = key.with_access(|| unsafe { p.read_volatile() });
        assert_eq!(v, 42);
        // Nested windows restore the outer one.
        key.with_access(|| {
            key.with_access(|| {});
            // SAFETY: still inside the outer window.
            assert_eq!(unsafe { p.read_volatile() }, 42);
        });
        ProtectionKey::untag(&region).unwrap();
        region.free().map_err(|e| e.error).unwrap();
    }
}
