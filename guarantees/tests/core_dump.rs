//! Guarantee 2, never in a core dump. A child holds 100 secrets of both flavours and 20 memguard locked buffers,
//! each with its own random marker (10 secrets inside a running `with_bytes` on other threads, so read-only
//! rather than no-access), plus a control marker in ordinary heap memory, and aborts with core dumps allowed.
//! - By default the first factory disables core dumps for the process: no core file at all.
//! - With the documented opt-out (`keep_core_dumps()` or `SECUREMEMORY_KEEP_CORE_DUMPS=1`) the core is written:
//!   the control marker must be in it (the dump is real) and no secret marker, not even half of one (per-region
//!   exclusion alone keeps them out).
//!
//! - A live process snapshotted by gdb's `gcore` (ptrace, which no `RLIMIT_CORE` stops) holds no secret either.
//!
//! The markers reach the child hex-encoded and are decoded straight into the secret's source buffer, which the
//! factory wipes, so their binary form exists only in the secret's pages.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{ensure, Flavour, Held, Kind};
use guarantees::core_file::{self, MarkerSet};
use guarantees::Scenario;
use securememory::SecretExtensions;

const SECRETS: usize = 100;
/// memguard locked buffers held next to the secrets (frozen: read-only at rest, as in Go).
const BUFFERS: usize = 20;
/// Secrets held inside a running `with_bytes` on their own thread when the child aborts.
const HELD_OPEN: usize = 10;
const MARKERS_VAR: &str = "GUARANTEES_MARKERS";
const CONTROL_VAR: &str = "GUARANTEES_CONTROL";
const MODE_VAR: &str = "GUARANTEES_CORE_MODE";
const ABORTING: &str = "GUARANTEES: aborting with all secrets alive";
const READY: &str = "GUARANTEES: holding every secret, ready for a snapshot";

/// What marker `i` is held in.
fn kind_of(i: usize) -> Kind {
    if i < SECRETS {
        Kind::Secret(Flavour::ALL[i % 2])
    } else {
        Kind::LockedBuffer
    }
}

/// Length and marker offset of secret `i`: a mix of sub-page, page-sized and multi-page secrets, with the
/// marker at the start, the middle or the end.
fn shape(i: usize) -> (usize, usize) {
    let len = [32, 33, 100, 4096, 5000, 9000, 64][i % 7];
    let offset = match i % 3 {
        0 => 0,
        1 => (len - 32) / 2,
        _ => len - 32,
    };
    (len, offset)
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Holds every marker (10 secrets inside `with_bytes` on their own threads) and the control marker, and checks
/// the process-wide core-dump setting the mode asks for. Returns what must stay alive.
fn hold_everything() -> Result<(Vec<Held>, Vec<u8>), Box<dyn std::error::Error>> {
    core_file::allow_core_dumps()?;
    let mode = std::env::var(MODE_VAR)?;
    if mode == "keep_fn" {
        securememory::keep_core_dumps();
    }
    let markers = std::env::var(MARKERS_VAR)?;
    let mut held: Vec<Held> = Vec::with_capacity(SECRETS + BUFFERS);
    for (i, hex) in markers.split(',').enumerate() {
        let (len, offset) = shape(i);
        let mut source = vec![0u8; len];
        core_file::decode_hex_into(hex, &mut source[offset..offset + 32]);
        let kind = kind_of(i);
        let holder = kind.hold(&mut source)?;
        ensure(source.iter().all(|&b| b == 0), || {
            format!("{} did not wipe the source", kind.name())
        })?;
        // The marker really is in the secret, so its absence from the core means something.
        let holds = holder.with_bytes(|b| core_file::equals_hex(&b[offset..offset + 32], hex))?;
        ensure(holds, || format!("secret {i} does not hold its marker"))?;
        held.push(holder);
    }
    ensure(held.len() == SECRETS + BUFFERS, || {
        "wrong number of markers".into()
    })?;
    let (soft, hard) = core_file::core_limit();
    eprintln!("RLIMIT_CORE after creating factories: soft {soft}, hard {hard} (mode {mode})");
    if mode == "default" {
        ensure(soft == 0 && hard == 0, || {
            "the first factory did not disable core dumps".into()
        })?;
    } else {
        ensure(soft > 0, || {
            "core dumps were disabled despite the opt-out".into()
        })?;
    }
    // Some secrets are inside an access window (read-only pages) when the process dies.
    let inside = Arc::new(Barrier::new(HELD_OPEN + 1));
    for holder in held.iter().take(HELD_OPEN) {
        let Held::Secret(secret) = holder else {
            return Err("the first secrets must be securememory secrets".into());
        };
        let (secret, inside) = (secret.clone(), inside.clone());
        std::thread::spawn(move || {
            secret.with_bytes(|_| -> securememory::Result<()> {
                inside.wait();
                loop {
                    std::thread::park();
                }
            })
        });
    }
    inside.wait();
    let control_hex = std::env::var(CONTROL_VAR)?;
    let mut control = vec![0u8; control_hex.len() / 2];
    core_file::decode_hex_into(&control_hex, &mut control);
    std::hint::black_box(&control);
    Ok((held, control))
}

fn hold_and_abort() -> Outcome {
    let _alive = hold_everything()?;
    eprintln!("{ABORTING}");
    std::process::abort();
}

/// Holds everything and waits to be snapshotted (and killed) by the parent.
fn hold_and_wait() -> Outcome {
    let _alive = hold_everything()?;
    println!("{READY}");
    std::thread::sleep(Duration::from_secs(120));
    Err("nobody took a snapshot within 120 s".into())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("hold_and_abort", hold_and_abort),
        ("hold_and_wait", hold_and_wait),
    ];
    guarantees::dispatch(SCENARIOS);
}

