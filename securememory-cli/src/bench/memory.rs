//! The memory row: resident bytes per live sealed secret, measured in a child process that holds many of them
//! (the proof registry's `fill` scenario, as the doctor runs it), so no heap freed by earlier cases of this
//! run is reused and hides the cost.

use serde::Serialize;

use proofs::scenarios::fill::{self, FillParams};
use proofs::{Flavour, Launcher};

/// The row's name (what `--filter` matches).
pub const NAME: &str = "sealed/memory_per_secret";
/// Live 32-byte secrets the child holds (with `--quick`, [`QUICK_COUNT`]).
pub const COUNT: u64 = 100_000;
pub const QUICK_COUNT: u64 = 20_000;
const SECRET_LEN: usize = 32;
/// The goal: at most this many resident bytes per live secret.
pub const GOAL_BYTES: f64 = 256.0;
/// Secrets read back after filling (each must hold exactly its bytes, or the row has no figure).
const READ_BACK: u64 = 1_000;

/// One line of output (`--json` prints exactly this).
#[derive(Debug, Serialize)]
pub struct MemoryRow {
    pub name: &'static str,
    /// Growth of VmRSS from the first live secret to the last, divided by the secrets added; `null` when the
    /// child could not measure it.
    pub bytes_per_secret: Option<f64>,
    /// Live secrets at the end.
    pub count: u64,
    pub goal: String,
    pub goal_bytes: f64,
    /// Whether `bytes_per_secret <= goal_bytes`; `null` when there is no figure.
    pub pass: Option<bool>,
    /// Growth of VmLck and of the number of mappings from the first secret to the last.
    pub locked_growth_bytes: Option<i64>,
    pub mapping_growth: Option<i64>,
    /// The secrets read back exactly, of those read.
    pub read_back_exact: Option<u64>,
    pub read_back: Option<u64>,
    /// Why there is no figure, or what it includes.
    pub note: Option<String>,
}

fn unmeasured(why: String) -> MemoryRow {
    MemoryRow {
        name: NAME,
        bytes_per_secret: None,
        count: 0,
        goal: goal_text(),
        goal_bytes: GOAL_BYTES,
        pass: None,
        locked_growth_bytes: None,
        mapping_growth: None,
        read_back_exact: None,
        read_back: None,
        note: Some(format!("not available: {why}")),
    }
}

fn goal_text() -> String {
    format!("<= {GOAL_BYTES:.0} B resident per secret")
}

/// Holds `count` live 32-byte sealed secrets in a child and measures what each costs.
pub fn measure(count: u64) -> MemoryRow {
    let launcher = Launcher::with_args(&[crate::CHILD_SUBCOMMAND]);
    let params = FillParams {
        flavour: Flavour::Sealed,
        size: SECRET_LEN,
        cap: count,
        drop_ipc_lock: false,
        read_back: READ_BACK.min(count),
    };
    let m = match fill::measure(&launcher, params) {
        Ok(m) => m,
        Err(why) => return unmeasured(why),
    };
    if m.stopped_by != "cap" {
        return unmeasured(format!(
            "the child stopped after {} secrets: {}",
            m.count,
            m.error.as_deref().unwrap_or(&m.stopped_by)
        ));
    }
    let Some(span) = &m.span else {
        return unmeasured("the child read no footprint".to_owned());
    };
    let read = m.read_back.as_ref();
    let exact = read.is_some_and(|r| r.all_exact());
    let per = span.resident_per_secret().filter(|_| exact);
    MemoryRow {
        name: NAME,
        bytes_per_secret: per,
        count: m.count,
        goal: goal_text(),
        goal_bytes: GOAL_BYTES,
        pass: per.map(|b| b <= GOAL_BYTES),
        locked_growth_bytes: Some(span.locked_growth()),
        mapping_growth: Some(span.mapping_growth()),
        read_back_exact: read.map(|r| r.exact),
        read_back: read.map(|r| r.checked),
        note: Some(if exact {
            format!(
                "VmRSS growth from 1 to {} live secrets in a child, handles ({} B each) included",
                m.count,
                std::mem::size_of::<securememory::SealedSecret>()
            )
        } else {
            format!(
                "no figure: secrets did not read back exactly ({})",
                read.and_then(|r| r.first_problem.as_deref())
                    .unwrap_or("none read")
            )
        }),
    }
}

/// The row as text, below the time table.
pub fn line(r: &MemoryRow) -> String {
    let figure = r
        .bytes_per_secret
        .map_or("-".to_owned(), |b| format!("{b:.0} B"));
    let result = match r.pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "-",
    };
    let flat = match (r.locked_growth_bytes, r.mapping_growth) {
        (Some(l), Some(m)) => format!("; VmLck {l:+} B, mappings {m:+}"),
        _ => String::new(),
    };
    let read = match (r.read_back_exact, r.read_back) {
        (Some(e), Some(n)) => format!("; {e} of {n} read back exactly"),
        _ => String::new(),
    };
    format!(
        "{}: {figure} per live 32-byte secret over {} ({}){flat}{read}; goal {}: {result}",
        r.name,
        r.count,
        r.note.as_deref().unwrap_or("-"),
        r.goal
    )
}
