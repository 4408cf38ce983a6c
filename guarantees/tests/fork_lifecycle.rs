//! Guarantee 5, seen from the child: a process that forks after it made and closed secrets (gunicorn
//! `--preload`, `multiprocessing` with fork, daemonising) hands its child caches of ready-made pages that the
//! child does not have (they are no-fork). The child must start with empty caches and never touch, trim, wipe or
//! unmap a parent region, whose address may hold the child's own memory by then.
//!
//! Each scenario runs in a re-executed child of the test binary, which forks again; the forked process runs
//! under a 60 s alarm and reports by exit code, with its reason on stderr.
//! - `warm_caches`: a child makes secrets of both flavours and locked buffers, after the parent warmed every
//!   cache;
//! - `hole_reuse`: the child first maps ordinary pages exactly where the parent's cached pages were, and more
//!   where the kernel likes; its new secrets never land there, carry `lo`, `dd`, `dc`, and its pages stay intact;
//! - `trim_in_child`: `trim_all()` in the child frees nothing of the parent's and leaves the child's pages
//!   intact, then frees exactly what the child cached itself;
//! - `preforking_server`: 1,000 secrets per flavour made and closed, 4 workers forked, each makes and reads
//!   back 1,000 secrets per flavour, every one of them locked, no-dump and no-fork per smaps;
//! - `inherited_secrets`: a child holding its parent's secrets and buffers gets `Error::Forked` from them, drops
//!   them and exits without a word on stderr.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Seek};
use std::time::Duration;

use common::{ensure, fill_pattern, is_pattern, Flavour, Held, HoldError, Kind};
use guarantees::proc_stats::{smaps, smaps_entry_at};
use guarantees::{Scenario, Watchdog};
use securememory::{Error, Secret};

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Sizes a secret of the pools' sizes and one past them.
const SIZES: [usize; 3] = [32, 5000, 40_000];

fn page() -> usize {
    memcall::page_size()
}

