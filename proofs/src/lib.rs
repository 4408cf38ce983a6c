//! The proof engine of securememory-rs: each guarantee is proven once, here, and run by two front-ends.
//!
//! A guarantee such as "unreadable outside the access window" or "never in a core dump" can only be shown by a
//! process that faults, dumps core, forks or hits a limit. A [`scenarios::Scenario`] names what such a child
//! process does, and its module holds the parent's side: starting the child and judging how it ended into
//! [`scenarios::Verdict`]s. `securememory doctor` runs the registry on the user's host with small sizes;
//! the `guarantees/` tests run the same scenarios in CI with larger ones and assert every verdict.
//!
//! - [`child`]: re-running the current binary on one scenario ([`child::Launcher`]) and collecting how it ended;
//! - [`scenarios`]: the registry and each scenario's child and judge;
//! - [`holder`]: one secret of a chosen flavour, filled so its bytes exist only in its pages;
//! - [`core_file`]: allowing core dumps, finding the file, `gcore` of a live process, markers to scan for;
//! - [`proc_stats`] (Linux): `VmLck`, `VmRSS`, mappings, `smaps` flags per range, a scan of the process's memory;
//! - [`sys`]: the system calls the proofs make beyond `memcall` (host identity, core limits, probes, fork);
//! - [`watchdog`]: a bound on how long a scenario may run.
//!
//! # Where a new guarantee's proof goes
//! 1. Write the child's side and the judge as a module of [`scenarios`] and add it to [`scenarios::REGISTRY`].
//! 2. Add a check to `securememory doctor` that runs it with host-friendly sizes and names the scenario.
//! 3. Add a test to `guarantees/tests/doctor_scenarios.rs` that runs it with CI's sizes and asserts its verdicts
//!    (that file refuses a registry entry it does not cover).
#![cfg(unix)]

pub mod child;
pub mod core_file;
pub mod holder;
#[cfg(target_os = "linux")]
pub mod proc_stats;
pub mod scenarios;
pub mod sys;
pub mod watchdog;

pub use child::{announce_touch, dispatch, run_child, ChildOutcome, Launcher, LocalScenario};
pub use holder::{Flavour, Holder};
pub use scenarios::{Status, Verdict};
pub use watchdog::Watchdog;
