//! One secret of a chosen flavour, held by a child scenario and read only through the flavour's own access path.

use memcall::{Protection, Region};
use securememory::{
    MemguardSecret, MemguardSecretFactory, ProtectedMemorySecret, ProtectedMemorySecretFactory,
    SealedSecret, SealedSecretFactory, Secret, SecretFactory,
};
use serde::{Deserialize, Serialize};

use crate::core_file::decode_hex_into;

/// What holds a secret in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Flavour {
    /// A bare `memcall::Region`, locked and no-access at rest: the page layer under both flavours.
    #[serde(rename = "memcall-region")]
    Region,
    /// `securememory::ProtectedMemorySecret`.
    #[serde(rename = "protected-memory")]
    ProtectedMemory,
    /// `securememory::MemguardSecret` (guard pages and canary).
    #[serde(rename = "memguard")]
    Memguard,
    /// A frozen `memguard::LockedBuffer` (read-only at rest, as in Go).
    #[serde(rename = "memguard-locked-buffer")]
    LockedBuffer,
    /// `securememory::sealed::SealedSecret`: ciphertext in ordinary memory, no page per secret (so not in
    /// [`Flavour::ALL`], whose proofs are about a secret's own pages).
    #[serde(rename = "sealed")]
    Sealed,
}

impl Flavour {
    /// The page-backed secret flavours the doctor proves page protections for.
    pub const ALL: [Flavour; 3] = [Flavour::Region, Flavour::ProtectedMemory, Flavour::Memguard];

    /// The flavours whose capacity the doctor measures with the `fill` scenario: the page-backed ones up to
    /// the locked-memory limit, the sealed one to a fixed count that the limit does not bound.
    pub const CAPACITY: [Flavour; 4] = [
        Flavour::Region,
        Flavour::ProtectedMemory,
        Flavour::Memguard,
        Flavour::Sealed,
    ];

    /// The name used in reports, JSON and scenario parameters.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Region => "memcall-region",
            Flavour::ProtectedMemory => "protected-memory",
            Flavour::Memguard => "memguard",
            Flavour::LockedBuffer => "memguard-locked-buffer",
            Flavour::Sealed => "sealed",
        }
    }

    /// Whether each secret of this flavour costs locked pages of its own (every flavour but
    /// [`Flavour::Sealed`]).
    pub fn page_backed(self) -> bool {
        self != Flavour::Sealed
    }
}

/// Why a secret could not be created.
#[derive(Debug)]
pub struct HoldError {
    /// The locked-memory limit stopped it (as opposed to any other failure).
    pub lock_limit: bool,
    /// The library's message.
    pub message: String,
}

impl std::fmt::Display for HoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HoldError {}

impl From<memcall::Error> for HoldError {
    fn from(e: memcall::Error) -> Self {
        HoldError {
            lock_limit: e.is_lock_limit(),
            message: e.to_string(),
        }
    }
}

impl From<securememory::Error> for HoldError {
    fn from(e: securememory::Error) -> Self {
        HoldError {
            lock_limit: e.memory_error().is_some_and(memcall::Error::is_lock_limit),
            message: e.to_string(),
        }
    }
}

impl From<memguard::Error> for HoldError {
    fn from(e: memguard::Error) -> Self {
        HoldError {
            lock_limit: matches!(&e, memguard::Error::Memory(m) if m.is_lock_limit()),
            message: e.to_string(),
        }
    }
}

/// A live secret of one flavour.
#[derive(Debug)]
pub enum Holder {
    /// A bare region and the length of the secret in it.
    Region {
        /// The region, no-access at rest.
        region: Region,
        /// The secret's length.
        len: usize,
    },
    /// A protected-memory secret.
    ProtectedMemory(ProtectedMemorySecret),
    /// A memguard secret.
    Memguard(MemguardSecret),
    /// A frozen locked buffer.
    LockedBuffer(memguard::LockedBuffer),
    /// A sealed secret.
    Sealed(SealedSecret),
}

