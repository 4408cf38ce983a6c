//! The registry of proofs: each scenario is what a child process does ([`Scenario::child`]), and its module
//! holds the parent's side (start the child with [`crate::child::Launcher`], judge how it ended into
//! [`Verdict`]s), so the doctor and the CI tests run literally the same code with different sizes.

pub mod core;
pub mod fault;
pub mod fill;
pub mod fork;
pub mod probe;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::child::emit;

/// One scenario of the registry.
#[derive(Debug)]
pub struct Scenario {
    /// The name the child is started with (and that `doctor --json` reports).
    pub name: &'static str,
    /// What it proves, in a sentence.
    pub proves: &'static str,
    /// What the child process does with its JSON parameters; returns the child's exit code.
    pub child: fn(&str) -> i32,
}

/// Every scenario, by name.
pub const REGISTRY: &[Scenario] = &[
    probe::SCENARIO,
    fill::SCENARIO,
    fault::SCENARIO,
    fork::SCENARIO,
    core::SCENARIO,
];

/// The registry scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    REGISTRY.iter().find(|s| s.name == name)
}

/// Parses the child's parameters and runs `body`, or reports the bad parameters (exit code 2).
fn with_params<P: DeserializeOwned>(json: &str, body: impl FnOnce(P) -> i32) -> i32 {
    match serde_json::from_str(json) {
        Ok(params) => body(params),
        Err(e) => fail(format!("bad parameters {json:?}: {e}")),
    }
}

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The guarantee holds.
    Pass,
    /// The guarantee does not hold.
    Fail,
    /// Informational: not a guarantee, but worth knowing.
    Warn,
    /// The check cannot be carried out on this host.
    Skip,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Skip => "SKIP",
        })
    }
}

/// How one proof came out for one flavour.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The registry scenario that ran.
    pub scenario: &'static str,
    /// What was proven ("fault-on-touch", "not-in-core-file", ...).
    pub proof: &'static str,
    /// The flavour it was proven for.
    pub flavour: &'static str,
    /// The outcome.
    pub status: Status,
    /// What the child did and how it ended.
    pub evidence: String,
}

impl Verdict {
    /// Asserts the proof passed.
    ///
    /// # Panics
    /// Otherwise, with the evidence.
    #[track_caller]
    pub fn assert_pass(&self) {
        assert_eq!(
            self.status,
            Status::Pass,
            "{} ({}, scenario {}): {}",
            self.proof,
            self.flavour,
            self.scenario,
            self.evidence
        );
    }
}

/// A line a scenario child prints (every field optional; each scenario fills its own).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Line {
    /// The child reached the step that must fault.
    pub touching: Option<bool>,
    /// The child survived a step that had to fault.
    pub survived: Option<bool>,
    /// Why the child could not set up.
    pub error: Option<String>,
    /// Fork proof: what the library's own access path did in the forked child.
    pub api_read: Option<String>,
    /// Fork proof: what a raw mprotect + read did in the forked child.
    pub raw_read: Option<String>,
    /// Fork proof: the secret reached the forked child.
    pub leaked: Option<bool>,
    /// Core proof: the child holds everything now.
    pub holding: Option<bool>,
    /// Core proof: RLIMIT_CORE soft side after the library set up (`None` = unlimited) and PR_GET_DUMPABLE.
    pub core_limit: Option<Option<u64>>,
    /// Core proof: `PR_GET_DUMPABLE`.
    pub dumpable: Option<bool>,
}

/// Reports a child's failure to set up and returns its exit code (2).
fn fail(message: String) -> i32 {
    emit(&Line {
        error: Some(message),
        ..Line::default()
    });
    2
}

/// Starts `scenario`'s child with `params` and waits for it; a child that could not start is a failed verdict
/// saying why.
fn start<P: Serialize>(
    launcher: &crate::Launcher,
    verdict: impl Fn(Status, String) -> Verdict,
    scenario: &Scenario,
    params: &P,
) -> Result<crate::ChildOutcome, Verdict> {
    launcher
        .child(scenario.name)
        .params(params)
        .try_run()
        .map_err(|e| {
            verdict(
                Status::Fail,
                format!("could not start the child process: {e}"),
            )
        })
}

/// The setup error a child reported, if any.
fn child_error(out: &crate::ChildOutcome) -> Option<String> {
    out.reports::<Line>().into_iter().find_map(|l| l.error)
}
