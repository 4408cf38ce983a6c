//! How many secrets of a given size fit under the locked-memory limit: by arithmetic, and by allocating until
//! the limit stops a child process.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::child::{self, ChildOptions};
use crate::cli::Flavour;
use crate::doctor::host::MemlockFacts;
use crate::holder::Holder;

/// When nothing limits locking, the measuring child stops after this many locked bytes.
const UNBOUNDED_CAP_BYTES: u64 = 64 << 20;

#[derive(Debug, Serialize)]
pub struct Capacity {
    pub flavour: &'static str,
    /// Locked bytes one secret costs.
    pub locked_bytes_per_secret: u64,
    /// Mapped bytes one secret costs (locked pages plus unlocked guard pages).
    pub mapped_bytes_per_secret: u64,
    /// soft limit / locked bytes per secret; `None` when the limit is unlimited.
    pub by_arithmetic: Option<u64>,
    /// What the child managed to allocate.
    pub measured: Option<Measured>,
    /// Why there is no measurement, when there is none.
    pub not_measured: Option<String>,
}

/// The report of the `fill` child.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measured {
    pub count: u64,
    /// "lock-limit", "error" or "cap".
    pub stopped_by: String,
    pub error: Option<String>,
    /// VmLck when it stopped.
    pub locked_bytes: Option<u64>,
    /// The child gave up CAP_IPC_LOCK so the limit applied as to an unprivileged service.
    pub ipc_lock_dropped: bool,
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
    /// Growth of the number of mappings (lines of /proc/self/maps) per secret; the kernel caps mappings at
    /// vm.max_map_count.
    pub mappings: f64,
}

/// VmLck, VmSize and the mapping count of this process.
struct Footprint {
    locked: u64,
    mapped: u64,
    mappings: u64,
}

fn footprint() -> Option<Footprint> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    let mappings = std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .count() as u64;
    Some(Footprint {
        locked: kib("VmLck:")?,
        mapped: kib("VmSize:")?,
        mappings,
    })
}

/// Secrets between the two footprint samples of the marginal cost.
const SAMPLE_FROM: usize = 64;
const SAMPLE_TO: usize = 128;

fn marginal(from: &Footprint, to: &Footprint) -> Marginal {
    let n = (SAMPLE_TO - SAMPLE_FROM) as f64;
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n;
    Marginal {
        locked_bytes: per(from.locked, to.locked),
        mapped_bytes: per(from.mapped, to.mapped),
        mappings: per(from.mappings, to.mappings),
    }
}

fn per_secret(flavour: Flavour, size: u64) -> (u64, u64) {
    let page = memcall::page_size() as u64;
    let inner = size.div_ceil(page) * page;
    match flavour {
        Flavour::Region | Flavour::ProtectedMemory => (inner, inner),
        // Guard pages are mapped no-access and never locked.
        Flavour::Memguard => (inner, inner + 2 * page),
    }
}

/// Runs in the `fill` child: allocate and keep secrets until one fails or `cap` are live.
pub fn fill(flavour: Flavour, size: usize, cap: u64, drop_ipc_lock: bool) -> Measured {
    let start = Instant::now();
    let mut dropped = false;
    if drop_ipc_lock {
        match crate::sys::drop_lock_exemption() {
            Ok(()) => dropped = true,
            Err(e) => eprintln!("could not drop CAP_IPC_LOCK: {e}"),
        }
    }
    let mut held = Vec::new();
    let (mut sample_from, mut sample_to) = (None, None);
    let (stopped_by, error) = loop {
        if held.len() as u64 >= cap {
            break ("cap", None);
        }
        match held.len() {
            SAMPLE_FROM => sample_from = footprint(),
            SAMPLE_TO => sample_to = footprint(),
            _ => {}
        }
        match Holder::zeroed(flavour, size) {
            Ok(h) => held.push(h),
            Err(e) if e.lock_limit => break ("lock-limit", Some(e.message)),
            Err(e) => break ("error", Some(e.message)),
        }
    };
    let measured = Measured {
        count: held.len() as u64,
        stopped_by: stopped_by.to_owned(),
        error,
        locked_bytes: memcall::locked_bytes(),
        ipc_lock_dropped: dropped,
        elapsed_ms: start.elapsed().as_millis() as u64,
        marginal: sample_from
            .zip(sample_to)
            .map(|(from, to)| marginal(&from, &to)),
    };
    drop(held);
    measured
}

/// Arithmetic and measured capacity for `flavour`.
pub fn capacity(flavour: Flavour, size: u64, memlock: &MemlockFacts) -> Capacity {
    let (locked, mapped) = per_secret(flavour, size);
    let budget = memlock
        .soft_bytes
        .map(|soft| soft.saturating_sub(memlock.locked_now_bytes.unwrap_or(0)));
    let by_arithmetic = budget.map(|b| b / locked);
    let mut cap_result = Capacity {
        flavour: flavour.name(),
        locked_bytes_per_secret: locked,
        mapped_bytes_per_secret: mapped,
        by_arithmetic,
        measured: None,
        not_measured: None,
    };
    let exempt = memlock.cap_ipc_lock == Some(true);
    // Past the arithmetic figure plus slack the limit is evidently not binding; stop there.
    let cap = match by_arithmetic {
        Some(n) => n + n / 8 + 16,
        None => (UNBOUNDED_CAP_BYTES / locked).max(1),
    };
    let mut args = vec![
        "fill".to_owned(),
        "--flavour".to_owned(),
        flavour.name().to_owned(),
        "--size".to_owned(),
        size.to_string(),
        "--cap".to_owned(),
        cap.to_string(),
    ];
    if exempt {
        args.push("--drop-ipc-lock".to_owned());
    }
    let opts = ChildOptions {
        timeout: Duration::from_secs(120),
        ..ChildOptions::default()
    };
    match child::run(&args, &opts) {
        Ok(out) => match out.report::<Measured>() {
            Some(m) => cap_result.measured = Some(m),
            None => {
                cap_result.not_measured = Some(format!(
                    "the measuring process {} without a report{}",
                    out.describe(),
                    out.last_error_line()
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ))
            }
        },
        Err(e) => {
            cap_result.not_measured = Some(format!("could not start the measuring process: {e}"))
        }
    }
    cap_result
}
