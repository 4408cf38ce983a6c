//! Guarantee 5, not inherited by a forked child. A child process creates secrets of both flavours and memguard
//! locked buffers, then forks once per (secret, way of reading it). Each forked child tries one way in; it must get a clear error
//! ([`Error::Forked`]) or die of a fault, and never see the secret's bytes nor zeros in their place. A raw read of
//! the address the parent used must fault (the pages are not mapped in the child). Afterwards the parent's
//! secrets still hold their bytes and close cleanly.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;

use common::{ensure, is_pattern, Held, HoldError, Kind};
use guarantees::Scenario;
use securememory::{Error, SecretExtensions};

/// How a forked child's attempt ended, as its exit code.
const CLEAR_ERROR: i32 = 0;
const SAW_THE_BYTES: i32 = 2;
const SAW_ZEROS: i32 = 3;
const SAW_OTHER_BYTES: i32 = 4;
const UNCLEAR_ERROR: i32 = 5;
const SURVIVED_RAW_READ: i32 = 6;

/// What a forked child sees in bytes it was handed.
fn judge(id: u64, bytes: &[u8]) -> i32 {
    if !bytes.is_empty() && is_pattern(id, bytes) {
        SAW_THE_BYTES
    } else if bytes.iter().all(|&b| b == 0) {
        SAW_ZEROS
    } else {
        SAW_OTHER_BYTES
    }
}

fn judge_error(e: &HoldError) -> i32 {
    if matches!(
        e,
        HoldError::Secret(Error::Forked) | HoldError::Buffer(memguard::Error::Forked)
    ) {
        CLEAR_ERROR
    } else {
        UNCLEAR_ERROR
    }
}

fn judge_io_error(e: &std::io::Error) -> i32 {
    match e.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::Forked) => CLEAR_ERROR,
        _ => UNCLEAR_ERROR,
    }
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    WithBytes,
    CopyOut,
    Reader,
    CloseThenRead,
    DropAll,
    RawRead,
}

/// A secret or buffer made before the fork: its pattern id, the holder, and the address of its bytes.
type Target = (u64, Held, usize);

impl Probe {
    const ALL: [Probe; 6] = [
        Probe::WithBytes,
        Probe::CopyOut,
        Probe::Reader,
        Probe::CloseThenRead,
        Probe::DropAll,
        Probe::RawRead,
    ];

    /// Runs in the forked child, on the child's copy of the targets; returns its exit code.
    fn run(self, targets: &mut Vec<Target>, which: usize) -> i32 {
        let (id, held, addr) = &mut targets[which];
        let (id, addr) = (*id, *addr);
        match (self, held) {
            (Probe::WithBytes, held) => match held.with_bytes(|b| judge(id, b)) {
                Ok(code) => code,
                Err(e) => judge_error(&e),
            },
            (Probe::CopyOut, Held::Secret(s)) => match s.with_bytes_func(|b| Ok(b.to_vec())) {
                Ok(bytes) => judge(id, &bytes),
                Err(e) => judge_error(&HoldError::Secret(e)),
            },
            (Probe::CopyOut, Held::Buffer(b)) => match b.bytes() {
                Ok(guard) => judge(id, &guard),
                Err(e) => judge_error(&HoldError::Buffer(e)),
            },
            (Probe::Reader, Held::Secret(s)) => match s.reader() {
                Err(e) => judge_error(&HoldError::Secret(e)),
                Ok(mut reader) => {
                    let mut buf = vec![0u8; s.len()];
                    match reader.read(&mut buf) {
                        Ok(n) => judge(id, &buf[..n.max(1)]),
                        Err(e) => judge_io_error(&e),
                    }
                }
            },
            (Probe::Reader, Held::Buffer(b)) => match b.reader() {
                Err(e) => judge_error(&HoldError::Buffer(e)),
                Ok(mut reader) => {
                    let mut buf = vec![0u8; b.size()];
                    match reader.read(&mut buf) {
                        Ok(n) => judge(id, &buf[..n.max(1)]),
                        Err(_) => UNCLEAR_ERROR,
                    }
                }
            },
            // Closing in the child must not touch the parent's pages (it has none) nor crash, and the secret
            // stays unreadable afterwards.
            (Probe::CloseThenRead, held) => {
                let _ = match held {
                    Held::Secret(s) => s.close().map_err(HoldError::Secret),
                    Held::Buffer(b) => b.destroy().map_err(HoldError::Buffer),
                };
                match held.with_bytes(|b| judge(id, b)) {
                    Ok(code) => code,
                    Err(
                        HoldError::Secret(Error::Closed)
                        | HoldError::Buffer(memguard::Error::Destroyed),
                    ) => CLEAR_ERROR,
                    Err(e) => judge_error(&e),
                }
            }
            (Probe::DropAll, _) => {
                drop(std::mem::take(targets));
                CLEAR_ERROR
            }
            (Probe::RawRead, _) => {
                // SAFETY: deliberately reads where the parent's secret lives; the page must not exist here.
                let first = unsafe { (addr as *const u8).read_volatile() };
                if first == 0 {
                    SAW_ZEROS
                } else {
                    SURVIVED_RAW_READ
                }
            }
        }
    }

