//! Running one scenario in a child process (the current binary, re-entered), and how that child ended.
//!
//! The child is the same executable, started through a [`Launcher`]: `securememory __child` for the doctor, the
//! test binary's `child_entry` test for CI. [`SCENARIO_VAR`] names the scenario and [`PARAMS_VAR`] carries its
//! parameters as JSON; [`dispatch`] runs it in the child (a registry scenario, or one local to a test file).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;

/// The environment variable that selects a child's scenario.
pub const SCENARIO_VAR: &str = "SECUREMEMORY_PROOF_SCENARIO";
/// The environment variable that carries a registry scenario's parameters (JSON).
pub const PARAMS_VAR: &str = "SECUREMEMORY_PROOF_PARAMS";
/// What a child prints right before the access that must fault, so the parent knows where the fault came from.
pub const TOUCH: &str = "GUARANTEES: touching protected memory now";
/// Exit code of a child started for a scenario its binary does not know.
pub const UNKNOWN_SCENARIO: i32 = 99;

/// A scenario local to one test file: `Ok` exits 0, `Err` prints the reason and exits 1.
pub type LocalScenario = fn() -> Result<(), Box<dyn std::error::Error>>;

/// Announces (on stderr, unbuffered) that the next memory access must fault.
pub fn announce_touch() {
    eprintln!("{TOUCH}");
}

/// Runs the scenario named by [`SCENARIO_VAR`] (a registry scenario, or one of `local`), then exits the
/// process with its result. Returns at once, doing nothing, when this process is not a child.
pub fn dispatch(local: &[(&str, LocalScenario)]) {
    let Ok(name) = std::env::var(SCENARIO_VAR) else {
        return;
    };
    let code = if let Some(scenario) = crate::scenarios::find(&name) {
        (scenario.child)(&std::env::var(PARAMS_VAR).unwrap_or_else(|_| "{}".to_owned()))
    } else if let Some((_, scenario)) = local.iter().find(|(n, _)| *n == name) {
        match scenario() {
            Ok(()) => 0,
            Err(reason) => {
                eprintln!("scenario {name} failed: {reason}");
                1
            }
        }
    } else {
        eprintln!("unknown scenario {name}");
        UNKNOWN_SCENARIO
    };
    std::process::exit(code);
}

