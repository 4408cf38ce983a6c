//! Guarantees that need a real process to die or to hit a limit: page faults, the memlock limit, core dumps.
//! The test binary re-executes itself with `MEMCALL_CHILD` naming the scenario; the parent asserts on how the
//! child ended.
#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use memcall::{Limit, LockMode, Protection, Region, RegionPool};

const ENV: &str = "MEMCALL_CHILD";

/// Entry point of the child processes started below; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(ENV) else {
        return;
    };
    let code = match scenario.as_str() {
        "read_no_access" => read_no_access(),
        "write_read_only" => write_read_only(),
        "read_read_only" => read_read_only(),
        "memlock" => memlock_until_limit(),
        "core" => core_with_markers(),
        "pool_pressure" => pool_gives_way_under_pressure(),
        "not_dumpable" => abort_not_dumpable(),
        other => {
            eprintln!("unknown scenario {other}");
            99
        }
    };
    std::process::exit(code);
}

fn run_child(scenario: &str, cwd: Option<&Path>, envs: &[(&str, String)]) -> ExitStatus {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, scenario);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.status().expect("spawn child")
}

fn filled_region(byte: u8) -> Region {
    let mut region = Region::alloc(1).unwrap();
    // SAFETY: fresh region, read-write, exclusively ours.
    unsafe { region.as_mut_slice() }.fill(byte);
    region
}

fn read_no_access() -> i32 {
    let region = filled_region(1);
    region.protect(Protection::NoAccess).unwrap();
    // SAFETY: deliberately touches a no-access page: the process must die with SIGSEGV here.
    let value = unsafe { region.as_ptr().read_volatile() };
    i32::from(value) + 10
}

fn write_read_only() -> i32 {
    let region = filled_region(1);
    region.protect(Protection::ReadOnly).unwrap();
    // SAFETY: deliberately writes a read-only page: the process must die with SIGSEGV here.
    unsafe { region.as_ptr().write_volatile(2) };
    10
}

fn read_read_only() -> i32 {
    let region = filled_region(42);
    region.protect(Protection::ReadOnly).unwrap();
    // SAFETY: the page is readable.
    let value = unsafe { region.as_ptr().read_volatile() };
    if value == 42 {
        0
    } else {
        1
    }
}

#[test]
fn touching_a_no_access_page_faults() {
    let status = run_child("read_no_access", None, &[]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
}

#[test]
fn writing_a_read_only_page_faults() {
    let status = run_child("write_read_only", None, &[]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
}

#[test]
fn reading_a_read_only_page_works() {
    let status = run_child("read_read_only", None, &[]);
    assert!(status.success(), "{status:?}");
}

/// Without CAP_IPC_LOCK and with a 256 KiB limit, lock one page at a time until the limit: the error must be
/// the typed limit error naming RLIMIT_MEMLOCK and the fix, and freeing must return VmLck to where it started.
fn memlock_until_limit() -> i32 {
    memcall::drop_lock_exemption().expect("drop CAP_IPC_LOCK");
    memcall::set_lock_limit(Limit::Bytes(256 * 1024)).expect("lower RLIMIT_MEMLOCK");
    let start = memcall::locked_bytes().unwrap();
    let mut held = Vec::new();
    let err = loop {
        let region = Region::alloc(1).unwrap();
        match region.lock() {
            Ok(()) => held.push(region),
            Err(e) => break e,
        }
        if held.len() > 100_000 {
            eprintln!("the limit never applied");
            return 2;
        }
    };
    let msg = err.to_string();
    eprintln!("locked {} pages, then: {msg}", held.len());
    if !err.is_lock_limit()
        || !msg.contains("RLIMIT_MEMLOCK is 256 KiB (soft)")
        || !msg.contains("ulimit -l")
        || msg.contains("exempt")
    {
        return 3;
    }
    if memcall::locked_bytes() != Some(256 * 1024) {
        return 4;
    }
    for region in held {
        region.free().unwrap();
    }
    if memcall::locked_bytes() != Some(start) {
        eprintln!("VmLck {:?}, started at {start}", memcall::locked_bytes());
        return 5;
    }
    0
}

#[test]
fn memlock_exhaustion_is_a_typed_error_and_frees_cleanly() {
    let status = run_child("memlock", None, &[]);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Raises the soft core-file limit to the hard one, so an abort writes a core.
fn allow_core_files() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-parameter.
    unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut rl) };
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: raising the soft limit up to the hard one is always allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &rl) };
}

