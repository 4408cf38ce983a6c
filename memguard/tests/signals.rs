//! Signals and exits, each in a child process: the handler runs, secrets are purged, the exit code is Go's.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memguard::{LockedBuffer, SIGNAL_EXIT_CODE};

fn raise(sig: i32) {
    // SAFETY: raise only sends a signal to the calling thread.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

fn wait_for_exit() -> ! {
    // The listener thread exits the process; give it ample time, then report that it did not.
    std::thread::sleep(Duration::from_secs(30));
    common::child_survived()
}

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
        let buf = LockedBuffer::from_bytes(&mut [1u8; 16]).unwrap();
        let before = memcall::locked_bytes().unwrap();
        struct Report(u64);
        impl memguard::Purgeable for Report {
            fn purge(&self, _: &memguard::PurgeRequest) {
                // Runs during safe_exit's purge, after the buffer registered before it was released.
                eprintln!(
                    "locked dropped: {}",
                    memcall::locked_bytes().unwrap() < self.0
                );
            }
        }
        let report = Arc::new(Report(before));
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
