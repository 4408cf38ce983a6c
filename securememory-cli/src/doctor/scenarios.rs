//! What the child processes of the live proofs do. Each prints JSON lines on stdout (flushed before anything
//! that may kill it) and then faults, aborts or exits as its proof requires.

use serde::{Deserialize, Serialize};

use crate::child::emit;
use crate::cli::Flavour;
use crate::holder::{hex, unhex, Holder};
use crate::sys;

/// Size of the secrets the proofs hold.
pub const PROOF_SECRET_LEN: usize = 32;

/// A line a scenario child prints.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Line {
    pub flavour: Option<String>,
    /// Hex of a secret (or of the heap control marker when `flavour` is `None`).
    pub marker: Option<String>,
    /// The child reached the step that must fault.
    pub touching: Option<bool>,
    /// The child survived a step that had to fault.
    pub survived: Option<bool>,
    pub error: Option<String>,
    /// Fork proof: what the library's own access path did in the forked child.
    pub api_read: Option<String>,
    /// Fork proof: what a raw mprotect + read did in the forked child.
    pub raw_read: Option<String>,
    /// Fork proof: the raw read returned the secret.
    pub leaked: Option<bool>,
    /// Core proof: RLIMIT_CORE soft side after raising it (`None` = unlimited) and PR_GET_DUMPABLE.
    pub core_limit: Option<Option<u64>>,
    pub dumpable: Option<bool>,
}

fn fail(message: String) -> i32 {
    emit(&Line {
        error: Some(message),
        ..Line::default()
    });
    2
}

/// Holds a secret, then reads its first byte while it is at rest; or, with `past_end`, reads the byte just
/// after its data from inside an access window, where only a guard page can make it fault. Returns the exit
/// code if it survives.
pub fn fault(flavour: Flavour, past_end: bool) -> i32 {
    let holder = match Holder::random(flavour, PROOF_SECRET_LEN) {
        Ok(h) => h,
        Err(e) => return fail(e.message),
    };
    let touch_and_report = |addr: usize| {
        emit(&Line {
            flavour: Some(flavour.name().to_owned()),
            touching: Some(true),
            ..Line::default()
        });
        // SAFETY: `addr` is the secret's first byte (no-access at rest) or the first byte after its data (a
        // guard page); either must fault, which ends this process.
        std::hint::black_box(unsafe { sys::touch(addr as *const u8) });
        emit(&Line {
            survived: Some(true),
            ..Line::default()
        });
    };
    let touched = if past_end {
        holder.with_bytes(|b| touch_and_report(b.as_ptr() as usize + b.len()))
    } else {
        holder.data_addr().map(touch_and_report)
    };
    match touched {
        Ok(()) => 3,
        Err(e) => fail(e),
    }
}

/// Holds one secret per flavour and a heap control marker, then aborts to dump core.
pub fn core() -> i32 {
    securememory::keep_core_dumps();
    if let Err(e) = sys::raise_core_limit() {
        return fail(format!("could not raise RLIMIT_CORE: {e}"));
    }
    let mut held = Vec::new();
    for flavour in Flavour::ALL {
        let holder = match Holder::random(flavour, PROOF_SECRET_LEN) {
            Ok(h) => h,
            Err(e) => return fail(format!("{}: {}", flavour.name(), e.message)),
        };
        match holder.hex() {
            Ok(marker) => emit(&Line {
                flavour: Some(flavour.name().to_owned()),
                marker: Some(marker),
                ..Line::default()
            }),
            Err(e) => return fail(e),
        }
        held.push(holder);
    }
    let mut control = vec![0u8; PROOF_SECRET_LEN];
    if let Err(e) = sys::getrandom(&mut control) {
        return fail(format!("getrandom: {e}"));
    }
    emit(&Line {
        marker: Some(hex(&control)),
        core_limit: Some(sys::core_limit().ok().and_then(|(soft, _)| soft)),
        dumpable: sys::is_dumpable(),
        ..Line::default()
    });
    std::hint::black_box((&control, &held));
    sys::abort()
}

/// Holds a secret, forks, and has the forked child try the library's access path and then a raw read.
pub fn fork(flavour: Flavour) -> i32 {
    let holder = match Holder::random(flavour, PROOF_SECRET_LEN) {
        Ok(h) => h,
        Err(e) => return fail(e.message),
    };
    let (marker, addr) = match (holder.hex(), holder.data_addr()) {
        (Ok(m), Ok(a)) => (m, a),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let Some(expected) = unhex(&marker) else {
        return fail("malformed marker".to_owned());
    };
    // A lock held by another thread at fork time stays held forever in the child, so the library's access
    // path is only tried when this process is single-threaded (the scenarios start no threads themselves).
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    // SAFETY: in the forked child either the process was single-threaded, or the child skips every call that
    // could wait on a lock another thread held (glibc's malloc is made fork-safe by glibc itself); it then
    // reads and calls `_exit`.
    let pid = match unsafe { sys::fork() } {
        Ok(pid) => pid,
        Err(e) => return fail(format!("fork: {e}")),
    };
    if pid == 0 {
        forked_child(&holder, addr, &expected, threads == 1)
    }
    match sys::wait(pid) {
        Ok(Ok(code)) => code,
        Ok(Err(sig)) => {
            emit(&Line {
                raw_read: Some(format!(
                    "the forked child was killed by {} (signal {sig}) reading the page",
                    sys::signal_name(sig)
                )),
                leaked: Some(false),
                ..Line::default()
            });
            0
        }
        Err(e) => fail(format!("waitpid: {e}")),
    }
}

fn forked_child(holder: &Holder, addr: usize, expected: &[u8], try_api: bool) -> ! {
    let api_read = match try_api.then(|| holder.with_bytes(|b| b == expected)) {
        Some(Ok(true)) => "the access path returned the secret".to_owned(),
        Some(Ok(false)) => "the access path returned other bytes".to_owned(),
        Some(Err(e)) => format!("refused: {e}"),
        None => "was not tried (the parent had several threads)".to_owned(),
    };
    let api_leaked = api_read.starts_with("the access path returned the secret");
    let line = |raw: String, leaked: bool| {
        let l = Line {
            api_read: Some(api_read.clone()),
            raw_read: Some(raw),
            leaked: Some(leaked),
            ..Line::default()
        };
        let mut text = serde_json::to_string(&l).unwrap_or_default();
        text.push('\n');
        sys::write_stdout_raw(text.as_bytes());
    };
    // SAFETY: this forked child exits right after; nothing else relies on the page's protection here.
    if let Err(e) = unsafe { sys::protect_page_readable(addr) } {
        line(
            format!("mprotect(READ) on the page failed: {e}"),
            api_leaked,
        );
        sys::exit_now(0);
    }
    // Announce the read first: if it faults, the parent still learns the access path's result.
    line("mprotect(READ) succeeded; reading".to_owned(), api_leaked);
    let got: Vec<u8> = (0..expected.len())
        // SAFETY: the page was just made readable; a fault here is an acceptable outcome of the proof.
        .map(|i| unsafe { sys::touch((addr + i) as *const u8) })
        .collect();
    let leaked = got == expected;
    let what = if leaked {
        "read the secret"
    } else if got.iter().all(|&b| b == 0) {
        "read zeros (wiped on fork)"
    } else {
        "read other bytes"
    };
    line(
        format!("mprotect(READ) succeeded and {what}"),
        api_leaked || leaked,
    );
    sys::exit_now(0)
}
