//! The enclave key never sits in ordinary memory, not even while it is in use.
//!
//! A key is recognised the only way that matters: a 32-byte window of memory that opens an enclave made under
//! it (XChaCha20-Poly1305 with the enclave's associated data) is the key. Every window at every byte offset is
//! tried.
//!
//! - Core dump: a child seals and opens enclaves in a loop on one thread and aborts on another, with core
//!   dumps allowed; no window of its core file opens an enclave the child made (5 runs). A control key, held on
//!   purpose in the child's ordinary heap, is found, so the scan works and the dump is real.
//! - Live process: while another thread seals and opens (at least 10,000 seals), the process reads its own
//!   ordinary memory through `/proc/self/mem` (every readable and writable mapping that is not excluded from
//!   core dumps, which are the library's protected pages) and no window opens its enclave; the control key is
//!   found.
//! - `Stream::write_from`: a marker held in a locked buffer and moved into a stream, then read back into
//!   locked buffers, is found only in no-dump (protected) mappings at every step, and nowhere once they are
//!   dropped.
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guarantees::core_file;
use guarantees::proc_stats;
use memguard::Enclave;

const CONTROL_VAR: &str = "GUARANTEES_CONTROL_KEY";
const ENCLAVE_LINE: &str = "GUARANTEES: enclave ";
const ABORTING: &str = "GUARANTEES: aborting while sealing";
const PLAINTEXT: &[u8; 32] = b"a known plaintext, 32 bytes long";

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The control key from the parent, decoded into ordinary heap memory (deliberately left there).
fn control_key_on_heap() -> Result<Box<[u8; 32]>, Box<dyn std::error::Error>> {
    let hex = std::env::var(CONTROL_VAR)?;
    let mut key = Box::new([0u8; 32]);
    core_file::decode_hex_into(&hex, &mut key[..]);
    Ok(std::hint::black_box(key))
}

/// Seals and opens on a new thread until `stop`, counting seals.
fn sealing_thread(
    stop: Arc<AtomicBool>,
    seals: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Result<(), memguard::Error>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut data = *PLAINTEXT;
            let enclave = Enclave::new(&mut data)?;
            let opened = enclave.open()?;
            std::hint::black_box(&opened);
            seals.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// Child: makes an enclave (printed for the parent), seals and opens in a loop on another thread, and aborts.
fn seal_and_abort() -> Outcome {
    core_file::allow_core_dumps()?;
    let _control = control_key_on_heap()?;
    let mut data = *PLAINTEXT;
    let enclave = Enclave::new(&mut data)?;
    eprintln!(
        "{ENCLAVE_LINE}{} {}",
        hex(&enclave.id()),
        hex(enclave.ciphertext())
    );
    let (stop, seals) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let _sealer = sealing_thread(stop, seals.clone());
    while seals.load(Ordering::Relaxed) < 200 {
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("{ABORTING}");
    std::process::abort();
}

/// Offsets of every 32-byte window of `haystack` that opens one of `enclaves`, as `(offset, which)`. Runs of
/// identical windows (zero pages) are tried once.
fn windows_that_open(haystack: &[u8], enclaves: &[Enclave]) -> Vec<(usize, usize)> {
    if haystack.len() < 32 {
        return Vec::new();
    }
    let last = haystack.len() - 32;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = last / threads + 1;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut hits = Vec::new();
                    let (from, to) = (t * per, ((t + 1) * per).min(last + 1));
                    let mut window = [0u8; 32];
                    for at in from..to {
                        if at > from && haystack[at - 1..at + 32].iter().all(|&b| b == haystack[at])
                        {
                            continue; // the same window as the one before
                        }
                        window.copy_from_slice(&haystack[at..at + 32]);
                        for (i, e) in enclaves.iter().enumerate() {
                            if e.opens_with_key(&window) {
                                hits.push((at, i));
                            }
                        }
                    }
                    window.iter_mut().for_each(|b| *b = 0);
                    hits
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("scan thread"))
            .collect()
    })
}

