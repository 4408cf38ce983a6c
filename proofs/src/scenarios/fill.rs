//! How many secrets fit under the locked-memory limit, measured by allocating until the limit stops a child
//! (after it gave up `CAP_IPC_LOCK`, so the limit binds as for an unprivileged service), and that the limit's
//! refusal is the typed lock-limit error.
//!
//! Sealed secrets are not bounded by the limit: for them the child fills to its cap, reads a sample back and
//! reports that `VmLck` and the number of mappings stayed flat from the first secret to the last (see
//! [`Span`], [`ReadBack`]).

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
    /// After filling, read back this many of the secrets, spread over all of them from a random start, and
    /// compare each with the bytes it was made with (0: every secret is zeros and none is read back).
    #[serde(default)]
    pub read_back: u64,
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
    /// The footprint from the first live secret to the last, when more than one fitted.
    #[serde(default)]
    pub span: Option<Span>,
    /// The secrets read back after filling, when asked for.
    #[serde(default)]
    pub read_back: Option<ReadBack>,
    /// VmLck and the number of mappings once every secret was closed again.
    #[serde(default)]
    pub after_close: Option<Footprint>,
}

/// `VmLck`, the number of mappings and the resident set at one moment.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Footprint {
    /// VmLck.
    pub locked_bytes: u64,
    /// Lines of /proc/self/maps.
    pub mappings: u64,
    /// VmRSS.
    pub resident_bytes: u64,
}

/// The footprint with the first live secret and with the last (before any was read back).
#[derive(Debug, Serialize, Deserialize)]
pub struct Span {
    /// Secrets live at `first` (1).
    pub from: u64,
    /// Secrets live at `last`.
    pub to: u64,
    /// With `from` secrets live.
    pub first: Footprint,
    /// With `to` secrets live.
    pub last: Footprint,
}

impl Span {
    /// Growth of VmLck from the first secret to the last (negative when it shrank).
    pub fn locked_growth(&self) -> i64 {
        self.last.locked_bytes as i64 - self.first.locked_bytes as i64
    }

    /// Growth of the mapping count from the first secret to the last.
    pub fn mapping_growth(&self) -> i64 {
        self.last.mappings as i64 - self.first.mappings as i64
    }

    /// Resident bytes per secret added between the first and the last (the secret, its handle in the
    /// holding `Vec`, and anything the library keeps per secret), or `None` with fewer than two.
    pub fn resident_per_secret(&self) -> Option<f64> {
        (self.to > self.from).then(|| {
            (self.last.resident_bytes as f64 - self.first.resident_bytes as f64)
                / (self.to - self.from) as f64
        })
    }
}

/// The outcome of reading secrets back after filling.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadBack {
    /// Secrets read back.
    pub checked: u64,
    /// Of those, the ones whose bytes were exactly the bytes they were made with.
    pub exact: u64,
    /// The first read that failed or returned other bytes, with the secret's index.
    pub first_problem: Option<String>,
    /// VmLck after the reads (scratch pages a sealed access leaves cached count here).
    pub locked_bytes_after: Option<u64>,
}

