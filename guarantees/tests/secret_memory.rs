//! Secret memory (`Backing::SecretMem`, Linux `memfd_secret`): no other process reads a secret, root included.
//!
//! Each scenario runs in a child process. The parent is root here (or at least the child's parent, which may
//! trace it), so every reader below has every right to the child's memory; only the backing stops it. For a
//! secret of each flavour, at rest and during an access window (a thread blocked inside `with_bytes`, pages
//! readable):
//! - `/proc/self/mem` in the child and `/proc/<child>/mem` in the parent cannot read it;
//! - `process_vm_readv` and `ptrace(PTRACE_PEEKDATA)` from the parent cannot read it;
//! - a `gcore` snapshot of the live child, with `coredump_filter` 0x1ff (dump everything), holds no secret, nor
//!   does the core file of a child that crashes with its secrets live (and core dumps kept);
//! - the control: the same secret on the anonymous backing IS read by the same readers (`/proc/<pid>/mem` and
//!   `ptrace` at rest and in the window, `process_vm_readv` in the window, since it honours `PROT_NONE`), so
//!   the readers are able to see a secret when one is there. The core and snapshot controls are a heap marker.
//!
//! And secret memory behaves as the anonymous backing does: wiped on release (the pages are handed out again
//! as zeros), not inherited by a forked child (which starts with its own secret memory), and at the memlock
//! limit a typed error naming the limit, with as many live 32-byte protected-memory secrets as the anonymous
//! backing gives.
//!
//! Where the kernel has no secret memory the tests print `SKIPPED:` with the kernel's reason and pass.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use guarantees::core_file::{self, MarkerSet};
use guarantees::{Scenario, Watchdog};
use memcall::Limit;
use securememory::{
    Backing, MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretFactory,
};

const FLAVOUR_VAR: &str = "SM_FLAVOUR";
const BACKING_VAR: &str = "SM_BACKING";
const WINDOW_VAR: &str = "SM_WINDOW";
const MARKER_VAR: &str = "SM_MARKER";
const CONTROL_VAR: &str = "SM_CONTROL";
const LEN: usize = 32;
/// Starts the line a child reports on (the test harness prints its own lines on stdout too).
const REPORT: &str = "SM_REPORT";

type Outcome = Result<(), Box<dyn std::error::Error>>;

#[test]
fn child_entry() {
    let local: &[(&str, Scenario)] = &[
        ("sm_hold", hold),
        ("sm_crash", crash),
        ("sm_fork", fork_child),
        ("sm_wipe", wipe_child),
        ("sm_exhaust", exhaust),
    ];
    guarantees::dispatch(local);
}

/// `Some(reason)` when this kernel has no secret memory: the test prints it and passes.
fn skip_reason() -> Option<String> {
    let reason = memcall::secretmem::available().err()?.to_string();
    eprintln!("SKIPPED: {reason}");
    Some(reason)
}

fn backing_from_env() -> Result<Backing, String> {
    match std::env::var(BACKING_VAR).as_deref() {
        Ok("secret") => Ok(Backing::SecretMem),
        Ok("anonymous") => Ok(Backing::Anonymous),
        other => Err(format!("{BACKING_VAR}={other:?}")),
    }
}

fn new_secret(
    flavour: &str,
    backing: Backing,
    source: &mut [u8],
) -> securememory::Result<Box<dyn Secret>> {
    Ok(match flavour {
        "memguard" => Box::new(
            MemguardSecretFactory::builder()
                .backing(backing)
                .build()
                .new(source)?,
        ),
        _ => Box::new(
            ProtectedMemorySecretFactory::builder()
                .backing(backing)
                .build()
                .new(source)?,
        ),
    })
}

/// A secret holding the marker of `MARKER_VAR`, decoded straight into the source buffer (which the factory wipes).
fn marker_secret(
    flavour: &str,
    backing: Backing,
) -> Result<Box<dyn Secret>, Box<dyn std::error::Error>> {
    let mut source = [0u8; LEN];
    core_file::decode_hex_into(&std::env::var(MARKER_VAR)?, &mut source);
    let secret = new_secret(flavour, backing, &mut source)?;
    let report = secret.protections();
    let want = match backing {
        Backing::SecretMem => memcall::Backing::SecretMem,
        _ => memcall::Backing::Anonymous,
    };
    if report.backing != want || report.secret_memory_fallback {
        return Err(format!("protection report says {report}").into());
    }
    Ok(secret)
}

