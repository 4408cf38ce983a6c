//! Support for the end-to-end guarantee tests of securememory-rs (the tests live in `tests/`).
//!
//! A guarantee such as "unreadable outside the access window" or "never in a core dump" can only be shown by a
//! process that dies, dumps core or hits a limit. The machinery for that (child processes, core files, `/proc`
//! footprints, watchdogs) and the scenarios `securememory doctor` also runs live in the `proofs` crate; this
//! crate re-exports it for the tests.
//!
//! Linux only: the guarantees are proven where they run (other platforms are type-checked elsewhere).
//!
//! # Which test proves what
//! | guarantee | tests (in `guarantees/tests/`) |
//! |---|---|
//! | unreadable at rest, read-only inside the closure | `fault.rs`: both flavours, every access path, nested, concurrent, after a panic |
//! | never in a core dump | `core_dump.rs`: 100 secrets + 20 buffers, default (no core) and both opt-outs; a live `gcore` |
//! | not inherited by a forked child | `fork.rs`: every way in, both flavours and locked buffers, the parent unharmed |
//! | a forked child starts fresh | `fork_lifecycle.rs`: warm caches, the child's pages in the parent's holes, trim in the child, 4 preforked workers × 1,000 secrets per flavour, inherited secrets dropped quietly |
//! | never swapped (locked, typed error at the limit) | `memlock.rs`: without `CAP_IPC_LOCK`, each kind and a mix; best effort; pooled pages must not starve others |
//! | wiped on release | `wipe.rs`: own-memory scan after close, drop and purge; wiped before a failed unmap; pooled pages zero |
//! | concurrency without wrong bytes, hangs or leaks | `races.rs`: 12 threads × 10^4 accesses over 64 secrets with churn |
//! | no leak over time | `soak.rs` (release): 10^6 create/close cycles, `VmLck`, the library's mappings, `VmRSS` flat |
//! | bad input is a typed error, never a crash | `bad_input.rs` |
//! | the kernel agrees: `lo`, `dd`, `dc`, `---` at rest, `r--` inside | `kernel_view.rs` (and each protection report) |
//! | not readable by other processes, root included | `secret_memory.rs`: both flavours at rest and in a window against `/proc/*/mem`, `process_vm_readv`, `ptrace`, `gcore`, a crash core; anonymous control; wipe, fork, memlock counts |
//! | the doctor's scenarios, at CI's sizes | `doctor_scenarios.rs`: every entry of the proof registry (`proofs::scenarios::REGISTRY`) |
#![cfg(target_os = "linux")]

pub use proofs::{
    announce_touch, child, core_file, dispatch, proc_stats, run_child, scenarios, watchdog,
};
pub use proofs::{ChildOutcome, Launcher, Watchdog};

/// A scenario local to one test file (see [`dispatch`]).
pub type Scenario = proofs::LocalScenario;

/// The workspace README's Rust quick start, compiled and run as a doc test. It lives here because this package
/// is never published: a published one could not include a file outside its own directory.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadmeDoctests;
