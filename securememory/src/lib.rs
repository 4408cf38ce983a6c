//! Secrets in memory that is never swapped, never dumped, unreadable except inside a short access window,
//! and wiped on release: the Rust port of GoDaddy's `securememory`.
//!
//! ```
//! use securememory::{ProtectedMemorySecretFactory, Secret, SecretExtensions, SecretFactory};
//!
//! let factory = ProtectedMemorySecretFactory::new();
//! let mut key = *b"thisismy32bytesecretthatiwilluse";
//! let secret = factory.new(&mut key)?;           // copied into locked pages; `key` is wiped
//! assert_eq!(key, [0u8; 32]);
//! let len = secret.with_bytes(|bytes| Ok(bytes.len()))?; // readable only inside the closure
//! assert_eq!(len, 32);
//! secret.close()?;                               // wiped, unlocked, unmapped
//! # Ok::<(), securememory::Error>(())
//! ```
//!
//! # Flavours
//! - [`protected_memory`]: whole pages of its own per secret, data at offset 0.
//! - [`mod@memguard`]: guard pages before and after, and a canary checked on close.
//! - [`sealed`]: encrypted at rest in ordinary memory, decrypted into locked scratch pages only while closures
//!   run; no locked page or mapping per secret, so the memlock limit does not bound how many you hold.
//!
//! All three share one access state machine: the first closure to enter makes the pages readable (a sealed
//! secret: decrypts it), the last to leave makes them no-access again (wipes the copy); closures in between
//! cost one atomic operation. `close` refuses new closures, waits for running ones, then wipes and frees.
//!
//! # Core dumps
//! Creating the first factory in a process disables core dumps for the whole process (soft and hard
//! `RLIMIT_CORE` set to 0), as the Go library does on import. To keep them, call [`keep_core_dumps`] before
//! creating any factory, or set the environment variable `SECUREMEMORY_KEEP_CORE_DUMPS=1`. Either way every
//! secret's pages are excluded from core dumps individually where the OS allows it (see
//! [`ProtectionReport::no_dump`]).
//!
//! # Locking
//! Factories require locked pages by default; a locked-memory limit that is reached fails creation with a
//! typed error. [`Locking::BestEffort`] is the named weaker mode (see
//! [`ProtectedMemorySecretFactory::with_locking`]).
//!
//! # Fork
//! Pages are not inherited by forked children (`MADV_DONTFORK` and equivalents), and a secret used in a child
//! returns [`Error::Forked`] instead of touching memory that is not there.
//!
//! # Features
//! - `metrics`: counters, gauges and timers through the `metrics` facade (see [`mod@metrics`]).
//! - `debug_backtrace`: a secret dropped without `close` is logged at debug level with the backtrace of its
//!   creation.
//! - `zeroize`, `secrecy`: `SecretFactory::from_zeroizing` and `SecretFactory::from_secret_box` take those
//!   crates' wrappers as sources directly.
//!
//! # Getting secrets in
//! [`SecretFactory::from_file`], [`SecretFactory::from_reader`] and [`SecretFactory::from_reader_to_end`]
//! read straight into locked pages; [`input::stdin_unbuffered`] gives standard input without std's buffer;
//! [`SecretFactory::create_with`] lets any source write into a new secret's pages before they are sealed;
//! [`input::from_env`] moves an environment variable into a secret, wiping it in place.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[allow(unsafe_code)]
mod access;
mod backing;
mod core_dumps;
mod error;
pub mod input;
pub mod memguard;
pub mod metrics;
mod primitive;
pub mod protected_memory;
mod reader;
mod report;
pub mod sealed;
mod shared;
pub mod stream;

pub use ::memguard::Locking;
pub use access::Quarantine;
pub use backing::Backing;
pub use core_dumps::{keep_core_dumps, KEEP_CORE_DUMPS_ENV};
pub use error::{Error, Result};

/// The guarded-buffer crate, under a name that does not clash with this crate's `memguard` flavour module.
pub(crate) use ::memguard as mg;
pub use memguard::{MemguardSecret, MemguardSecretFactory};
pub use protected_memory::{ProtectedMemorySecret, ProtectedMemorySecretFactory};
pub use reader::SecretReader;
pub use report::ProtectionReport;
pub use sealed::{SealedSecret, SealedSecretFactory};