fn data_addr(secret: &dyn Secret) -> securememory::Result<usize> {
    let mut addr = 0;
    secret.with_bytes_dyn(&mut |b| {
        addr = b.as_ptr() as usize;
        Ok(())
    })?;
    Ok(addr)
}

/// Opens an access window on `secret` on a thread of its own that stays inside `with_bytes` until the process
/// exits.
fn open_window(secret: &'static dyn Secret) -> Result<(), Box<dyn std::error::Error>> {
    let (opened, is_open) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = secret.with_bytes_dyn(&mut |_| {
            let _ = opened.send(());
            loop {
                std::thread::park();
            }
        });
    });
    is_open.recv_timeout(Duration::from_secs(10))?;
    Ok(())
}

/// Reads `len` bytes at `addr` of process `pid` through `/proc/<pid>/mem` (`pid` 0: `/proc/self/mem`).
fn read_proc_mem(pid: u32, addr: usize, len: usize) -> std::io::Result<Vec<u8>> {
    let path = if pid == 0 {
        "/proc/self/mem".to_owned()
    } else {
        format!("/proc/{pid}/mem")
    };
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, addr as u64)?;
    Ok(buf)
}

/// The child: a secret of `FLAVOUR_VAR` on `BACKING_VAR` holding the marker, its access window open when
/// `WINDOW_VAR` is 1, a heap control marker; reports `addr self_read` on stdout, then waits for stdin to close.
fn hold() -> Outcome {
    let flavour = std::env::var(FLAVOUR_VAR)?;
    let backing = backing_from_env()?;
    std::fs::write("/proc/self/coredump_filter", "0x1ff")?;
    let secret: &'static dyn Secret = Box::leak(marker_secret(&flavour, backing)?);
    let addr = data_addr(secret)?;
    // The control: a heap copy a dump must show, so a dump without the secret is a real dump.
    let mut control = vec![0u8; LEN];
    core_file::decode_hex_into(&std::env::var(CONTROL_VAR)?, &mut control);
    let control = std::hint::black_box(control);
    if std::env::var(WINDOW_VAR).as_deref() == Ok("1") {
        open_window(secret)?;
    }
    let self_read = match read_proc_mem(0, addr, LEN) {
        Ok(bytes) => core_file::hex(&bytes),
        Err(e) => format!("error:{}", e.raw_os_error().unwrap_or(-1)),
    };
    println!("{REPORT} {addr} {self_read}");
    std::io::stdout().flush()?;
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    std::hint::black_box(&control);
    std::process::exit(0)
}

/// What the readers of one live child found: the bytes each read, or the OS error.
#[derive(Debug)]
struct Reads {
    self_mem: Result<Vec<u8>, String>,
    proc_mem: Result<Vec<u8>, String>,
    vm_readv: Result<Vec<u8>, String>,
    peekdata: Result<Vec<u8>, String>,
    /// Whether a `gcore` snapshot of the child holds the secret and the control; `None` without gdb.
    gcore: Option<(bool, bool)>,
}

fn io_err(e: std::io::Error) -> String {
    e.to_string()
}

fn vm_readv(pid: u32, addr: usize, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY:
    // - `local` describes `buf`, which is `len` writable bytes and outlives the call;
    // - the remote range is only read by the kernel in the other process (or the call fails).
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io_err(std::io::Error::last_os_error()));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Attaches to `pid`, reads `len` bytes at `addr` word by word with `PTRACE_PEEKDATA`, detaches.
fn peekdata(pid: u32, addr: usize, len: usize) -> Result<Vec<u8>, String> {
    let pid = pid as libc::pid_t;
    // SAFETY: PTRACE_ATTACH on our own child takes no pointers; it stops the child until we detach.
    if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) } != 0 {
        return Err(format!("attach: {}", std::io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: waits for the stop the attach caused; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    let word = std::mem::size_of::<libc::c_long>();
    let mut out = Vec::new();
    let mut result = Ok(());
    for offset in (0..len).step_by(word) {
        // SAFETY: clear errno first: PEEKDATA returns the word, so only errno tells a failure.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: PEEKDATA reads a word of the stopped tracee; the kernel checks the address.
        let value = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, pid, addr + offset, 0usize) };
        let err = std::io::Error::last_os_error();
        if value == -1 && err.raw_os_error() != Some(0) {
            result = Err(io_err(err));
            break;
        }
        out.extend_from_slice(&value.to_ne_bytes());
    }
    // SAFETY: detaches from the tracee stopped above, resuming it.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize) };
    result.map(|()| {
        out.truncate(len);
        out
    })
}

