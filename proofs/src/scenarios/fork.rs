//! A forked child gets neither the secret through the library nor by making the page readable itself.

use serde::{Deserialize, Serialize};

use super::{child_error, fail, start, with_params, Line, Scenario, Status, Verdict};
use crate::child::{emit, Launcher};
use crate::holder::{Flavour, Holder};
use crate::sys;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "fork",
    proves: "a forked child can read a secret neither through the library nor by mprotect and a raw read",
    child: |json| with_params(json, child),
};

/// What the child holds before it forks.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ForkParams {
    /// The flavour of the secret.
    pub flavour: Flavour,
}

fn child(p: ForkParams) -> i32 {
    let holder = match Holder::random(p.flavour, 32) {
        Ok(h) => h,
        Err(e) => return fail(e.message),
    };
    let (expected, addr) = match (holder.with_bytes(<[u8]>::to_vec), holder.data_addr()) {
        (Ok(m), Ok(a)) => (m, a),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    // A lock held by another thread at fork time stays held forever in the child, so the library's access
    // path is only tried when this process is single-threaded (the scenarios start no threads themselves).
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    // SAFETY: in the forked child either the process was single-threaded, or the child skips every call that
    // could wait on a lock another thread held; it then reads and calls `_exit`.
    let pid = match unsafe { sys::fork() } {
        Ok(pid) => pid,
        Err(e) => return fail(format!("fork: {e}")),
    };
    if pid == 0 {
        forked_child(&holder, addr, &expected, threads == 1)
    }
    match sys::wait(pid) {
        Ok(Ok(code)) => code,
        Ok(Err(sig)) => {
            emit(&Line {
                raw_read: Some(format!(
                    "the forked child was killed by {} (signal {sig}) reading the page",
                    sys::signal_name(sig)
                )),
                leaked: Some(false),
                ..Line::default()
            });
            0
        }
        Err(e) => fail(format!("waitpid: {e}")),
    }
}

fn forked_child(holder: &Holder, addr: usize, expected: &[u8], try_api: bool) -> ! {
    let api_read = match try_api.then(|| holder.with_bytes(|b| b == expected)) {
        Some(Ok(true)) => "the access path returned the secret".to_owned(),
        Some(Ok(false)) => "the access path returned other bytes".to_owned(),
        Some(Err(e)) => format!("refused: {e}"),
        None => "was not tried (the parent had several threads)".to_owned(),
    };
    let api_leaked = api_read.starts_with("the access path returned the secret");
    // Rust's stdout takes a lock another thread may have held at fork time: write the line raw.
    let line = |raw: String, leaked: bool| {
        let l = Line {
            api_read: Some(api_read.clone()),
            raw_read: Some(raw),
            leaked: Some(leaked),
            ..Line::default()
        };
        let mut text = serde_json::to_string(&l).unwrap_or_default();
        text.push('\n');
        sys::write_stdout_raw(text.as_bytes());
    };
    // SAFETY: this forked child exits right after; nothing else relies on the page's protection here.
    if let Err(e) = unsafe { sys::protect_page_readable(addr) } {
        line(
            format!("mprotect(READ) on the page failed: {e}"),
            api_leaked,
        );
        sys::exit_now(0);
    }
    // Announce the read first: if it faults, the parent still learns the access path's result.
    line("mprotect(READ) succeeded; reading".to_owned(), api_leaked);
    let got: Vec<u8> = (0..expected.len())
        // SAFETY: the page was just made readable; a fault here is an acceptable outcome of the proof.
        .map(|i| unsafe { sys::touch((addr + i) as *const u8) })
        .collect();
    let leaked = got == expected;
    let what = if leaked {
        "read the secret"
    } else if got.iter().all(|&b| b == 0) {
        "read zeros (wiped on fork)"
    } else {
        "read other bytes"
    };
    line(
        format!("mprotect(READ) succeeded and {what}"),
        api_leaked || leaked,
    );
    sys::exit_now(0)
}

/// Runs the child and judges it: the forked child must report both reads, and neither may leak.
pub fn prove(launcher: &Launcher, params: ForkParams) -> Verdict {
    let verdict = |status, evidence| Verdict {
        scenario: SCENARIO.name,
        proof: "not-readable-after-fork",
        flavour: params.flavour.name(),
        status,
        evidence,
    };
    let out = match start(launcher, verdict, &SCENARIO, &params) {
        Ok(o) => o,
        Err(v) => return v,
    };
    if let Some(e) = child_error(&out) {
        return verdict(Status::Fail, format!("the child could not set up: {e}"));
    }
    let lines = out.reports::<Line>();
    let api = lines.iter().find_map(|l| l.api_read.clone());
    let raw = lines.iter().rev().find_map(|l| l.raw_read.clone());
    let leaked = lines.iter().any(|l| l.leaked == Some(true));
    match (api, raw, out.succeeded()) {
        (Some(api), Some(raw), true) => verdict(
            if leaked { Status::Fail } else { Status::Pass },
            format!("in the forked child the access path {api}; {raw}"),
        ),
        _ => verdict(
            Status::Fail,
            format!("the fork scenario {} without a full report", out.ended()),
        ),
    }
}
