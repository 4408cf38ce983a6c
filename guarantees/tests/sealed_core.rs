//! A sealed secret's plaintext and the process's sealing key are never in a core file, nor on an ordinary stack.
//!
//! - Core file: a child (core dumps allowed with `keep_core_dumps()` and the soft `RLIMIT_CORE` raised) holds 100
//!   sealed secrets, each with its own random 32-byte marker, 10 of them inside a running `with_bytes` on other
//!   threads (so decrypted in scratch pages) when it aborts; plus a heap control marker. The core must hold the
//!   control marker (it is real), no marker (nor half of one), and no 32-byte window that opens a secret's
//!   ciphertext as its key (every window is tried with `memguard::sealing::key_opens`, except those that a
//!   random key is astronomically unlikely to look like, see [`could_be_a_key`]). The notes of the core (each
//!   thread's registers, vector registers included) are part of what is scanned.
//! - A `gcore` snapshot (gdb, through ptrace, which no `RLIMIT_CORE` stops) of the same child, alive and with
//!   core dumps left disabled as by default, is judged the same way.
//! - Stack: after sealing and opening in this thread, no window of the thread's own stack opens a secret.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::ensure;
use guarantees::core_file::{self, decode_hex_into, MarkerSet};
use guarantees::proc_stats;
// The shapes of the page-backed core proof: sub-page, page-sized and multi-page secrets, the marker at the
// start, the middle or the end.
use guarantees::scenarios::core::shape;
use guarantees::Scenario;
use securememory::sealed::{SealedSecret, SealedSecretFactory};
use securememory::{Secret, SecretFactory};

const SECRETS: usize = 100;
const HELD_OPEN: usize = 10;
const MARKERS_VAR: &str = "GUARANTEES_MARKERS";
const CONTROL_VAR: &str = "GUARANTEES_CONTROL";
/// Set for a child that waits to be snapshotted instead of aborting.
const SNAPSHOT_VAR: &str = "GUARANTEES_SNAPSHOT";
/// What such a child prints when it holds everything.
const READY: &str = "holding every sealed secret, ready for a snapshot";
/// What the child prints for each secret whose sealed parts the parent tries key windows against.
const PARTS: &str = "SEALED-PARTS";

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// False for a 32-byte window in which one byte value occurs 7 times or more. A uniformly random key does so
/// with probability below 256 · C(32,7) · 256^-7 ≈ 1.2 · 10^-8, so skipping such windows cannot hide the key;
/// it skips the zero pages, pointer arrays and padding that make up most of a core, which keeps the search
/// affordable in a debug build.
fn could_be_a_key(window: &[u8]) -> bool {
    let mut counts = [0u8; 256];
    for &b in window {
        let c = &mut counts[usize::from(b)];
        *c += 1;
        if *c >= 7 {
            return false;
        }
    }
    true
}

/// One secret's identity and `tag || ciphertext`, against which candidate keys are tried.
struct Parts {
    id: u64,
    tag: [u8; 16],
    ciphertext: Vec<u8>,
}

impl Parts {
    fn of(secret: &SealedSecret) -> securememory::Result<Parts> {
        let (id, sealed) = secret.sealed_parts()?;
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&sealed[..16]);
        Ok(Parts {
            id,
            tag,
            ciphertext: sealed[16..].to_vec(),
        })
    }

    fn parse(line: &str) -> Option<Parts> {
        // The test harness may have printed its own text before ours on the line.
        let mut fields = line.split(PARTS).nth(1)?.split_whitespace();
        let id = fields.next()?.parse().ok()?;
        let sealed = core_file::unhex(fields.next()?);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(sealed.get(..16)?);
        Some(Parts {
            id,
            tag,
            ciphertext: sealed[16..].to_vec(),
        })
    }

    fn opened_by(&self, candidate: &[u8; 32]) -> bool {
        memguard::sealing::key_opens(candidate, self.id, &self.tag, &self.ciphertext)
    }
}

/// Tries every 32-byte window of `haystack` that [`could_be_a_key`] as the key of each of `parts`; returns the
/// offsets of the windows that open one, and how many windows were tried. Two threads share the work.
fn key_windows(haystack: &[u8], parts: &[Parts]) -> (Vec<usize>, usize) {
    const THREADS: usize = 2;
    let starts = haystack.len().saturating_sub(31);
    let share = starts.div_ceil(THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut found = Vec::new();
                    let mut tried = 0;
                    for at in t * share..((t + 1) * share).min(starts) {
                        let window = &haystack[at..at + 32];
                        if !could_be_a_key(window) {
                            continue;
                        }
                        tried += 1;
                        let candidate: &[u8; 32] = window.try_into().expect("a 32-byte window");
                        if parts.iter().any(|p| p.opened_by(candidate)) {
                            found.push(at);
                        }
                    }
                    (found, tried)
                })
            })
            .collect();
        workers
            .into_iter()
            .fold((Vec::new(), 0), |(mut all, n), w| {
                let (found, tried) = w.join().expect("a key-window worker");
                all.extend(found);
                (all, n + tried)
            })
    })
}

