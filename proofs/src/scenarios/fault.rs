//! A secret's page faults when touched at rest; with `past_end`, the byte right after a guarded secret's data
//! lies on a guard page and faults even during an access.

use serde::{Deserialize, Serialize};

use super::{child_error, fail, start, with_params, Line, Scenario, Status, Verdict};
use crate::child::{emit, Launcher};
use crate::holder::{Flavour, Holder};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "fault",
    proves: "a secret's page faults when touched at rest; the byte after a guarded secret's data faults always",
    child: |json| with_params(json, child),
};

/// What the child holds and where it touches.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct FaultParams {
    /// The flavour of the secret.
    pub flavour: Flavour,
    /// Touch the first byte after the data, from inside an access window, instead of the data at rest.
    pub past_end: bool,
}

/// Size of the secret the child holds.
const SECRET_LEN: usize = 32;

fn child(p: FaultParams) -> i32 {
    let holder = match Holder::random(p.flavour, SECRET_LEN) {
        Ok(h) => h,
        Err(e) => return fail(e.message),
    };
    let touch_and_report = |addr: usize| {
        emit(&Line {
            touching: Some(true),
            ..Line::default()
        });
        // SAFETY: `addr` is the secret's first byte (no-access at rest) or the first byte after its data (a
        // guard page); either must fault, which ends this process.
        std::hint::black_box(unsafe { crate::sys::touch(addr as *const u8) });
        emit(&Line {
            survived: Some(true),
            ..Line::default()
        });
    };
    let touched = if p.past_end {
        holder.with_bytes(|b| touch_and_report(b.as_ptr() as usize + b.len()))
    } else {
        holder.data_addr().map(touch_and_report)
    };
    match touched {
        Ok(()) => 3,
        Err(e) => fail(e),
    }
}

/// Runs the child and judges it: it must reach the touch and die of a memory fault there.
pub fn prove(launcher: &Launcher, params: FaultParams) -> Verdict {
    let (proof, what) = if params.past_end {
        (
            "guard-page-after-data",
            "the byte after its secret's data during an access",
        )
    } else {
        ("fault-on-touch", "its secret's page at rest")
    };
    let verdict = |status, evidence| Verdict {
        scenario: SCENARIO.name,
        proof,
        flavour: params.flavour.name(),
        status,
        evidence,
    };
    let out = match start(launcher, verdict, &SCENARIO, &params) {
        Ok(o) => o,
        Err(v) => return v,
    };
    let reached = out
        .reports::<Line>()
        .iter()
        .any(|l| l.touching == Some(true));
    match (reached, out.faulted()) {
        (true, faulted) => verdict(
            if faulted { Status::Pass } else { Status::Fail },
            format!("the child read {what} and {}", out.ended()),
        ),
        (false, _) => verdict(
            Status::Fail,
            format!(
                "the child {} before touching the page: {}",
                out.ended(),
                child_error(&out).unwrap_or_else(|| "no report".to_owned())
            ),
        ),
    }
}
