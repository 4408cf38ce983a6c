//! Guarded buffers, encrypted enclaves with a rotating key, streams, purge and signal handling: a Rust port of
//! Go's `awnumar/memguard` (v0.23.0) without its failure modes.
//!
//! - [`LockedBuffer`]: secret bytes in their own pages, `[guard][canary … data][guard]`, locked into RAM, kept
//!   out of core dumps and forked children, wiped and released on drop. Bytes are reached through guards or
//!   closures that cannot outlive the buffer.
//! - [`Enclave`]: a secret encrypted (XChaCha20-Poly1305) in ordinary memory under one process-wide key, which
//!   is itself kept split across locked pages and re-split every 500 ms ([`Coffer`]).
//! - [`Stream`]: `io::Read` + `io::Write` over a queue of sealed 16 KiB chunks, for payloads too large to keep
//!   in locked memory at once.
//! - [`purge`], [`safe_exit`], [`safe_panic`], [`catch_interrupt`], [`catch_signal`]: wipe everything before
//!   the process goes away.
//! - [`GuardedRegion`], [`register`] and [`Purgeable`]: the building blocks, for crates that manage their own
//!   protection on top.
//!
//! ```
//! use memguard::{Enclave, LockedBuffer};
//!
//! let mut key = *b"an example 32-byte secret value!";
//! let buf = LockedBuffer::from_bytes(&mut key)?; // moved: `key` is wiped, the buffer is read-only
//! assert_eq!(key, [0u8; 32]);
//! let first = buf.bytes()?.byte_array32().map(|k| k[0]);
//! assert_eq!(first, Some(b'a'));
//!
//! let sealed: Enclave = buf.seal()?; // encrypted in place, the buffer destroyed
//! let opened = sealed.open()?; // decrypted into a fresh locked buffer
//! assert!(opened.equal_to(b"an example 32-byte secret value!"));
//! # Ok::<(), memguard::Error>(())
//! ```
//!
//! # What differs from Go
//! - [`purge`], [`safe_exit`] and caught signals never hang: accesses on other threads are waited for at most
//!   [`PURGE_GRACE`], then their buffers are wiped in place and made no-access under them; the exit paths also
//!   wipe an access on the calling thread at once. A leaked guard is [`Error::StillAccessed`] where the lock is
//!   needed, never a deadlock.
//! - [`LockedBuffer::from_reader_until`] returns the bytes read with an `UnexpectedEof` error when the input
//!   ends before the delimiter (Go: the bytes with `io.EOF`; empty input: Go a null buffer with `io.EOF`, here
//!   the error with no bytes); see [`ReadError::ended_early`].
//! - A forked child that did not call `catch_signal` itself gets the default action for the signals its parent
//!   caught (Go's handler thread would not exist there either, and the signal would be swallowed).
//! - Every failure is an [`Error`] value: Go panics on any syscall failure and then purges every buffer in the
//!   process; here one failed allocation affects nobody else. A zero size is [`Error::InvalidLength`], not an
//!   inert "null buffer". Memory-lock exhaustion says which limit was hit and how to raise it.
//! - A canary mismatch at destroy is [`Error::CanaryCorrupted`], after the pages are wiped and released (Go
//!   panics and leaves them mapped and locked).
//! - Failed [`Enclave::open`] leaks nothing (Go leaks two locked buffers); plaintext only ever appears inside
//!   locked memory (Go decrypts on the heap first); every intermediate hash of the key split is wiped; the
//!   rekey thread stops on [`purge`] and on request ([`stop_rekeying`]).
//! - Ciphertexts are bound to where they belong (associated data): an enclave's to that enclave, a stream
//!   chunk's to its stream and position, so moving, reordering, dropping or cutting off ciphertext is an
//!   [`Error::DecryptionFailed`], not another secret. The format is XChaCha20-Poly1305 (IETF), not NaCl
//!   secretbox; the 40-byte overhead is the same.
//! - After `fork()`, the child has its own enclave key: the parent's enclaves give [`Error::Forked`] there,
//!   and the parent's key pages and rekeying thread are never touched.
//! - Signal handling chains with the process's other handlers (Go resets them all).
//! - Typed views check alignment; [`LockedBuffer::with_str`] replaces Go's `String()`, which aliased the
//!   protected memory past the buffer's life.
//! - The canary is compared against a per-process random pattern rather than per-buffer copies in the guard
//!   pages (which cannot change while no-access, so checking them only cost two protection changes).
//!
//! # Platform support
//! Linux is built and tested. Other Unix systems and Windows get what [`memcall`] offers there; signal
//! handling is Unix-only.
//!
//! # Where the enclave key lives while it is used
//! The enclave key (and a [`Coffer`]'s key) is assembled, and the cipher runs, on a small private stack in
//! locked, no-dump, no-fork pages with a guard page below it; the used part is wiped after each operation and
//! the vector and caller-saved registers are cleared before the thread returns to its own stack. So no core
//! dump, forked child or swap file sees the key or its schedule, not even from a thread caught mid-seal.
//! This stack switch exists on x86_64 and aarch64 Unix. On other targets (Windows, other architectures) the
//! operation runs on the calling thread's stack: the key and cipher state are there for the few microseconds
//! an operation lasts and are not wiped from it afterwards. At the memlock limit the private stack is used
//! unlocked (still no-dump and no-fork; a warning is logged once) rather than failing the operation.
//!
//! What cannot be controlled: registers saved by the kernel when a thread is interrupted in the middle of an
//! operation (a core dump written at that instant holds the interrupted thread's registers), and copies made
//! by code outside this crate, such as the dynamic linker saving vector registers on the stack the first time
//! a library function is called. The crate clears vector registers after its own plaintext copies where it
//! controls them.
//!
//! # Core dumps
//! Every region is excluded from core dumps where the OS allows ([`memcall::Hardening`]), and so is the
//! private stack the keyed operations run on. Used alone, this crate does not switch core dumps off
//! process-wide, by choice: that is a process-wide decision an application (or its crash reporting) may depend
//! on, and with every secret page excluded individually a core file holds no secret this crate manages.
//! Plaintext the application copies out (its own buffers, [`std::io::Read`] output) is ordinary memory and
//! does go into a core file; call [`memcall::disable_core_dumps`] to switch dumps off as well. The
//! `securememory` crate does that by default.
//!
//! # Locked memory
//! Each buffer locks its data pages, rounded up to whole pages (a 32-byte secret locks 4 KiB and maps two
//! more guard pages). [`Locking::Required`] is the default; [`LockedBuffer::with_locking`] with
//! [`Locking::BestEffort`] tolerates a lock failure and reports it through [`LockedBuffer::is_locked`].

// All unsafe code lives in the private `core` module; the lint keeps it there.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod buffer_io;
#[allow(unsafe_code)]
mod core;
mod enclave;
mod error;
mod locked_buffer;
mod purge;
pub mod sealing;
mod signals;
mod stream;
mod util;
mod views;

pub use crate::core::access::{ReadGuard, WriteGuard};
pub use crate::core::coffer::{Coffer, REKEY_INTERVAL};
pub use crate::core::pool::trim as trim_cache;
pub use crate::core::region::{DestroyError, GuardedRegion, Locking};
pub use crate::core::registry::{
    register, registered_count, PurgeRequest, Purgeable, Registration, PURGE_GRACE,
};
pub use buffer_io::ReadError;
pub use enclave::{is_rekeying, rekey, stop_rekeying, Enclave, OVERHEAD};
pub use error::{Error, Result};
pub use locked_buffer::LockedBuffer;
pub use purge::purge;
#[cfg(unix)]
pub use signals::{catch_interrupt, catch_signal};
pub use signals::{safe_exit, safe_panic, SIGNAL_EXIT_CODE};
pub use stream::{stream_chunk_size, Stream};
pub use util::{scramble_bytes, wipe_bytes};
pub use views::Plain;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
