//! Page-level system calls for memory that holds secrets.
//!
//! `memcall` maps whole pages, changes their protection, locks them into RAM, keeps them out of core dumps and
//! forked children where the OS allows, wipes them and unmaps them. It is the lowest layer of the
//! securememory-rs workspace and the only crate in it with broad `unsafe`.
//!
//! The entry point is [`Region`], an owned mapping:
//!
//! ```
//! use memcall::{Protection, Region};
//!
//! let region = Region::alloc(32)?;          // one zeroed, read-write, no-dump, no-fork page
//! assert_eq!(region.len(), memcall::page_size());
//! match region.lock() {                       // never swapped
//!     Ok(()) => {}
//!     Err(e) if e.is_lock_limit() => eprintln!("{e}"), // says which limit and how to raise it
//!     Err(e) => return Err(e.into()),
//! }
//! region.protect(Protection::NoAccess)?;     // unreadable at rest
//! region.free().map_err(|e| e.error)?;        // wiped, then unmapped
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Platform support
//! | OS | no-dump | no-fork | lock limit |
//! |---|---|---|---|
//! | Linux, Android | `MADV_DONTDUMP` | `MADV_DONTFORK` | `RLIMIT_MEMLOCK` (+ `CAP_IPC_LOCK`) |
//! | FreeBSD | `MAP_NOCORE` | `minherit(INHERIT_NONE)` | `RLIMIT_MEMLOCK` |
//! | OpenBSD | `MAP_CONCEAL` | `minherit(MAP_INHERIT_NONE)` | `RLIMIT_MEMLOCK` |
//! | NetBSD | — | `minherit(MAP_INHERIT_NONE)` | `RLIMIT_MEMLOCK` |
//! | macOS | — | `minherit(VM_INHERIT_NONE)` | `RLIMIT_MEMLOCK` |
//! | illumos, Solaris | — | — | `proc_lock_memory` privilege |
//! | Windows | WER exclusion | (no fork) | working-set size, grown on demand |
//!
//! Linux is built and tested; the others are type-checked (see the workspace README).
//!
//! # Forked children
//! A region belongs to the process that mapped it. Its pages are not inherited by a forked child (no-fork
//! advice), and there its address may soon hold the child's own memory. So in a child a parent's [`Region`]
//! refuses every call with [`Error::Forked`] and is forgotten, never unmapped, when freed or dropped; every
//! [`RegionPool`] starts empty; and [`trim_all`](pool::trim_all) frees only what the child cached itself.
//! [`PerProcess`] gives the crates above the same property for their own process-wide state. The child is
//! detected through [`fork_epoch`], which every constructor of such state calls first (installing its
//! `pthread_atfork` handler before the state exists).
//!
//! # Core dumps
//! [`disable_core_dumps`] turns core files off for the whole process (the reference Go library does this on
//! import). Per-region exclusion ([`Hardening::no_dump`]) protects secrets even when core dumps stay on.
//!
//! # Features
//! - `fault-injection`: the [`fault`] module, which makes chosen operations fail on the current thread so the
//!   error paths of this crate and the crates above it can be tested. Not for production builds.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(unix)]
mod env;
mod error;
#[cfg(feature = "fault-injection")]
#[cfg_attr(docsrs, doc(cfg(feature = "fault-injection")))]
pub mod fault;
mod fork;
mod limits;
mod os;
pub mod pkey;
pub mod pool;
mod region;
pub mod secretmem;
mod wipe;

#[cfg(unix)]
#[cfg_attr(docsrs, doc(cfg(unix)))]
pub use env::take_env_var;
pub use error::{Error, Op, Result};
pub use fork::{fork_epoch, PerProcess};
#[cfg(all(unix, not(any(target_os = "illumos", target_os = "solaris"))))]
pub use limits::set_lock_limit;
pub use limits::{disable_core_dumps, lock_limit, locked_bytes, Limit, LockLimit};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use limits::{drop_lock_exemption, is_dumpable, set_dumpable};
pub use pool::{Acquired, LockMode, RegionPool};
pub use region::{round_to_pages, FreeError, Hardening, Outcome, Protection, Region};
pub use secretmem::Backing;
pub use wipe::wipe_bytes;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The size of a memory page in bytes.
pub fn page_size() -> usize {
    os::page_size()
}

#[cfg(feature = "fault-injection")]
pub(crate) fn fault_check(op: Op) -> Option<std::io::Error> {
    fault::check(op)
}

/// True when a test armed a failure of `op` on this thread (feature `fault-injection`); always false
/// otherwise. Caches of ready-made pages (here and in the crates above) then take their uncached path, so an
/// injected failure is reached exactly as it would be without the cache.
#[cfg(feature = "fault-injection")]
// Exists with and without the feature: no "available on" note.
#[cfg_attr(docsrs, doc(auto_cfg = false))]
pub fn fault_armed(op: Op) -> bool {
    fault::armed(op)
}

/// True when a test armed a failure of `op` on this thread (feature `fault-injection`); always false
/// otherwise. Caches of ready-made pages (here and in the crates above) then take their uncached path, so an
/// injected failure is reached exactly as it would be without the cache.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn fault_armed(_op: Op) -> bool {
    false
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn fault_check(_op: Op) -> Option<std::io::Error> {
    None
}
