//! Kernel features and the library's own protection report, probed in a child: a strict seccomp filter may
//! answer an unknown system call by killing the caller, and then only the child dies.

use serde::{Deserialize, Serialize};

use super::{with_params, Scenario};
use crate::child::{emit, Launcher};
use crate::holder::{Flavour, Holder};
use crate::sys;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "probe",
    proves: "which kernel protections work here, and that a fresh secret of each flavour carries every one",
    child: |json| with_params(json, |()| {
        emit(&kernel_probes());
        0
    }),
};

/// Outcome of probing one protection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// It works here.
    pub works: bool,
    /// What happened.
    pub detail: String,
}

impl Probe {
    /// A probe from the outcome `memcall` reports for a region.
    pub fn from_outcome(o: memcall::Outcome) -> Probe {
        Probe {
            works: o.is_applied(),
            detail: o.to_string(),
        }
    }
}

/// What the probe child reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct KernelProbes {
    /// `MADV_GUARD_INSTALL` (Linux 6.13+).
    pub guard_install: Probe,
    /// `memfd_secret(2)`.
    pub memfd_secret: Probe,
    /// The library's own report for one fresh secret of each flavour.
    #[serde(default)]
    pub secrets: Vec<SecretProtections>,
}

/// `Secret::protections()` of one fresh secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretProtections {
    /// Its flavour's name.
    pub flavour: String,
    /// Its pages are locked.
    pub locked: bool,
    /// How many bytes are locked for it.
    pub locked_bytes: usize,
    /// Excluded from core dumps.
    pub no_dump: bool,
    /// Not inherited by forked children.
    pub no_fork: bool,
    /// Guard pages around it.
    pub guard_pages: bool,
    /// A canary next to it.
    pub canary: bool,
    /// Use in a forked child is refused.
    pub fork_detection: bool,
    /// The library's one-line summary, or why no secret could be made.
    pub summary: String,
}

impl SecretProtections {
    /// Every protection its flavour promises is in place.
    pub fn complete(&self) -> bool {
        let guarded = self.flavour != Flavour::Memguard.name() || (self.guard_pages && self.canary);
        self.locked && self.no_dump && self.no_fork && self.fork_detection && guarded
    }
}

fn secret_protections(flavour: Flavour) -> Option<SecretProtections> {
    let report = Holder::zeroed(flavour, 32).map(|h| h.protections());
    let r = match report {
        Ok(r) => r?,
        Err(e) => {
            return Some(SecretProtections {
                flavour: flavour.name().to_owned(),
                locked: false,
                locked_bytes: 0,
                no_dump: false,
                no_fork: false,
                guard_pages: false,
                canary: false,
                fork_detection: false,
                summary: format!("could not create a secret: {}", e.message),
            })
        }
    };
    Some(SecretProtections {
        flavour: flavour.name().to_owned(),
        locked: r.locked,
        locked_bytes: r.locked_bytes,
        no_dump: r.no_dump.is_applied(),
        no_fork: r.no_fork.is_applied(),
        guard_pages: r.guard_pages,
        canary: r.canary,
        fork_detection: r.fork_detection,
        summary: r.to_string(),
    })
}

fn kernel_probes() -> KernelProbes {
    let guard_install = match sys::probe_guard_install() {
        Ok(()) => Probe {
            works: true,
            detail: "MADV_GUARD_INSTALL accepted".to_owned(),
        },
        Err(e) => Probe {
            works: false,
            detail: format!("MADV_GUARD_INSTALL refused: {e}"),
        },
    };
    // The library's own secret-memory path: a page from a memfd_secret area, written, wiped and given back.
    let secret_page = memcall::Region::alloc_secret(1).and_then(|region| {
        let written = sys::make_resident(&region);
        region.free().map_err(|e| e.error)?;
        written
    });
    let memfd_secret = match secret_page {
        Ok(()) => Probe {
            works: true,
            detail: "memfd_secret page created, mapped, written and released".to_owned(),
        },
        Err(e) => Probe {
            works: false,
            detail: e.to_string(),
        },
    };
    KernelProbes {
        guard_install,
        memfd_secret,
        secrets: Flavour::ALL
            .into_iter()
            .filter_map(secret_protections)
            .collect(),
    }
}

/// Runs the probe child and returns its report; a child that died (say, of a seccomp filter) gives probes
/// that did not work, saying so.
pub fn run(launcher: &Launcher) -> KernelProbes {
    let failed = |why: String| KernelProbes {
        guard_install: Probe {
            works: false,
            detail: why.clone(),
        },
        memfd_secret: Probe {
            works: false,
            detail: why,
        },
        secrets: Vec::new(),
    };
    match launcher.child(SCENARIO.name).params(&()).try_run() {
        Ok(out) => out.report().unwrap_or_else(|| {
            failed(format!(
                "the probe process {} without a report (a seccomp filter may forbid these calls)",
                out.ended()
            ))
        }),
        Err(e) => failed(format!("could not start the probe process: {e}")),
    }
}
