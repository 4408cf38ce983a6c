//! Facts about this host: OS, locked-memory limit, core-dump settings and which per-region protections work.

use serde::Serialize;

use proofs::scenarios::probe::{self, Probe, SecretProtections};
use proofs::{sys, Launcher};

#[derive(Debug, Serialize)]
pub struct HostFacts {
    pub os: OsFacts,
    pub page_size: usize,
    /// vm.max_map_count: the most mappings a process may have (each guarded secret adds some).
    pub max_map_count: Option<u64>,
    pub memlock: MemlockFacts,
    pub core: CoreFacts,
    pub protections: Protections,
}

#[derive(Debug, Serialize)]
pub struct OsFacts {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    /// `PRETTY_NAME` from /etc/os-release.
    pub distribution: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MemlockFacts {
    /// RLIMIT_MEMLOCK soft side in bytes; `None` = unlimited.
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
    /// Whether the process holds CAP_IPC_LOCK, which lifts the limit; `None` when unknown.
    pub cap_ipc_lock: Option<bool>,
    /// Bytes this process has locked now (VmLck).
    pub locked_now_bytes: Option<u64>,
    /// Set when the limit could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CoreFacts {
    /// RLIMIT_CORE soft side in bytes; `None` = unlimited.
    pub rlimit_soft: Option<u64>,
    pub rlimit_hard: Option<u64>,
    /// /proc/sys/kernel/core_pattern.
    pub core_pattern: Option<String>,
    pub core_uses_pid: Option<String>,
    pub suid_dumpable: Option<String>,
    /// prctl(PR_GET_DUMPABLE) of this process.
    pub dumpable: Option<bool>,
    /// /proc/self/coredump_filter.
    pub coredump_filter: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Protections {
    /// MADV_DONTDUMP on a fresh region.
    pub no_dump: Probe,
    /// MADV_DONTFORK on a fresh region.
    pub no_fork: Probe,
    /// MADV_NOHUGEPAGE on a fresh region.
    pub no_huge_pages: Probe,
    /// MADV_GUARD_INSTALL (Linux 6.13+): guard pages without extra mappings.
    pub guard_install: Probe,
    /// memfd_secret(2): pages removed from the kernel's direct map.
    pub memfd_secret: Probe,
    /// What the library reports for a fresh 32-byte secret of each flavour.
    pub secrets: Vec<SecretProtections>,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn distribution() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_owned())
    })
}

fn os_facts() -> OsFacts {
    match sys::uname() {
        Ok(u) => OsFacts {
            sysname: u.sysname,
            release: u.release,
            version: u.version,
            machine: u.machine,
            distribution: distribution(),
        },
        Err(e) => OsFacts {
            sysname: std::env::consts::OS.to_owned(),
            release: format!("unknown (uname: {e})"),
            version: String::new(),
            machine: std::env::consts::ARCH.to_owned(),
            distribution: distribution(),
        },
    }
}

/// The locked-memory limit of this process.
pub fn memlock_facts() -> MemlockFacts {
    match memcall::lock_limit() {
        Ok(l) => MemlockFacts {
            soft_bytes: l.soft.bytes(),
            hard_bytes: l.hard.bytes(),
            cap_ipc_lock: l.exempt,
            locked_now_bytes: l.locked_now,
            error: None,
        },
        Err(e) => MemlockFacts {
            soft_bytes: None,
            hard_bytes: None,
            cap_ipc_lock: None,
            locked_now_bytes: memcall::locked_bytes(),
            error: Some(e.to_string()),
        },
    }
}

fn core_facts() -> CoreFacts {
    let (rlimit_soft, rlimit_hard) = sys::core_limit().unwrap_or((Some(0), Some(0)));
    CoreFacts {
        rlimit_soft,
        rlimit_hard,
        core_pattern: read_trimmed("/proc/sys/kernel/core_pattern"),
        core_uses_pid: read_trimmed("/proc/sys/kernel/core_uses_pid"),
        suid_dumpable: read_trimmed("/proc/sys/fs/suid_dumpable"),
        dumpable: sys::is_dumpable(),
        coredump_filter: read_trimmed("/proc/self/coredump_filter"),
    }
}

fn protections(launcher: &Launcher) -> Protections {
    let kernel = probe::run(launcher);
    let (no_dump, no_fork, no_huge_pages) = match memcall::Region::alloc(1) {
        Ok(r) => {
            let h = r.hardening();
            let _ = r.free();
            (
                Probe::from_outcome(h.no_dump),
                Probe::from_outcome(h.no_fork),
                Probe::from_outcome(h.no_huge_pages),
            )
        }
        Err(e) => {
            let p = Probe {
                works: false,
                detail: format!("could not map a page: {e}"),
            };
            (p.clone(), p.clone(), p)
        }
    };
    Protections {
        no_dump,
        no_fork,
        no_huge_pages,
        guard_install: kernel.guard_install,
        memfd_secret: kernel.memfd_secret,
        secrets: kernel.secrets,
    }
}

/// Gathers every host fact (spawns one short probe child).
pub fn gather(launcher: &Launcher) -> HostFacts {
    HostFacts {
        os: os_facts(),
        page_size: memcall::page_size(),
        max_map_count: read_trimmed("/proc/sys/vm/max_map_count").and_then(|v| v.parse().ok()),
        memlock: memlock_facts(),
        core: core_facts(),
        protections: protections(launcher),
    }
}
