//! `securememory doctor`: can this host keep secrets? Host facts, capacity, live proofs and a verdict.

pub mod capacity;
pub mod host;
mod render;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::report::{Progress, Status};
use capacity::Capacity;
use host::{HostFacts, MemlockFacts};
use proofs::scenarios::core::{self as core_proof, CoreParams, Keep};
use proofs::scenarios::fault::{self, FaultParams};
use proofs::scenarios::fork::{self, ForkParams};
use proofs::scenarios::probe::{self, Probe};
use proofs::{Flavour, Launcher, Verdict};

/// Secrets per flavour the core-file proof holds (one of them inside an access window).
const CORE_SECRETS_PER_FLAVOUR: usize = 2;

/// One line of the verdict.
#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    /// The proof registry scenario this check ran (`proofs::scenarios::REGISTRY`), so the CI test that runs
    /// the same one can be found; `None` for facts read without a child process.
    pub scenario: Option<&'static str>,
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
    pub proofs: Vec<Verdict>,
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

/// Most mappings the sealed child's heap may add while filling for the mapping count to count as flat (the
/// allocator can add an arena or move a large block; a page-backed flavour adds one or three per secret).
const SEALED_MAPPING_SLACK: i64 = 8;

/// The advice that names the sealed flavour, when the page-backed flavours do not fit: `None` when the
/// sealed check failed on this host.
fn sealed_advice(sealed: Option<&Capacity>, expect: u64) -> Option<String> {
    let count = sealed?.measured.as_ref()?.count;
    Some(format!(
        "or keep the secrets sealed (`securememory::sealed::SealedSecretFactory`): they are encrypted at rest \
         and cost no locked memory per secret ({count} held here without CAP_IPC_LOCK, VmLck flat; see \
         \"capacity (sealed)\"){}",
        if count < expect {
            format!("; {expect} of them need ordinary memory only")
        } else {
            String::new()
        }
    ))
}

/// The sealed flavour's live check: every secret held, the sample read back exactly, `VmLck` and mappings
/// flat from the first secret to the last.
fn sealed_check(c: &Capacity, expect: u64) -> Check {
    let check = format!("capacity ({})", c.flavour);
    let (status, detail) = match (&c.measured, &c.not_measured) {
        (Some(m), _) => sealed_verdict(m, expect),
        (None, why) => (
            Status::Fail,
            format!(
                "could not measure: {}",
                why.as_deref().unwrap_or("no report")
            ),
        ),
    };
    Check {
        check,
        scenario: Some(c.scenario),
        status,
        detail,
        fix: (status != Status::Pass).then(|| {
            "sealed secrets need one locked page for the key and locked scratch pages while closures run: \
             see the memlock capacity rows"
                .to_owned()
        }),
    }
}

fn sealed_verdict(m: &proofs::scenarios::fill::Measured, expect: u64) -> (Status, String) {
    let privilege = if m.ipc_lock_dropped {
        "CAP_IPC_LOCK dropped"
    } else {
        "without CAP_IPC_LOCK"
    };
    if m.stopped_by != "cap" {
        return (
            Status::Fail,
            format!(
                "stopped after {} secrets ({privilege}): {}",
                m.count,
                m.error.as_deref().unwrap_or(&m.stopped_by)
            ),
        );
    }
    let Some(span) = &m.span else {
        return (
            Status::Fail,
            format!("{} secrets held, but no footprint was read", m.count),
        );
    };
    let read = match &m.read_back {
        Some(r) if r.all_exact() => format!("{} read back exactly", r.checked),
        Some(r) => {
            return (
                Status::Fail,
                format!(
                    "{} of {} read back exactly: {}",
                    r.exact,
                    r.checked,
                    r.first_problem.as_deref().unwrap_or("-")
                ),
            )
        }
        None => return (Status::Fail, "nothing was read back".to_owned()),
    };
    let rss = span
        .resident_per_secret()
        .map_or(String::new(), |b| format!(", {b:.0} B resident each"));
    let detail = format!(
        "{} secrets live ({privilege}), {read}; from 1 to {}: VmLck {:+} B, mappings {:+}{rss}",
        m.count,
        span.to,
        span.locked_growth(),
        span.mapping_growth()
    );
    if span.locked_growth() != 0 || span.mapping_growth() > SEALED_MAPPING_SLACK {
        return (
            Status::Fail,
            format!("{detail}: not flat (each secret must cost no locked memory and no mapping)"),
        );
    }
    if m.count < expect {
        let need = span.resident_per_secret().map_or(String::new(), |b| {
            format!(
                " (about {} at the measured cost)",
                crate::report::bytes(Some((b.max(0.0) * expect as f64) as u64))
            )
        });
        return (
            Status::Warn,
            format!(
                "{detail}; {expect} needed: not checked live, ordinary memory bounds them{need}"
            ),
        );
    }
    (Status::Pass, detail)
}

