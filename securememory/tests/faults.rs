//! What must kill the process, or be refused, proven in child processes: reading a secret's pages outside the
//! access window (also after a panic inside it), writing them inside it, running past the data into the guard
//! page, use in a forked child, and the locked-memory limit without `CAP_IPC_LOCK`. On Windows the faults are
//! access violations (exit code 0xC0000005); fork and the Unix lock limit are Unix-only.
#![allow(unsafe_code)]

mod common;

use common::{child_scenario, is_fault, run_child, secret_of, Flavour, Mg, Pm, KEY};
#[cfg(unix)]
use securememory::{Error, Locking, Secret, SecretFactory};

/// The address of the data, smuggled out of the access window.
fn data_ptr<F: Flavour>(s: &F::Secret) -> *const u8 {
    securememory::SecretExtensions::with_bytes(s, |b| Ok(b.as_ptr())).unwrap()
}

fn read_volatile(p: *const u8) -> u8 {
    // SAFETY: deliberately not safe: the child is expected to die here with SIGSEGV.
    unsafe { p.read_volatile() }
}

fn scenario<F: Flavour>(name: &str) {
    match name {
        "read_after_access" => {
            let s = secret_of::<F>(KEY);
            let p = data_ptr::<F>(&s);
            println!("read {}", read_volatile(p));
        }
        "read_after_panic" => {
            let s = secret_of::<F>(KEY);
            let mut p = std::ptr::null();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = securememory::SecretExtensions::with_bytes(
                    &s,
                    |b| -> securememory::Result<()> {
                        p = b.as_ptr();
                        panic!("inside the closure")
                    },
                );
            }));
            println!("read {}", read_volatile(p));
        }
        "write_inside_access" => {
            let s = secret_of::<F>(KEY);
            let _ = securememory::SecretExtensions::with_bytes(&s, |b| {
                // SAFETY: deliberately not safe: the pages are read-only, the child must die here.
                unsafe { (b.as_ptr() as *mut u8).write_volatile(0) };
                Ok(())
            });
        }
        "read_past_end" => {
            let s = secret_of::<F>(KEY);
            let _ = securememory::SecretExtensions::with_bytes(&s, |b| {
                println!("inside {}", b[0]);
                // SAFETY: deliberately not safe: one past the data is the trailing guard page.
                println!("read {}", read_volatile(unsafe { b.as_ptr().add(b.len()) }));
                Ok(())
            });
        }
        #[cfg(unix)]
        "forked_child" => forked_child::<F>(),
        #[cfg(unix)]
        "lock_limit" => lock_limit::<F>(),
        other => panic!("unknown scenario {other}"),
    }
    std::process::exit(0);
}

/// Forks twice: one grandchild must get `Error::Forked` from every call, the other must die by SIGSEGV when it
/// touches the inherited address (the pages are not inherited).
#[cfg(unix)]
fn forked_child<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let p = data_ptr::<F>(&s);
    // SAFETY: this process runs a single test on one thread (`--test-threads=1`); the child only calls
    // functions that do not allocate or lock before `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let refused = matches!(
            securememory::SecretExtensions::with_bytes(&s, |_| Ok(())),
            Err(Error::Forked)
        ) && matches!(s.close(), Err(Error::Forked));
        // SAFETY: ends the forked child without running destructors or atexit handlers.
        unsafe { libc::_exit(if refused { 0 } else { 1 }) };
    }
    assert_eq!(
        wait(pid),
        (Some(0), None),
        "the forked child was not refused"
    );
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        read_volatile(p);
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(wait(pid), (None, Some(libc::SIGSEGV)));
    // The parent's secret is intact.
    assert!(securememory::SecretExtensions::with_bytes(&s, |b| Ok(b == KEY)).unwrap());
    s.close().unwrap();
}

#[cfg(unix)]
fn wait(pid: libc::pid_t) -> (Option<i32>, Option<i32>) {
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (
            None,
            libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        )
    }
}

