//! One secret of a chosen flavour, held by a child scenario: created from random bytes, read only through the
//! flavour's own access path.

use memcall::{Protection, Region};
use securememory::{
    MemguardSecret, MemguardSecretFactory, ProtectedMemorySecret, ProtectedMemorySecretFactory,
    SecretFactory,
};

use crate::cli::Flavour;

/// Why a secret could not be created.
pub struct HoldError {
    /// The locked-memory limit stopped it (as opposed to any other failure).
    pub lock_limit: bool,
    pub message: String,
}

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

/// A live secret of one flavour.
pub enum Holder {
    Region { region: Region, len: usize },
    ProtectedMemory(ProtectedMemorySecret),
    Memguard(MemguardSecret),
}

impl Holder {
    /// A secret of `size` zero bytes, locked (the allocation the capacity count makes).
    pub fn zeroed(flavour: Flavour, size: usize) -> Result<Holder, HoldError> {
        Ok(match flavour {
            Flavour::Region => {
                let region = locked_region(size)?;
                region.protect(Protection::NoAccess)?;
                Holder::Region { region, len: size }
            }
            Flavour::ProtectedMemory => Holder::ProtectedMemory(
                ProtectedMemorySecretFactory::new().new(&mut vec![0; size])?,
            ),
            Flavour::Memguard => {
                Holder::Memguard(MemguardSecretFactory::new().new(&mut vec![0; size])?)
            }
        })
    }

    /// A secret of `size` random bytes written straight into its pages, so they exist nowhere else in the
    /// process.
    pub fn random(flavour: Flavour, size: usize) -> Result<Holder, HoldError> {
        Ok(match flavour {
            Flavour::Region => {
                let region = locked_region(size)?;
                // SAFETY: the region is read-write and freshly ours; `size <= region.len()` since the region is
                // `size` rounded up to whole pages.
                let dest = unsafe { std::slice::from_raw_parts_mut(region.as_ptr(), size) };
                let filled = crate::sys::getrandom(dest);
                region.protect(Protection::NoAccess)?;
                filled.map_err(|e| HoldError {
                    lock_limit: false,
                    message: format!("getrandom: {e}"),
                })?;
                Holder::Region { region, len: size }
            }
            Flavour::ProtectedMemory => {
                Holder::ProtectedMemory(ProtectedMemorySecretFactory::new().create_random(size)?)
            }
            Flavour::Memguard => {
                Holder::Memguard(MemguardSecretFactory::new().create_random(size)?)
            }
        })
    }

    /// Runs `f` on the secret's bytes inside one access window.
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
        }
    }

    /// What protects this secret, as the library reports it (`None` for a bare region).
    pub fn protections(&self) -> Option<securememory::ProtectionReport> {
        use securememory::Secret;
        match self {
            Holder::Region { .. } => None,
            Holder::ProtectedMemory(secret) => Some(secret.protections()),
            Holder::Memguard(secret) => Some(secret.protections()),
        }
    }

    /// The secret's bytes as hex (hex text never equals the raw bytes a core-file scan looks for).
    pub fn hex(&self) -> Result<String, String> {
        self.with_bytes(hex)
    }

    /// Address of the secret's first byte (taken inside an access window; at rest the page is no-access).
    pub fn data_addr(&self) -> Result<usize, String> {
        self.with_bytes(|b| b.as_ptr() as usize)
    }
}

/// A read-write, locked region of at least `size` bytes.
fn locked_region(size: usize) -> Result<Region, HoldError> {
    let region = Region::alloc(size)?;
    region.lock()?;
    Ok(region)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Bytes from lower-case hex, or `None` when malformed.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
