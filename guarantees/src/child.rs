//! Running one scenario of a test binary in a child process, and asserting how the child ended.
//!
//! Every test file has a `#[test] fn child_entry()` that calls [`dispatch`] with its scenarios. A test starts a
//! child with [`run_child`]: the same binary, re-executed on `child_entry` alone, with [`SCENARIO_VAR`] naming the
//! scenario. In a normal test run `child_entry` does nothing.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that selects a child's scenario.
pub const SCENARIO_VAR: &str = "SECUREMEMORY_GUARANTEES_CHILD";

/// The name of the test function every test binary dispatches scenarios from.
pub const ENTRY: &str = "child_entry";

/// A child scenario: `Ok` ends the child with exit code 0, `Err` prints the reason and exits with code 1.
/// Scenarios that must die (by a fault or an abort) return `Err` when they survive.
pub type Scenario = fn() -> Result<(), Box<dyn std::error::Error>>;

/// What a child prints right before the access that must fault, so the parent knows the fault came from there
/// and not from some earlier step.
pub const TOUCH: &str = "GUARANTEES: touching protected memory now";

/// Announces (on stderr, unbuffered) that the next memory access must fault.
pub fn announce_touch() {
    eprintln!("{TOUCH}");
}

/// Exit code of a child that was started for a scenario its binary does not know.
pub const UNKNOWN_SCENARIO: i32 = 99;

/// Runs the scenario named by [`SCENARIO_VAR`], then exits the process with its result. Returns at once (doing
/// nothing) when this process is not a child.
pub fn dispatch(scenarios: &[(&str, Scenario)]) {
    let Ok(name) = std::env::var(SCENARIO_VAR) else {
        return;
    };
    let code = match scenarios.iter().find(|(n, _)| *n == name) {
        Some((_, scenario)) => match scenario() {
            Ok(()) => 0,
            Err(reason) => {
                eprintln!("scenario {name} failed: {reason}");
                1
            }
        },
        None => {
            eprintln!("unknown scenario {name}");
            UNKNOWN_SCENARIO
        }
    };
    std::process::exit(code);
}

/// How to start one child.
#[derive(Debug)]
#[must_use = "call .run() to start the child"]
pub struct ChildRun {
    scenario: String,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
}

/// Starts building a child that runs `scenario` of the current test binary.
pub fn run_child(scenario: &str) -> ChildRun {
    ChildRun {
        scenario: scenario.to_owned(),
        envs: Vec::new(),
        cwd: None,
        timeout: Duration::from_secs(300),
    }
}

impl ChildRun {
    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs the child in `dir` (where a core file lands when `core_pattern` is a plain name).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Kills the child (SIGKILL) if it runs longer than this; default 300 s. A hang then shows as a killed
    /// child instead of a stuck test run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command that starts the child, with stdout and stderr piped: for tests that talk to a live child
    /// (and must kill it themselves); [`ChildRun::run`] is the usual way.
    ///
    /// # Panics
    /// When the path of the test binary is unknown.
    pub fn command(&self) -> Command {
        let exe = std::env::current_exe().expect("path of the test binary");
        let mut cmd = Command::new(exe);
        cmd.args([ENTRY, "--exact", "--nocapture", "--test-threads=1"])
            .env(SCENARIO_VAR, &self.scenario)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the child to its end and collects its output.
    ///
    /// # Panics
    /// When the child cannot be started or waited for: the test cannot say anything then.
    pub fn run(self) -> ChildOutcome {
        let mut child = self
            .command()
            .spawn()
            .expect("spawn the child test process");
        // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait for the killed child");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ChildOutcome {
            scenario: self.scenario,
            status,
            timed_out,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }
}

/// How a child ended, with its output for the failure message.
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

    /// A description of the child's end and output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "child {:?} ended with {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.scenario,
            self.status,
            if self.timed_out {
                " (killed after its timeout: it hung)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }

    /// Asserts that the scenario ran to its end and succeeded.
    ///
    /// # Panics
    /// Otherwise, with the child's output.
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(
            self.status.success() && !self.timed_out,
            "{}",
            self.describe()
        );
    }

    /// Asserts that the child died of a memory-protection fault (SIGSEGV, or SIGBUS which some kernels raise).
    ///
    /// # Panics
    /// Otherwise, with the child's output.
    #[track_caller]
    pub fn assert_faulted(&self) {
        let sig = self.signal();
        assert!(
            !self.timed_out && (sig == Some(libc::SIGSEGV) || sig == Some(libc::SIGBUS)),
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