/// Prints one JSON line on stdout and flushes it, so it reaches the parent even if a crash follows.
pub fn emit<T: serde::Serialize>(value: &T) {
    let line = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// How the current executable re-enters a child scenario: the arguments placed before nothing else.
#[derive(Clone, Debug)]
pub struct Launcher {
    args: Vec<OsString>,
}

impl Launcher {
    /// A test binary: runs its `child_entry` test alone, which calls [`dispatch`].
    pub fn test_binary() -> Launcher {
        Launcher::with_args(&["child_entry", "--exact", "--nocapture", "--test-threads=1"])
    }

    /// A program whose `args` lead to [`dispatch`] (the doctor: `["__child"]`).
    pub fn with_args(args: &[&str]) -> Launcher {
        Launcher {
            args: args.iter().map(OsString::from).collect(),
        }
    }

    /// Starts building a child that runs `scenario`.
    pub fn child(&self, scenario: &str) -> ChildRun {
        ChildRun {
            launcher: self.clone(),
            scenario: scenario.to_owned(),
            envs: Vec::new(),
            cwd: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Starts building a child of the current test binary that runs `scenario`.
pub fn run_child(scenario: &str) -> ChildRun {
    Launcher::test_binary().child(scenario)
}

/// How to start one child.
#[derive(Debug)]
#[must_use = "call .run() to start the child"]
pub struct ChildRun {
    launcher: Launcher,
    scenario: String,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
}

impl ChildRun {
    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Passes a registry scenario its parameters.
    pub fn params<P: serde::Serialize>(self, params: &P) -> Self {
        let json = serde_json::to_string(params).unwrap_or_default();
        self.env(PARAMS_VAR, json)
    }

    /// Runs the child in `dir` (where a core file lands when `core_pattern` is a plain name). Without it the
    /// child runs in a scratch directory removed afterwards, so no core file is left in the caller's directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Kills the child (SIGKILL) if it runs longer than this (default 300 s): a hang shows as a killed child.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command that starts the child (in its directory if one was set), with stdout and stderr piped, for
    /// tests that talk to a live child (and must kill it themselves); [`ChildRun::run`] is the usual way.
    ///
    /// # Panics
    /// When the path of the current executable is unknown.
    pub fn command(&self) -> Command {
        self.build().expect("path of the current executable")
    }

    fn build(&self) -> std::io::Result<Command> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(&self.launcher.args)
            .env(SCENARIO_VAR, &self.scenario)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// Runs the child to its end and collects its output.
    ///
    /// # Panics
    /// When the child cannot be started or waited for: a test cannot say anything then.
    pub fn run(self) -> ChildOutcome {
        self.try_run()
            .expect("start and wait for the child process")
    }

    /// Runs the child to its end and collects its output.
    ///
    /// # Errors
    /// When the child cannot be started or waited for.
    pub fn try_run(mut self) -> std::io::Result<ChildOutcome> {
        if self.cwd.is_some() {
            return self.run_in();
        }
        let dir = scratch_dir(&self.scenario)?;
        self.cwd = Some(dir.clone());
        let outcome = self.run_in();
        let _ = std::fs::remove_dir_all(dir);
        outcome
    }

    fn run_in(&self) -> std::io::Result<ChildOutcome> {
        let mut child = self.build()?.spawn()?;
        // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
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
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(ChildOutcome {
            scenario: self.scenario.clone(),
            status,
            timed_out,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// A fresh, empty directory under the system's temporary directory, its name starting with `name`.
///
/// # Errors
/// When it cannot be created.
pub fn scratch_dir(name: &str) -> std::io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "securememory-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// How a child ended, with everything it printed.
#[derive(Debug)]
pub struct ChildOutcome {
    /// The scenario it ran.
    pub scenario: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// True when it was killed for running past its timeout.
    pub timed_out: bool,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl ChildOutcome {
    /// The signal that ended the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// True when the kernel wrote a core dump of the child.
    pub fn core_dumped(&self) -> bool {
        self.status.core_dumped()
    }

    /// True when the child exited normally with status 0.
    pub fn succeeded(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// True when the child died of a memory-protection fault (SIGSEGV, or SIGBUS which some kernels raise).
    pub fn faulted(&self) -> bool {
        !self.timed_out && matches!(self.signal(), Some(libc::SIGSEGV | libc::SIGBUS))
    }

    /// "exited with status 0", "was killed by SIGSEGV (signal 11), core dumped", ...
    pub fn ended(&self) -> String {
        if self.timed_out {
            return "timed out and was killed".to_owned();
        }
        match (self.status.code(), self.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!(
                "was killed by {} (signal {sig}){}",
                crate::sys::signal_name(sig),
                if self.core_dumped() {
                    ", core dumped"
                } else {
                    ""
                }
            ),
            (None, None) => format!("ended with {}", self.status),
        }
    }

    /// How the child ended and everything it printed, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "child {:?} {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.scenario,
            self.ended(),
            self.stdout,
            self.stderr
        )
    }

    /// Every stdout line that parses as a `T` in JSON (from its first `{`: a test harness may have printed
    /// the test's name first on the same line), in order.
    pub fn reports<T: DeserializeOwned>(&self) -> Vec<T> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l[l.find('{')?..].trim()).ok())
            .collect()
    }

    /// The last stdout line that parses as a `T` in JSON.
    pub fn report<T: DeserializeOwned>(&self) -> Option<T> {
        self.reports().pop()
    }

    /// The child's last non-empty stderr line, for evidence when it failed.
    pub fn last_error_line(&self) -> Option<&str> {
        self.stderr.lines().rev().find(|l| !l.trim().is_empty())
    }

    /// Asserts that the scenario ran to its end and succeeded.
    ///
    /// # Panics
    /// Otherwise, with the child's output.
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(self.succeeded(), "{}", self.describe());
    }

    /// Asserts that the child died of a memory-protection fault.
    ///
    /// # Panics
    /// Otherwise, with the child's output.
    #[track_caller]
    pub fn assert_faulted(&self) {
        assert!(
            self.faulted(),
            "expected a memory fault; {}",
            self.describe()
        );
    }

    /// Asserts that the child died of a memory fault right at the access it announced with [`announce_touch`].
    ///
    /// # Panics
    /// Otherwise, with the child's output.
    #[track_caller]
    pub fn assert_faulted_at_touch(&self) {
        self.assert_faulted();
        assert!(
            self.stderr.contains(TOUCH),
            "the child faulted before reaching the access under test; {}",
            self.describe()
        );
    }

    /// Asserts that the child was ended by `signal`.
    ///
    /// # Panics
    /// Otherwise, with the child's output.
    #[track_caller]
    pub fn assert_signal(&self, signal: i32) {
        assert!(
            !self.timed_out && self.signal() == Some(signal),
            "expected signal {signal}; {}",
            self.describe()
        );
    }
}