fn snapshot(pid: u32, marker: &str, control: &str, dir: &Path) -> Option<(bool, bool)> {
    if !core_file::has_gdb_or_skip("gcore only") {
        return None;
    }
    let path = dir.join("snapshot");
    core_file::gcore(pid, &path).expect("gcore of the live child");
    let dump = std::fs::read(&path).expect("read the snapshot");
    let _ = std::fs::remove_file(&path);
    let found = MarkerSet::from_hex(&[marker, control]).found_in(&dump);
    Some((found.contains(&0), found.contains(&1)))
}

/// Starts a `hold` child and runs every reader on its secret.
fn read_live(flavour: &str, backing: &str, window: bool) -> (Reads, String) {
    let marker = core_file::random_hex(LEN);
    let control = core_file::random_hex(LEN);
    let dir = guarantees::child::scratch_dir("secret_memory_hold").expect("scratch dir");
    let _watchdog = Watchdog::start(Duration::from_secs(120), "reading a live child's secret");
    let mut child = guarantees::run_child("sm_hold")
        .env(FLAVOUR_VAR, flavour)
        .env(BACKING_VAR, backing)
        .env(WINDOW_VAR, if window { "1" } else { "0" })
        .env(MARKER_VAR, &marker)
        .env(CONTROL_VAR, &control)
        .current_dir(&dir)
        .command()
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the hold child");
    let pid = child.id();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // The harness's own `test child_entry ... ` may precede the report on its line.
    while !line.contains(REPORT) {
        line.clear();
        if stdout.read_line(&mut line).expect("the child's report") == 0 {
            break;
        }
    }
    let report = line.split_once(REPORT).map_or("", |(_, r)| r);
    let mut words = report.split_whitespace();
    let (Some(addr), Some(self_read)) = (words.next(), words.next()) else {
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child reported {line:?}: {err}");
    };
    let addr: usize = addr.parse().expect("address");
    let reads = Reads {
        self_mem: self_read.strip_prefix("error:").map_or_else(
            || Ok(core_file::unhex(self_read)),
            |e| Err(format!("errno {e}")),
        ),
        proc_mem: read_proc_mem(pid, addr, LEN).map_err(io_err),
        vm_readv: vm_readv(pid, addr, LEN),
        peekdata: peekdata(pid, addr, LEN),
        gcore: snapshot(pid, &marker, &control, &dir),
    };
    drop(child.stdin.take());
    let status = child.wait().expect("wait for the hold child");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "hold child: {status:?}");
    (reads, marker)
}

fn is_marker(read: &Result<Vec<u8>, String>, marker: &str) -> bool {
    read.as_ref()
        .is_ok_and(|b| core_file::equals_hex(b, marker))
}

fn assert_unreadable(flavour: &str, window: bool) {
    let (reads, marker) = read_live(flavour, "secret", window);
    let what = format!("{flavour} secret in secret memory (window open: {window}): {reads:?}");
    // Each reader fails outright: none even sees other bytes.
    assert!(reads.self_mem.is_err(), "/proc/self/mem read it: {what}");
    assert!(reads.proc_mem.is_err(), "/proc/<pid>/mem read it: {what}");
    assert!(reads.vm_readv.is_err(), "process_vm_readv read it: {what}");
    assert!(reads.peekdata.is_err(), "PTRACE_PEEKDATA read it: {what}");
    assert!(![
        &reads.self_mem,
        &reads.proc_mem,
        &reads.vm_readv,
        &reads.peekdata
    ]
    .iter()
    .any(|r| is_marker(r, &marker)));
    if let Some((secret, control)) = reads.gcore {
        assert!(
            control,
            "the snapshot lacks the heap control: not a real dump; {what}"
        );
        assert!(!secret, "the gcore snapshot holds the secret: {what}");
    }
}

