//! Detecting that we are running in a forked child.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static EPOCH: AtomicU64 = AtomicU64::new(0);

#[cfg(unix)]
extern "C" fn bump_epoch_in_child() {
    // Async-signal-safe: a single atomic add.
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        #[cfg(unix)]
        // SAFETY: registers a child handler that only performs an atomic add, which is async-signal-safe; the
        // handler is a plain `extern "C" fn` with static lifetime. A failure (ENOMEM) leaves the epoch at 0
        // forever, which `fork_epoch` documents as "cannot tell".
        unsafe {
            libc::pthread_atfork(None, None, Some(bump_epoch_in_child));
        }
    });
}

/// A number that changes in the child after every `fork()`.
///
/// Remember it when a secret is created and compare on use: a different value means this process is a forked
/// child that inherited the secret's handle (regions are also not inherited, see
/// [`Hardening::no_fork`](crate::Hardening)). The first call installs a `pthread_atfork` child handler; forks
/// that bypass libc (raw `clone`/`vfork` syscalls) are not seen. Always 0 on Windows, which has no fork.
pub fn fork_epoch() -> u64 {
    install();
    EPOCH.load(Ordering::Relaxed)
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn epoch_changes_in_forked_child_only() {
        let before = super::fork_epoch();
        // SAFETY: the child only reads an atomic and calls `_exit`, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if super::fork_epoch() == before + 1 {
                0
            } else {
                1
            };
            // SAFETY: `_exit` is always safe to call; it skips atexit handlers the test harness owns.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-parameter.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(super::fork_epoch(), before);
    }
}
