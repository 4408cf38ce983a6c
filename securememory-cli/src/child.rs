//! Re-running this binary as a child process for anything that may fault, dump core or exhaust a limit, so the
//! parent survives to report what happened.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;

/// The hidden subcommand that selects a child scenario.
pub const CHILD_SUBCOMMAND: &str = "__child";

/// How a child process ended, with everything it printed.
pub struct ChildOutcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl ChildOutcome {
    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// True when the child died of `sig`.
    pub fn killed_by(&self, sig: i32) -> bool {
        self.signal() == Some(sig)
    }

    /// True when the child exited normally with status 0.
    pub fn succeeded(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// "exited with status 0", "was killed by SIGSEGV (signal 11), core dumped", ...
    pub fn describe(&self) -> String {
        if self.timed_out {
            return "timed out and was killed".to_owned();
        }
        match (self.status.code(), self.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!(
                "was killed by {} (signal {sig}){}",
                crate::sys::signal_name(sig),
                if self.status.core_dumped() {
                    ", core dumped"
                } else {
                    ""
                }
            ),
            (None, None) => format!("ended with {}", self.status),
        }
    }

    /// The last line of stdout that parses as a `T` in JSON.
    pub fn report<T: DeserializeOwned>(&self) -> Option<T> {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
    }

    /// Every stdout line that parses as a `T`, in order.
    pub fn reports<T: DeserializeOwned>(&self) -> Vec<T> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l.trim()).ok())
            .collect()
    }

    /// The child's last stderr line, for evidence when it failed.
    pub fn last_error_line(&self) -> Option<&str> {
        self.stderr.lines().rev().find(|l| !l.trim().is_empty())
    }
}

/// Where and how to run a child.
pub struct ChildOptions<'a> {
    pub cwd: Option<&'a Path>,
    pub env: Vec<(&'a str, String)>,
    pub timeout: Duration,
}

impl Default for ChildOptions<'_> {
    fn default() -> Self {
        ChildOptions {
            cwd: None,
            env: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

fn drain(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A fresh, empty directory under the system's temporary directory.
pub fn scratch_dir() -> std::io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "securememory-doctor-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// Runs `securememory __child <args...>` and waits for it (killing it after `opts.timeout`).
///
/// Without `opts.cwd` the child runs in a scratch directory that is removed afterwards, so a child that
/// faults where core dumps are enabled never leaves a core file in the caller's working directory.
pub fn run(args: &[String], opts: &ChildOptions<'_>) -> std::io::Result<ChildOutcome> {
    match opts.cwd {
        Some(dir) => run_in(args, opts, dir),
        None => {
            let dir = scratch_dir()?;
            let outcome = run_in(args, opts, &dir);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("doctor: could not remove {}: {e}", dir.display());
            }
            outcome
        }
    }
}

fn run_in(args: &[String], opts: &ChildOptions<'_>, cwd: &Path) -> std::io::Result<ChildOutcome> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_SUBCOMMAND)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.current_dir(cwd);
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + opts.timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let join =
        |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(ChildOutcome {
        status,
        stdout: join(out),
        stderr: join(err),
        timed_out,
    })
}

/// Prints one JSON line on stdout for the parent and flushes it, so it survives a crash that follows.
pub fn emit<T: serde::Serialize>(value: &T) {
    use std::io::Write;
    let line = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