fn assert_readable(flavour: &str, window: bool) {
    let (reads, marker) = read_live(flavour, "anonymous", window);
    let what = format!("{flavour} secret in anonymous memory (window open: {window}): {reads:?}");
    assert!(
        is_marker(&reads.self_mem, &marker),
        "/proc/self/mem: {what}"
    );
    assert!(
        is_marker(&reads.proc_mem, &marker),
        "/proc/<pid>/mem: {what}"
    );
    assert!(
        is_marker(&reads.peekdata, &marker),
        "PTRACE_PEEKDATA: {what}"
    );
    // process_vm_readv honours the protection: it reads the pages only while they are readable.
    assert_eq!(
        is_marker(&reads.vm_readv, &marker),
        window,
        "process_vm_readv: {what}"
    );
    if let Some((_, control)) = reads.gcore {
        assert!(control, "the snapshot lacks the heap control: {what}");
    }
}

#[test]
fn no_reader_sees_a_protected_memory_secret_at_rest() {
    if skip_reason().is_none() {
        assert_unreadable("protected", false);
    }
}

#[test]
fn no_reader_sees_a_protected_memory_secret_in_its_access_window() {
    if skip_reason().is_none() {
        assert_unreadable("protected", true);
    }
}

#[test]
fn no_reader_sees_a_memguard_secret_at_rest() {
    if skip_reason().is_none() {
        assert_unreadable("memguard", false);
    }
}

#[test]
fn no_reader_sees_a_memguard_secret_in_its_access_window() {
    if skip_reason().is_none() {
        assert_unreadable("memguard", true);
    }
}

#[test]
fn control_the_same_readers_read_an_anonymous_secret() {
    for flavour in ["protected", "memguard"] {
        for window in [false, true] {
            assert_readable(flavour, window);
        }
    }
}

/// The child: secrets of both flavours in secret memory (one in an access window), a heap control marker,
/// core dumps kept and `coredump_filter` 0x1ff; then it aborts.
fn crash() -> Outcome {
    securememory::keep_core_dumps();
    core_file::allow_core_dumps()?;
    std::fs::write("/proc/self/coredump_filter", "0x1ff")?;
    let markers: Vec<String> = std::env::var(MARKER_VAR)?
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut held: Vec<&'static dyn Secret> = Vec::new();
    for (i, marker) in markers.iter().enumerate() {
        let mut source = [0u8; LEN];
        core_file::decode_hex_into(marker, &mut source);
        let flavour = ["protected", "memguard"][i % 2];
        held.push(Box::leak(new_secret(
            flavour,
            Backing::SecretMem,
            &mut source,
        )?));
    }
    open_window(held[0])?;
    open_window(held[1])?;
    let mut control = vec![0u8; LEN];
    core_file::decode_hex_into(&std::env::var(CONTROL_VAR)?, &mut control);
    std::hint::black_box(&control);
    std::process::abort()
}

#[test]
fn a_crashing_childs_core_holds_no_secret_memory_secret() {
    if skip_reason().is_some() {
        return;
    }
    let Some(pattern) = core_file::file_pattern_or_skip() else {
        return;
    };
    let markers: Vec<String> = (0..6).map(|_| core_file::random_hex(LEN)).collect();
    let control = core_file::random_hex(LEN);
    let dir = guarantees::child::scratch_dir("secret_memory_crash").expect("scratch dir");
    let outcome = guarantees::run_child("sm_crash")
        .env(MARKER_VAR, markers.join(","))
        .env(CONTROL_VAR, &control)
        .current_dir(&dir)
        .timeout(Duration::from_secs(120))
        .run();
    outcome.assert_signal(libc::SIGABRT);
    assert!(outcome.core_dumped(), "{}", outcome.describe());
    let core = core_file::find_core(&dir, &pattern).expect("the child's core file");
    let dump = std::fs::read(&core).expect("read the core file");
    let _ = std::fs::remove_dir_all(&dir);
    let mut all = markers.clone();
    all.push(control);
    let found = MarkerSet::from_hex(&all).found_in(&dump);
    assert!(
        found.contains(&markers.len()),
        "the core lacks the heap control: not a real dump"
    );
    assert_eq!(
        found,
        [markers.len()],
        "secret markers in the core: {found:?}"
    );
}

