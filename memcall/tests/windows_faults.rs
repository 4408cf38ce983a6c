//! Windows counterparts of `child_process.rs`: no-access and read-only pages really fault. The test binary
//! re-executes itself with `MEMCALL_CHILD` naming the scenario; a child that hits an access violation ends with
//! the exception code `STATUS_ACCESS_VIOLATION` (0xC0000005) as its exit code.
#![cfg(windows)]

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use memcall::{Protection, Region};

const ENV: &str = "MEMCALL_CHILD";
const STATUS_ACCESS_VIOLATION: u32 = 0xC000_0005;
/// Watchdog: a child that neither faults nor exits by then is killed and the test fails.
const LIMIT: Duration = Duration::from_secs(60);

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
        other => {
            eprintln!("unknown scenario {other}");
            99
        }
    };
    std::process::exit(code);
}

fn run_child(scenario: &str) -> ExitStatus {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, scenario)
        .spawn()
        .expect("spawn child");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {scenario} still running after {LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_access_violation(status: ExitStatus) {
    assert_eq!(
        status.code().map(|c| c as u32),
        Some(STATUS_ACCESS_VIOLATION),
        "{status:?}"
    );
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
    // SAFETY: deliberately touches a no-access page: the process must die with an access violation here.
    let value = unsafe { region.as_ptr().read_volatile() };
    i32::from(value) + 10
}

fn write_read_only() -> i32 {
    let region = filled_region(1);
    region.protect(Protection::ReadOnly).unwrap();
    // SAFETY: deliberately writes a read-only page: the process must die with an access violation here.
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
    assert_access_violation(run_child("read_no_access"));
}

#[test]
fn writing_a_read_only_page_faults() {
    assert_access_violation(run_child("write_read_only"));
}

#[test]
fn reading_a_read_only_page_works() {
    let status = run_child("read_read_only");
    assert!(status.success(), "{status:?}");
}

/// The real lock limit, not an injected one: under Wine, `VirtualLock` is `mlock`, so past the Unix
/// RLIMIT_MEMLOCK of a process without CAP_IPC_LOCK it fails (with `ERROR_ACCESS_DENIED`). The backend then
/// grows the working set (a stub under Wine), retries, and reports the lock limit, naming it and the fix; the
/// regions locked before stay locked and readable. `scripts/wine-test.sh` runs it under a 256 KiB limit without
/// CAP_IPC_LOCK; a normal run has no such limit, so it is ignored there.
#[test]
#[ignore = "needs a low lock limit: scripts/wine-test.sh runs it under `prlimit --memlock` without CAP_IPC_LOCK"]
fn real_lock_limit_is_reported_as_the_lock_limit() {
    let mut locked = Vec::new();
    let err = loop {
        let mut region = Region::alloc(64 * 1024).unwrap();
        // SAFETY: fresh region, read-write, exclusively ours.
        unsafe { region.as_mut_slice() }.fill(locked.len() as u8);
        match region.lock() {
            Ok(()) => locked.push(region),
            Err(err) => break err,
        }
        assert!(
            locked.len() < 1024,
            "64 MiB locked without reaching a limit: run under a low RLIMIT_MEMLOCK without CAP_IPC_LOCK"
        );
    };
    assert!(err.is_lock_limit(), "{err}");
    let text = err.to_string();
    assert!(text.contains("working-set size"), "{text}");
    assert!(text.contains("ulimit -l"), "{text}");
    for (i, region) in locked.iter().enumerate() {
        assert!(region.is_locked());
        // SAFETY: read-write and exclusively ours.
        assert!(unsafe { region.as_slice() }.iter().all(|&b| b == i as u8));
    }
    eprintln!("lock limit reached after {} regions: {text}", locked.len());
}
