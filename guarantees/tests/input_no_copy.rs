//! Secrets come in without a copy in ordinary memory: a child loads a random 32-byte key from a file, and from
//! a pipe as its standard input, straight into a secret of each flavour, then scans all of its own memory
//! (`/proc/self/mem`, no-access pages included). The key must be found, and only inside the secret's pages:
//! never in the heap, on a stack, or in a reader's buffer.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use guarantees::core_file::{self, MarkerSet};
use guarantees::proc_stats;
use guarantees::{Scenario, Watchdog};
use securememory::{
    MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretExtensions, SecretFactory,
};

const KEY_VAR: &str = "GUARANTEES_KEY_HEX";
const FILE_VAR: &str = "GUARANTEES_KEY_FILE";

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// The key is found, and every place it is found is inside `secret`'s pages.
fn only_inside<S: Secret>(secret: &S, what: &str) -> Outcome {
    let set = MarkerSet::from_hex(&[std::env::var(KEY_VAR)?]);
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
    Ok(())
}

fn from_file() -> Outcome {
    let path = std::env::var(FILE_VAR)?;
    let pm = ProtectedMemorySecretFactory::new().from_file(&path, 64)?;
    only_inside(&pm, "protected memory from a file")?;
    pm.close()?;
    let mg = MemguardSecretFactory::new().from_file(&path, 64)?;
    only_inside(&mg, "memguard from a file")?;
    mg.close()?;
    Ok(())
}

fn from_stdin_pipe() -> Outcome {
    let mut stdin = securememory::input::stdin_unbuffered()?;
    let secret = ProtectedMemorySecretFactory::new().from_reader_to_end(&mut stdin, 64)?;
    if secret.len() != 32 {
        return Err(format!("read {} bytes from the pipe, not 32", secret.len()).into());
    }
    only_inside(&secret, "protected memory from a pipe on stdin")?;
    secret.close()?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] =
        &[("from_file", from_file), ("from_stdin", from_stdin_pipe)];
    guarantees::dispatch(SCENARIOS);
}

#[test]
fn a_key_file_is_read_into_the_secret_without_a_copy() {
    let hex = core_file::random_hex(32);
    let path = guarantees::child::scratch_dir("input-no-copy")
        .expect("a scratch directory")
        .join("key");
    std::fs::write(&path, core_file::unhex(&hex)).unwrap();
    let outcome = guarantees::run_child("from_file")
        .env(KEY_VAR, &hex)
        .env(FILE_VAR, &path)
        .run();
    let _ = std::fs::remove_file(&path);
    outcome.assert_success();
}

#[test]
fn a_key_piped_to_stdin_is_read_into_the_secret_without_a_copy() {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "key from a pipe");
    let hex = core_file::random_hex(32);
    let mut child = guarantees::run_child("from_stdin")
        .env(KEY_VAR, &hex)
        .command()
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(&core_file::unhex(&hex)).unwrap();
    }
    let out = child.wait_with_output().expect("wait for the child");
    assert!(
        out.status.success(),
        "{:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