fn capacity_check(
    c: &Capacity,
    memlock: &MemlockFacts,
    expect: u64,
    sealed: Option<&Capacity>,
) -> Check {
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
    let fix = (status != Status::Pass).then(|| {
        let mut fix = memlock_fix(needed);
        if let Some(advice) = sealed_advice(sealed, expect) {
            fix.push_str("; ");
            fix.push_str(&advice);
        }
        fix
    });
    Check {
        check,
        scenario: Some(c.scenario),
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
        scenario: None,
        status,
        detail,
        fix: (!probe.works).then(|| fix.to_owned()),
    }
}

fn soft_below_hard(memlock: &MemlockFacts) -> Option<Check> {
    match (memlock.soft_bytes, memlock.hard_bytes) {
        (Some(soft), hard) if hard.is_none_or(|h| h > soft) => Some(Check {
            check: "memlock soft limit".to_owned(),
            scenario: None,
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

fn checks(host: &HostFacts, caps: &[Capacity], proofs: &[Verdict], expect: u64) -> Vec<Check> {
    let sealed = caps.iter().find(|c| c.flavour == Flavour::Sealed.name());
    // Passed, or warned only because fewer were held live than --expect.
    let sealed_ok = sealed
        .map(|c| sealed_check(c, expect))
        .filter(|check| check.status != Status::Fail)
        .and(sealed);
    let mut out: Vec<Check> = caps
        .iter()
        .map(|c| {
            if c.flavour == Flavour::Sealed.name() {
                sealed_check(c, expect)
            } else {
                capacity_check(c, &host.memlock, expect, sealed_ok)
            }
        })
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
        "secrets made with `Backing::SecretMem` (Python: `backing=\"secret_memory\"`) are unreadable by other \
         processes, root included",
        "optional, for `Backing::SecretMem`: needs Linux 5.14+ with secretmem enabled (`secretmem.enable=1` \
         on kernels before 6.5) and a seccomp profile that allows syscall 447; `SecretMemOrAnonymous` falls \
         back to ordinary locked pages and says so",
    ));
    for s in &p.secrets {
        out.push(Check {
            check: format!("secret protections ({})", s.flavour),
            scenario: Some(probe::SCENARIO.name),
            status: if s.complete() {
                Status::Pass
            } else {
                Status::Fail
            },
            detail: s.summary.clone(),
            fix: (!s.locked).then(|| memlock_fix(s.locked_bytes.max(4096) as u64)),
        });
    }
    for proof in proofs {
        out.push(Check {
            check: format!("proof {} ({})", proof.proof, proof.flavour),
            scenario: Some(proof.scenario),
            status: proof.status,
            detail: proof.evidence.clone(),
            fix: None,
        });
    }
    out
}

/// The core-file proof at the doctor's size: a few secrets of each flavour, one inside an access window.
fn core_file_proof(launcher: &Launcher) -> Vec<Verdict> {
    let kinds: Vec<Flavour> = (0..CORE_SECRETS_PER_FLAVOUR)
        .flat_map(|_| Flavour::ALL)
        .collect();
    let params = CoreParams::new(kinds, 1, Keep::Function);
    match core_proof::dump(launcher, &params) {
        Ok(run) => core_proof::judge(&params, &run),
        Err(e) => Flavour::ALL
            .iter()
            .map(|f| Verdict {
                scenario: core_proof::SCENARIO.name,
                proof: "not-in-core-file",
                flavour: f.name(),
                status: Status::Fail,
                evidence: format!("could not start the child process: {e}"),
            })
            .collect(),
    }
}

/// Runs the doctor and prints its report; returns the process exit status.
pub fn run(args: &DoctorArgs) -> i32 {
    let launcher = Launcher::with_args(&[crate::CHILD_SUBCOMMAND]);
    let mut progress = Progress::new();
    progress.step("doctor: reading host facts and probing protections");
    let host = host::gather(&launcher);
    let mut capacity = Vec::new();
    for f in Flavour::CAPACITY {
        if f.page_backed() {
            progress.step(&format!(
                "doctor: counting how many {}-byte {} secrets fit",
                args.size,
                f.name()
            ));
            capacity.push(capacity::capacity(&launcher, f, args.size, &host.memlock));
        } else {
            let count = capacity::sealed_count(args.size, args.expect, args.sealed_check);
            progress.step(&format!(
                "doctor: holding {count} {}-byte {} secrets without CAP_IPC_LOCK",
                args.size,
                f.name()
            ));
            capacity.push(capacity::sealed(&launcher, args.size, count, &host.memlock));
        }
    }
    let mut proofs = Vec::new();
    for flavour in Flavour::ALL {
        progress.step(&format!(
            "doctor: proving a touch faults and forks cannot read ({})",
            flavour.name()
        ));
        proofs.push(fault::prove(
            &launcher,
            FaultParams {
                flavour,
                past_end: false,
            },
        ));
        if flavour == Flavour::Memguard {
            proofs.push(fault::prove(
                &launcher,
                FaultParams {
                    flavour,
                    past_end: true,
                },
            ));
        }
        proofs.push(fork::prove(&launcher, ForkParams { flavour }));
    }
    progress.step("doctor: dumping core of a child that holds secrets");
    proofs.extend(core_file_proof(&launcher));
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
        print!("{}", render::text(&report, args.wide));
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
