//! A caught SIGINT or SIGTERM ends the process promptly even while a closure runs for a long time on another
//! thread (a slow KMS or TLS call): the exit path waits at most `memguard::PURGE_GRACE` for it, wipes its
//! secret under it (a sealed secret's scratch copy too), and exits with `memguard::SIGNAL_EXIT_CODE`. A purge item registered last scans the whole
//! process once every secret has been purged: no marker may remain.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guarantees::core_file::{self, MarkerSet};
use guarantees::proc_stats;
use guarantees::{Scenario, Watchdog};
use securememory::{
    MemguardSecretFactory, ProtectedMemorySecretFactory, SealedSecretFactory, SecretFactory,
};

const MARKERS_VAR: &str = "GUARANTEES_MARKERS";
const ENTRY_VAR: &str = "GUARANTEES_SIGNAL_ENTRY";
const READY: &str = "READY";

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Scans the process when purged: registered after every secret, so purged after them.
struct ScanOnPurge(MarkerSet);

impl memguard::Purgeable for ScanOnPurge {
    fn purge(&self, _: &memguard::PurgeRequest) {
        let hits = proc_stats::scan_own_memory(&self.0);
        println!("SCAN: {} marker(s) left", hits.len());
    }
}

fn hold_and_wait() -> Outcome {
    let markers: Vec<String> = std::env::var(MARKERS_VAR)?
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut sources: Vec<Vec<u8>> = markers.iter().map(|h| core_file::unhex(h)).collect();
    let busy = Arc::new(ProtectedMemorySecretFactory::new().new(&mut sources[0])?);
    // A sealed secret's plaintext exists only in its scratch copy while a closure runs: the exit must wipe it.
    let busy_sealed = Arc::new(SealedSecretFactory::new().new(&mut sources[1])?);
    let idle_pm = ProtectedMemorySecretFactory::new().new(&mut sources[2])?;
    let idle_mg = MemguardSecretFactory::new().new(&mut sources[3])?;
    let mut buffer_source = sources.pop().ok_or("no source")?;
    let buffer = memguard::LockedBuffer::from_bytes(&mut buffer_source)?;
    let scan = Arc::new(ScanOnPurge(MarkerSet::from_hex(&markers)));
    let _registration =
        memguard::register(Arc::downgrade(&scan) as std::sync::Weak<dyn memguard::Purgeable>);
    {
        let busy = Arc::clone(&busy);
        std::thread::spawn(move || {
            // A closure that does not return for 20 s, like a slow network call with the key in hand.
            let _ = busy.with_bytes(|_| {
                std::thread::sleep(Duration::from_secs(20));
                Ok(())
            });
        });
        let busy_sealed = Arc::clone(&busy_sealed);
        std::thread::spawn(move || {
            let _ = busy_sealed.with_bytes(|_| {
                std::thread::sleep(Duration::from_secs(20));
                Ok(())
            });
        });
    }
    while busy.accessors() == 0 || busy_sealed.accessors() == 0 {
        std::thread::yield_now();
    }
    let before = proc_stats::scan_own_memory(&scan.0).len();
    if before != markers.len() {
        return Err(format!(
            "the scan finds {before} of {} live markers: it proves nothing",
            markers.len()
        )
        .into());
    }
    match std::env::var(ENTRY_VAR)?.as_str() {
        "catch_interrupt" => memguard::catch_interrupt()?,
        _ => memguard::catch_signal(|_| {}, &[libc::SIGINT, libc::SIGTERM])?,
    }
    println!("{READY}");
    std::thread::sleep(Duration::from_secs(60));
    drop((idle_pm, idle_mg, buffer));
    Err("the signal did not end the process".into())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[("hold_and_wait", hold_and_wait)];
    guarantees::dispatch(SCENARIOS);
}

fn signal_ends_the_process_promptly(entry: &str, signal: i32) {
    let _watchdog = Watchdog::start(Duration::from_secs(90), "signal while a closure runs");
    let markers: Vec<String> = (0..5).map(|_| core_file::random_hex(32)).collect();
    let mut child = guarantees::run_child("hold_and_wait")
        .env(MARKERS_VAR, markers.join(","))
        .env(ENTRY_VAR, entry)
        .command()
        .spawn()
        .expect("spawn the child");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains(READY) {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the child ended before it was ready"
        );
    }
    let pid = i32::try_from(child.id()).unwrap();
    let sent = Instant::now();
    // SAFETY: `kill` on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    let mut rest = String::new();
    for l in stdout.lines() {
        rest.push_str(&l.unwrap());
        rest.push('\n');
    }
    assert!(
        took < Duration::from_secs(2),
        "{entry}: the process took {took:?} to exit after the signal"
    );
    assert_eq!(
        status.code(),
        Some(memguard::SIGNAL_EXIT_CODE),
        "{entry}: {status:?}\n{rest}"
    );
    assert!(
        rest.contains("SCAN: 0 marker(s) left"),
        "{entry}: secrets left in memory at exit:\n{rest}"
    );
}

#[test]
fn sigint_with_catch_interrupt_is_not_held_back_by_a_long_closure() {
    signal_ends_the_process_promptly("catch_interrupt", libc::SIGINT);
}

#[test]
fn sigterm_with_catch_signal_is_not_held_back_by_a_long_closure() {
    signal_ends_the_process_promptly("catch_signal", libc::SIGTERM);
}
