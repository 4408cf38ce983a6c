//! Shared by the integration tests: the two flavours behind one trait, and child-process helpers.
#![allow(dead_code)]

use std::process::{Command, ExitStatus};

use securememory::{
    Locking, MemguardSecret, MemguardSecretFactory, ProtectedMemorySecret,
    ProtectedMemorySecretFactory, ProtectionReport, Secret, SecretExtensions, SecretFactory,
};

pub const KEY: &[u8; 32] = b"thisismy32bytesecretthatiwilluse";

/// One secret flavour: its factory and the introspection the tests need.
pub trait Flavour {
    type Factory: SecretFactory<Secret = Self::Secret> + Clone;
    type Secret: Secret + std::fmt::Debug + 'static;
    fn factory() -> Self::Factory;
    fn factory_with(locking: Locking) -> Self::Factory;
    fn accessors(secret: &Self::Secret) -> usize;
    /// `mprotect` calls creation makes before sealing the data pages (memguard arms two guard pages).
    const PROTECTS_BEFORE_SEAL: u32;
}

pub struct Pm;
pub struct Mg;
/// The sealed flavour (encrypted at rest, decrypted into scratch pages while a closure runs).
pub struct Sealed;

impl Flavour for Pm {
    type Factory = ProtectedMemorySecretFactory;
    type Secret = ProtectedMemorySecret;
    const PROTECTS_BEFORE_SEAL: u32 = 0;
    fn factory() -> Self::Factory {
        ProtectedMemorySecretFactory::new()
    }
    fn factory_with(locking: Locking) -> Self::Factory {
        ProtectedMemorySecretFactory::with_locking(locking)
    }
    fn accessors(secret: &Self::Secret) -> usize {
        secret.accessors()
    }
}

impl Flavour for Mg {
    type Factory = MemguardSecretFactory;
    type Secret = MemguardSecret;
    const PROTECTS_BEFORE_SEAL: u32 = 2;
    fn factory() -> Self::Factory {
        MemguardSecretFactory::new()
    }
    fn factory_with(locking: Locking) -> Self::Factory {
        MemguardSecretFactory::with_locking(locking)
    }
    fn accessors(secret: &Self::Secret) -> usize {
        secret.accessors()
    }
}

impl Flavour for Sealed {
    type Factory = securememory::sealed::SealedSecretFactory;
    type Secret = securememory::sealed::SealedSecret;
    /// Creation protects no page of the secret's own (it has none): only scratch pages, when it uses them.
    const PROTECTS_BEFORE_SEAL: u32 = 0;
    fn factory() -> Self::Factory {
        securememory::sealed::SealedSecretFactory::new()
    }
    fn factory_with(locking: Locking) -> Self::Factory {
        securememory::sealed::SealedSecretFactory::with_locking(locking)
    }
    fn accessors(secret: &Self::Secret) -> usize {
        secret.accessors()
    }
}

/// True when a memory fault ended the process: SIGSEGV (or SIGBUS) on Unix; on Windows the access violation's
/// exception code (0xC0000005) as its exit code.
pub fn is_fault(status: &ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        matches!(status.signal(), Some(libc::SIGSEGV | libc::SIGBUS))
    }
    #[cfg(windows)]
    {
        status.code().map(|c| c as u32) == Some(0xC000_0005)
    }
}

/// A secret holding `bytes` (copied; the copy is wiped by the factory).
pub fn secret_of<F: Flavour>(bytes: &[u8]) -> F::Secret {
    let mut source = bytes.to_vec();
    F::factory().new(&mut source).expect("create secret")
}

/// Bytes `0..len` of a recognisable pattern (never zero, so a wiped copy is told apart).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + usize::from(seed) * 13) % 251) as u8 + 1)
        .collect()
}

/// A secret made from `data` has its length and gives exactly `data` back through every access, twice, and
/// closes.
pub fn assert_round_trip<F: Flavour>(data: &[u8]) {
    let len = data.len();
    let s = secret_of::<F>(data);
    assert_eq!(s.len(), len);
    assert!(!s.is_empty());
    s.with_bytes(|b| {
        assert_eq!(b, data, "{len} bytes");
        Ok(())
    })
    .unwrap();
    assert_eq!(s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), data);
    // Read again: a second window sees the same bytes (for the sealed flavour, decrypts them again).
    assert!(s.with_bytes(|b| Ok(b == data)).unwrap());
    s.close().unwrap();
}

/// What a protection report says about the platform, for every flavour: no-dump, no-fork and fork detection
/// applied where the platform has them; on Windows, which has no fork and no per-region core-dump advice, the
/// report says so instead of claiming them.
pub fn assert_platform_protections(r: &ProtectionReport) {
    #[cfg(not(windows))]
    {
        assert!(r.no_dump.is_applied());
        assert!(r.no_fork.is_applied());
        assert!(r.fork_detection);
    }
    #[cfg(windows)]
    {
        assert_eq!(r.no_dump, memcall::Outcome::Unsupported, "{r}");
        assert_eq!(r.no_fork, memcall::Outcome::Unsupported, "{r}");
        assert!(!r.fork_detection, "{r}");
    }
}

/// Instantiates each generic test `fn name<F: Flavour>()` once per flavour, in modules `protected_memory`
/// and `memguard`.
#[macro_export]
macro_rules! for_both_flavours {
    ($($name:ident),* $(,)?) => {
        mod protected_memory {
            $( #[test] fn $name() { super::$name::<$crate::common::Pm>() } )*
        }
        mod memguard {
            $( #[test] fn $name() { super::$name::<$crate::common::Mg>() } )*
        }
    };
}

/// As [`for_both_flavours!`], with the tests listed under `every` also instantiated for the sealed flavour
/// (module `sealed`), and those under `page_backed` for the two page-backed flavours only (they are about pages
/// of the secret's own, which a sealed secret does not have).
#[macro_export]
macro_rules! for_flavours {
    (every: [$($every:ident),* $(,)?], page_backed: [$($paged:ident),* $(,)?] $(,)?) => {
        mod protected_memory {
            $( #[test] fn $every() { super::$every::<$crate::common::Pm>() } )*
            $( #[test] fn $paged() { super::$paged::<$crate::common::Pm>() } )*
        }
        mod memguard {
            $( #[test] fn $every() { super::$every::<$crate::common::Mg>() } )*
            $( #[test] fn $paged() { super::$paged::<$crate::common::Mg>() } )*
        }
        mod sealed {
            $( #[test] fn $every() { super::$every::<$crate::common::Sealed>() } )*
        }
    };
}

/// Environment variable that tells a re-executed test binary which child scenario to run.
pub const CHILD_ENV: &str = "SECUREMEMORY_TEST_CHILD";

/// The scenario this process should run as a child, if it is one.
pub fn child_scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Runs test `test_name` of this binary again in a child process with `scenario` selected, optionally through
/// a wrapper command (e.g. `setpriv` to drop a capability), and returns how the child ended and its output.
pub fn run_child(test_name: &str, scenario: &str, wrapper: &[&str]) -> (ExitStatus, String) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env("RUST_BACKTRACE", "0");
    let out = cmd.output().expect("spawn child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}
