//! Never in a core dump. A child holds secrets (some inside a running `with_bytes` on other threads, so
//! read-only rather than no-access), each with its own random marker, plus a control marker in ordinary heap
//! memory; then it aborts with core dumps allowed, or waits for a `gcore` snapshot of the live process. The
//! dump must hold the control marker (it is real) and no secret marker, not even half of one.
//!
//! The markers reach the child hex-encoded and are decoded straight into the secret's pages (or a source the
//! factory wipes), so their binary form exists only there.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{child_error, fail, with_params, Line, Scenario, Status, Verdict};
use crate::child::{emit, scratch_dir, ChildOutcome, Launcher};
use crate::core_file::{self, decode_hex_into, random_hex, MarkerSet};
use crate::holder::{Flavour, Holder};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "core",
    proves: "a core file or gcore snapshot of a process holding secrets holds none of them, not even half of one",
    child: |json| with_params(json, child),
};

/// Who allows the core dump the library disables by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Keep {
    /// Nobody: the first factory must disable core dumps for the whole process.
    Default,
    /// `securememory::keep_core_dumps()`.
    Function,
    /// The documented environment variable.
    Environment,
}

/// What the child holds and how it ends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoreParams {
    /// What holds marker `i`.
    pub kinds: Vec<Flavour>,
    /// One 32-byte hex marker per secret.
    pub markers: Vec<String>,
    /// The heap control marker (hex).
    pub control: String,
    /// How many of the first secrets are inside a running `with_bytes` when the dump is taken.
    pub held_open: usize,
    /// Who allows the dump.
    pub keep: Keep,
    /// Wait to be snapshotted instead of aborting.
    pub wait_for_snapshot: bool,
}

impl CoreParams {
    /// A fresh random marker per entry of `kinds` and a fresh control marker.
    pub fn new(kinds: Vec<Flavour>, held_open: usize, keep: Keep) -> CoreParams {
        CoreParams {
            markers: kinds.iter().map(|_| random_hex(32)).collect(),
            control: random_hex(32),
            kinds,
            held_open,
            keep,
            wait_for_snapshot: false,
        }
    }
}

/// Length and marker offset of secret `i`: sub-page, page-sized and multi-page secrets, with the marker at the
/// start, the middle or the end.
pub fn shape(i: usize) -> (usize, usize) {
    let len = [32, 33, 100, 4096, 5000, 9000, 64][i % 7];
    let offset = match i % 3 {
        0 => 0,
        1 => (len - 32) / 2,
        _ => len - 32,
    };
    (len, offset)
}

/// What the child prints when it is ready to be snapshotted.
const READY: &str = "holding every secret, ready for a snapshot";

fn child(p: CoreParams) -> i32 {
    if p.keep == Keep::Function {
        securememory::keep_core_dumps();
    }
    // Where the hard limit is 0 no core file is written, and the judge says so.
    let _ = core_file::allow_core_dumps();
    let mut held = Vec::with_capacity(p.markers.len());
    for (i, (hex, &kind)) in p.markers.iter().zip(&p.kinds).enumerate() {
        let (len, offset) = shape(i);
        match Holder::with_marker(kind, len, offset, hex) {
            Ok(h) => held.push(Arc::new(h)),
            Err(e) => return fail(format!("{}: {e}", kind.name())),
        }
    }
    let core_limit = crate::sys::core_limit().ok().map(|l| l.0);
    if p.keep == Keep::Default && core_limit != Some(Some(0)) {
        return fail(format!(
            "the first factory left the soft RLIMIT_CORE at {core_limit:?}"
        ));
    }
    // Some secrets are inside an access window (read-only pages) when the dump is taken.
    let inside = Arc::new(Barrier::new(p.held_open.min(held.len()) + 1));
    for holder in held.iter().take(p.held_open) {
        let (holder, inside) = (holder.clone(), inside.clone());
        std::thread::spawn(move || {
            holder.with_bytes(|_| {
                inside.wait();
                loop {
                    std::thread::park();
                }
            })
        });
    }
    inside.wait();
    let mut control = vec![0u8; p.control.len() / 2];
    decode_hex_into(&p.control, &mut control);
    emit(&Line {
        holding: Some(true),
        core_limit,
        dumpable: crate::sys::is_dumpable(),
        ..Line::default()
    });
    std::hint::black_box((&control, &held));
    if p.wait_for_snapshot {
        println!("{READY}");
        std::thread::sleep(Duration::from_secs(120));
        return fail("nobody took a snapshot within 120 s".to_owned());
    }
    std::process::abort()
}

/// How a core child ended and the dump it left: the bytes, or the status and reason why there are none.
#[derive(Debug)]
pub struct CoreRun {
    /// How the child ended.
    pub outcome: ChildOutcome,
    /// The dump, or why there is none (`Skip` where the host keeps core files out of reach).
    pub dump: Result<Vec<u8>, (Status, String)>,
}

/// Runs the child until it aborts and reads the core file it left.
///
/// # Errors
/// When the child cannot be started.
pub fn dump(launcher: &Launcher, params: &CoreParams) -> std::io::Result<CoreRun> {
    let cwd = scratch_dir("core")?;
    let run = dump_in(launcher, params, &cwd);
    let _ = std::fs::remove_dir_all(&cwd);
    run
}

