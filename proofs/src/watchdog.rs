//! A bound on how long a scenario may run: past it, the process aborts, so a deadlock shows up as a failed child
//! instead of a stuck test run.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// Aborts the process if it is still alive `limit` after [`Watchdog::start`]; dropping it disarms it.
#[derive(Debug)]
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Watchdog {
    disarm: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Arms the watchdog; `what` names the work in the message printed before aborting.
    pub fn start(limit: Duration, what: &str) -> Watchdog {
        let (disarm, armed) = channel::<()>();
        let what = what.to_owned();
        let thread = std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                eprintln!("WATCHDOG: {what} still running after {limit:?}: aborting (a hang)");
                std::process::abort();
            }
        });
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`.
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
