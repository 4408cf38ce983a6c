//! How many secrets fit under the locked-memory limit, measured by allocating until the limit stops a child
//! (after it gave up `CAP_IPC_LOCK`, so the limit binds as for an unprivileged service), and that the limit's
//! refusal is the typed lock-limit error.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{with_params, Scenario};
use crate::child::{emit, Launcher};
use crate::holder::{Flavour, Holder};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "fill",
    proves: "secrets fill the locked-memory limit and the next one fails with the typed lock-limit error",
    child: |json| with_params(json, |p| {
        emit(&child(&p));
        0
    }),
};

/// What the child allocates.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct FillParams {
    /// The flavour of the secrets.
    pub flavour: Flavour,
    /// Bytes per secret.
    pub size: usize,
    /// Stop after this many even if nothing failed.
    pub cap: u64,
    /// Give up `CAP_IPC_LOCK` first.
    pub drop_ipc_lock: bool,
}

/// What the child reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measured {
    /// Secrets that were live at once.
    pub count: u64,
    /// "lock-limit", "error" or "cap".
    pub stopped_by: String,
    /// The error that stopped it.
    pub error: Option<String>,
    /// VmLck when it stopped.
    pub locked_bytes: Option<u64>,
    /// The child gave up CAP_IPC_LOCK so the limit applied as to an unprivileged service.
    pub ipc_lock_dropped: bool,
    /// How long filling took.
    pub elapsed_ms: u64,
    /// What one more live secret cost in steady state (between the 64th and the 128th), when that many fitted.
    pub marginal: Option<Marginal>,
}

/// The measured cost of one more live secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct Marginal {
    /// Growth of VmLck per secret.
    pub locked_bytes: f64,
    /// Growth of VmSize per secret (locked pages, guard pages, anything else mapped).
    pub mapped_bytes: f64,
    /// Growth of the number of mappings per secret; the kernel caps mappings at vm.max_map_count.
    pub mappings: f64,
}

/// Secrets between the two footprint samples of the marginal cost.
const SAMPLE_FROM: usize = 64;
const SAMPLE_TO: usize = 128;

/// VmLck, VmSize and the mapping count.
fn sample() -> Option<(f64, f64, f64)> {
    #[cfg(target_os = "linux")]
    {
        use crate::proc_stats::{mapping_count, status_bytes};
        Some((
            status_bytes("VmLck") as f64,
            status_bytes("VmSize") as f64,
            mapping_count() as f64,
        ))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

fn child(p: &FillParams) -> Measured {
    let start = Instant::now();
    let mut dropped = false;
    if p.drop_ipc_lock {
        match crate::sys::drop_lock_exemption() {
            Ok(()) => dropped = true,
            Err(e) => eprintln!("could not drop CAP_IPC_LOCK: {e}"),
        }
    }
    let mut held = Vec::new();
    let (mut from, mut to) = (None, None);
    let (stopped_by, error) = loop {
        if held.len() as u64 >= p.cap {
            break ("cap", None);
        }
        match held.len() {
            SAMPLE_FROM => from = sample(),
            SAMPLE_TO => to = sample(),
            _ => {}
        }
        match Holder::zeroed(p.flavour, p.size) {
            Ok(h) => held.push(h),
            Err(e) if e.lock_limit => break ("lock-limit", Some(e.message)),
            Err(e) => break ("error", Some(e.message)),
        }
    };
    let n = (SAMPLE_TO - SAMPLE_FROM) as f64;
    let measured = Measured {
        count: held.len() as u64,
        stopped_by: stopped_by.to_owned(),
        error,
        locked_bytes: memcall::locked_bytes(),
        ipc_lock_dropped: dropped,
        elapsed_ms: start.elapsed().as_millis() as u64,
        marginal: from.zip(to).map(|(a, b)| Marginal {
            locked_bytes: (b.0 - a.0) / n,
            mapped_bytes: (b.1 - a.1) / n,
            mappings: (b.2 - a.2) / n,
        }),
    };
    drop(held);
    measured
}

/// Runs the child and returns its report.
///
/// # Errors
/// When the child could not be started or ended without a report, with how it ended.
pub fn measure(launcher: &Launcher, params: FillParams) -> Result<Measured, String> {
    let out = launcher
        .child(SCENARIO.name)
        .params(&params)
        .timeout(Duration::from_secs(120))
        .try_run()
        .map_err(|e| format!("could not start the measuring process: {e}"))?;
    out.report::<Measured>().ok_or_else(|| {
        format!(
            "the measuring process {} without a report{}",
            out.ended(),
            out.last_error_line()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        )
    })
}
