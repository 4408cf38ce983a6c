//! Leaving the process without leaving secrets behind: [`safe_exit`], [`safe_panic`], and signal handlers that
//! purge before exiting ([`catch_signal`], [`catch_interrupt`]).

use std::any::Any;

use crate::purge::purge;

/// The exit code after a caught signal (Go's `CatchSignal` always exits with 1).
pub const SIGNAL_EXIT_CODE: i32 = 1;

/// Purges everything (see [`purge`]) and exits with `code`. Canary or unmapping failures are logged, never
/// turned into a panic: the process exits either way (Go's `SafeExit` may panic instead).
pub fn safe_exit(code: i32) -> ! {
    purge();
    std::process::exit(code)
}

/// Purges everything, then panics with `payload` (Go's `SafePanic`). The enclave key is gone afterwards, so a
/// caller that catches the panic starts over with a fresh key.
pub fn safe_panic<P: Any + Send + 'static>(payload: P) -> ! {
    purge();
    std::panic::panic_any(payload)
}

#[cfg(unix)]
pub use unix::{catch_interrupt, catch_signal};

#[cfg(unix)]
mod unix {
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

    use super::*;
    use signal_hook::consts::{FORBIDDEN, TERM_SIGNALS};
    use signal_hook::iterator::{Handle, Signals};

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn max_signal() -> i32 {
        libc::SIGRTMAX()
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn max_signal() -> i32 {
        31
    }

    type Handler = Arc<dyn Fn(i32) + Send + Sync + 'static>;

    struct Listener {
        handle: Handle,
        handler: Handler,
    }

    static LISTENER: Mutex<Option<Listener>> = Mutex::new(None);

    fn listener() -> MutexGuard<'static, Option<Listener>> {
        LISTENER.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// On any of `signals`: runs `handler(signal)`, purges everything, and exits with [`SIGNAL_EXIT_CODE`].
    /// An empty list means the termination signals (SIGHUP, SIGINT, SIGQUIT, SIGTERM).
    ///
    /// Built on `signal-hook`, which chains with the process's other handlers instead of replacing them (Go's
    /// version resets every other handler in the process). The handler runs on a dedicated thread, not in
    /// signal context, so it may do anything. As in Go, a later call replaces the handler; its signals are
    /// added to those already caught.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) for a signal that cannot be caught (SIGKILL, SIGSTOP, and the fault
    /// signals `signal-hook` refuses, such as SIGSEGV), or when the listener thread cannot start.
    pub fn catch_signal(
        handler: impl Fn(i32) + Send + Sync + 'static,
        signals: &[i32],
    ) -> crate::Result<()> {
        let signals = if signals.is_empty() {
            TERM_SIGNALS
        } else {
            signals
        };
        // signal-hook panics on these; refuse them as an error instead.
        if let Some(&sig) = signals
            .iter()
            .find(|&&s| FORBIDDEN.contains(&s) || !(1..=max_signal()).contains(&s))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "signal {sig} cannot be caught (SIGKILL, SIGSTOP, the fault signals and numbers outside \
                     1..={} are excluded)",
                    max_signal()
                ),
            )
            .into());
        }
        let handler: Handler = Arc::new(handler);
        let mut slot = listener();
        if let Some(listener) = slot.as_mut() {
            for &sig in signals {
                listener.handle.add_signal(sig)?;
            }
            listener.handler = handler;
            return Ok(());
        }
        let mut incoming = Signals::new(signals)?;
        let handle = incoming.handle();
        std::thread::Builder::new()
            .name("memguard-signals".into())
            .spawn(move || {
                if let Some(sig) = incoming.forever().next() {
                    let handler = listener().as_ref().map(|l| Arc::clone(&l.handler));
                    if let Some(handler) = handler {
                        // A panicking handler must not stop the purge.
                        let _ =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(sig)));
                    }
                    safe_exit(SIGNAL_EXIT_CODE);
                }
            })?;
        *slot = Some(Listener { handle, handler });
        Ok(())
    }

    /// [`catch_signal`] with a handler that does nothing, for SIGINT (Go's `CatchInterrupt`): Ctrl-C purges
    /// every secret and exits with [`SIGNAL_EXIT_CODE`].
    ///
    /// # Errors
    /// As [`catch_signal`].
    pub fn catch_interrupt() -> crate::Result<()> {
        catch_signal(|_| {}, &[signal_hook::consts::SIGINT])
    }
}