/// How a core-dump child ended: its outcome, its core file's bytes (if it wrote one), the secret markers and the
/// control marker (hex).
struct CoreRun {
    outcome: guarantees::ChildOutcome,
    core: Option<Vec<u8>>,
    markers: Vec<String>,
    control: String,
}

/// Runs the child in `mode`; `None` when core tests are skipped here.
fn run_core_child(mode: &str, extra_env: Option<(&str, &str)>) -> Option<CoreRun> {
    let pattern = core_file::file_pattern_or_skip()?;
    let dir = core_file::scratch_dir(&format!("core-{mode}"));
    let markers: Vec<String> = (0..SECRETS + BUFFERS)
        .map(|_| core_file::random_hex(32))
        .collect();
    let control = core_file::random_hex(32);
    let mut child = guarantees::run_child("hold_and_abort")
        .current_dir(&dir)
        .env(MARKERS_VAR, markers.join(","))
        .env(CONTROL_VAR, &control)
        .env(MODE_VAR, mode);
    if let Some((k, v)) = extra_env {
        child = child.env(k, v);
    }
    let outcome = child.run();
    let core = core_file::find_core(&dir, &pattern)
        .map(|path| std::fs::read(path).expect("read the core file"));
    let _ = std::fs::remove_dir_all(&dir);
    Some(CoreRun {
        outcome,
        core,
        markers,
        control,
    })
}

#[test]
fn by_default_no_core_file_is_written() {
    let Some(CoreRun { outcome, core, .. }) = run_core_child("default", None) else {
        return;
    };
    outcome.assert_signal(libc::SIGABRT);
    assert!(outcome.stderr.contains(ABORTING), "{}", outcome.describe());
    assert!(
        !outcome.core_dumped() && core.is_none(),
        "core dumps should be disabled process-wide by default; {}",
        outcome.describe()
    );
}

fn assert_core_has_control_but_no_secret(mode: &str, extra_env: Option<(&str, &str)>) {
    let Some(CoreRun {
        outcome,
        core,
        markers,
        control,
    }) = run_core_child(mode, extra_env)
    else {
        return;
    };
    outcome.assert_signal(libc::SIGABRT);
    assert!(outcome.stderr.contains(ABORTING), "{}", outcome.describe());
    assert!(
        outcome.core_dumped(),
        "the kernel wrote no core; {}",
        outcome.describe()
    );
    let core = core.unwrap_or_else(|| panic!("no core file was found; {}", outcome.describe()));
    assert_control_but_no_secret(&core, &markers, &control);
}