/// The enclave a child printed.
fn parse_enclave(stderr: &str) -> Enclave {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(ENCLAVE_LINE))
        .expect("the child printed its enclave");
    let (id, ct) = line.split_once(' ').expect("id and ciphertext");
    let id: [u8; 16] = core_file::unhex(id).try_into().expect("16-byte id");
    Enclave::from_parts(core_file::unhex(ct), id).expect("an enclave")
}

#[test]
fn no_window_of_a_core_file_opens_an_enclave_while_another_thread_seals() {
    let Some(pattern) = core_file::file_pattern_or_skip() else {
        return;
    };
    for run in 0..5 {
        let dir = guarantees::child::scratch_dir(&format!("enclave-key-{run}"))
            .expect("a scratch directory");
        let control_hex = core_file::random_hex(32);
        let control_key: [u8; 32] = core_file::unhex(&control_hex).try_into().unwrap();
        let control = Enclave::sealed_with_key(&control_key, PLAINTEXT).unwrap();
        let outcome = guarantees::run_child("seal_and_abort")
            .current_dir(&dir)
            .env(CONTROL_VAR, &control_hex)
            .timeout(Duration::from_secs(60))
            .run();
        outcome.assert_signal(libc::SIGABRT);
        assert!(outcome.stderr.contains(ABORTING), "{}", outcome.describe());
        let enclave = parse_enclave(&outcome.stderr);
        let core = core_file::find_core(&dir, &pattern)
            .map(|path| std::fs::read(path).expect("read the core file"))
            .unwrap_or_else(|| panic!("run {run}: no core file; {}", outcome.describe()));
        let _ = std::fs::remove_dir_all(&dir);
        let hits = windows_that_open(&core, &[enclave, control]);
        assert!(
            hits.iter().any(|&(_, which)| which == 1),
            "run {run}: the control key is not in the {}-byte core: the scan or the dump is broken",
            core.len()
        );
        let leaks: Vec<usize> = hits
            .iter()
            .filter(|&&(_, which)| which == 0)
            .map(|&(at, _)| at)
            .collect();
        assert!(
            leaks.is_empty(),
            "run {run}: the enclave key is in the core file at offsets {leaks:?}"
        );
    }
}

