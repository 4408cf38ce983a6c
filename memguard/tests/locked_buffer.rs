//! LockedBuffer: constructors, methods, typed views, purge, and error paths.

mod common;

use std::io::{Cursor, Read};

use memcall::{fault, Op};
use memguard::{Error, LockedBuffer, Locking};

#[test]
fn new_is_mutable_zeroed_and_locked() {
    let buf = LockedBuffer::new(40).unwrap();
    assert_eq!(buf.size(), 40);
    assert!(buf.is_alive() && buf.is_mutable() && buf.is_locked());
    assert!(buf.equal_to(&[0u8; 40]));
    let hardening = buf.hardening().unwrap();
    #[cfg(not(windows))]
    assert!(hardening.no_dump.is_applied() && hardening.no_fork.is_applied());
    // Windows: no per-region core-dump or fork advice, and crash-report exclusion only where kernel32 has it.
    #[cfg(windows)]
    assert!(
        hardening.no_dump == memcall::Outcome::Unsupported
            && hardening.no_fork == memcall::Outcome::Unsupported
            && matches!(
                hardening.crash_report_exclusion,
                memcall::Outcome::Applied | memcall::Outcome::Unsupported
            ),
        "{hardening:?}"
    );
    assert!(matches!(
        LockedBuffer::new(0),
        Err(Error::InvalidLength { len: 0 })
    ));
}

#[test]
fn from_bytes_moves_and_freezes() {
    let mut src = *b"correct horse battery staple";
    let buf = LockedBuffer::from_bytes(&mut src).unwrap();
    assert_eq!(src, [0u8; 28], "source wiped");
    assert!(!buf.is_mutable());
    assert!(buf.equal_to(b"correct horse battery staple"));
    assert!(!buf.equal_to(b"correct horse battery stapl"));
    assert!(matches!(
        LockedBuffer::from_bytes(&mut []),
        Err(Error::InvalidLength { len: 0 })
    ));
}

#[test]
fn random_is_frozen_and_not_all_zero() {
    let buf = LockedBuffer::random(64).unwrap();
    assert!(!buf.is_mutable());
    assert!(!buf.equal_to(&[0u8; 64]));
}

#[test]
fn freeze_melt_and_writes_on_frozen_buffers_are_errors() {
    let mut buf = LockedBuffer::new(8).unwrap();
    buf.freeze().unwrap();
    buf.freeze().unwrap();
    assert!(matches!(buf.copy(b"x"), Err(Error::Immutable)));
    assert!(matches!(buf.wipe(), Err(Error::Immutable)));
    assert!(matches!(buf.scramble(), Err(Error::Immutable)));
    assert!(matches!(buf.bytes_mut(), Err(Error::Immutable)));
    buf.melt().unwrap();
    assert_eq!(
        buf.copy(b"abcdefghij").unwrap(),
        8,
        "truncated to the buffer"
    );
    assert!(buf.equal_to(b"abcdefgh"));
}

#[test]
fn copy_at_move_at_scramble_and_wipe() {
    let mut buf = LockedBuffer::new(8).unwrap();
    assert_eq!(buf.copy_at(6, b"xyz").unwrap(), 2);
    assert!(buf.equal_to(b"\0\0\0\0\0\0xy"));
    assert_eq!(buf.copy_at(8, b"z").unwrap(), 0);
    assert!(matches!(
        buf.copy_at(9, b"z"),
        Err(Error::OutOfRange { offset: 9, len: 8 })
    ));
    let mut src = *b"0123456789";
    assert_eq!(buf.move_at(2, &mut src).unwrap(), 6);
    assert_eq!(
        src, [0u8; 10],
        "all of the source is wiped, also what did not fit"
    );
    assert!(buf.equal_to(b"\x00\x00012345"));
    let mut src = *b"ab";
    buf.move_from(&mut src).unwrap();
    assert!(buf.equal_to(b"ab012345"));
    buf.scramble().unwrap();
    assert!(!buf.equal_to(b"ab012345"));
    buf.wipe().unwrap();
    assert!(buf.equal_to(&[0u8; 8]));
}

