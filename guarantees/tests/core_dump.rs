//! Guarantee 2, never in a core dump, through the proof registry's `core` scenario (the one `securememory
//! doctor` runs) at CI's size: 100 secrets of both flavours and 20 memguard locked buffers, each with its own
//! random marker, 10 secrets inside a running `with_bytes` on other threads, and a heap control marker.
//! - By default the first factory disables core dumps for the process: no core file at all.
//! - With the documented opt-outs (`keep_core_dumps()` or `SECUREMEMORY_KEEP_CORE_DUMPS=1`) the core is
//!   written: it holds the control marker (the dump is real) and no secret marker, not even half of one.
//! - A live process snapshotted by gdb's `gcore` (ptrace, which no `RLIMIT_CORE` stops) holds no secret either.
#![cfg(target_os = "linux")]

use guarantees::core_file;
use guarantees::scenarios::core::{self, CoreParams, CoreRun, Keep};
use guarantees::scenarios::Verdict;
use guarantees::Launcher;
use proofs::Flavour;

const SECRETS: usize = 100;
const BUFFERS: usize = 20;
const HELD_OPEN: usize = 10;

#[test]
fn child_entry() {
    guarantees::dispatch(&[]);
}

/// CI's size: secrets alternating between the flavours (so the first `HELD_OPEN` are both kinds), then buffers.
fn params(keep: Keep) -> CoreParams {
    let mut kinds: Vec<Flavour> = (0..SECRETS)
        .map(|i| [Flavour::ProtectedMemory, Flavour::Memguard][i % 2])
        .collect();
    kinds.extend([Flavour::LockedBuffer; BUFFERS]);
    CoreParams::new(kinds, HELD_OPEN, keep)
}

/// Runs the scenario; `None` when core tests are skipped here.
fn dumped(keep: Keep) -> Option<(CoreParams, CoreRun)> {
    core_file::file_pattern_or_skip()?;
    let params = params(keep);
    let run = core::dump(&Launcher::test_binary(), &params).expect("start the core child");
    Some((params, run))
}

fn assert_all_pass(verdicts: &[Verdict]) {
    assert_eq!(verdicts.len(), 3, "{verdicts:#?}");
    verdicts.iter().for_each(Verdict::assert_pass);
}

#[test]
fn by_default_no_core_file_is_written() {
    let Some((_, run)) = dumped(Keep::Default) else {
        return;
    };
    run.outcome.assert_signal(libc::SIGABRT);
    assert!(
        !run.outcome.core_dumped() && run.dump.is_err(),
        "core dumps should be disabled process-wide by default; {}",
        run.outcome.describe()
    );
}

#[test]
fn with_keep_core_dumps_the_core_holds_no_secret() {
    if let Some((params, run)) = dumped(Keep::Function) {
        assert!(run.outcome.core_dumped(), "{}", run.outcome.describe());
        assert_all_pass(&core::judge(&params, &run));
    }
}

#[test]
fn with_the_environment_opt_out_the_core_holds_no_secret() {
    if let Some((params, run)) = dumped(Keep::Environment) {
        assert!(run.outcome.core_dumped(), "{}", run.outcome.describe());
        assert_all_pass(&core::judge(&params, &run));
    }
}

/// With the default settings (core dumps disabled) per-region exclusion is all that keeps secrets out of a
/// snapshot taken through ptrace.
#[test]
fn a_gcore_snapshot_of_a_live_process_holds_no_secret() {
    if !core_file::has_gdb_or_skip("the gcore snapshot") {
        return;
    }
    let params = params(Keep::Default);
    let run = core::snapshot(&Launcher::test_binary(), &params).expect("start the core child");
    assert_all_pass(&core::judge(&params, &run));
}

/// The judge is not blind: a dump that holds a marker, or lacks the control marker, fails.
#[test]
fn the_judge_finds_a_planted_marker_and_refuses_a_dump_without_the_control() {
    let params = params(Keep::Function);
    let fake = |bytes: Vec<u8>| CoreRun {
        outcome: guarantees::run_child("none").env("PATH", "").run(),
        dump: Ok(bytes),
    };
    let mut planted = vec![0u8; 4096];
    planted.extend(core_file::unhex(&params.control));
    planted.extend(&core_file::unhex(&params.markers[7])[..16]);
    let verdicts = core::judge(&params, &fake(planted));
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.status == proofs::Status::Fail)
        .map(|v| v.flavour)
        .collect();
    assert_eq!(failed, ["memguard"], "{verdicts:#?}");
    let no_control = core::judge(&params, &fake(vec![0u8; 4096]));
    assert!(
        no_control.iter().all(|v| v.status == proofs::Status::Fail),
        "{no_control:#?}"
    );
}
