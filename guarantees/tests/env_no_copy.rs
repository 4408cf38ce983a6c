//! A secret taken out of the environment leaves no copy behind: a child started with a random printable 32-byte
//! key in its environment moves it into a secret of each flavour (`securememory::input::from_env`), then scans
//! all of its own memory (`/proc/self/mem`, no-access pages included). The key must be found, and only inside
//! the secret's pages: not in the environment block it started with (wiped in place), not in the heap, not on a
//! stack. The variable must be gone from `std::env` and its value from `/proc/self/environ`.
#![cfg(target_os = "linux")]

use guarantees::core_file::{self, MarkerSet};
use guarantees::proc_stats;
use securememory::{
    input, MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretExtensions,
    SecretFactory,
};

/// The variable holding the key itself.
const SECRET_VAR: &str = "GUARANTEES_ENV_SECRET";
/// The key in hex (a different byte string), so the child knows what to look for.
const KEY_VAR: &str = "GUARANTEES_KEY_HEX";

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn take_into<F: SecretFactory>(factory: &F, what: &str) -> Outcome {
    let set = MarkerSet::from_hex(&[std::env::var(KEY_VAR)?]);
    let secret = input::from_env(factory, SECRET_VAR)?;
    if secret.len() != 32 {
        return Err(format!("{what}: the secret holds {} bytes, not 32", secret.len()).into());
    }
    if std::env::var_os(SECRET_VAR).is_some() {
        return Err(format!("{what}: {SECRET_VAR} is still set").into());
    }
    // The variable can be taken only once.
    match input::from_env(factory, SECRET_VAR) {
        Err(securememory::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{what}: taking it again failed with {e:?}").into()),
        Ok(_) => return Err(format!("{what}: taking it again made a second secret").into()),
    }
    let environ = std::fs::read("/proc/self/environ")?;
    let prefix = format!("{SECRET_VAR}=");
    if !environ
        .windows(prefix.len())
        .any(|w| w == prefix.as_bytes())
    {
        return Err(format!(
            "{what}: {prefix} is not in /proc/self/environ: the check below would prove nothing"
        )
        .into());
    }
    if !set.found_in(&environ).is_empty() {
        return Err(format!("{what}: the key is still readable in /proc/self/environ").into());
    }
    let addr = secret.with_bytes(|b| Ok(b.as_ptr() as usize))?;
    let hits = proc_stats::scan_own_memory(&set);
    if hits.is_empty() {
        return Err(
            format!("{what}: the key was not found at all: the scan proves nothing").into(),
        );
    }
    let stray: Vec<_> = hits
        .iter()
        .filter(|(_, m)| !(m.start <= addr && addr < m.end))
        .collect();
    if !stray.is_empty() {
        return Err(
            format!("{what}: copies of the key outside the secret's pages: {stray:#?}").into(),
        );
    }
    secret.close()?;
    Ok(())
}

fn protected_memory() -> Outcome {
    take_into(&ProtectedMemorySecretFactory::new(), "protected memory")
}

fn memguard() -> Outcome {
    take_into(&MemguardSecretFactory::new(), "memguard")
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, guarantees::Scenario)] = &[
        ("protected_memory", protected_memory),
        ("memguard", memguard),
    ];
    guarantees::dispatch(SCENARIOS);
}

/// 32 random printable bytes (an environment value cannot hold NUL), and their hex form.
fn printable_key() -> (Vec<u8>, String) {
    let key: Vec<u8> = core_file::unhex(&core_file::random_hex(32))
        .iter()
        .map(|b| b'!' + b % 94)
        .collect();
    let hex = key.iter().map(|b| format!("{b:02x}")).collect();
    (key, hex)
}

fn run(scenario: &str) {
    use std::os::unix::ffi::OsStringExt;
    let (key, hex) = printable_key();
    guarantees::run_child(scenario)
        .env(SECRET_VAR, std::ffi::OsString::from_vec(key))
        .env(KEY_VAR, hex)
        .run()
        .assert_success();
}

#[test]
fn an_environment_variable_moves_into_a_protected_memory_secret_without_a_copy() {
    run("protected_memory");
}

#[test]
fn an_environment_variable_moves_into_a_memguard_secret_without_a_copy() {
    run("memguard");
}