/// Forks; the forked process runs `f` under a 60 s alarm (a hang ends as SIGALRM) and `_exit`s: 0 when `f`
/// succeeded, 1 (after printing why) when it failed.
fn spawn_fork(f: impl FnOnce() -> Outcome) -> libc::pid_t {
    // SAFETY: the calling scenario runs on one thread of a re-executed test child (the harness's main thread
    // only waits for it); the forked process runs `f`, which uses what glibc keeps usable after fork (malloc,
    // stdio), and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: `alarm` is always safe to call.
        unsafe { libc::alarm(60) };
        let code = match f() {
            Ok(()) => 0,
            Err(why) => {
                eprintln!("forked child (pid {}): {why}", std::process::id());
                1
            }
        };
        // SAFETY: `_exit` is always safe to call; it skips the atexit handlers the test harness owns.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for a process started by [`spawn_fork`]; `Err` with how it ended unless it exited 0.
fn wait_fork(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` a valid out-parameter.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    if rc != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "forked child {pid} was killed by signal {}",
            libc::WTERMSIG(status)
        ));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        code => Err(format!(
            "forked child {pid} exited with {code} (its reason is on stderr)"
        )),
    }
}

fn in_fork(f: impl FnOnce() -> Outcome) -> Outcome {
    Ok(wait_fork(spawn_fork(f))?)
}

/// Creates `count` holders of every kind for each size, then closes them all, so every cache holds some.
/// Returns the page-aligned addresses of the pages that held the bytes of those the caches kept (the pooled
/// sizes): mapped in the parent at the fork, so holes in the child.
fn warm(count: usize) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    let mut pages = Vec::new();
    for kind in Kind::ALL {
        for (i, len) in SIZES.into_iter().enumerate() {
            let held: Vec<Held> = (0..count)
                .map(|n| kind.hold_pattern((i * count + n) as u64, len))
                .collect::<Result<_, _>>()?;
            if len < 40_000 {
                for h in &held {
                    let addr = h.with_bytes(|b| b.as_ptr() as usize)?;
                    pages.push(addr & !(page() - 1));
                }
            }
            for h in held {
                h.close()?;
            }
        }
    }
    ensure(memcall::RegionPool::global().cached_bytes() > 0, || {
        "the parent's pool is not warm".into()
    })?;
    pages.sort_unstable();
    pages.dedup();
    Ok(pages)
}

/// One ordinary page of the child's own, filled with a byte, that the library must never touch.
struct OwnPage {
    addr: usize,
    byte: u8,
}

impl OwnPage {
    /// Maps it at exactly `addr` (`fixed`), failing if anything is mapped there, or where the kernel likes.
    fn map(addr: Option<usize>, byte: u8) -> Result<OwnPage, String> {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | if addr.is_some() {
                libc::MAP_FIXED_NOREPLACE
            } else {
                0
            };
        // SAFETY: without MAP_FIXED no existing mapping is replaced (MAP_FIXED_NOREPLACE fails with EEXIST).
        let ptr = unsafe {
            libc::mmap(
                addr.unwrap_or(0) as *mut libc::c_void,
                page(),
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mapping an ordinary page at {addr:x?}: {}",
                std::io::Error::last_os_error()
            ));
        }
        if addr.is_some_and(|a| a != ptr as usize) {
            return Err(format!("the kernel put the page at {ptr:p}, not {addr:x?}"));
        }
        // SAFETY: the page was just mapped read-write for us.
        unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), byte, page()) };
        Ok(OwnPage {
            addr: ptr as usize,
            byte,
        })
    }

    fn contains(&self, addr: usize) -> bool {
        (self.addr..self.addr + page()).contains(&addr)
    }

    /// `Err` unless the page is still mapped read-write, unlocked, and holds only its byte.
    fn check(&self, entries: &[guarantees::proc_stats::SmapsEntry]) -> Result<(), String> {
        let entry = smaps_entry_at(entries, self.addr)
            .ok_or_else(|| format!("the child's page at {:#x} was unmapped", self.addr))?;
        ensure(entry.mapping.perms.starts_with("rw"), || {
            format!(
                "the child's page at {:#x} is {} now, not rw",
                self.addr, entry.mapping.perms
            )
        })?;
        ensure(!entry.has("lo"), || {
            format!(
                "the child's page at {:#x} was locked by the library",
                self.addr
            )
        })?;
        // SAFETY: mapped read-write (checked just above) and written by nobody else.
        let bytes = unsafe { std::slice::from_raw_parts(self.addr as *const u8, page()) };
        ensure(bytes.iter().all(|&b| b == self.byte), || {
            format!(
                "the child's page at {:#x} was overwritten or wiped",
                self.addr
            )
        })
    }
}

fn check_all(own: &[OwnPage]) -> Result<(), String> {
    let entries = smaps();
    own.iter().try_for_each(|p| p.check(&entries))
}

/// `Err` unless the kernel shows the mapping at `addr` locked, no-dump and no-fork.
fn check_hardened(
    entries: &[guarantees::proc_stats::SmapsEntry],
    addr: usize,
    what: &str,
) -> Result<(), String> {
    let entry = smaps_entry_at(entries, addr)
        .ok_or_else(|| format!("{what}: no mapping at its address"))?;
    for (flag, meaning) in [("lo", "locked"), ("dd", "no-dump"), ("dc", "no-fork")] {
        ensure(entry.has(flag), || {
            format!(
                "{what}: the kernel does not see it {meaning} (VmFlags {:?})",
                entry.flags
            )
        })?;
    }
    Ok(())
}

/// The secrets' own report agrees: locked, no-dump and no-fork applied.
fn check_report(held: &Held, what: &str) -> Result<(), String> {
    match held {
        Held::Secret(s) => {
            let r = s.protections();
            ensure(
                r.locked && r.no_dump.is_applied() && r.no_fork.is_applied(),
                || format!("{what}: protections() says {r:?}"),
            )
        }
        Held::Buffer(b) => ensure(b.is_locked(), || format!("{what}: not locked")),
    }
}

fn warm_caches() -> Outcome {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "warm_caches");
    warm(4)?;
    in_fork(|| {
        for kind in Kind::ALL {
            for (i, len) in SIZES.into_iter().enumerate() {
                let what = format!("{} of {len} bytes in the child", kind.name());
                let held = kind.hold_pattern(1000 + i as u64, len)?;
                ensure(held.holds_pattern(1000 + i as u64)?, || {
                    format!("{what}: wrong bytes")
                })?;
                check_report(&held, &what)?;
                held.close()?;
            }
        }
        Ok(())
    })
}

fn hole_reuse() -> Outcome {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "hole_reuse");
    let parent_pages = warm(4)?;
    in_fork(move || {
        // The child's own memory first: exactly where the parent's cached pages were (the holes the no-fork
        // mappings left), then 64 more pages wherever the kernel puts them.
        let mut own: Vec<OwnPage> = parent_pages
            .iter()
            .map(|&a| OwnPage::map(Some(a), 0xA5))
            .collect::<Result<_, _>>()?;
        for _ in 0..64 {
            own.push(OwnPage::map(None, 0x5A)?);
        }
        let mut live = Vec::new();
        for kind in Kind::ALL {
            for (i, len) in SIZES.into_iter().enumerate() {
                for n in 0..4u64 {
                    let id = 2000 + 10 * i as u64 + n;
                    live.push((id, kind, len, kind.hold_pattern(id, len)?));
                }
            }
        }
        let entries = smaps();
        for (id, kind, len, held) in &live {
            let what = format!("{} {id} of {len} bytes in the child", kind.name());
            let addr = held.with_bytes(|b| b.as_ptr() as usize)?;
            ensure(!own.iter().any(|p| p.contains(addr)), || {
                format!("{what}: landed in the child's own page at {addr:#x}")
            })?;
            ensure(held.holds_pattern(*id)?, || format!("{what}: wrong bytes"))?;
            check_hardened(&entries, addr, &what)?;
            check_report(held, &what)?;
        }
        check_all(&own)?;
        for (_, _, _, held) in live {
            held.close()?;
        }
        check_all(&own)?;
        Ok(())
    })
}

fn trim_in_child() -> Outcome {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "trim_in_child");
    let parent_pages = warm(4)?;
    in_fork(move || {
        let own: Vec<OwnPage> = parent_pages
            .iter()
            .map(|&a| OwnPage::map(Some(a), 0xC3))
            .collect::<Result<_, _>>()?;
        let freed = memcall::pool::trim_all();
        ensure(freed == 0, || {
            format!("trim_all() in a child that cached nothing freed {freed} bytes")
        })?;
        let freed = memguard::trim_cache();
        ensure(freed == 0, || {
            format!("memguard::trim_cache() in a child that cached nothing freed {freed} bytes")
        })?;
        check_all(&own)?;
        // Now the child caches its own pages, and trimming frees exactly those.
        let locked_before = guarantees::proc_stats::locked();
        let held: Vec<Held> = Kind::ALL
            .iter()
            .map(|kind| kind.hold_pattern(7, 32))
            .collect::<Result<_, _>>()?;
        for h in held {
            h.close()?;
        }
        let cached = memcall::RegionPool::global().cached_bytes();
        ensure(cached == page(), || {
            format!("the child's pool caches {cached} bytes after one close, not one page")
        })?;
        let freed = memcall::pool::trim_all();
        // One protected-memory page in memcall's pool, one inner page of a secret and one of a buffer in
        // memguard's cache.
        ensure(freed == 3 * page(), || {
            format!("trim_all() freed {freed} bytes of the child's caches, not 3 pages")
        })?;
        let locked_after = guarantees::proc_stats::locked();
        ensure(locked_after <= locked_before, || {
            format!("VmLck {locked_after} after trimming, {locked_before} before the child cached anything")
        })?;
        check_all(&own)?;
        Ok(())
    })
}

const WORKERS: usize = 4;
const PER_FLAVOUR: u64 = 1000;
const BATCH: u64 = 100;
const SERVER_SIZES: [usize; 5] = [32, 64, 100, 4096, 5000];

/// One worker of a preforking server: 1,000 secrets per flavour, made and read back in batches of 100, each
/// batch's pages checked in one read of smaps.
fn worker(n: usize) -> Outcome {
    for flavour in Flavour::ALL {
        for batch in 0..PER_FLAVOUR / BATCH {
            let mut live: Vec<(u64, usize, Box<dyn Secret>)> = Vec::new();
            for k in 0..BATCH {
                let id = (n as u64 + 1) * 1_000_000 + batch * BATCH + k;
                let len = SERVER_SIZES[(id % SERVER_SIZES.len() as u64) as usize];
                let mut source = vec![0u8; len];
                fill_pattern(id, &mut source);
                live.push((id, len, flavour.new_secret(&mut source)?));
            }
            let entries = smaps();
            for (id, len, secret) in &live {
                let what = format!("worker {n}: {} secret {id} of {len} bytes", flavour.name());
                let (exact, addr) =
                    securememory::SecretExtensions::with_bytes(secret.as_ref(), |b| {
                        Ok((is_pattern(*id, b) && b.len() == *len, b.as_ptr() as usize))
                    })?;
                ensure(exact, || format!("{what}: wrong bytes"))?;
                check_hardened(&entries, addr, &what)?;
                let r = secret.protections();
                ensure(
                    r.locked && r.no_dump.is_applied() && r.no_fork.is_applied(),
                    || format!("{what}: protections() says {r:?}"),
                )?;
            }
            for (_, _, secret) in live {
                secret.close()?;
            }
        }
    }
    Ok(())
}

fn preforking_server() -> Outcome {
    let _watchdog = Watchdog::start(Duration::from_secs(240), "preforking_server");
    for flavour in Flavour::ALL {
        // Batches of 50 live secrets, so the caches end up full, as in a server that preloaded its keys.
        for batch in 0..PER_FLAVOUR / 50 {
            let live: Vec<_> = (0..50)
                .map(|k| common::pattern_secret(flavour, batch * 50 + k, 32))
                .collect::<Result<_, _>>()?;
            for s in live {
                s.close()?;
            }
        }
    }
    let pids: Vec<_> = (0..WORKERS)
        .map(|n| spawn_fork(move || worker(n)))
        .collect();
    let failures: Vec<String> = pids
        .into_iter()
        .enumerate()
        .filter_map(|(n, pid)| wait_fork(pid).err().map(|e| format!("worker {n}: {e}")))
        .collect();
    ensure(failures.is_empty(), || failures.join("\n"))?;
    Ok(())
}

/// The forked child's stderr goes to a file the parent reads afterwards.
fn inherited_secrets() -> Outcome {
    let _watchdog = Watchdog::start(Duration::from_secs(120), "inherited_secrets");
    warm(2)?;
    let mut held = Vec::new();
    for kind in Kind::ALL {
        for (i, len) in SIZES.into_iter().enumerate() {
            held.push((
                kind,
                3000 + i as u64,
                kind.hold_pattern(3000 + i as u64, len)?,
            ));
        }
    }
    let mut log = tempfile()?;
    let log_fd = std::os::fd::AsRawFd::as_raw_fd(&log);
    let result = in_fork(move || {
        // SAFETY: `log_fd` is an open file of ours; dup2 makes fd 2 (stderr) refer to it.
        if unsafe { libc::dup2(log_fd, 2) } != 2 {
            return Err(format!("dup2: {}", std::io::Error::last_os_error()).into());
        }
        let mut wrong = Vec::new();
        for (kind, id, h) in &held {
            let forked = matches!(
                h.with_bytes(|_| ()),
                Err(HoldError::Secret(Error::Forked) | HoldError::Buffer(memguard::Error::Forked))
            );
            if !forked {
                wrong.push(format!(
                    "{} {id}: not refused with Error::Forked",
                    kind.name()
                ));
            }
        }
        // Rust drops of the parent's secrets and buffers, as a child that simply exits would run them.
        drop(held);
        ensure(wrong.is_empty(), || wrong.join("; "))?;
        Ok(())
    });
    let mut text = String::new();
    log.rewind()?;
    log.read_to_string(&mut text)?;
    if let Err(e) = result {
        return Err(format!("{e}; its stderr:\n{text}").into());
    }
    ensure(text.is_empty(), || {
        format!("the forked child printed on stderr:\n{text}")
    })?;
    Ok(())
}

/// An anonymous temporary file (unlinked at once).
fn tempfile() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!(
        "fork-lifecycle-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("warm_caches", warm_caches),
        ("hole_reuse", hole_reuse),
        ("trim_in_child", trim_in_child),
        ("preforking_server", preforking_server),
        ("inherited_secrets", inherited_secrets),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn run(scenario: &str) {
    let outcome = guarantees::run_child(scenario)
        .timeout(Duration::from_secs(300))
        .run();
    outcome.assert_success();
}

#[test]
fn a_child_forked_after_the_caches_were_warmed_makes_secrets_and_buffers_of_its_own() {
    run("warm_caches");
}

#[test]
fn a_childs_own_pages_in_the_parents_holes_are_never_used_and_its_secrets_are_hardened() {
    run("hole_reuse");
}

#[test]
fn trimming_in_a_child_frees_only_what_the_child_cached() {
    run("trim_in_child");
}

#[test]
fn four_preforked_workers_each_make_and_read_back_a_thousand_secrets_per_flavour() {
    run("preforking_server");
}

#[test]
fn a_child_holding_its_parents_secrets_is_refused_and_exits_quietly() {
    run("inherited_secrets");
}