/// The child: a secret in secret memory, then a fork; the forked child cannot use it or see its pages, and
/// makes secret-memory secrets of its own; the parent's secret is untouched.
fn fork_child() -> Outcome {
    let flavour = std::env::var(FLAVOUR_VAR)?;
    let mut source = *b"0123456789abcdef0123456789abcdef";
    let secret = new_secret(&flavour, Backing::SecretMem, &mut source)?;
    let addr = data_addr(&*secret)?;
    // SAFETY: the forked child only runs the code below and leaves with `exit_now`.
    let pid = unsafe { proofs::sys::fork() }?;
    if pid == 0 {
        let inherited = matches!(
            secret.with_bytes_dyn(&mut |_| Ok(())),
            Err(securememory::Error::Forked)
        );
        // No mapping at the parent's address: the area was mapped no-fork.
        let page = addr & !(memcall::page_size() - 1);
        let mapped = std::fs::read_to_string("/proc/self/maps")
            .map(|maps| {
                maps.lines().any(|l| {
                    let range = l.split_whitespace().next().unwrap_or("");
                    let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
                    let lo = usize::from_str_radix(lo, 16).unwrap_or(0);
                    let hi = usize::from_str_radix(hi, 16).unwrap_or(0);
                    (lo..hi).contains(&page)
                })
            })
            .unwrap_or(true);
        let mut own_source = [7u8; LEN];
        let mut intact = false;
        let own = new_secret(&flavour, Backing::SecretMem, &mut own_source).and_then(|s| {
            s.with_bytes_dyn(&mut |b| {
                intact = b == [7u8; LEN];
                Ok(())
            })
            .map(|()| s)
        });
        let fresh = own.is_ok_and(|s| {
            s.protections().backing == memcall::Backing::SecretMem && s.close().is_ok()
        }) && intact;
        proofs::sys::exit_now(if inherited && !mapped && fresh {
            0
        } else {
            10 + inherited as i32 + 2 * mapped as i32
        });
    }
    let code = proofs::sys::wait(pid)?;
    if code != Ok(0) {
        return Err(
            format!("forked child: {code:?} (0 = refused, unmapped, fresh secret memory)").into(),
        );
    }
    let mut same = false;
    secret.with_bytes_dyn(&mut |b| {
        same = b == b"0123456789abcdef0123456789abcdef";
        Ok(())
    })?;
    if !same {
        return Err("the parent's secret changed".into());
    }
    secret.close()?;
    Ok(())
}

#[test]
fn a_forked_child_neither_sees_nor_reuses_secret_memory() {
    if skip_reason().is_some() {
        return;
    }
    for flavour in ["protected", "memguard"] {
        guarantees::run_child("sm_fork")
            .env(FLAVOUR_VAR, flavour)
            .timeout(Duration::from_secs(60))
            .run()
            .assert_success();
    }
}

/// The child: a secret's pages are wiped when it is closed or dropped; the next secret that gets them sees zeros.
fn wipe_child() -> Outcome {
    let flavour = std::env::var(FLAVOUR_VAR)?;
    for close in [true, false] {
        let mut source = [0x5Au8; LEN];
        let secret = new_secret(&flavour, Backing::SecretMem, &mut source)?;
        let addr = data_addr(&*secret)?;
        if close {
            secret.close()?;
        } else {
            drop(secret);
        }
        // The freed pages stay mapped, read-write, in their area until they are handed out again.
        let page = addr & !(memcall::page_size() - 1);
        // SAFETY: the area keeps free pages mapped read-write and nothing else in this single-threaded child
        // uses them until the next allocation below.
        let left = unsafe { std::slice::from_raw_parts(page as *const u8, memcall::page_size()) };
        if left.iter().any(|&b| b != 0) {
            return Err(format!("freed secret memory not wiped (closed: {close})").into());
        }
        let next = memcall::Region::alloc_secret(
            memcall::page_size() * if flavour == "memguard" { 3 } else { 1 },
        )?;
        // SAFETY: a fresh secret region is read-write and ours.
        if unsafe { next.as_slice() }.iter().any(|&b| b != 0) {
            return Err("reused secret memory not zero".into());
        }
        next.free().map_err(|e| e.error)?;
    }
    Ok(())
}

