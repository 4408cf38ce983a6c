//! The live proofs, run from the parent: start a child scenario, then judge how it ended and what it printed.

use serde::Serialize;

use crate::child::{self, ChildOptions, ChildOutcome};
use crate::cli::Flavour;
use crate::doctor::scenarios::Line;
use crate::report::Status;

#[derive(Debug, Serialize)]
pub struct Proof {
    /// "fault-on-touch", "not-in-core-file" or "not-readable-after-fork".
    pub proof: &'static str,
    pub flavour: &'static str,
    pub status: Status,
    pub evidence: String,
}

pub(super) fn proof(
    proof: &'static str,
    flavour: &'static str,
    status: Status,
    evidence: String,
) -> Proof {
    Proof {
        proof,
        flavour,
        status,
        evidence,
    }
}

pub(super) fn scenario(
    name: &str,
    flavour: Option<Flavour>,
    extra: &[&str],
    opts: &ChildOptions<'_>,
) -> Result<ChildOutcome, String> {
    let mut args = vec![name.to_owned()];
    if let Some(f) = flavour {
        args.extend(["--flavour".to_owned(), f.name().to_owned()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    child::run(&args, opts).map_err(|e| format!("could not start the child process: {e}"))
}

pub(super) fn child_error(out: &ChildOutcome) -> Option<String> {
    out.reports::<Line>().into_iter().find_map(|l| l.error)
}

/// A secret's page, read while at rest, must fault.
pub fn fault_on_touch(flavour: Flavour) -> Proof {
    touch_must_fault("fault-on-touch", flavour, &[], "its secret's page at rest")
}

/// The byte right after a guarded secret's data lies on a guard page and must fault, even during access.
pub fn guard_page_after_data(flavour: Flavour) -> Proof {
    touch_must_fault(
        "guard-page-after-data",
        flavour,
        &["--past-end"],
        "the byte after its secret's data during an access",
    )
}

fn touch_must_fault(name: &'static str, flavour: Flavour, extra: &[&str], what: &str) -> Proof {
    let out = match scenario("fault", Some(flavour), extra, &ChildOptions::default()) {
        Ok(o) => o,
        Err(e) => return proof(name, flavour.name(), Status::Fail, e),
    };
    let reached = out
        .reports::<Line>()
        .iter()
        .any(|l| l.touching == Some(true));
    let faulted = out.killed_by(libc::SIGSEGV) || out.killed_by(libc::SIGBUS);
    let (status, evidence) = match (reached, faulted) {
        (true, true) => (
            Status::Pass,
            format!("the child read {what} and {}", out.describe()),
        ),
        (true, false) => (
            Status::Fail,
            format!("the child read {what} and {}", out.describe()),
        ),
        (false, _) => (
            Status::Fail,
            format!(
                "the child {} before touching the page: {}",
                out.describe(),
                child_error(&out).unwrap_or_else(|| "no report".to_owned())
            ),
        ),
    };
    proof(name, flavour.name(), status, evidence)
}

/// A forked child must get neither the secret through the library nor by making the page readable itself.
pub fn not_readable_after_fork(flavour: Flavour) -> Proof {
    const NAME: &str = "not-readable-after-fork";
    let out = match scenario("fork", Some(flavour), &[], &ChildOptions::default()) {
        Ok(o) => o,
        Err(e) => return proof(NAME, flavour.name(), Status::Fail, e),
    };
    let lines = out.reports::<Line>();
    if let Some(e) = child_error(&out) {
        return proof(
            NAME,
            flavour.name(),
            Status::Fail,
            format!("the child could not set up: {e}"),
        );
    }
    let api = lines.iter().find_map(|l| l.api_read.clone());
    let raw = lines.iter().rev().find_map(|l| l.raw_read.clone());
    let leaked = lines.iter().any(|l| l.leaked == Some(true));
    match (api, raw, out.succeeded()) {
        (Some(api), Some(raw), true) => proof(
            NAME,
            flavour.name(),
            if leaked { Status::Fail } else { Status::Pass },
            format!("in the forked child the access path {api}; {raw}"),
        ),
        _ => proof(
            NAME,
            flavour.name(),
            Status::Fail,
            format!("the fork scenario {} without a full report", out.describe()),
        ),
    }
}