fn hold_and_abort() -> Outcome {
    let snapshot = std::env::var_os(SNAPSHOT_VAR).is_some();
    if !snapshot {
        securememory::keep_core_dumps();
        core_file::allow_core_dumps()?;
    }
    let markers: Vec<String> = std::env::var(MARKERS_VAR)?
        .split(',')
        .map(str::to_owned)
        .collect();
    ensure(markers.len() == SECRETS, || {
        "wrong number of markers".into()
    })?;
    let factory = SealedSecretFactory::new();
    let mut held = Vec::with_capacity(SECRETS);
    for (i, hex) in markers.iter().enumerate() {
        let (len, offset) = shape(i);
        let mut source = vec![0u8; len];
        decode_hex_into(hex, &mut source[offset..offset + 32]);
        held.push(Arc::new(factory.new(&mut source)?));
    }
    // The parent tries key windows against one secret (one key seals them all; this one will be open).
    {
        let i = 0;
        let parts = Parts::of(&held[i])?;
        let mut sealed = parts.tag.to_vec();
        sealed.extend_from_slice(&parts.ciphertext);
        println!("{PARTS} {} {}", parts.id, core_file::hex(&sealed));
    }
    // A few more seals and opens on this thread, as a service would do.
    for _ in 0..10 {
        let s = factory.create_random(32)?;
        s.with_bytes(|b| Ok(b.len()))?;
        s.close()?;
    }
    let inside = Arc::new(Barrier::new(HELD_OPEN + 1));
    for secret in held.iter().take(HELD_OPEN) {
        let (secret, inside) = (Arc::clone(secret), Arc::clone(&inside));
        std::thread::spawn(move || {
            secret.with_bytes(|_| -> securememory::Result<()> {
                inside.wait();
                loop {
                    std::thread::park();
                }
            })
        });
    }
    inside.wait();
    let control_hex = std::env::var(CONTROL_VAR)?;
    let mut control = vec![0u8; control_hex.len() / 2];
    decode_hex_into(&control_hex, &mut control);
    std::hint::black_box((&control, &held));
    use std::io::Write;
    if snapshot {
        println!("{READY}");
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_secs(120));
        return Err("nobody took a snapshot within 120 s".into());
    }
    std::io::stdout().flush()?;
    std::process::abort()
}

/// In this thread: seal and open a few secrets, then try every plausible 32-byte window of this thread's stack
/// (the whole mapping, through `/proc/self/mem`) as the key. A random stack marker must be found, so the scan
/// reads the live stack.
fn stack_holds_no_key() -> Outcome {
    let factory = SealedSecretFactory::new();
    let mut source = *b"a 32-byte secret of this thread.";
    let a = factory.new(&mut source)?;
    let b = factory.create_random(64)?;
    let c = factory.create_with(100, &mut |bytes| {
        bytes.fill(3);
        Ok(())
    })?;
    for s in [&a, &b, &c] {
        s.with_bytes(|bytes| Ok(bytes.len()))?;
    }
    let parts = vec![Parts::of(&a)?, Parts::of(&b)?, Parts::of(&c)?];
    let marker_hex = core_file::random_hex(32);
    let mut marker = [0u8; 32];
    decode_hex_into(&marker_hex, &mut marker);
    std::hint::black_box(&marker);
    let here = &marker as *const _ as usize;
    let stack = proc_stats::mappings()
        .into_iter()
        .find(|m| m.start <= here && here < m.end)
        .ok_or("no mapping holds this thread's stack")?;
    let mem = std::fs::File::open("/proc/self/mem")?;
    let mut bytes = vec![0u8; stack.end - stack.start];
    mem.read_exact_at(&mut bytes, stack.start as u64)?;
    ensure(
        !MarkerSet::from_hex(&[&marker_hex])
            .found_in(&bytes)
            .is_empty(),
        || "the stack marker was not found: the scan does not read the live stack".into(),
    )?;
    let started = Instant::now();
    let (found, tried) = key_windows(&bytes, &parts);
    eprintln!(
        "stack {:#x}..{:#x} ({} bytes): {tried} windows tried as the key in {:?}",
        stack.start,
        stack.end,
        bytes.len(),
        started.elapsed()
    );
    ensure(found.is_empty(), || {
        format!("the sealing key is on this thread's stack at offsets {found:?}")
    })?;
    for s in [a, b, c] {
        s.close()?;
    }
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("hold_and_abort", hold_and_abort),
        ("stack_holds_no_key", stack_holds_no_key),
    ];
    guarantees::dispatch(SCENARIOS);
}