/// The dump is real (the heap control marker is in it) and holds no secret marker, whole or half.
fn assert_control_but_no_secret(core: &[u8], markers: &[String], control: &str) {
    assert!(
        MarkerSet::from_hex(&[control]).found_in(core) == [0],
        "the heap control marker is missing from the {} byte core: the dump is not real",
        core.len()
    );
    // Whole markers, and each half on its own (a partial copy is a leak too).
    let mut needles = markers.to_vec();
    needles.extend(markers.iter().map(|m| m[..32].to_owned()));
    needles.extend(markers.iter().map(|m| m[32..].to_owned()));
    let found = MarkerSet::from_hex(&needles).found_in(core);
    let leaked: Vec<String> = found
        .iter()
        .map(|&i| {
            let n = SECRETS + BUFFERS;
            let secret = i % n;
            let (len, offset) = shape(secret);
            format!(
                "marker {secret} ({}, {len} bytes, marker at {offset}{}){}",
                kind_of(secret).name(),
                if secret < HELD_OPEN {
                    ", inside with_bytes"
                } else {
                    ""
                },
                ["", " first half", " second half"][i / n]
            )
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "secret markers in the core dump: {leaked:#?}"
    );
}

#[test]
fn with_keep_core_dumps_the_core_holds_no_secret() {
    assert_core_has_control_but_no_secret("keep_fn", None);
}

#[test]
fn with_the_environment_opt_out_the_core_holds_no_secret() {
    assert_core_has_control_but_no_secret(
        "keep_env",
        Some((securememory::KEEP_CORE_DUMPS_ENV, "1")),
    );
}

/// gdb's `gcore` snapshots a live process through ptrace, whatever `RLIMIT_CORE` says: with the default
/// settings (core dumps disabled) per-region exclusion is the only thing keeping secrets out of it.
#[test]
fn a_gcore_snapshot_of_a_live_process_holds_no_secret() {
    let has_gdb = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("gdb").is_file()));
    if !has_gdb {
        assert!(
            std::env::var_os(core_file::SKIP_VAR).is_some(),
            "gdb is not installed; install it or set {}=1 to skip",
            core_file::SKIP_VAR
        );
        eprintln!("SKIPPED: gdb is not installed");
        return;
    }
    let dir = core_file::scratch_dir("gcore");
    let markers: Vec<String> = (0..SECRETS + BUFFERS)
        .map(|_| core_file::random_hex(32))
        .collect();
    let control = core_file::random_hex(32);
    let mut child = guarantees::run_child("hold_and_wait")
        .env(MARKERS_VAR, markers.join(","))
        .env(CONTROL_VAR, &control)
        .env(MODE_VAR, "default")
        // One malloc arena: gdb dumps every thread arena's whole 64 MiB reservation, which would only make the
        // snapshot slow to scan.
        .env("MALLOC_ARENA_MAX", "1")
        .command()
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(READY));
    let path = dir.join("snapshot");
    // What `gcore` does, without reading the test binary's debug info (which takes tens of seconds).
    let snapshot = ready.then(|| {
        Command::new("gdb")
            .args(["--nx", "--batch", "--readnever", "-p"])
            .arg(child.id().to_string())
            .arg("-ex")
            .arg(format!("gcore {}", path.display()))
            .output()
            .expect("run gdb")
    });
    let _ = child.kill();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    let snapshot = snapshot.unwrap_or_else(|| panic!("the child never got ready: {stderr}"));
    let core = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "gcore wrote no snapshot: {}\n{}",
            String::from_utf8_lossy(&snapshot.stdout),
            String::from_utf8_lossy(&snapshot.stderr)
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_control_but_no_secret(&core, &markers, &control);
}