/// The pieces of the access state machine, exposed only to the loom model in `tests/loom.rs`.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_model {
    pub use crate::access::{AccessState, DestroyFailed, Pages};
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Sensitive bytes in protected memory. Always [`close`](Secret::close) a secret when done (dropping it closes
/// it too).
///
/// The trait is object-safe; [`SecretExtensions`] adds the generic conveniences to every `Secret`, including
/// `dyn Secret`.
pub trait Secret: Send + Sync {
    /// Makes the bytes readable, passes them to `action`, and makes them unreadable again.
    ///
    /// `action` must not keep a reference to the bytes: they are unreadable after it returns.
    ///
    /// # Errors
    /// [`Error::Closed`] (and `action` is not run) once the secret is closed; `action`'s own error; a failure to
    /// re-protect the pages combined with `action`'s error in [`Error::Released`].
    fn with_bytes_dyn(&self, action: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>;

    /// True once the secret is closed.
    fn is_closed(&self) -> bool;

    /// Wipes and frees the secret, after waiting for running closures. Calling it again does nothing.
    ///
    /// A closure that waits for another thread which closes the same secret deadlocks (the closure counts as
    /// running); only the same-thread case can be, and is, detected.
    ///
    /// # Errors
    /// [`Error::CloseInsideAccess`] from inside this secret's own closure; [`Error::Forked`] in a forked child;
    /// the failed step otherwise (the secret then stays unusable and `close` can be retried).
    ///
    /// ```
    /// use securememory::{Secret, SecretExtensions, SecretFactory};
    ///
    /// let secret = securememory::ProtectedMemorySecretFactory::new().create_random(32)?;
    /// secret.close()?; // wiped, unlocked, unmapped
    /// secret.close()?; // again: nothing to do
    /// assert!(secret.is_closed());
    /// assert!(secret.with_bytes(|_| Ok(())).unwrap_err().is_closed());
    /// # Ok::<(), securememory::Error>(())
    /// ```
    fn close(&self) -> Result<()>;

    /// Length of the secret in bytes (at least 1).
    fn len(&self) -> usize;

    /// Always false: a secret holds at least one byte.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new reader at the start of the secret.
    ///
    /// # Errors
    /// [`Error::Closed`] when the secret is closed.
    ///
    /// ```
    /// use std::io::Read;
    /// use securememory::{Secret, SecretFactory};
    ///
    /// let secret = securememory::MemguardSecretFactory::new().new(&mut *b"user:password".to_vec())?;
    /// let mut user = [0u8; 4];
    /// let mut reader = secret.reader()?;
    /// reader.read_exact(&mut user)?; // the bytes land in `user`, ordinary memory
    /// assert_eq!(&user, b"user");
    /// assert_eq!(reader.remaining(), 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn reader(&self) -> Result<SecretReader<'_>>;

    /// Which protections took effect for this secret.
    fn protections(&self) -> ProtectionReport;

    /// Takes the secret's pages out of circulation for as long as the returned handle (or a clone) lives:
    /// when the secret closes, its pages are wiped and left no-access instead of being reused by another
    /// secret, and unmapped only once the secret and every handle are gone.
    ///
    /// For bindings whose callers may keep a raw pointer past the access window (a Python object that kept a
    /// view): such a pointer then faults, and can never read another secret's bytes. On a closed secret the
    /// handle holds nothing.
    fn quarantine(&self) -> Quarantine;
}

/// Generic conveniences over [`Secret`], implemented for every secret.
pub trait SecretExtensions: Secret {
    /// Runs `action` on the readable bytes and returns its value.
    ///
    /// # Errors
    /// As [`Secret::with_bytes_dyn`].
    ///
    /// ```
    /// use securememory::{SecretExtensions, SecretFactory};
    ///
    /// let factory = securememory::ProtectedMemorySecretFactory::new();
    /// let key = factory.new(&mut *b"thisismy32bytesecretthatiwilluse".to_vec())?;
    /// // The pages are read-only inside the closure and no-access again after it.
    /// let checksum = key.with_bytes(|bytes| Ok(bytes.iter().map(|&b| u32::from(b)).sum::<u32>()))?;
    /// assert!(checksum > 0);
    /// # Ok::<(), securememory::Error>(())
    /// ```
    fn with_bytes<F, R>(&self, action: F) -> Result<R>
    where
        F: FnOnce(&[u8]) -> Result<R>;

    /// Runs `action` on the readable bytes and returns the bytes it makes (which live in ordinary memory).
    ///
    /// # Errors
    /// As [`Secret::with_bytes_dyn`].
    ///
    /// ```
    /// use securememory::{SecretExtensions, SecretFactory};
    ///
    /// let key = securememory::MemguardSecretFactory::new().create_random(32)?;
    /// let masked = key.with_bytes_func(|bytes| Ok(bytes.iter().map(|b| b ^ 0x5c).collect()))?;
    /// assert_eq!(masked.len(), 32); // `masked` lives in ordinary memory
    /// # Ok::<(), securememory::Error>(())
    /// ```
    fn with_bytes_func<F>(&self, action: F) -> Result<Vec<u8>>
    where
        F: FnOnce(&[u8]) -> Result<Vec<u8>>,
    {
        self.with_bytes(action)
    }
}

impl<S: Secret + ?Sized> SecretExtensions for S {
    fn with_bytes<F, R>(&self, action: F) -> Result<R>
    where
        F: FnOnce(&[u8]) -> Result<R>,
    {
        let mut action = Some(action);
        let mut output = None;
        self.with_bytes_dyn(&mut |bytes| {
            if let Some(action) = action.take() {
                output = Some(action(bytes)?);
            }
            Ok(())
        })?;
        output.ok_or(Error::Closed)
    }
}

/// Makes secrets of one flavour.
pub trait SecretFactory: Send + Sync {
    /// The secrets it makes.
    type Secret: Secret + 'static;

    /// Copies `source` into a new secret, then wipes `source`. On any error `source` is left exactly as it
    /// was: it is wiped only once the secret exists.
    ///
    /// Named after Go's `SecretFactory.New`.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for an empty source; [`Error::Memory`] when pages cannot be mapped, locked or
    /// protected (nothing is leaked).
    ///
    /// ```
    /// use securememory::{Secret, SecretFactory};
    ///
    /// let factory = securememory::ProtectedMemorySecretFactory::new();
    /// let mut source = b"some really secret value".to_vec();
    /// let secret = factory.new(&mut source)?;
    /// assert!(source.iter().all(|&b| b == 0)); // copied into locked pages, then wiped
    /// assert_eq!(secret.len(), 24);
    /// # Ok::<(), securememory::Error>(())
    /// ```
    #[allow(clippy::wrong_self_convention, clippy::new_ret_no_self)]
    fn new(&self, source: &mut [u8]) -> Result<Self::Secret>;

    /// A secret of `size` bytes from the OS random generator, written straight into the locked pages.
    ///
    /// # Errors
    /// As [`SecretFactory::new`], plus [`Error::Random`].
    ///
    /// ```
    /// use securememory::{Secret, SecretFactory};
    ///
    /// let key = securememory::MemguardSecretFactory::new().create_random(32)?;
    /// assert_eq!(key.len(), 32);
    /// # Ok::<(), securememory::Error>(())
    /// ```
    fn create_random(&self, size: usize) -> Result<Self::Secret>;

    /// A secret of `size` bytes that `fill` writes straight into its fresh, locked, writable pages before they
    /// are sealed: the bytes never pass through ordinary memory on their way in.
    ///
    /// # Errors
    /// As [`SecretFactory::new`]; an error returned by `fill`, after the pages are wiped and released.
    fn create_with(
        &self,
        size: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<Self::Secret>;

    /// Reads exactly `len` bytes from `reader` straight into a new secret's pages.
    ///
    /// Give it an unbuffered reader: a `std::fs::File`, a socket, or standard input opened as a file
    /// ([`input::stdin_unbuffered`]); `std::io::stdin()` and `BufReader` keep a copy in their own buffer.
    ///
    /// # Errors
    /// [`Error::Io`] when reading fails or the input ends early (`UnexpectedEof`); otherwise as
    /// [`SecretFactory::new`]. Nothing read is kept on error.
    ///
    /// ```
    /// use securememory::{Secret, SecretFactory};
    ///
    /// // In real code: a `File`, a socket or `input::stdin_unbuffered()`, which keep no copy of their own.
    /// let mut input: &[u8] = b"0123456789abcdef0123456789abcdef trailing";
    /// let key = securememory::ProtectedMemorySecretFactory::new().from_reader(&mut input, 32)?;
    /// assert_eq!(key.len(), 32);
    /// assert_eq!(input, b" trailing"); // exactly 32 bytes were read
    /// # Ok::<(), securememory::Error>(())
    /// ```
    #[allow(clippy::wrong_self_convention)]
    fn from_reader<R: std::io::Read + ?Sized>(
        &self,
        reader: &mut R,
        len: usize,
    ) -> Result<Self::Secret>
    where
        Self: Sized,
    {
        self.create_with(len, &mut |pages| {
            reader.read_exact(pages).map_err(Error::Io)
        })
    }

    /// Reads `reader` to its end straight into locked memory (at most `max_len` bytes) and makes a secret of
    /// exactly what was read. The bytes only ever sit in locked, guarded pages on their way in.
    ///
    /// # Errors
    /// [`Error::Io`] when reading fails, or with `ErrorKind::FileTooLarge` when the input is longer than
    /// `max_len`; [`Error::InvalidLength`] when it is empty; otherwise as [`SecretFactory::new`].
    ///
    /// ```
    /// use securememory::{Secret, SecretFactory};
    ///
    /// let mut input: &[u8] = b"a token of unknown length";
    /// let token = securememory::ProtectedMemorySecretFactory::new().from_reader_to_end(&mut input, 4096)?;
    /// assert_eq!(token.len(), 25);
    /// # Ok::<(), securememory::Error>(())
    /// ```
    #[allow(clippy::wrong_self_convention)]
    fn from_reader_to_end<R: std::io::Read + ?Sized>(
        &self,
        reader: &mut R,
        max_len: usize,
    ) -> Result<Self::Secret>
    where
        Self: Sized,
    {
        input::read_to_end(self, reader, max_len)
    }

    /// Reads the file at `path` (a mounted Kubernetes secret, a key file) straight into a new secret, at most
    /// `max_len` bytes. See [`SecretFactory::from_reader_to_end`].
    ///
    /// # Errors
    /// As [`SecretFactory::from_reader_to_end`]; [`Error::Io`] when the file cannot be opened.
    ///
    /// ```
    /// use securememory::{Secret, SecretFactory};
    ///
    /// # let dir = std::env::temp_dir().join(format!("securememory-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("api-key");
    /// # std::fs::write(&path, b"0123456789abcdef")?;
    /// // `path`: a mounted Kubernetes secret, say /var/run/secrets/app/api-key
    /// let key = securememory::MemguardSecretFactory::new().from_file(&path, 4096)?;
    /// assert_eq!(key.len(), 16);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::wrong_self_convention)]
    fn from_file(&self, path: impl AsRef<std::path::Path>, max_len: usize) -> Result<Self::Secret>
    where
        Self: Sized,
    {
        let mut file = std::fs::File::open(path).map_err(Error::Io)?;
        self.from_reader_to_end(&mut file, max_len)
    }

    /// Copies a `zeroize::Zeroizing` source into a new secret and wipes it, as [`SecretFactory::new`] does
    /// (feature `zeroize`). On error the source is left as it was.
    ///
    /// # Errors
    /// As [`SecretFactory::new`].
    #[cfg(feature = "zeroize")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zeroize")))]
    #[allow(clippy::wrong_self_convention)]
    fn from_zeroizing<T>(&self, source: &mut zeroize::Zeroizing<T>) -> Result<Self::Secret>
    where
        Self: Sized,
        T: AsMut<[u8]> + zeroize::Zeroize,
    {
        self.new((**source).as_mut())
    }

    /// Copies the bytes of a `secrecy::SecretBox<[u8]>` into a new secret and wipes them, as
    /// [`SecretFactory::new`] does (feature `secrecy`). On error the box is left as it was; either way it
    /// zeroizes itself again when dropped.
    ///
    /// # Errors
    /// As [`SecretFactory::new`].
    #[cfg(feature = "secrecy")]
    #[cfg_attr(docsrs, doc(cfg(feature = "secrecy")))]
    #[allow(clippy::wrong_self_convention)]
    fn from_secret_box(&self, source: &mut secrecy::SecretBox<[u8]>) -> Result<Self::Secret>
    where
        Self: Sized,
    {
        use secrecy::ExposeSecretMut;
        self.new(source.expose_secret_mut())
    }
}