fn dump_in(launcher: &Launcher, params: &CoreParams, cwd: &Path) -> std::io::Result<CoreRun> {
    let dir = core_file::core_dir(&core_file::core_pattern(), cwd);
    let before = dir.as_deref().map(core_file::files_in).unwrap_or_default();
    let since = SystemTime::now() - Duration::from_secs(1);
    let mut child = launcher
        .child(SCENARIO.name)
        .params(params)
        .current_dir(cwd)
        .timeout(Duration::from_secs(120));
    if params.keep == Keep::Environment {
        child = child.env(securememory::KEEP_CORE_DUMPS_ENV, "1");
    }
    let outcome = child.try_run()?;
    let dump = match dir {
        Err(why) => Err((Status::Skip, format!("cannot prove here: {why}"))),
        Ok(dir) => match core_file::new_core(&dir, since, &before) {
            Some(path) => {
                let bytes = std::fs::read(&path);
                if !path.starts_with(cwd) {
                    let _ = std::fs::remove_file(&path);
                }
                bytes.map_err(|e| (Status::Fail, format!("reading {}: {e}", path.display())))
            }
            None => Err((
                Status::Skip,
                format!("the child wrote no core file in {}", dir.display()),
            )),
        },
    };
    Ok(CoreRun { outcome, dump })
}

/// Starts the child, waits until it holds everything, snapshots it with `gcore` and kills it.
///
/// # Errors
/// When the child cannot be started.
pub fn snapshot(launcher: &Launcher, params: &CoreParams) -> std::io::Result<CoreRun> {
    let params = CoreParams {
        wait_for_snapshot: true,
        ..params.clone()
    };
    let dir = scratch_dir("gcore")?;
    // One malloc arena: gdb dumps every thread arena's whole reservation, which only makes the snapshot slow.
    let run = launcher
        .child(SCENARIO.name)
        .params(&params)
        .env("MALLOC_ARENA_MAX", "1");
    let mut child = run.command().current_dir(&dir).spawn()?;
    let ready = child.stdout.take().is_some_and(|out| {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains(READY))
    });
    let path = dir.join("snapshot");
    let taken = if ready {
        core_file::gcore(child.id(), &path)
    } else {
        Err("the child never got ready".to_owned())
    };
    let _ = child.kill();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait()?;
    let dump = taken
        .and_then(|()| std::fs::read(&path).map_err(|e| e.to_string()))
        .map_err(|e| (Status::Fail, e));
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = ChildOutcome {
        scenario: SCENARIO.name.to_owned(),
        status,
        timed_out: false,
        stdout: String::new(),
        stderr,
    };
    Ok(CoreRun { outcome, dump })
}

/// Judges a dump: one verdict per flavour held. Each passes when the dump is real (holds the control marker)
/// and holds no marker of that flavour, whole or either half (a partial copy is a leak too).
pub fn judge(params: &CoreParams, run: &CoreRun) -> Vec<Verdict> {
    let mut flavours: Vec<Flavour> = Vec::new();
    for kind in &params.kinds {
        if !flavours.contains(kind) {
            flavours.push(*kind);
        }
    }
    let verdict = |flavour: Flavour, status, evidence| Verdict {
        scenario: SCENARIO.name,
        proof: "not-in-core-file",
        flavour: flavour.name(),
        status,
        evidence,
    };
    let all = |status: Status, evidence: String| -> Vec<Verdict> {
        flavours
            .iter()
            .map(|f| verdict(*f, status, evidence.clone()))
            .collect()
    };
    if let Some(e) = child_error(&run.outcome) {
        return all(Status::Fail, format!("the child could not set up: {e}"));
    }
    let bytes = match &run.dump {
        Ok(bytes) => bytes,
        Err((status, why)) => {
            let held = run
                .outcome
                .reports::<Line>()
                .into_iter()
                .find(|l| l.holding == Some(true));
            let limits = held.map_or(String::new(), |l| {
                format!(
                    "; its RLIMIT_CORE was {}, dumpable {}",
                    match l.core_limit {
                        Some(Some(b)) => format!("{b} bytes"),
                        Some(None) => "unlimited".to_owned(),
                        None => "unknown".to_owned(),
                    },
                    l.dumpable.map_or("unknown".to_owned(), |d| d.to_string())
                )
            });
            return all(
                *status,
                format!("{why} (the child {}{limits})", run.outcome.ended()),
            );
        }
    };
    if MarkerSet::from_hex(&[&params.control])
        .found_in(bytes)
        .is_empty()
    {
        return all(
            Status::Fail,
            format!(
                "the {} byte dump lacks the heap control marker, so it proves nothing",
                bytes.len()
            ),
        );
    }
    let n = params.markers.len();
    let mut needles = params.markers.clone();
    needles.extend(params.markers.iter().map(|m| m[..32].to_owned()));
    needles.extend(params.markers.iter().map(|m| m[32..].to_owned()));
    let found = MarkerSet::from_hex(&needles).found_in(bytes);
    let head = format!(
        "dump of {} bytes from a child that {}; heap control marker found",
        bytes.len(),
        run.outcome.ended()
    );
    flavours
        .iter()
        .map(|&flavour| {
            let leaks: Vec<String> = found
                .iter()
                .filter(|&&i| params.kinds[i % n] == flavour)
                .map(|&i| {
                    let (len, offset) = shape(i % n);
                    format!(
                        "marker {} ({len} bytes at {offset}{}){}",
                        i % n,
                        if i % n < params.held_open {
                            ", inside with_bytes"
                        } else {
                            ""
                        },
                        ["", " first half", " second half"][i / n]
                    )
                })
                .collect();
            let held = params.kinds.iter().filter(|k| **k == flavour).count();
            if leaks.is_empty() {
                verdict(
                    flavour,
                    Status::Pass,
                    format!("{head}; none of {held} secrets (nor half of one) found"),
                )
            } else {
                verdict(
                    flavour,
                    Status::Fail,
                    format!("{head}; SECRETS FOUND: {}", leaks.join(", ")),
                )
            }
        })
        .collect()
}