impl Holder {
    /// A secret of `len` bytes whose bytes are written by `fill` straight into its pages (or into a source the
    /// factory wipes), so they exist nowhere else in the process.
    ///
    /// # Errors
    /// The library's error, flagged when the locked-memory limit caused it.
    pub fn filled(
        flavour: Flavour,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Holder, HoldError> {
        Ok(match flavour {
            Flavour::Region => {
                let region = Region::alloc(len)?;
                region.lock()?;
                // SAFETY: the region is read-write and freshly ours; `len <= region.len()` (whole pages).
                fill(unsafe {
                    &mut std::slice::from_raw_parts_mut(region.as_ptr(), region.len())[..len]
                });
                region.protect(Protection::NoAccess)?;
                Holder::Region { region, len }
            }
            Flavour::ProtectedMemory | Flavour::Memguard | Flavour::Sealed => {
                let mut source = vec![0u8; len];
                fill(&mut source);
                match flavour {
                    Flavour::Memguard => {
                        Holder::Memguard(MemguardSecretFactory::new().new(&mut source)?)
                    }
                    Flavour::Sealed => Holder::Sealed(SealedSecretFactory::new().new(&mut source)?),
                    _ => Holder::ProtectedMemory(
                        ProtectedMemorySecretFactory::new().new(&mut source)?,
                    ),
                }
            }
            Flavour::LockedBuffer => {
                let mut buffer = memguard::LockedBuffer::new(len)?;
                buffer.with_bytes_mut(fill)?;
                buffer.freeze()?;
                Holder::LockedBuffer(buffer)
            }
        })
    }

    /// A secret of `len` zero bytes (what the capacity count allocates).
    ///
    /// # Errors
    /// As [`Holder::filled`].
    pub fn zeroed(flavour: Flavour, len: usize) -> Result<Holder, HoldError> {
        Holder::filled(flavour, len, |_| {})
    }

    /// A secret of `len` random bytes.
    ///
    /// # Errors
    /// As [`Holder::filled`], or when the OS random generator fails.
    pub fn random(flavour: Flavour, len: usize) -> Result<Holder, HoldError> {
        let mut failed = None;
        let holder = Holder::filled(flavour, len, |dest| {
            failed = crate::sys::getrandom(dest).err()
        })?;
        match failed {
            None => Ok(holder),
            Some(e) => Err(HoldError {
                lock_limit: false,
                message: format!("getrandom: {e}"),
            }),
        }
    }

    /// A secret of `len` zero bytes with the hex marker `hex` decoded into it at `offset`.
    ///
    /// # Errors
    /// As [`Holder::filled`].
    pub fn with_marker(
        flavour: Flavour,
        len: usize,
        offset: usize,
        hex: &str,
    ) -> Result<Holder, HoldError> {
        Holder::filled(flavour, len, |dest| {
            decode_hex_into(hex, &mut dest[offset..offset + hex.len() / 2]);
        })
    }

    /// Runs `f` on the secret's bytes inside one access window.
    ///
    /// # Errors
    /// The library's refusal (closed, forked, a failed protection change), as text.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        match self {
            Holder::Region { region, len } => {
                region
                    .protect(Protection::ReadOnly)
                    .map_err(|e| e.to_string())?;
                // SAFETY: the region is readable until the protect below and nothing writes it meanwhile.
                let r = f(unsafe { &region.as_slice()[..*len] });
                region
                    .protect(Protection::NoAccess)
                    .map_err(|e| e.to_string())?;
                Ok(r)
            }
            Holder::ProtectedMemory(secret) => {
                secret.with_bytes(|b| Ok(f(b))).map_err(|e| e.to_string())
            }
            Holder::Memguard(secret) => secret.with_bytes(|b| Ok(f(b))).map_err(|e| e.to_string()),
            Holder::Sealed(secret) => secret.with_bytes(|b| Ok(f(b))).map_err(|e| e.to_string()),
            Holder::LockedBuffer(buffer) => buffer.with_bytes(|b| f(b)).map_err(|e| e.to_string()),
        }
    }

    /// What protects this secret, as the library reports it (`None` for a bare region or a buffer).
    pub fn protections(&self) -> Option<securememory::ProtectionReport> {
        match self {
            Holder::ProtectedMemory(secret) => Some(secret.protections()),
            Holder::Memguard(secret) => Some(secret.protections()),
            Holder::Sealed(secret) => Some(secret.protections()),
            Holder::Region { .. } | Holder::LockedBuffer(_) => None,
        }
    }

    /// Address of the secret's first byte (taken inside an access window; at rest the page is no-access).
    ///
    /// # Errors
    /// As [`Holder::with_bytes`].
    pub fn data_addr(&self) -> Result<usize, String> {
        self.with_bytes(|b| b.as_ptr() as usize)
    }
}