#[test]
fn secret_memory_is_wiped_before_reuse() {
    if skip_reason().is_some() {
        return;
    }
    for flavour in ["protected", "memguard"] {
        guarantees::run_child("sm_wipe")
            .env(FLAVOUR_VAR, flavour)
            .timeout(Duration::from_secs(60))
            .run()
            .assert_success();
    }
}

/// How many 32-byte secrets of `flavour` on `backing` fit under the limit, and the error at the limit.
fn fill(
    flavour: &str,
    backing: Backing,
) -> Result<(usize, securememory::Error), Box<dyn std::error::Error>> {
    let mut held = Vec::new();
    let err = loop {
        let mut source = [1u8; LEN];
        match new_secret(flavour, backing, &mut source) {
            Ok(s) => held.push(s),
            Err(e) => break e,
        }
        if held.len() > 1 << 20 {
            return Err("no limit reached".into());
        }
    };
    let count = held.len();
    // The live secrets are unharmed.
    for s in &held {
        let mut ok = false;
        s.with_bytes_dyn(&mut |b| {
            ok = b == [1u8; LEN];
            Ok(())
        })?;
        if !ok {
            return Err("a live secret changed at the limit".into());
        }
    }
    for s in held {
        s.close()?;
    }
    memcall::pool::trim_all();
    Ok((count, err))
}

/// The child: without `CAP_IPC_LOCK`, under an 8 MiB memlock limit, fills secret memory then anonymous memory
/// with 32-byte secrets; reports `flavour secret_count anonymous_count`.
fn exhaust() -> Outcome {
    let flavour = std::env::var(FLAVOUR_VAR)?;
    memcall::drop_lock_exemption()?;
    memcall::set_lock_limit(Limit::Bytes(8 << 20))?;
    // Process-wide state made on first use is not what is measured: make it first.
    for backing in [Backing::SecretMem, Backing::Anonymous] {
        new_secret(&flavour, backing, &mut [0u8; LEN])?.close()?;
    }
    memcall::pool::trim_all();
    let (secret, err) = fill(&flavour, Backing::SecretMem)?;
    let named = matches!(&err, securememory::Error::Memory(m) if m.is_lock_limit())
        && err.to_string().contains("RLIMIT_MEMLOCK");
    if !named {
        return Err(format!("at the limit: {err}").into());
    }
    let (anonymous, _) = fill(&flavour, Backing::Anonymous)?;
    println!("{REPORT} {flavour} {secret} {anonymous}");
    Ok(())
}

#[test]
fn the_memlock_limit_is_a_typed_error_and_holds_as_many_secrets() {
    if skip_reason().is_some() {
        return;
    }
    for flavour in ["protected", "memguard"] {
        let outcome = guarantees::run_child("sm_exhaust")
            .env(FLAVOUR_VAR, flavour)
            .timeout(Duration::from_secs(120))
            .run();
        outcome.assert_success();
        let line = outcome
            .stdout
            .lines()
            .find_map(|l| l.split_once(REPORT).map(|(_, r)| r.trim()))
            .expect("counts");
        eprintln!(
            "live 32-byte secrets under 8 MiB memlock (flavour, secret memory, anonymous): {line}"
        );
        let counts: Vec<usize> = line
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect();
        if flavour == "protected" {
            assert_eq!(counts[0], counts[1], "{line}");
        } else {
            // A memguard secret's guard pages are secret memory too, charged to the limit (3 pages, not 1).
            assert!(
                counts[0] * 3 >= counts[1] * 9 / 10 && counts[0] <= counts[1],
                "{line}"
            );
        }
    }
}
