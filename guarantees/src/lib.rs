//! Support for the end-to-end guarantee tests of securememory-rs (the tests live in `tests/`).
//!
//! A guarantee such as "unreadable outside the access window" or "never in a core dump" can only be shown by a
//! process that dies, dumps core or hits a limit. This library holds what every such test needs:
//! - [`child`]: re-running the test binary on one scenario and asserting how that process ended;
//! - [`core_file`]: allowing core dumps, finding the core file, hex markers that never sit in memory in binary
//!   form until they are decoded into their destination, and scanning for them;
//! - [`proc_stats`]: `VmLck`, `VmRSS`, mapping counts and a scan of the process's own memory from `/proc`;
//! - [`watchdog`]: a bound on how long a scenario may run before the process aborts.
//!
//! Linux only: the guarantees are proven where they run (other platforms are type-checked elsewhere).
#![cfg(target_os = "linux")]

pub mod child;
pub mod core_file;
pub mod proc_stats;
pub mod watchdog;

pub use child::{announce_touch, dispatch, run_child, ChildOutcome, Scenario};
pub use watchdog::Watchdog;