    /// Whether an attempt that ended this way keeps the guarantee: reading must end in a clear error or a
    /// fault; a raw read of the parent's address must fault; dropping must simply work.
    fn accepts(self, faulted: bool, clear_error: bool) -> bool {
        match self {
            Probe::RawRead => faulted,
            Probe::DropAll => clear_error,
            _ => faulted || clear_error,
        }
    }
}

/// Forks; the child runs `f` (with a 10 s alarm, so a deadlock ends as SIGALRM) and exits with its code.
fn in_fork(f: impl FnOnce() -> i32) -> libc::c_int {
    // SAFETY: the child only runs `f` and `_exit`s. This process is a test child with no other thread touching
    // secrets, and glibc keeps malloc usable in a forked child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: `alarm` and `_exit` are async-signal-safe and always valid to call.
        unsafe {
            libc::alarm(10);
            libc::_exit(f());
        }
    }
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` a valid out-parameter.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        return format!("killed by signal {}", libc::WTERMSIG(status));
    }
    match libc::WEXITSTATUS(status) {
        CLEAR_ERROR => "a clear error".into(),
        SAW_THE_BYTES => "READ THE SECRET'S BYTES".into(),
        SAW_ZEROS => "read zeros in place of the secret".into(),
        SAW_OTHER_BYTES => "read bytes that are not the secret's".into(),
        UNCLEAR_ERROR => "an error other than Error::Forked".into(),
        SURVIVED_RAW_READ => "read the parent's address without a fault".into(),
        code => format!("exit code {code}"),
    }
}

fn fork_probes() -> Result<(), Box<dyn std::error::Error>> {
    let mut targets: Vec<Target> = Vec::new();
    for (i, kind) in Kind::ALL.iter().flat_map(|k| [k, k]).enumerate() {
        let id = 100 + i as u64;
        let len = [32, 5000][i % 2];
        let held = kind.hold_pattern(id, len)?;
        let addr = held.with_bytes(|b| b.as_ptr() as usize)?;
        targets.push((id, held, addr));
    }
    let mut failures = Vec::new();
    for which in 0..targets.len() {
        for probe in Probe::ALL {
            let status = in_fork(|| probe.run(&mut targets, which));
            let faulted = libc::WIFSIGNALED(status)
                && matches!(libc::WTERMSIG(status), libc::SIGSEGV | libc::SIGBUS);
            let clear = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == CLEAR_ERROR;
            let line = format!(
                "{} {which} ({} bytes) {probe:?} in the forked child: {}",
                Kind::ALL[which / 2].name(),
                [32, 5000][which % 2],
                describe(status)
            );
            eprintln!("{line}");
            if !probe.accepts(faulted, clear) {
                failures.push(line);
            }
        }
    }
    // The parent is untouched by whatever the children did.
    for (id, held, _) in targets {
        ensure(held.holds_pattern(id)?, || {
            format!("the parent's secret {id} changed")
        })?;
        held.close()?;
    }
    ensure(failures.is_empty(), || failures.join("\n"))?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[("fork_probes", fork_probes)];
    guarantees::dispatch(SCENARIOS);
}

#[test]
fn a_forked_child_cannot_read_any_secret_and_the_parent_keeps_them() {
    guarantees::run_child("fork_probes").run().assert_success();
}
