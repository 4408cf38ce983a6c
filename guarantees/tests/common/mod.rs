//! What the guarantee tests share: both secret flavours behind one switch, and byte patterns a reader can check
//! without a reference copy.
#![allow(dead_code)]

pub mod race;

use std::sync::Arc;

use guarantees::child::ChildRun;
use guarantees::proc_stats::Footprint;
use securememory::memguard::MemguardSecretFactory;
use securememory::{ProtectedMemorySecretFactory, Secret, SecretFactory};

/// The two secret flavours of `securememory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Whole pages of their own, data at offset 0.
    ProtectedMemory,
    /// Guard pages and a canary, through the `memguard` crate.
    Memguard,
}

impl Flavour {
    /// Both flavours.
    pub const ALL: [Flavour; 2] = [Flavour::ProtectedMemory, Flavour::Memguard];

    /// A short name for messages and scenario names.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::ProtectedMemory => "protected_memory",
            Flavour::Memguard => "memguard",
        }
    }

    /// The flavour named by the environment variable `var` (as [`Flavour::name`] spells it).
    pub fn from_env(var: &str) -> Result<Flavour, String> {
        named_from_env(var, &Flavour::ALL, Flavour::name)
    }

    /// Copies `source` into a new secret of this flavour (wiping `source`), through the default factory.
    pub fn new_secret(self, source: &mut [u8]) -> securememory::Result<Box<dyn Secret>> {
        Ok(match self {
            Flavour::ProtectedMemory => Box::new(ProtectedMemorySecretFactory::new().new(source)?),
            Flavour::Memguard => Box::new(MemguardSecretFactory::new().new(source)?),
        })
    }

    /// As [`Flavour::new_secret`], shared.
    pub fn new_shared(self, source: &mut [u8]) -> securememory::Result<Arc<dyn Secret>> {
        Ok(match self {
            Flavour::ProtectedMemory => Arc::new(ProtectedMemorySecretFactory::new().new(source)?),
            Flavour::Memguard => Arc::new(MemguardSecretFactory::new().new(source)?),
        })
    }

    /// A random secret of this flavour.
    pub fn random_secret(self, size: usize) -> securememory::Result<Box<dyn Secret>> {
        Ok(match self {
            Flavour::ProtectedMemory => {
                Box::new(ProtectedMemorySecretFactory::new().create_random(size)?)
            }
            Flavour::Memguard => Box::new(MemguardSecretFactory::new().create_random(size)?),
        })
    }
}

/// The one of `all` whose name the environment variable `var` holds.
fn named_from_env<T: Copy>(var: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, String> {
    let wanted = std::env::var(var).map_err(|_| format!("{var} is not set"))?;
    all.iter()
        .copied()
        .find(|t| name(*t) == wanted)
        .ok_or_else(|| format!("{var}: unknown name {wanted:?}"))
}

/// Byte `i` of the pattern identified by `id`: a cheap mix, so secrets with different ids differ almost
/// everywhere and a byte from the wrong secret, a stale page or a zero page is caught.
pub fn pattern_byte(id: u64, i: usize) -> u8 {
    let mut x = id
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i as u64)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    (x as u8) | 1
}

/// Fills `buf` with pattern `id`.
pub fn fill_pattern(id: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(id, i);
    }
}

/// True when `bytes` is exactly pattern `id` of its length.
pub fn is_pattern(id: u64, bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern_byte(id, i))
}

/// A secret of `flavour` holding pattern `id` over `len` bytes.
pub fn pattern_secret(
    flavour: Flavour,
    id: u64,
    len: usize,
) -> securememory::Result<Arc<dyn Secret>> {
    let mut source = vec![0u8; len];
    fill_pattern(id, &mut source);
    flavour.new_shared(&mut source)
}

/// Returns `Err(what)` unless `cond` holds: scenarios report failures as values, so the child exits with a
/// message instead of a panic inside the harness.
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// The environment variable that tells a child scenario which flavour to test.
pub const FLAVOUR_VAR: &str = "GUARANTEES_FLAVOUR";

/// The flavour a child scenario was started for.
pub fn child_flavour() -> Result<Flavour, String> {
    Flavour::from_env(FLAVOUR_VAR)
}

/// Runs `scenario` of this test binary in a child, for `flavour`.
pub fn run_for(scenario: &str, flavour: Flavour) -> guarantees::ChildOutcome {
    guarantees::run_child(scenario)
        .env(FLAVOUR_VAR, flavour.name())
        .run()
}