#[test]
fn destroy_is_idempotent_and_later_use_is_an_error() {
    let mut buf = LockedBuffer::from_bytes(&mut [1u8; 16]).unwrap();
    buf.destroy().unwrap();
    buf.destroy().unwrap();
    assert!(!buf.is_alive() && !buf.is_mutable());
    assert_eq!(buf.size(), 0);
    assert!(buf.is_empty());
    assert!(
        !buf.equal_to(&[]),
        "a destroyed buffer equals nothing, not even empty"
    );
    assert!(matches!(buf.bytes(), Err(Error::Destroyed)));
    assert!(matches!(buf.melt(), Err(Error::Destroyed)));
    assert!(matches!(buf.with_bytes(|_| ()), Err(Error::Destroyed)));
    assert!(matches!(buf.reader(), Err(Error::Destroyed)));
}

#[test]
fn bytes_reader_and_str() {
    let buf = LockedBuffer::from_bytes(&mut b"hello world".to_vec()).unwrap();
    assert_eq!(&*buf.bytes().unwrap(), b"hello world");
    assert_eq!(buf.with_bytes(|b| b.len()).unwrap(), 11);
    assert_eq!(buf.with_str(str::to_uppercase).unwrap(), "HELLO WORLD");
    let mut out = String::new();
    buf.reader().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "hello world");
    let bad = LockedBuffer::from_bytes(&mut [0xff, 0xfe]).unwrap();
    assert!(matches!(bad.with_str(|_| ()), Err(Error::Utf8(_))));
    // Several readers at once.
    let (a, b) = (buf.bytes().unwrap(), buf.bytes().unwrap());
    assert_eq!(&*a, &*b);
}

#[test]
fn typed_views_are_by_reference_and_check_alignment() {
    let mut src: Vec<u8> = (0..64).collect();
    let buf = LockedBuffer::from_bytes(&mut src).unwrap();
    let bytes = buf.bytes().unwrap();
    let arr: &[u8; 32] = bytes.byte_array32().unwrap();
    assert_eq!(arr[31], 31);
    assert_eq!(bytes.as_array::<64>().unwrap()[63], 63);
    assert!(bytes.as_array::<65>().is_none());
    let words = bytes.as_u64s().unwrap();
    assert_eq!(words.len(), 8);
    assert_eq!(words[0], u64::from_ne_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(bytes.as_u16s().unwrap().len(), 32);
    assert_eq!(bytes.as_i8s().unwrap().len(), 64);
    drop(bytes);

    // Right-aligned data of odd size starts at an odd address: no wider view is possible.
    let odd = LockedBuffer::new(33).unwrap();
    let bytes = odd.bytes().unwrap();
    assert!(bytes.as_u16s().is_none() && bytes.as_u64s().is_none() && bytes.as_i32s().is_none());
    assert_eq!(bytes.as_i8s().unwrap().len(), 33);
    assert!(bytes.byte_array64().is_none());
    assert!(bytes.byte_array16().is_some());
    drop(bytes);

    let mut buf = LockedBuffer::new(16).unwrap();
    buf.bytes_mut().unwrap().as_slice_of_mut::<u32>().unwrap()[3] = u32::MAX;
    buf.bytes_mut().unwrap().as_array_mut::<2>().unwrap()[1] = 9;
    assert!(buf.equal_to(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]));
}

#[test]
fn from_reader_exact_partial_and_empty() {
    let buf = LockedBuffer::from_reader(Cursor::new(b"abcdef".to_vec()), 4).unwrap();
    assert!(buf.equal_to(b"abcd") && !buf.is_mutable());
    let err = LockedBuffer::from_reader(Cursor::new(b"ab".to_vec()), 4).unwrap_err();
    assert!(matches!(err.error, Error::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
    assert!(err.partial.as_ref().unwrap().equal_to(b"ab"));
    let err = LockedBuffer::from_reader(Cursor::new(Vec::new()), 4).unwrap_err();
    assert!(err.partial.is_none());
    assert!(LockedBuffer::from_reader(Cursor::new(b"x".to_vec()), 0).is_err());
}

/// Yields its bytes one at a time, then fails.
struct Failing(Vec<u8>);
impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("source failed"));
        }
        buf[0] = self.0.remove(0);
        Ok(1)
    }
}

