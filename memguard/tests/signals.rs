//! Signals and exits, each in a child process: the handler runs, secrets are purged, the exit code is Go's.
//! Signal handling is Unix-only; `safe_exit` and `safe_panic` are tested everywhere.

mod common;

#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memguard::LockedBuffer;
#[cfg(unix)]
use memguard::SIGNAL_EXIT_CODE;

#[cfg(unix)]
fn raise(sig: i32) {
    // SAFETY: raise only sends a signal to the calling thread.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

#[cfg(unix)]
fn wait_for_exit() -> ! {
    // The listener thread exits the process; give it ample time, then report that it did not.
    std::thread::sleep(Duration::from_secs(30));
    common::child_survived()
}

#[cfg(unix)]
#[test]
fn catch_interrupt_exits_with_go_code_after_the_handler() {
    if common::scenario().as_deref() == Some("interrupt") {
        let buf = LockedBuffer::from_bytes(&mut [1u8; 16]).unwrap();
        memguard::catch_signal(
            |sig| eprintln!("handler ran for signal {sig}"),
            &[libc::SIGINT],
        )
        .unwrap();
        raise(libc::SIGINT);
        let _keep = buf;
        wait_for_exit();
    }
    let out = common::run_child(
        "catch_interrupt_exits_with_go_code_after_the_handler",
        "interrupt",
    );
    assert_eq!(SIGNAL_EXIT_CODE, 1);
    common::assert_exit_code(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("handler ran for signal {}", libc::SIGINT)),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn catch_interrupt_alone_exits_with_code_one() {
    if common::scenario().as_deref() == Some("plain") {
        memguard::catch_interrupt().unwrap();
        raise(libc::SIGINT);
        wait_for_exit();
    }
    common::assert_exit_code(
        &common::run_child("catch_interrupt_alone_exits_with_code_one", "plain"),
        1,
    );
}

/// Other handlers keep working: one registered before on another signal, and one on the same signal.
#[cfg(unix)]
#[test]
fn catch_signal_chains_with_other_handlers() {
    if common::scenario().as_deref() == Some("chain") {
        let usr1 = Arc::new(AtomicBool::new(false));
        let int_before = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(libc::SIGUSR1, Arc::clone(&usr1)).unwrap();
        signal_hook::flag::register(libc::SIGINT, Arc::clone(&int_before)).unwrap();
        let seen = Arc::clone(&int_before);
        memguard::catch_signal(
            move |_| {
                eprintln!(
                    "earlier SIGINT handler ran too: {}",
                    seen.load(Ordering::SeqCst)
                )
            },
            &[libc::SIGINT, libc::SIGTERM],
        )
        .unwrap();
        raise(libc::SIGUSR1);
        assert!(
            usr1.load(Ordering::SeqCst),
            "the SIGUSR1 handler is still installed"
        );
        raise(libc::SIGINT);
        wait_for_exit();
    }
    let out = common::run_child("catch_signal_chains_with_other_handlers", "chain");
    common::assert_exit_code(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("earlier SIGINT handler ran too: true"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn uncatchable_signals_are_errors() {
    for sig in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV] {
        assert!(matches!(
            memguard::catch_signal(|_| {}, &[libc::SIGUSR2, sig]),
            Err(memguard::Error::Io(ref e)) if e.kind() == std::io::ErrorKind::InvalidInput
        ));
    }
    assert!(memguard::catch_signal(|_| {}, &[100_000]).is_err());
}

#[test]
fn safe_exit_purges_and_exits_with_the_code() {
    if common::scenario().as_deref() == Some("exit") {
        let buf = Arc::new(LockedBuffer::from_bytes(&mut [1u8; 16]).unwrap());
        // Where the OS does not count locked bytes (Windows), the buffer's own state says it was released.
        let before = memcall::locked_bytes();
        struct Report(Option<u64>, Arc<LockedBuffer>);
        impl memguard::Purgeable for Report {
            fn purge(&self, _: &memguard::PurgeRequest) {
                // Runs during safe_exit's purge, after the buffer registered before it was released.
                let dropped = match self.0 {
                    Some(before) => memcall::locked_bytes().unwrap() < before,
                    None => !self.1.is_alive(),
                };
                eprintln!("locked dropped: {dropped}");
            }
        }
        let report = Arc::new(Report(before, Arc::clone(&buf)));
        let _reg =
            memguard::register(Arc::downgrade(&report) as std::sync::Weak<dyn memguard::Purgeable>);
        let _keep = buf;
        memguard::safe_exit(7);
    }
    let out = common::run_child("safe_exit_purges_and_exits_with_the_code", "exit");
    common::assert_exit_code(&out, 7);
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked dropped: true"));
}

#[test]
fn safe_panic_purges_then_panics_with_the_payload() {
    if common::scenario().as_deref() == Some("panic") {
        let buf = LockedBuffer::from_bytes(&mut [1u8; 16]).unwrap();
        let res = std::panic::catch_unwind(|| memguard::safe_panic("boom"));
        let payload = res.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        assert!(!buf.is_alive(), "purged before the panic");
        std::process::exit(0);
    }
    common::assert_exit_code(
        &common::run_child("safe_panic_purges_then_panics_with_the_payload", "panic"),
        0,
    );
}

/// Far above the purge's 500 ms grace, far below the 20 s access the scenarios hold.
const EXIT_LIMIT: Duration = Duration::from_secs(6);

/// A thread inside a 20 s access (say, a slow KMS call) holds a buffer; a caught signal still ends the process
/// within the purge's grace (not after 20 s), with Go's exit code.
#[cfg(unix)]
fn exits_in_bounded_time_while_another_thread_holds_an_access(catch: fn() -> i32) -> ! {
    let held = Box::leak(Box::new(LockedBuffer::from_bytes(&mut [1u8; 32]).unwrap()));
    let _other = LockedBuffer::from_bytes(&mut [2u8; 32]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let guard = held.bytes().unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(20));
        drop(guard);
    });
    rx.recv().unwrap();
    let sig = catch();
    raise(sig);
    wait_for_exit()
}

#[cfg(unix)]
#[test]
fn catch_interrupt_exits_in_bounded_time_while_another_thread_holds_an_access() {
    const NAME: &str = "catch_interrupt_exits_in_bounded_time_while_another_thread_holds_an_access";
    if common::scenario().as_deref() == Some(NAME) {
        exits_in_bounded_time_while_another_thread_holds_an_access(|| {
            memguard::catch_interrupt().unwrap();
            libc::SIGINT
        });
    }
    common::run_child_bounded(NAME, NAME, EXIT_LIMIT).assert_exit_code(SIGNAL_EXIT_CODE);
}

#[cfg(unix)]
#[test]
fn catch_signal_exits_in_bounded_time_while_another_thread_holds_an_access() {
    const NAME: &str = "catch_signal_exits_in_bounded_time_while_another_thread_holds_an_access";
    if common::scenario().as_deref() == Some(NAME) {
        exits_in_bounded_time_while_another_thread_holds_an_access(|| {
            memguard::catch_signal(|_| {}, &[libc::SIGTERM]).unwrap();
            libc::SIGTERM
        });
    }
    common::run_child_bounded(NAME, NAME, EXIT_LIMIT).assert_exit_code(SIGNAL_EXIT_CODE);
}

/// `safe_exit` called inside an access (the access can never end: the process exits) wipes that buffer at
/// once instead of waiting for it, and exits.
#[test]
fn safe_exit_inside_an_access_exits_at_once() {
    const NAME: &str = "safe_exit_inside_an_access_exits_at_once";
    if common::scenario().as_deref() == Some(NAME) {
        let buf = LockedBuffer::from_bytes(&mut [1u8; 16]).unwrap();
        let _ = buf.with_bytes(|_| memguard::safe_exit(5));
        common::child_survived();
    }
    common::run_child_bounded(NAME, NAME, EXIT_LIMIT).assert_exit_code(5);
}

/// Forks, runs `child` in the forked child under a 5 s alarm (a hang dies of SIGALRM), and returns the
/// child's wait status.
#[cfg(unix)]
fn in_fork(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only this test's code (the scenario process has no other thread that could
    // hold a lock the child needs: the signal listener only waits in `read`), then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: `alarm` and `_exit` are always valid to call.
        unsafe {
            libc::alarm(5);
            libc::_exit(child());
        }
    }
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` a valid out-parameter.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

#[cfg(unix)]
fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

/// The parent catches SIGINT, then forks. A child that catches SIGINT itself exits with Go's code; one that
/// did not is killed by SIGINT (its default action) instead of swallowing it; purge and safe_exit in a child
/// return at once, waiting for no thread of the parent (one of which holds an access).
#[cfg(unix)]
#[test]
fn signals_and_purge_in_a_forked_child() {
    const NAME: &str = "signals_and_purge_in_a_forked_child";
    if common::scenario().as_deref() == Some(NAME) {
        forked_child_scenario(false);
    }
    let out = common::run_child_bounded(NAME, NAME, Duration::from_secs(40));
    out.assert_exit_code(SIGNAL_EXIT_CODE);
}

/// As [`signals_and_purge_in_a_forked_child`], with an enclave key (and its rekey thread) made before the
/// fork: purge in the child must not join the parent's rekey thread either (that part belongs to the enclave
/// key, `core/coffer.rs`).
#[cfg(unix)]
#[test]
fn signals_and_purge_in_a_forked_child_with_an_enclave_key() {
    const NAME: &str = "signals_and_purge_in_a_forked_child_with_an_enclave_key";
    if common::scenario().as_deref() == Some(NAME) {
        forked_child_scenario(true);
    }
    let out = common::run_child_bounded(NAME, NAME, Duration::from_secs(40));
    out.assert_exit_code(SIGNAL_EXIT_CODE);
}

#[cfg(unix)]
fn forked_child_scenario(with_enclave: bool) -> ! {
    {
        memguard::catch_interrupt().unwrap();
        let _enclave = with_enclave.then(|| memguard::Enclave::new(&mut [3u8; 32]).unwrap());
        let held = Box::leak(Box::new(LockedBuffer::from_bytes(&mut [1u8; 32]).unwrap()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _guard = held.bytes().unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
        rx.recv().unwrap();
        let mut failures = Vec::new();
        let mut check = |what: &str, status: i32, ok: bool| {
            eprintln!("{what}: {}", describe(status));
            if !ok {
                failures.push(what.to_owned());
            }
        };

        let status = in_fork(|| {
            memguard::catch_interrupt().unwrap();
            raise(libc::SIGINT);
            std::thread::sleep(Duration::from_secs(30));
            97
        });
        check(
            "child catching SIGINT itself",
            status,
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == SIGNAL_EXIT_CODE,
        );

        let status = in_fork(|| {
            raise(libc::SIGINT);
            std::thread::sleep(Duration::from_secs(30));
            97
        });
        check(
            "child not catching SIGINT",
            status,
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGINT,
        );

        let status = in_fork(|| {
            memguard::purge();
            0
        });
        check(
            "purge in a child",
            status,
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        );

        let status = in_fork(|| memguard::safe_exit(6));
        check(
            "safe_exit in a child",
            status,
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 6,
        );

        // The parent still catches SIGINT with its own listener.
        if failures.is_empty() {
            raise(libc::SIGINT);
            wait_for_exit();
        }
        eprintln!("failed: {failures:?}");
        std::process::exit(2);
    }
}