/// Without `CAP_IPC_LOCK` and with a 64 KiB limit: creation fails with the lock-limit error once the limit is
/// reached, earlier secrets stay intact, nothing is leaked, and best-effort locking still works (unlocked).
#[cfg(unix)]
fn lock_limit<F: Flavour>() {
    let limit = libc::rlimit {
        rlim_cur: 64 * 1024,
        rlim_max: 64 * 1024,
    };
    // SAFETY: plain syscall with a valid struct; lowering the limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) }, 0);
    let mut live = Vec::new();
    let err = loop {
        match F::factory().new(&mut KEY.to_vec()) {
            Ok(s) => live.push(s),
            Err(e) => break e,
        }
        assert!(
            live.len() < 100,
            "the limit was never reached: is CAP_IPC_LOCK still present?"
        );
    };
    assert!(
        matches!(&err, Error::Memory(e) if e.is_lock_limit()),
        "expected the lock-limit error, got {err:?}"
    );
    assert!(err.to_string().contains("RLIMIT_MEMLOCK"), "{err}");
    assert!(!live.is_empty());
    for s in &live {
        assert!(securememory::SecretExtensions::with_bytes(s, |b| Ok(b == KEY)).unwrap());
    }
    let locked_before = memcall::locked_bytes();
    for _ in 0..5 {
        assert!(F::factory().new(&mut KEY.to_vec()).is_err());
    }
    assert_eq!(
        memcall::locked_bytes(),
        locked_before,
        "failed creations leaked locked memory"
    );
    let weak = F::factory_with(Locking::BestEffort)
        .new(&mut KEY.to_vec())
        .unwrap();
    assert!(!weak.protections().locked);
    for s in live {
        s.close().unwrap();
    }
    // Closing freed the limit again.
    let again = F::factory().new(&mut KEY.to_vec()).unwrap();
    assert!(again.protections().locked);
    println!("lock limit reached as expected: {err}");
}

/// The child must die of a memory fault (SIGSEGV; an access violation on Windows).
fn expect_sigsegv(test: &str, scenario: &str) {
    let (status, out) = run_child(test, scenario, &[]);
    assert!(is_fault(&status), "child {scenario}: {status:?}\n{out}");
}

#[cfg(unix)]
fn expect_success(test: &str, scenario: &str, wrapper: &[&str]) {
    let (status, out) = run_child(test, scenario, wrapper);
    assert!(status.success(), "child {scenario}: {status:?}\n{out}");
}

macro_rules! child_tests {
    ($flavour:ident, $module:ident) => {
        mod $module {
            use super::*;

            fn child(test: &str) -> bool {
                match child_scenario() {
                    Some(s) => {
                        scenario::<$flavour>(&s);
                        true
                    }
                    None => {
                        let _ = test;
                        false
                    }
                }
            }

            #[test]
            fn reading_after_the_access_window_dies_by_sigsegv() {
                const NAME: &str = concat!(
                    stringify!($module),
                    "::reading_after_the_access_window_dies_by_sigsegv"
                );
                if !child(NAME) {
                    expect_sigsegv(NAME, "read_after_access");
                }
            }

            #[test]
            fn pages_are_no_access_again_after_a_panic_inside() {
                const NAME: &str = concat!(
                    stringify!($module),
                    "::pages_are_no_access_again_after_a_panic_inside"
                );
                if !child(NAME) {
                    expect_sigsegv(NAME, "read_after_panic");
                }
            }

            #[test]
            fn writing_inside_the_access_window_dies_by_sigsegv() {
                const NAME: &str = concat!(
                    stringify!($module),
                    "::writing_inside_the_access_window_dies_by_sigsegv"
                );
                if !child(NAME) {
                    expect_sigsegv(NAME, "write_inside_access");
                }
            }

            #[cfg(unix)]
            #[test]
            fn forked_child_is_refused_and_has_no_pages() {
                const NAME: &str = concat!(
                    stringify!($module),
                    "::forked_child_is_refused_and_has_no_pages"
                );
                if !child(NAME) {
                    expect_success(NAME, "forked_child", &[]);
                }
            }

            #[cfg(unix)]
            #[test]
            fn lock_limit_without_cap_ipc_lock_is_a_typed_error() {
                const NAME: &str = concat!(
                    stringify!($module),
                    "::lock_limit_without_cap_ipc_lock_is_a_typed_error"
                );
                if !child(NAME) {
                    expect_success(
                        NAME,
                        "lock_limit",
                        &[
                            "setpriv",
                            "--inh-caps=-ipc_lock",
                            "--bounding-set=-ipc_lock",
                        ],
                    );
                }
            }
        }
    };
}

child_tests!(Pm, protected_memory);
child_tests!(Mg, memguard);

#[test]
fn memguard_flavour_reading_past_the_data_hits_the_guard_page() {
    const NAME: &str = "memguard_flavour_reading_past_the_data_hits_the_guard_page";
    match child_scenario() {
        Some(s) => scenario::<Mg>(&s),
        None => expect_sigsegv(NAME, "read_past_end"),
    }
}