fn decode_hex_into(hex: &str, dst: *mut u8) {
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        // SAFETY: the callers pass regions/buffers at least `hex.len() / 2` bytes long and writable.
        unsafe { dst.add(i).write_volatile(byte) };
    }
}

/// Writes one marker into a no-dump region and another into ordinary heap memory, then aborts with core
/// dumps allowed. The markers arrive hex-encoded, so their bytes exist nowhere but where they are decoded to.
fn core_with_markers() -> i32 {
    allow_core_files();
    let secret_hex = std::env::var("SECRET_MARKER").unwrap();
    let heap_hex = std::env::var("HEAP_MARKER").unwrap();
    let region = Region::alloc(1).unwrap();
    decode_hex_into(&secret_hex, region.as_ptr());
    region.protect(Protection::NoAccess).unwrap();
    let readable = Region::alloc(1).unwrap();
    decode_hex_into(&secret_hex, readable.as_ptr());
    readable.protect(Protection::ReadOnly).unwrap();
    let mut heap = vec![0u8; heap_hex.len() / 2];
    decode_hex_into(&heap_hex, heap.as_mut_ptr());
    std::hint::black_box(&heap);
    std::process::abort();
}

fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // SAFETY: `bytes` is writable for `len` bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), len, 0) };
    assert_eq!(n, len as isize);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn core_dump_holds_the_heap_marker_but_not_the_secret() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.starts_with('|') {
        assert!(
            std::env::var_os("SECUREMEMORY_SKIP_CORE_TESTS").is_some(),
            "core_pattern pipes to {pattern:?}, so no core file can be read here; set SECUREMEMORY_SKIP_CORE_TESTS=1 to skip"
        );
        eprintln!("SKIPPED: core_pattern pipes to {pattern:?}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("memcall-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (secret, heap) = (random_hex(32), random_hex(32));
    let status = run_child(
        "core",
        Some(&dir),
        &[
            ("SECRET_MARKER", secret.clone()),
            ("HEAP_MARKER", heap.clone()),
        ],
    );
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    assert!(status.core_dumped(), "no core was written: {status:?}");
    let core_name = pattern.trim().replace("%p", "*");
    let core_path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(core_name.trim_end_matches('*'))
        })
        .unwrap_or_else(|| panic!("no core file in {dir:?} (core_pattern {pattern:?})"));
    let core = std::fs::read(&core_path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        contains(&core, &unhex(&heap)),
        "the heap control marker is missing: the dump is not real"
    );
    assert!(
        !contains(&core, &unhex(&secret)),
        "the secret marker leaked into the core dump"
    );
    assert!(
        !contains(&core, &unhex(&secret)[16..]),
        "half the secret marker leaked into the core dump"
    );
}

/// A pool holding locked regions must free them rather than fail a caller who needs the locked memory.
fn pool_gives_way_under_pressure() -> i32 {
    memcall::drop_lock_exemption().expect("drop CAP_IPC_LOCK");
    memcall::set_lock_limit(Limit::Bytes(256 * 1024)).expect("lower RLIMIT_MEMLOCK");
    let page = memcall::page_size();
    let pool = RegionPool::new(128 * 1024);
    let cached: Vec<_> = (0..32)
        .map(|_| pool.acquire(1, LockMode::Required).unwrap())
        .collect();
    for a in cached {
        pool.release(a.region, a.locked).unwrap();
    }
    let mut held = Vec::new();
    while memcall::locked_bytes().unwrap() < 256 * 1024 {
        held.push(
            pool.acquire(2 * page, LockMode::Required)
                .expect("room left"),
        );
    }
    // Everything is locked now, half of it by the pool's cache: the next caller gets the pool's share.
    let got = pool.acquire(2 * page, LockMode::Required);
    let code = match got {
        Ok(a) if a.locked && pool.cached_bytes() == 0 => 0,
        Ok(_) => 6,
        Err(e) => {
            eprintln!("{e}");
            7
        }
    };
    drop(held);
    code
}

#[test]
fn the_pool_frees_its_cache_instead_of_failing_a_caller() {
    let status = run_child("pool_pressure", None, &[]);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

fn abort_not_dumpable() -> i32 {
    allow_core_files();
    memcall::set_dumpable(false).unwrap();
    if memcall::is_dumpable().unwrap() {
        return 8;
    }
    std::process::abort();
}

#[test]
fn a_non_dumpable_process_leaves_no_core() {
    let dir = std::env::temp_dir().join(format!("memcall-nodump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = run_child("not_dumpable", Some(&dir), &[]);
    let files = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    assert!(
        !status.core_dumped() && files == 0,
        "a core was written: {status:?}, {files} files"
    );
}
