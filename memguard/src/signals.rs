//! Leaving the process without leaving secrets behind: [`safe_exit`], [`safe_panic`], and signal handlers that
//! purge before exiting ([`catch_signal`], [`catch_interrupt`]).

use std::any::Any;

use crate::core::registry::{PurgeRequest, PURGE_GRACE};
use crate::purge::{purge, purge_with};

/// The exit code after a caught signal (Go's `CatchSignal` always exits with 1).
pub const SIGNAL_EXIT_CODE: i32 = 1;

/// Purges everything and exits with `code`, in bounded time whatever other threads do.
///
/// The purge is the exit variant of [`purge`]: accesses in progress on other threads are waited for at most
/// [`PURGE_GRACE`](crate::PURGE_GRACE), then their buffers are wiped in place under them; an access in
/// progress on the calling thread (say, `safe_exit` called inside an access closure) is wiped at once, since
/// it will never end. Canary or unmapping failures are logged, never turned into a panic: the process exits
/// either way (Go's `SafeExit` may panic instead). In a forked child it waits for no thread of the parent.
///
/// ```no_run
/// // (not run: it ends the process)
/// fn fatal(reason: &str) -> ! {
///     eprintln!("fatal: {reason}");
///     memguard::safe_exit(2) // every live buffer is wiped before the process ends
/// }
///
/// let _key = memguard::LockedBuffer::random(32).unwrap_or_else(|e| fatal(&e.to_string()));
/// ```
pub fn safe_exit(code: i32) -> ! {
    purge_with(&PurgeRequest::new(PURGE_GRACE, true));
    std::process::exit(code)
}

/// Purges everything (see [`purge`]: other threads' accesses are waited for at most
/// [`PURGE_GRACE`](crate::PURGE_GRACE); an access on the calling thread is wiped when it ends, since the
/// process goes on), then panics with `payload` (Go's `SafePanic`). The enclave key is gone afterwards, so a
/// caller that catches the panic starts over with a fresh key.
pub fn safe_panic<P: Any + Send + 'static>(payload: P) -> ! {
    purge();
    std::panic::panic_any(payload)
}

#[cfg(unix)]
pub use unix::{catch_interrupt, catch_signal};

#[cfg(unix)]
mod unix {
    use std::sync::atomic::{AtomicU64, Ordering};
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

    /// The listener thread of the process that started it (`epoch` is its `memcall::fork_epoch()`). A forked
    /// child inherits this value but not the thread: it must start its own and leave the parent's alone.
    struct Listener {
        handle: Handle,
        handler: Handler,
        epoch: u64,
    }

    static LISTENER: Mutex<Option<Listener>> = Mutex::new(None);

    /// Signals with numbers at or above this are not tracked (no platform has that many).
    const SIGNAL_SLOTS: usize = 128;
    const NOBODY: u64 = u64::MAX;

    /// Per signal: the fork epoch of the process whose listener catches it, or `NOBODY`. Read in signal
    /// context by [`default_unless_caught_here`], so plain atomics only.
    static CAUGHT_BY: [AtomicU64; SIGNAL_SLOTS] = [const { AtomicU64::new(NOBODY) }; SIGNAL_SLOTS];

