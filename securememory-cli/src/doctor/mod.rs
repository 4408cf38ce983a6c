//! `securememory doctor`: can this host keep secrets? Host facts, capacity, live proofs and a verdict.

pub mod capacity;
mod core_file;
pub mod host;
pub mod proofs;
mod render;
pub mod scenarios;

use serde::Serialize;

use crate::cli::{DoctorArgs, Flavour};
use crate::report::{Progress, Status};
use capacity::Capacity;
use host::{HostFacts, MemlockFacts, Probe};
use proofs::Proof;

/// One line of the verdict.
#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// How to fix it, when it failed or warns.
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub version: &'static str,
    pub secret_size: u64,
    pub expected_secrets: u64,
    pub host: HostFacts,
    pub capacity: Vec<Capacity>,
    pub proofs: Vec<Proof>,
    pub checks: Vec<Check>,
    /// Names of the checks that failed (empty: every guarantee holds here).
    pub failing: Vec<String>,
    pub ok: bool,
}

fn memlock_fix(needed_bytes: u64) -> String {
    // `--expect` and `--size` are bounded so this cannot overflow; saturate anyway rather than panic.
    let kib = needed_bytes.div_ceil(1024);
    format!(
        "raise the locked-memory limit to at least {kib} KiB (or give the process CAP_IPC_LOCK): shell `ulimit -l {kib}` \
         (or `unlimited`) before starting the service; systemd `LimitMEMLOCK={bytes}` in [Service]; docker \
         `docker run --ulimit memlock={bytes}:{bytes}` (or `--cap-add IPC_LOCK`); Kubernetes: add \"IPC_LOCK\" to \
         the container's securityContext.capabilities.add, since the pod's memlock ulimit comes from the container \
         runtime's defaults (e.g. LimitMEMLOCK of containerd.service)",
        bytes = kib.saturating_mul(1024)
    )
}

fn capacity_check(c: &Capacity, memlock: &MemlockFacts, expect: u64) -> Check {
    let check = format!("memlock capacity ({})", c.flavour);
    let needed = expect.saturating_mul(c.locked_bytes_per_secret);
    let measured = c.measured.as_ref();
    let fit = measured.map(|m| m.count).or(c.by_arithmetic);
    let unprivileged = measured.filter(|m| m.ipc_lock_dropped).map(|m| m.count);
    let (status, detail) = if memlock.cap_ipc_lock == Some(true) {
        // Fine here, but a deployment without the capability would fall short: worth a warning.
        match unprivileged {
            Some(n) if n < expect => (
                Status::Warn,
                format!(
                    "CAP_IPC_LOCK lifts the limit for this process; without it only {n} secrets fit (measured), \
                     {expect} needed"
                ),
            ),
            Some(n) => (
                Status::Pass,
                format!("CAP_IPC_LOCK lifts the limit for this process; without it {n} secrets fit (measured)"),
            ),
            None => (Status::Pass, "CAP_IPC_LOCK lifts the limit for this process".to_owned()),
        }
    } else if memlock.soft_bytes.is_none() {
        (
            Status::Pass,
            "the locked-memory limit is unlimited".to_owned(),
        )
    } else {
        match fit {
            Some(n) if n >= expect => (Status::Pass, format!("{n} secrets fit, {expect} needed")),
            Some(n) => (
                Status::Fail,
                format!("only {n} secrets fit, {expect} needed"),
            ),
            None => (
                Status::Fail,
                "could not determine how many secrets fit".to_owned(),
            ),
        }
    };
    let fix = (status != Status::Pass).then(|| memlock_fix(needed));
    Check {
        check,
        status,
        detail,
        fix,
    }
}

/// A required protection fails the doctor when missing; an optional one only warns, and `note` says why it is
/// optional.
fn protection_check(name: &str, probe: &Probe, required: bool, note: &str, fix: &str) -> Check {
    let status = match (probe.works, required) {
        (true, _) => Status::Pass,
        (false, true) => Status::Fail,
        (false, false) => Status::Warn,
    };
    let detail = if note.is_empty() {
        probe.detail.clone()
    } else {
        format!("{} ({note})", probe.detail)
    };
    Check {
        check: name.to_owned(),
        status,
        detail,
        fix: (!probe.works).then(|| fix.to_owned()),
    }
}