/// Runs a child scenario, shows what it wrote to stderr (the figures a proof reports), and asserts it succeeded.
pub fn run_reporting(child: ChildRun) {
    let outcome = child.run();
    eprint!("{}", outcome.stderr);
    outcome.assert_success();
}

/// The footprint with every cache of locked pages (the scratch cache included) trimmed first: what is compared
/// is what live secrets hold, not what is cached for reuse.
pub fn trimmed_footprint() -> Footprint {
    memcall::pool::trim_all();
    Footprint::now()
}

/// Returns `Err` naming every change in what the library maps or locks from `base` to `end` (see
/// [`Footprint::library_changes_since`]), `when` saying when `end` was taken.
pub fn ensure_library_back(base: &Footprint, end: &Footprint, when: &str) -> Result<(), String> {
    let changes = end.library_changes_since(base);
    ensure(changes.is_empty(), || {
        format!(
            "{when}: {}; footprint {base:?} -> {end:?}",
            changes.join("; ")
        )
    })
}

/// Everything the tests hold secrets in: a secret of either flavour, or a `memguard` locked buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `securememory` secret.
    Secret(Flavour),
    /// A `memguard::LockedBuffer` (frozen, so read-only at rest as in Go).
    LockedBuffer,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [
        Kind::Secret(Flavour::ProtectedMemory),
        Kind::Secret(Flavour::Memguard),
        Kind::LockedBuffer,
    ];

    /// A short name for messages and scenario names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Secret(f) => f.name(),
            Kind::LockedBuffer => "locked_buffer",
        }
    }

    /// The kind named by the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Kind, String> {
        named_from_env(var, &Kind::ALL, Kind::name)
    }

    /// A new holder of `source` (which is wiped).
    pub fn hold(self, source: &mut [u8]) -> Result<Held, HoldError> {
        match self {
            Kind::Secret(f) => f
                .new_shared(source)
                .map(Held::Secret)
                .map_err(HoldError::Secret),
            Kind::LockedBuffer => memguard::LockedBuffer::from_bytes(source)
                .map(Held::Buffer)
                .map_err(HoldError::Buffer),
        }
    }

    /// A new holder of pattern `id` over `len` bytes.
    pub fn hold_pattern(self, id: u64, len: usize) -> Result<Held, HoldError> {
        let mut source = vec![0u8; len];
        fill_pattern(id, &mut source);
        self.hold(&mut source)
    }
}

/// A live secret or locked buffer.
pub enum Held {
    /// A `securememory` secret.
    Secret(Arc<dyn Secret>),
    /// A `memguard` locked buffer.
    Buffer(memguard::LockedBuffer),
}

impl Held {
    /// Runs `f` on the bytes.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, HoldError> {
        use securememory::SecretExtensions;
        match self {
            Held::Secret(s) => s.with_bytes(|b| Ok(f(b))).map_err(HoldError::Secret),
            Held::Buffer(b) => b.with_bytes(f).map_err(HoldError::Buffer),
        }
    }

    /// True when the bytes are pattern `id`.
    pub fn holds_pattern(&self, id: u64) -> Result<bool, HoldError> {
        self.with_bytes(|b| is_pattern(id, b))
    }

    /// Closes the secret or destroys the buffer.
    pub fn close(self) -> Result<(), HoldError> {
        match self {
            Held::Secret(s) => s.close().map_err(HoldError::Secret),
            Held::Buffer(mut b) => b.destroy().map_err(HoldError::Buffer),
        }
    }
}

/// An error of either crate.
#[derive(Debug)]
pub enum HoldError {
    /// From `securememory`.
    Secret(securememory::Error),
    /// From `memguard`.
    Buffer(memguard::Error),
}

impl HoldError {
    /// The page-level error underneath, if any.
    pub fn memory_error(&self) -> Option<&memcall::Error> {
        match self {
            HoldError::Secret(e) => e.memory_error(),
            HoldError::Buffer(memguard::Error::Memory(e)) => Some(e),
            HoldError::Buffer(_) => None,
        }
    }
}

impl std::fmt::Display for HoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldError::Secret(e) => write!(f, "securememory: {e}"),
            HoldError::Buffer(e) => write!(f, "memguard: {e}"),
        }
    }
}

impl std::error::Error for HoldError {}

/// A sealed secret (`securememory::sealed`) holding pattern `id` over `len` bytes, through the default factory.
pub fn sealed_pattern(
    id: u64,
    len: usize,
) -> securememory::Result<securememory::sealed::SealedSecret> {
    let mut source = vec![0u8; len];
    fill_pattern(id, &mut source);
    securememory::sealed::SealedSecretFactory::new().new(&mut source)
}

/// A small xorshift generator step: reproducible choices without a shared RNG.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
