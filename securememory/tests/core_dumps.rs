//! The first factory disables core dumps process-wide (soft and hard `RLIMIT_CORE` = 0) unless
//! `keep_core_dumps()` was called or `SECUREMEMORY_KEEP_CORE_DUMPS=1` is set. Each case runs in a child so
//! the parent's limits are untouched.
#![cfg(unix)]
#![allow(unsafe_code)]

mod common;

use common::child_scenario;
use securememory::{keep_core_dumps, ProtectedMemorySecretFactory, KEEP_CORE_DUMPS_ENV};

fn core_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall with a valid out pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
    #[allow(clippy::unnecessary_cast)] // `rlim_t` is not u64 everywhere
    (limit.rlim_cur as u64, limit.rlim_max as u64)
}

fn raise_core_limit() {
    let limit = libc::rlimit {
        rlim_cur: 1 << 30,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct. May fail without privilege; the children check what they got.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
}

fn child(expect_kept: bool, keep_by_call: bool) {
    raise_core_limit();
    let before = core_limit();
    assert_ne!(
        before.0, 0,
        "the child needs a non-zero core limit to start from"
    );
    if keep_by_call {
        keep_core_dumps();
    }
    let _factory = ProtectedMemorySecretFactory::new();
    let _second = ProtectedMemorySecretFactory::new();
    let after = core_limit();
    if expect_kept {
        assert_eq!(after, before);
    } else {
        assert_eq!(after, (0, 0));
    }
    std::process::exit(0);
}

fn run(test: &str, scenario: &str, env: Option<&str>) {
    if let Some(s) = child_scenario() {
        child(s != "disabled", s == "kept_by_call");
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(common::CHILD_ENV, scenario)
        .env_remove(KEEP_CORE_DUMPS_ENV);
    if let Some(value) = env {
        cmd.env(KEEP_CORE_DUMPS_ENV, value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{scenario}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn first_factory_disables_core_dumps() {
    run("first_factory_disables_core_dumps", "disabled", None);
}

#[test]
fn keep_core_dumps_call_keeps_them() {
    run("keep_core_dumps_call_keeps_them", "kept_by_call", None);
}

#[test]
fn keep_core_dumps_env_keeps_them() {
    run("keep_core_dumps_env_keeps_them", "kept_by_env", Some("1"));
}