#[test]
fn a_core_file_holds_no_sealed_plaintext_and_no_key() {
    let Some(pattern) = core_file::file_pattern_or_skip() else {
        return;
    };
    let markers: Vec<String> = (0..SECRETS).map(|_| core_file::random_hex(32)).collect();
    let control = core_file::random_hex(32);
    let dir = guarantees::child::scratch_dir("sealed-core").expect("a scratch directory");
    let outcome = guarantees::run_child("hold_and_abort")
        .env(MARKERS_VAR, markers.join(","))
        .env(CONTROL_VAR, &control)
        .current_dir(&dir)
        .timeout(Duration::from_secs(120))
        .run();
    let core = core_file::find_core(&dir, &pattern).map(std::fs::read);
    let _ = std::fs::remove_dir_all(&dir);
    outcome.assert_signal(libc::SIGABRT);
    let Some(Ok(core)) = core else {
        panic!(
            "no core file was written (core_pattern {pattern:?}); {}",
            outcome.describe()
        );
    };
    judge(&core, &markers, &control, &outcome.stdout);
}

/// The dump is real (holds the heap control marker), holds no plaintext marker nor half of one, and no window
/// of it opens a secret whose sealed parts the child printed.
fn judge(core: &[u8], markers: &[String], control: &str, stdout: &str) {
    assert!(
        !MarkerSet::from_hex(&[control]).found_in(core).is_empty(),
        "the {} byte core lacks the heap control marker: it proves nothing",
        core.len()
    );
    let mut needles = markers.to_vec();
    needles.extend(markers.iter().map(|m| m[..32].to_owned()));
    needles.extend(markers.iter().map(|m| m[32..].to_owned()));
    let leaks: Vec<String> = MarkerSet::from_hex(&needles)
        .found_in(core)
        .into_iter()
        .map(|i| {
            let n = i % SECRETS;
            format!(
                "marker {n}{}{}",
                if n < HELD_OPEN {
                    " (inside with_bytes)"
                } else {
                    ""
                },
                ["", " first half", " second half"][i / SECRETS]
            )
        })
        .collect();
    assert!(leaks.is_empty(), "sealed plaintext in the core: {leaks:?}");
    let parts: Vec<Parts> = stdout.lines().filter_map(Parts::parse).collect();
    assert_eq!(parts.len(), 1, "the child's sealed parts: {stdout}");
    let started = Instant::now();
    let (found, tried) = key_windows(core, &parts);
    eprintln!(
        "core of {} bytes: control marker found, no marker; {tried} windows tried as the key in {:?}",
        core.len(),
        started.elapsed()
    );
    assert!(
        found.is_empty(),
        "the sealing key is in the core at offsets {found:?}"
    );
}

#[test]
fn a_gcore_snapshot_holds_no_sealed_plaintext_and_no_key() {
    if !core_file::has_gdb_or_skip("the gcore snapshot") {
        return;
    }
    let markers: Vec<String> = (0..SECRETS).map(|_| core_file::random_hex(32)).collect();
    let control = core_file::random_hex(32);
    let dir = guarantees::child::scratch_dir("sealed-gcore").expect("a scratch directory");
    // One malloc arena: gdb dumps every arena's whole reservation, which only makes the snapshot slow.
    let mut child = guarantees::run_child("hold_and_abort")
        .env(MARKERS_VAR, markers.join(","))
        .env(CONTROL_VAR, &control)
        .env(SNAPSHOT_VAR, "1")
        .env("MALLOC_ARENA_MAX", "1")
        .command()
        .current_dir(&dir)
        .spawn()
        .expect("start the child");
    let mut stdout = String::new();
    let ready = child.stdout.take().is_some_and(|out| {
        use std::io::BufRead;
        std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|line| {
                stdout.push_str(&line);
                stdout.push('\n');
                line.contains(READY)
            })
    });
    let path = dir.join("snapshot");
    let taken = if ready {
        core_file::gcore(child.id(), &path)
    } else {
        Err(format!("the child never got ready: {stdout}"))
    };
    let _ = child.kill();
    let _ = child.wait();
    let core = taken.and_then(|()| std::fs::read(&path).map_err(|e| e.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    let core = core.expect("a gcore snapshot");
    judge(&core, &markers, &control, &stdout);
}

#[test]
fn no_key_on_the_stack_of_a_thread_that_seals_and_opens() {
    guarantees::run_child("stack_holds_no_key")
        .timeout(Duration::from_secs(300))
        .run()
        .assert_success();
}

/// The window filter is not blind: random keys pass it, and the windows it drops are the low-entropy kind.
#[test]
fn random_keys_pass_the_window_filter() {
    let mut key = [0u8; 32];
    for _ in 0..10_000 {
        proofs::sys::getrandom(&mut key).expect("random bytes");
        assert!(could_be_a_key(&key), "{key:?}");
    }
    assert!(!could_be_a_key(&[0u8; 32]));
    let pointers: Vec<u8> = (0..4u64)
        .flat_map(|i| (0x7f12_3456_7000 + i * 8).to_le_bytes())
        .collect();
    assert!(!could_be_a_key(&pointers));
}
