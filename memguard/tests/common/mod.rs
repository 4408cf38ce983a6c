//! Running one scenario of a test in a child process, for faults that must kill the process.
#![allow(dead_code)]

use std::process::{Command, ExitStatus, Output};

const SCENARIO_VAR: &str = "MEMGUARD_TEST_CHILD";

/// The scenario this process was started for, when it is a child.
pub fn scenario() -> Option<String> {
    std::env::var(SCENARIO_VAR).ok()
}

/// Re-runs this test binary on `test` alone, with `scenario` selected, and returns how it ended.
pub fn run_child(test: &str, scenario: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .output()
        .expect("spawn child test process")
}

/// The signal that ended the child, if a signal did.
#[cfg(unix)]
pub fn signal_of(out: &Output) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal()
}

/// True when a memory fault ended the process: SIGSEGV (or SIGBUS, which some kernels raise for protection
/// faults) on Unix; on Windows the access violation's exception code (0xC0000005) as its exit code.
pub fn is_fault(status: &ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(libc::SIGSEGV) || status.signal() == Some(libc::SIGBUS)
    }
    #[cfg(windows)]
    {
        status.code().map(|c| c as u32) == Some(0xC000_0005)
    }
}

/// Asserts the child died of a memory fault ([`is_fault`]).
pub fn assert_faulted(out: &Output) {
    assert!(
        is_fault(&out.status),
        "child should have died of a memory fault, got {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts the child exited normally with `code`.
pub fn assert_exit_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "child ended with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ends a child scenario that reached a point it should not have.
pub fn child_survived() -> ! {
    eprintln!("child scenario finished without the expected fault");
    std::process::exit(97)
}

/// How a child run with a time limit ended.
pub struct Bounded {
    /// Its output (status, stdout, stderr).
    pub output: Output,
    /// True when it ran past the limit and was killed (a hang).
    pub timed_out: bool,
}

impl Bounded {
    /// The child's end and output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "child ended with {:?}{}\nstdout: {}\nstderr: {}",
            self.output.status,
            if self.timed_out {
                " (killed at its time limit: it hung)"
            } else {
                ""
            },
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    /// Asserts the child exited by itself with `code`.
    #[track_caller]
    pub fn assert_exit_code(&self, code: i32) {
        assert!(
            !self.timed_out && self.output.status.code() == Some(code),
            "expected exit code {code}; {}",
            self.describe()
        );
    }

    /// Asserts the child died of a memory fault ([`is_fault`]), not at its time limit.
    #[track_caller]
    pub fn assert_faulted(&self) {
        assert!(
            !self.timed_out && is_fault(&self.output.status),
            "expected a memory fault; {}",
            self.describe()
        );
    }

    /// Asserts the child was ended by one of `signals`.
    #[cfg(unix)]
    #[track_caller]
    pub fn assert_signal(&self, signals: &[i32]) {
        let sig = signal_of(&self.output);
        assert!(
            !self.timed_out && sig.is_some_and(|s| signals.contains(&s)),
            "expected one of the signals {signals:?}; {}",
            self.describe()
        );
    }
}

/// As [`run_child`], but kills the child (SIGKILL) once it has run for `limit`: a hang shows as a failed test,
/// not a stuck run.
pub fn run_child_bounded(test: &str, scenario: &str, limit: std::time::Duration) -> Bounded {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::Instant;
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child test process");
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            text
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
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
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Bounded {
        output: Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        },
        timed_out,
    }
}