impl ReadBack {
    /// Every secret read back held exactly its bytes.
    pub fn all_exact(&self) -> bool {
        self.checked > 0 && self.exact == self.checked && self.first_problem.is_none()
    }
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

/// The bytes secret number `index` is made with when secrets are read back: distinct for every index.
fn pattern(index: u64, dest: &mut [u8]) {
    let word = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
    for (j, b) in dest.iter_mut().enumerate() {
        *b = (word.rotate_left(8 * (j % 8) as u32) as u8) ^ (j / 8) as u8;
    }
}

/// The footprint now.
fn footprint() -> Option<Footprint> {
    #[cfg(target_os = "linux")]
    {
        use crate::proc_stats::{mapping_count, status_bytes};
        Some(Footprint {
            locked_bytes: status_bytes("VmLck"),
            mappings: mapping_count() as u64,
            resident_bytes: status_bytes("VmRSS"),
        })
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The live secrets: page-backed ones behind [`Holder`]; sealed ones as the library's own handle, so the
/// resident cost per secret measured is the library's and not the holder's (a sealed secret's handle is a few
/// words, a `Holder` twice that).
enum Held {
    Holders(Vec<Holder>),
    Sealed(Vec<securememory::SealedSecret>),
}

impl Held {
    fn new(flavour: Flavour, capacity: usize) -> Held {
        if flavour == Flavour::Sealed {
            Held::Sealed(Vec::with_capacity(capacity))
        } else {
            Held::Holders(Vec::with_capacity(capacity))
        }
    }

    fn len(&self) -> usize {
        match self {
            Held::Holders(v) => v.len(),
            Held::Sealed(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `holder`; a sealed list takes only sealed secrets.
    fn push(&mut self, holder: Holder) -> Result<(), String> {
        match (self, holder) {
            (Held::Sealed(v), Holder::Sealed(secret)) => v.push(secret),
            (Held::Sealed(_), other) => return Err(format!("not a sealed secret: {other:?}")),
            (Held::Holders(v), holder) => v.push(holder),
        }
        Ok(())
    }

    fn with_bytes<R>(&self, index: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        match self {
            Held::Holders(v) => v[index].with_bytes(f),
            Held::Sealed(v) => v[index].with_bytes(|b| Ok(f(b))).map_err(|e| e.to_string()),
        }
    }
}

/// Reads `want` of `held` back (a random start, then evenly spaced) and compares them with [`pattern`].
fn read_back(held: &Held, size: usize, want: u64) -> ReadBack {
    let n = held.len() as u64;
    let want = want.min(n);
    let mut seed = [0u8; 8];
    let start = match crate::sys::getrandom(&mut seed) {
        Ok(()) => u64::from_le_bytes(seed) % n.max(1),
        Err(_) => 0,
    };
    let step = n.checked_div(want).unwrap_or(1).max(1);
    let mut expected = vec![0u8; size];
    let (mut checked, mut exact, mut first_problem) = (0, 0, None);
    for k in 0..want {
        let index = (start + k * step) % n;
        pattern(index, &mut expected);
        checked += 1;
        match held.with_bytes(index as usize, |b| b == expected.as_slice()) {
            Ok(true) => exact += 1,
            Ok(false) => {
                first_problem
                    .get_or_insert_with(|| format!("secret {index} read back other bytes"));
            }
            Err(e) => {
                first_problem.get_or_insert_with(|| format!("secret {index}: {e}"));
            }
        }
    }
    ReadBack {
        checked,
        exact,
        first_problem,
        locked_bytes_after: footprint().map(|f| f.locked_bytes),
    }
}

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
    // Room for every handle up front, so the holding `Vec` is not reallocated while the footprint is sampled.
    let mut held = Held::new(
        p.flavour,
        usize::try_from(p.cap.min(4_000_000)).unwrap_or(0),
    );
    let (mut from, mut to, mut first) = (None, None, None);
    let (stopped_by, error) = loop {
        if held.len() as u64 >= p.cap {
            break ("cap", None);
        }
        match held.len() {
            SAMPLE_FROM => from = sample(),
            SAMPLE_TO => to = sample(),
            _ => {}
        }
        if held.len() == 1 {
            first = footprint();
        }
        let index = held.len() as u64;
        let made = if p.read_back > 0 {
            Holder::filled(p.flavour, p.size, |dest| pattern(index, dest))
        } else {
            Holder::zeroed(p.flavour, p.size)
        };
        match made {
            Ok(h) => {
                if let Err(e) = held.push(h) {
                    break ("error", Some(e));
                }
            }
            Err(e) if e.lock_limit => break ("lock-limit", Some(e.message)),
            Err(e) => break ("error", Some(e.message)),
        }
    };
    let last = footprint();
    let span = first.zip(last).map(|(first, last)| Span {
        from: 1,
        to: held.len() as u64,
        first,
        last,
    });
    let read_back =
        (p.read_back > 0 && !held.is_empty()).then(|| read_back(&held, p.size, p.read_back));
    let n = (SAMPLE_TO - SAMPLE_FROM) as f64;
    let mut measured = Measured {
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
        span,
        read_back,
        after_close: None,
    };
    drop(held);
    measured.after_close = footprint();
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