fn soft_below_hard(memlock: &MemlockFacts) -> Option<Check> {
    match (memlock.soft_bytes, memlock.hard_bytes) {
        (Some(soft), hard) if hard.is_none_or(|h| h > soft) => Some(Check {
            check: "memlock soft limit".to_owned(),
            status: Status::Warn,
            detail: format!(
                "the soft limit ({}) is below the hard limit ({})",
                crate::report::bytes(Some(soft)),
                crate::report::bytes(hard)
            ),
            fix: Some(
                "the service can raise it itself: `ulimit -l <hard>` in its start script"
                    .to_owned(),
            ),
        }),
        _ => None,
    }
}

fn checks(host: &HostFacts, caps: &[Capacity], proofs: &[Proof], expect: u64) -> Vec<Check> {
    let mut out: Vec<Check> = caps
        .iter()
        .map(|c| capacity_check(c, &host.memlock, expect))
        .collect();
    out.extend(soft_below_hard(&host.memlock));
    let p = &host.protections;
    out.push(protection_check(
        "per-region no-dump",
        &p.no_dump,
        true,
        "",
        "this kernel cannot exclude regions from core dumps: keep core dumps off (the library's default; \
         `ulimit -c 0`, systemd `LimitCORE=0`)",
    ));
    out.push(protection_check(
        "per-region no-fork",
        &p.no_fork,
        true,
        "",
        "this kernel cannot keep regions out of forked children: do not fork while holding secrets",
    ));
    out.push(protection_check(
        "no transparent huge pages",
        &p.no_huge_pages,
        false,
        "the library asks for it on every region",
        "optional: protection stays per page anyway on kernels without THP",
    ));
    out.push(protection_check(
        "guard pages via MADV_GUARD_INSTALL",
        &p.guard_install,
        false,
        "informational: this version of the library makes guard pages with mprotect",
        "optional (Linux 6.13+): guard pages are made with mprotect instead, costing two extra mappings each",
    ));
    out.push(protection_check(
        "memfd_secret",
        &p.memfd_secret,
        false,
        "informational: this version of the library does not use it",
        "optional: needs Linux 5.14+ with secretmem enabled (`secretmem.enable=1` on older 6.x kernels) and \
         a seccomp profile that allows syscall 447",
    ));
    for s in &p.secrets {
        let guarded = s.flavour != Flavour::Memguard.name() || (s.guard_pages && s.canary);
        let ok = s.locked && s.no_dump && s.no_fork && s.fork_detection && guarded;
        out.push(Check {
            check: format!("secret protections ({})", s.flavour),
            status: if ok { Status::Pass } else { Status::Fail },
            detail: s.summary.clone(),
            fix: (!s.locked).then(|| memlock_fix(s.locked_bytes.max(4096) as u64)),
        });
    }
    for proof in proofs {
        out.push(Check {
            check: format!("proof {} ({})", proof.proof, proof.flavour),
            status: proof.status,
            detail: proof.evidence.clone(),
            fix: None,
        });
    }
    out
}

/// Runs the doctor and prints its report; returns the process exit status.
pub fn run(args: &DoctorArgs) -> i32 {
    let mut progress = Progress::new();
    progress.step("doctor: reading host facts and probing protections");
    let host = host::gather();
    let flavours: Vec<Flavour> = Flavour::ALL.to_vec();
    let mut capacity = Vec::new();
    for f in &flavours {
        progress.step(&format!(
            "doctor: counting how many {}-byte {} secrets fit",
            args.size,
            f.name()
        ));
        capacity.push(capacity::capacity(*f, args.size, &host.memlock));
    }
    let mut proofs = Vec::new();
    for f in flavours.iter().copied() {
        progress.step(&format!(
            "doctor: proving a touch faults and forks cannot read ({})",
            f.name()
        ));
        proofs.push(proofs::fault_on_touch(f));
        if f == Flavour::Memguard {
            proofs.push(proofs::guard_page_after_data(f));
        }
        proofs.push(proofs::not_readable_after_fork(f));
    }
    progress.step("doctor: dumping core of a child that holds secrets");
    proofs.extend(core_file::not_in_core_file(&host.core));
    progress.done();

    let checks = checks(&host, &capacity, &proofs, args.expect);
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.status == Status::Fail || (args.strict && c.status == Status::Skip))
        .map(|c| c.check.clone())
        .collect();
    let report = DoctorReport {
        version: env!("CARGO_PKG_VERSION"),
        secret_size: args.size,
        expected_secrets: args.expect,
        ok: failing.is_empty(),
        host,
        capacity,
        proofs,
        checks,
        failing,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("securememory doctor: cannot encode the report: {e}");
                return 2;
            }
        }
    } else {
        print!("{}", render::text(&report));
    }
    if report.ok {
        0
    } else {
        eprintln!(
            "securememory doctor: failing: {}",
            report.failing.join(", ")
        );
        1
    }
}
