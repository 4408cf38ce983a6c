//! The synchronisation primitives of a buffer's access/purge protocol, swapped for loom's models under
//! `--cfg loom` so the model in `core/access.rs` can explore every interleaving.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Waits a little before polling again: yields first, then sleeps (loom only models yielding).
pub(crate) fn pause(round: u32) {
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if round < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// Declares a thread-local with the primitive of the current world (loom models thread-locals per modelled
/// thread; std's would be shared by all of them).
macro_rules! thread_local_cell {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(loom)]
        loom::thread_local! { $(#[$attr])* static $name: $ty = $init; }
        #[cfg(not(loom))]
        std::thread_local! { $(#[$attr])* static $name: $ty = const { $init }; }
    };
}
pub(crate) use thread_local_cell;

/// Registers `action(sig)` to run in signal context on `sig`, next to the process's other handlers (through
/// `signal-hook`, which chains them). For the signal module, which may not hold `unsafe` itself.
///
/// `action` must be async-signal-safe: no allocation, no locks, no panics; atomics and async-signal-safe
/// syscalls only. Being a plain `fn` it captures nothing.
///
/// # Errors
/// When `sig` cannot be caught (the caller checks this first) or the handler cannot be installed.
#[cfg(unix)]
pub(crate) fn register_signal_action(sig: i32, action: fn(i32)) -> std::io::Result<()> {
    // SAFETY:
    // - `register` requires an async-signal-safe action: the closure only calls `action(sig)`, and `action` is
    //   async-signal-safe by this function's contract (both callers' actions are atomics plus signal-hook's
    //   `emulate_default_handler`);
    // - `sig` is checked by the caller to be catchable (not SIGKILL/SIGSTOP/a fault signal, in range), so
    //   `register` does not panic on it.
    unsafe { signal_hook::low_level::register(sig, move || action(sig)) }.map(|_| ())
}