/// Child: scans its own ordinary memory while another thread seals, then checks the count of seals.
fn scan_while_sealing() -> Outcome {
    let control_key = control_key_on_heap()?;
    let control = Enclave::sealed_with_key(&control_key, PLAINTEXT)?;
    let mut data = *PLAINTEXT;
    let enclave = Enclave::new(&mut data)?;
    let (stop, seals) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sealer = sealing_thread(stop.clone(), seals.clone());
    let mem = std::fs::File::open("/proc/self/mem")?;
    let mut found_control = false;
    let mut rounds = 0;
    while !found_control || seals.load(Ordering::Relaxed) < 10_000 {
        rounds += 1;
        for m in proc_stats::mappings() {
            // Where a copy can be written at run time: readable and writable mappings (heap, stacks, data,
            // anonymous memory). Read-only file mappings (code, constants) cannot receive one.
            if !m.perms.starts_with("rw") || proc_stats::unreadable(&m) {
                continue;
            }
            let flags = proc_stats::mapping_flags_at(m.start).map(|(_, f)| f);
            if flags.is_some_and(|f| f.iter().any(|f| f == "dd")) {
                continue; // the library's protected pages: locked, no-dump
            }
            let mut buf = vec![0u8; m.end - m.start];
            let n = proc_stats::read_fully(&mem, &mut buf, m.start);
            let hits = windows_that_open(&buf[..n], &[enclave.clone(), control.clone()]);
            buf.iter_mut().for_each(|b| *b = 0);
            if let Some(&(at, _)) = hits.iter().find(|&&(_, which)| which == 0) {
                stop.store(true, Ordering::Relaxed);
                return Err(format!(
                    "the enclave key is in {m:?} at {:#x} (round {rounds}, {} seals)",
                    m.start + at,
                    seals.load(Ordering::Relaxed)
                )
                .into());
            }
            found_control |= hits.iter().any(|&(_, which)| which == 1);
        }
        if rounds > 50 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    sealer.join().map_err(|_| "the sealing thread panicked")??;
    let seals = seals.load(Ordering::Relaxed);
    eprintln!("scanned {rounds} time(s) while {seals} seals ran");
    println!("scanned {rounds} time(s) while {seals} seals ran");
    if !found_control {
        return Err("the control key was not found: the scan is broken".into());
    }
    if seals < 10_000 {
        return Err(format!("only {seals} seals ran during the scans").into());
    }
    Ok(())
}

#[test]
fn no_window_of_live_ordinary_memory_opens_an_enclave_during_10000_seals() {
    let control_hex = core_file::random_hex(32);
    let outcome = guarantees::run_child("scan_while_sealing")
        .env(CONTROL_VAR, &control_hex)
        .timeout(Duration::from_secs(600))
        .run();
    outcome.assert_success();
}

const MARKER_VAR: &str = "GUARANTEES_STREAM_MARKER";

/// Where each marker was found: every hit must be in a mapping flagged no-dump (the library's protected
/// pages), and there must be at least one.
fn assert_only_in_protected_pages(set: &core_file::MarkerSet, when: &str) -> Outcome {
    let hits = proc_stats::scan_own_memory(set);
    if hits.is_empty() {
        return Err(format!(
            "{when}: the marker is nowhere, not even in its buffer: the scan is broken"
        )
        .into());
    }
    for (_, m) in &hits {
        let flags = proc_stats::mapping_flags_at(m.start)
            .map(|(_, f)| f)
            .unwrap_or_default();
        if !flags.iter().any(|f| f == "dd") {
            return Err(
                format!("{when}: the marker is in ordinary memory: {m:?} {flags:?}").into(),
            );
        }
    }
    Ok(())
}

/// Child: a marker decoded straight into a locked buffer, moved into a stream with `write_from`, read back
/// with `next` and `flush_buffer`: at each step the marker is only in protected pages.
fn stream_from_locked_buffer() -> Outcome {
    let hex = std::env::var(MARKER_VAR)?;
    let set = core_file::MarkerSet::from_hex(&[hex.as_str()]);
    let len = 3 * memguard::stream_chunk_size() + 100;
    let mut source = memguard::LockedBuffer::new(len)?;
    {
        let mut bytes = source.bytes_mut()?;
        // The marker in every chunk, and across the boundary of the first two.
        for at in [
            0,
            memguard::stream_chunk_size() - 16,
            2 * memguard::stream_chunk_size() + 50,
        ] {
            core_file::decode_hex_into(&hex, &mut bytes[at..at + 32]);
        }
    }
    let mut stream = memguard::Stream::new();
    stream.write_from(&source)?;
    assert_only_in_protected_pages(&set, "after write_from")?;
    let first = stream.next()?.ok_or("no first chunk")?;
    let rest = stream.flush_buffer()?;
    assert_only_in_protected_pages(&set, "after next and flush_buffer")?;
    drop((first, rest, source));
    if !proc_stats::scan_own_memory(&set).is_empty() {
        return Err("the marker survived the buffers".into());
    }
    Ok(())
}

#[test]
fn write_from_moves_a_locked_buffer_into_a_stream_without_an_ordinary_copy() {
    guarantees::run_child("stream_from_locked_buffer")
        .env(MARKER_VAR, core_file::random_hex(32))
        .timeout(Duration::from_secs(120))
        .run()
        .assert_success();
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, guarantees::Scenario)] = &[
        ("seal_and_abort", seal_and_abort),
        ("scan_while_sealing", scan_while_sealing),
        ("stream_from_locked_buffer", stream_from_locked_buffer),
    ];
    guarantees::dispatch(SCENARIOS);
}
