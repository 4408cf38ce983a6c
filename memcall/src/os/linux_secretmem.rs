//! Linux `memfd_secret(2)` (5.14+): pages the kernel removes from its direct map, so nothing but the process
//! that maps them can read them: not `/proc/<pid>/mem`, `process_vm_readv`, `ptrace`, core dumps nor root.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The syscall number: new syscalls share one number on every architecture since 5.1 (x86_64, aarch64, i386,
/// riscv, ...), and `libc` only has the constant in recent versions.
const SYS_MEMFD_SECRET: libc::c_long = 447;

/// A fresh secret-memory file of `len` bytes, close-on-exec.
fn create(len: usize) -> io::Result<OwnedFd> {
    // SAFETY: memfd_secret takes only a flags integer and returns a new descriptor or -1; it touches no memory
    // of ours.
    let fd = unsafe { libc::syscall(SYS_MEMFD_SECRET, libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: `fd` is the descriptor just returned, open and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: ftruncate on our own descriptor only sets the file's size.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Whether `memfd_secret` works: a descriptor can be made (nothing is mapped, nothing charged).
pub(crate) fn probe() -> io::Result<()> {
    create(0).map(drop)
}

/// Maps `len` bytes of a fresh secret-memory file, read-write and shared, and closes the descriptor (the
/// mappings keep the file alive; when the last of them goes the kernel frees the pages, so no descriptor is ever
/// left for a child program to inherit).
///
/// Each page is a mapping of its own, of the file's pages in reverse order: two neighbouring pages are never
/// consecutive in the file, so the kernel never merges them into one mapping, and changing the protection of one
/// secret's pages is a plain page-table update instead of a split and merge of a large mapping.
///
/// The whole range is charged to `RLIMIT_MEMLOCK` as it is mapped; at the limit the error is `EAGAIN` and
/// nothing stays mapped.
///
/// # Safety
/// `len` must be a non-zero multiple of `page`, and `page` the page size.
pub(crate) unsafe fn map_area(len: usize, page: usize) -> io::Result<*mut u8> {
    let fd = create(len)?;
    // SAFETY: a fresh anonymous no-access reservation at an address of the kernel's choosing touches no existing
    // memory; it is replaced page by page below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let pages = len / page;
    for i in 0..pages {
        // SAFETY: `i < pages`, so the address is inside the reservation.
        let addr = unsafe { base.cast::<u8>().add(i * page) };
        // At most `len`, which `create` checked fits in `off_t`.
        let offset = ((pages - 1 - i) * page) as libc::off_t;
        // SAFETY: MAP_FIXED replaces one page of the reservation made above, which nothing else uses.
        let p = unsafe {
            libc::mmap(
                addr.cast(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            // SAFETY: `base..base+len` is the reservation (and the pages mapped over it), used by nothing else.
            unsafe { libc::munmap(base, len) };
            return Err(err);
        }
    }
    Ok(base.cast())
}