    /// Signals that have the default-action fallback registered. Registrations live in memory a forked child
    /// inherits, so this is deliberately not keyed by epoch.
    static FALLBACK: Mutex<Vec<i32>> = Mutex::new(Vec::new());

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        // Each holder changes the value in one step, so a poisoned value is still consistent.
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(sig: i32) -> Option<&'static AtomicU64> {
        usize::try_from(sig).ok().and_then(|i| CAUGHT_BY.get(i))
    }

    /// Runs in signal context on every caught signal, next to the listener's own action. In a process whose
    /// listener does not catch `sig` (a forked child that inherited the registration but not the listener
    /// thread, and did not call [`catch_signal`] for `sig` itself), nothing would ever read the signal: give
    /// it its default action instead (for SIGINT and SIGTERM: the process is killed by the signal).
    ///
    /// Async-signal-safe: atomic loads (`fork_epoch` is one once initialised, which [`catch_signal`] ensures
    /// before registering this), and `emulate_default_handler` (`sigaction`, `raise`, `sigprocmask`).
    fn default_unless_caught_here(sig: i32) {
        let caught_here =
            slot(sig).is_some_and(|s| s.load(Ordering::SeqCst) == memcall::fork_epoch());
        if !caught_here {
            let _ = signal_hook::low_level::emulate_default_handler(sig);
        }
    }

    /// Registers the fallback for `sig` once per process tree.
    fn install_fallback(sig: i32) -> std::io::Result<()> {
        let mut installed = lock(&FALLBACK);
        if installed.contains(&sig) {
            return Ok(());
        }
        // `sig` was checked by `catch_signal`; `default_unless_caught_here` is async-signal-safe (see there).
        crate::core::primitive::register_signal_action(sig, default_unless_caught_here)?;
        installed.push(sig);
        Ok(())
    }

    /// On any of `signals`: runs `handler(signal)`, purges everything, and exits with [`SIGNAL_EXIT_CODE`].
    /// An empty list means the termination signals (SIGHUP, SIGINT, SIGQUIT, SIGTERM).
    ///
    /// Built on `signal-hook`, which chains with the process's other handlers instead of replacing them (Go's
    /// version resets every other handler in the process). The handler runs on a dedicated thread, not in
    /// signal context, so it may do anything. As in Go, a later call replaces the handler; its signals are
    /// added to those already caught.
    ///
    /// The exit is bounded: the purge is that of [`safe_exit`] (accesses on other threads are waited for at
    /// most [`PURGE_GRACE`](crate::PURGE_GRACE), then wiped under them), so a thread stuck inside an access
    /// (a slow network call, blocked I/O) delays the exit by the grace at most, never indefinitely.
    ///
    /// Forked children: the listener thread belongs to the process that called this. A child that calls
    /// `catch_signal` (or [`catch_interrupt`]) gets a listener of its own (the parent's is left untouched,
    /// never joined or closed). In a child that did not, a signal the parent caught gets its default action
    /// (SIGINT and SIGTERM kill it), instead of being swallowed by a listener that does not exist there.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) for a signal that cannot be caught (SIGKILL, SIGSTOP, and the fault
    /// signals `signal-hook` refuses, such as SIGSEGV), or when the listener thread cannot start or a handler
    /// cannot be registered.
    #[cfg_attr(docsrs, doc(cfg(unix)))]
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
        if let Some(&sig) = signals.iter().find(|&&s| {
            FORBIDDEN.contains(&s) || !(1..=max_signal()).contains(&s) || slot(s).is_none()
        }) {
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
        let epoch = memcall::fork_epoch();
        let mut listener = lock(&LISTENER);
        if listener.as_ref().is_some_and(|l| l.epoch != epoch) {
            // The parent's listener: its thread does not exist here, and its handle is shared state of the
            // parent's design. Forget it without closing it.
            if let Some(inherited) = listener.take() {
                std::mem::forget(inherited.handle);
            }
        }
        // Mark the signals as caught here before anything can deliver them to the new registrations, so the
        // fallback never takes the default action for a signal this process is about to catch.
        let before: Vec<u64> = signals
            .iter()
            .filter_map(|&s| slot(s).map(|c| c.swap(epoch, Ordering::SeqCst)))
            .collect();
        let started = start_or_extend(&mut listener, signals, handler, epoch);
        if started.is_err() {
            for (&s, &old) in signals.iter().zip(&before) {
                if let Some(c) = slot(s) {
                    c.store(old, Ordering::SeqCst);
                }
            }
        }
        started?;
        for &sig in signals {
            install_fallback(sig)?;
        }
        Ok(())
    }

    fn start_or_extend(
        listener: &mut Option<Listener>,
        signals: &[i32],
        handler: Handler,
        epoch: u64,
    ) -> crate::Result<()> {
        if let Some(listener) = listener.as_mut() {
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
                    let handler = lock(&LISTENER).as_ref().map(|l| Arc::clone(&l.handler));
                    if let Some(handler) = handler {
                        // A panicking handler must not stop the purge.
                        let _ =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(sig)));
                    }
                    safe_exit(SIGNAL_EXIT_CODE);
                }
            })?;
        *listener = Some(Listener {
            handle,
            handler,
            epoch,
        });
        Ok(())
    }

    /// [`catch_signal`] with a handler that does nothing, for SIGINT (Go's `CatchInterrupt`): Ctrl-C purges
    /// every secret and exits with [`SIGNAL_EXIT_CODE`], within [`PURGE_GRACE`](crate::PURGE_GRACE) of the
    /// purge reaching a buffer still in use on another thread (see [`catch_signal`], also for forked
    /// children).
    ///
    /// # Errors
    /// As [`catch_signal`].
    #[cfg_attr(docsrs, doc(cfg(unix)))]
    pub fn catch_interrupt() -> crate::Result<()> {
        catch_signal(|_| {}, &[signal_hook::consts::SIGINT])
    }
}