#[test]
fn from_reader_until_stops_at_the_delimiter_and_consumes_nothing_past_it() {
    let mut src = Cursor::new(b"secret\nrest".to_vec());
    let buf = LockedBuffer::from_reader_until(&mut src, b'\n').unwrap();
    assert!(buf.equal_to(b"secret"));
    assert_eq!(src.position(), 7);
    let err = LockedBuffer::from_reader_until(Cursor::new(b"\nx".to_vec()), b'\n').unwrap_err();
    assert!(matches!(err.error, Error::InvalidLength { len: 0 }));
    assert!(!err.ended_early());
    let err = LockedBuffer::from_reader_until(Failing(b"ab".to_vec()), b'\n').unwrap_err();
    assert!(matches!(err.error, Error::Io(ref e) if e.kind() == std::io::ErrorKind::Other));
    assert!(!err.ended_early());
    assert!(err.partial.unwrap().equal_to(b"ab"));
    // Longer than a page: the scratch space grows.
    let mut long: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    long.push(b'\n');
    let buf = LockedBuffer::from_reader_until(Cursor::new(long.clone()), b'\n').unwrap();
    assert!(buf.equal_to(&long[..10_000]));
}

/// Go returns the bytes together with `io.EOF` when the input ends before the delimiter; here that is an
/// `UnexpectedEof` error carrying the bytes, so "delimiter found" (`Ok`) and "input ended first" differ.
#[test]
fn from_reader_until_without_the_delimiter_returns_the_bytes_with_an_end_of_input_error() {
    let err =
        LockedBuffer::from_reader_until(Cursor::new(b"no delimiter".to_vec()), b'\n').unwrap_err();
    assert!(err.ended_early());
    assert!(matches!(err.error, Error::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
    let partial = err.partial.expect("the bytes read come with the error");
    assert!(partial.equal_to(b"no delimiter"));
    assert!(
        !partial.is_mutable(),
        "frozen like every constructor's result"
    );
    // Longer than a page, no delimiter: everything read, grown scratch space.
    let long: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let err = LockedBuffer::from_reader_until(Cursor::new(long.clone()), b'\n').unwrap_err();
    assert!(err.ended_early());
    assert!(err.partial.unwrap().equal_to(&long));
    // Empty input: ended before the delimiter, nothing read.
    let err = LockedBuffer::from_reader_until(Cursor::new(Vec::new()), b'\n').unwrap_err();
    assert!(err.ended_early());
    assert!(err.partial.is_none());
    // The delimiter as the last byte is found: `Ok`.
    let buf = LockedBuffer::from_reader_until(Cursor::new(b"line\n".to_vec()), b'\n').unwrap();
    assert!(buf.equal_to(b"line"));
}

#[test]
fn from_entire_reader_reads_everything() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let buf = LockedBuffer::from_entire_reader(Cursor::new(data.clone())).unwrap();
    assert!(buf.equal_to(&data) && !buf.is_mutable());
    let err = LockedBuffer::from_entire_reader(Cursor::new(Vec::new())).unwrap_err();
    assert!(matches!(err.error, Error::InvalidLength { len: 0 }));
    let err = LockedBuffer::from_entire_reader(Failing(b"xyz".to_vec())).unwrap_err();
    assert!(err.partial.unwrap().equal_to(b"xyz"));
}

#[test]
fn lock_failure_is_typed_and_best_effort_is_opt_in() {
    // Every lock fails while the guard lives (the page caches retry once at the limit).
    let _f = fault::fail(Op::Lock)
        .errno(libc::EPERM)
        .times(u32::MAX)
        .arm();
    assert!(matches!(LockedBuffer::new(32), Err(Error::Memory(ref e)) if e.op() == Some(Op::Lock)));
    let buf = LockedBuffer::with_locking(32, Locking::BestEffort).unwrap();
    assert!(!buf.is_locked() && buf.is_alive());
}

#[test]
fn failed_protection_change_leaves_the_state_unchanged() {
    let mut buf = LockedBuffer::new(32).unwrap();
    {
        let _f = fault::fail(Op::Protect).arm();
        assert!(matches!(buf.freeze(), Err(Error::Memory(_))));
    }
    assert!(buf.is_mutable());
    buf.copy(b"still writable").unwrap();
    {
        let _f = fault::fail(Op::Protect).arm();
        assert!(matches!(buf.destroy(), Err(Error::Memory(_))));
    }
    assert!(
        buf.is_alive(),
        "a failed destroy keeps the buffer so it can be retried"
    );
    buf.destroy().unwrap();
    assert!(!buf.is_alive());
}

#[test]
fn debug_output_has_no_contents() {
    let buf = LockedBuffer::from_bytes(&mut b"TOPSECRET".to_vec()).unwrap();
    let text = format!("{buf:?} {:?}", buf.bytes().unwrap());
    assert!(
        !text.contains("TOPSECRET") && !text.contains("84, 79"),
        "{text}"
    );
}

/// Without CAP_IPC_LOCK and under a small memlock limit (in a child), allocation fails with the typed lock
/// error, and the buffers made before stay intact and readable.
#[cfg(target_os = "linux")]
#[test]
fn memlock_exhaustion_is_a_typed_error_and_other_buffers_survive() {
    if common::scenario().as_deref() == Some("memlock") {
        memcall::drop_lock_exemption().unwrap();
        let page = memcall::page_size() as u64;
        let already = memcall::locked_bytes().unwrap();
        memcall::set_lock_limit(memcall::Limit::Bytes(already + 8 * page)).unwrap();
        let mut live = Vec::new();
        let err = loop {
            match LockedBuffer::from_bytes(&mut [live.len() as u8; 100]) {
                Ok(buf) => live.push(buf),
                Err(err) => break err,
            }
            assert!(live.len() <= 8, "the limit must stop allocation");
        };
        match &err {
            Error::Memory(e) => assert!(e.is_lock_limit(), "{e}"),
            other => panic!("expected the lock-limit error, got {other:?}"),
        }
        assert!(err.to_string().contains("RLIMIT_MEMLOCK"), "{err}");
        assert!(!live.is_empty());
        for (i, buf) in live.iter().enumerate() {
            assert!(
                buf.is_alive() && buf.equal_to(&[i as u8; 100]),
                "buffer {i} intact"
            );
        }
        // Making the enclave key needs locked pages too: a typed error, not Go's deadlock (memguard#173).
        match memguard::Enclave::new(&mut [1u8; 8]) {
            Err(Error::Memory(e)) => assert!(e.is_lock_limit(), "{e}"),
            other => panic!("expected the lock-limit error, got {other:?}"),
        }
        // Releasing buffers makes room again, for buffers and for the key.
        live.truncate(live.len().saturating_sub(4));
        let again = LockedBuffer::new(10).unwrap();
        assert!(again.is_locked());
        drop(again);
        let enclave = memguard::Enclave::new(&mut [2u8; 8]).unwrap();
        assert!(enclave.open().unwrap().equal_to(&[2u8; 8]));
        std::process::exit(0);
    }
    let out = common::run_child(
        "memlock_exhaustion_is_a_typed_error_and_other_buffers_survive",
        "memlock",
    );
    common::assert_exit_code(&out, 0);
}

/// Windows counterpart of the memlock-exhaustion test: past the working-set quota (injected: Wine has no real
/// quota, and growing the working set does not help here), allocation fails with the typed lock-limit error
/// naming the working-set limit and its fix, the buffers made before stay intact, and room comes back.
#[cfg(windows)]
#[test]
fn working_set_quota_exhaustion_is_a_typed_error_and_other_buffers_survive() {
    const ERROR_WORKING_SET_QUOTA: i32 = 1453;
    let live: Vec<_> = (0..4u8)
        .map(|i| LockedBuffer::from_bytes(&mut [i; 100]).unwrap())
        .collect();
    {
        // Every VirtualLock fails, the retry after growing the working set too.
        let _f = fault::fail(Op::Lock)
            .errno(ERROR_WORKING_SET_QUOTA)
            .times(u32::MAX)
            .arm();
        let err = LockedBuffer::from_bytes(&mut [9u8; 100]).unwrap_err();
        match &err {
            Error::Memory(e) => assert!(e.is_lock_limit(), "{e}"),
            other => panic!("expected the lock-limit error, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("working-set size"), "{text}");
        assert!(text.contains("Raise the job's limit"), "{text}");
    }
    for (i, buf) in live.iter().enumerate() {
        assert!(
            buf.is_alive() && buf.equal_to(&[i as u8; 100]),
            "buffer {i} intact"
        );
    }
    let again = LockedBuffer::new(10).unwrap();
    assert!(again.is_locked());
}

#[cfg(unix)]
#[test]
fn buffers_are_not_readable_in_a_forked_child() {
    let buf = LockedBuffer::from_bytes(&mut [8u8; 16]).unwrap();
    // SAFETY: fork in a multi-threaded test process; the child only reads atomics, takes this buffer's
    // (uncontended) lock and calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match buf.bytes() {
            Err(Error::Forked) => 0,
            _ => 1,
        };
        // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}"
    );
    assert!(buf.equal_to(&[8u8; 16]), "the parent's buffer is untouched");
}
