//! Running one scenario of a test in a child process, for faults that must kill the process.
#![allow(dead_code)]

use std::process::{Command, Output};

const SCENARIO_VAR: &str = "MEMGUARD_TEST_CHILD";

/// The scenario this process was started for, when it is a child.
pub fn scenario() -> Option<String> {
    std::env::var(SCENARIO_VAR).ok()
}

/// Re-runs this test binary on `test` alone, with `scenario` selected, and returns how it ended.
pub fn run_child(test: &str, scenario: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .output()
        .expect("spawn child test process")
}

/// The signal that ended the child, if a signal did.
pub fn signal_of(out: &Output) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal()
}

/// Asserts the child died of SIGSEGV (or SIGBUS, which some kernels raise for protection faults).
pub fn assert_faulted(out: &Output) {
    let sig = signal_of(out);
    assert!(
        sig == Some(libc::SIGSEGV) || sig == Some(libc::SIGBUS),
        "child should have died of a memory fault, got {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts the child exited normally with `code`.
pub fn assert_exit_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "child ended with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ends a child scenario that reached a point it should not have.
pub fn child_survived() -> ! {
    eprintln!("child scenario finished without the expected fault");
    std::process::exit(97)
}
