//! Bad input never crashes: zero and huge sizes, closed secrets, readers after close, zero-length reads, nested
//! access and close from inside an access each give a typed error or the documented result, for both flavours
//! and for memguard locked buffers.
//!
//! Sizes that the page arithmetic rejects are tried in this process; sizes that could really be mapped (up to
//! 64 TiB) are tried in a child without `CAP_IPC_LOCK`, so that a machine with unlimited overcommit cannot be
//! driven into locking terabytes.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::time::Duration;

use common::{ensure, fill_pattern, is_pattern, pattern_secret, Flavour};
use guarantees::{Scenario, Watchdog};
use securememory::{Error, Secret, SecretExtensions};

fn page() -> usize {
    memcall::page_size()
}

/// Sizes no page arithmetic can accept.
fn absurd_sizes() -> [usize; 4] {
    [
        usize::MAX,
        usize::MAX - page() + 2,
        isize::MAX as usize,
        isize::MAX as usize - page() + 2,
    ]
}

/// What a creation returned, for messages (secrets have no `Debug` behind `dyn`).
fn outcome<T>(result: &Result<T, Error>) -> String {
    match result {
        Ok(_) => "a secret".into(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn zero_sizes_are_invalid_length() {
    for flavour in Flavour::ALL {
        let name = flavour.name();
        assert!(
            matches!(
                flavour.new_secret(&mut []),
                Err(Error::InvalidLength { len: 0 })
            ),
            "{name}: new(&mut [])"
        );
        assert!(
            matches!(
                flavour.random_secret(0),
                Err(Error::InvalidLength { len: 0 })
            ),
            "{name}: create_random(0)"
        );
    }
    assert!(matches!(
        memguard::LockedBuffer::new(0),
        Err(memguard::Error::InvalidLength { len: 0 })
    ));
    assert!(matches!(
        memguard::LockedBuffer::from_bytes(&mut []),
        Err(memguard::Error::InvalidLength { len: 0 })
    ));
    assert!(matches!(
        memguard::LockedBuffer::random(0),
        Err(memguard::Error::InvalidLength { len: 0 })
    ));
}

#[test]
fn absurd_sizes_are_invalid_length() {
    for flavour in Flavour::ALL {
        for size in absurd_sizes() {
            let result = flavour.random_secret(size);
            assert!(
                matches!(result, Err(Error::InvalidLength { len }) if len == size),
                "{}: create_random({size:#x}) gave {}",
                flavour.name(),
                outcome(&result)
            );
        }
    }
    for size in absurd_sizes() {
        let result = memguard::LockedBuffer::new(size);
        assert!(
            matches!(result, Err(memguard::Error::InvalidLength { .. })),
            "LockedBuffer::new({size:#x}) gave {result:?}"
        );
    }
}

/// Sizes the arithmetic accepts but no machine can lock: a typed memory error, nothing leaked.
fn huge_mappable_sizes() -> Result<(), Box<dyn std::error::Error>> {
    memcall::drop_lock_exemption()?;
    let before = guarantees::proc_stats::Footprint::now();
    for size in [
        1usize << 26,
        1 << 40,
        1 << 46,
        isize::MAX as usize - 4 * page(),
    ] {
        for flavour in Flavour::ALL {
            match flavour.random_secret(size) {
                Err(Error::Memory(e)) => eprintln!("{} {size:#x}: {e}", flavour.name()),
                Err(Error::InvalidLength { .. }) => {}
                other => {
                    return Err(format!("{} {size:#x}: {}", flavour.name(), outcome(&other)).into());
                }
            }
        }
        match memguard::LockedBuffer::new(size) {
            Err(memguard::Error::Memory(_) | memguard::Error::InvalidLength { .. }) => {}
            other => return Err(format!("LockedBuffer {size:#x}: {other:?}").into()),
        }
    }
    let after = guarantees::proc_stats::Footprint::now();
    ensure(after.library_changes_since(&before).is_empty(), || {
        format!("failed huge allocations left something behind: {before:?} -> {after:?}")
    })?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[("huge_mappable_sizes", huge_mappable_sizes)];
    guarantees::dispatch(SCENARIOS);
}

#[test]
fn huge_sizes_that_could_be_mapped_are_typed_errors() {
    guarantees::run_child("huge_mappable_sizes")
        .run()
        .assert_success();
}

#[test]
fn a_closed_secret_refuses_everything_but_stays_describable() {
    for flavour in Flavour::ALL {
        let name = flavour.name();
        let secret = pattern_secret(flavour, 1, 40).unwrap();
        let report_before = secret.protections();
        secret.close().unwrap();
        assert!(secret.is_closed(), "{name}");
        let mut ran = false;
        let r = secret.with_bytes(|_| {
            ran = true;
            Ok(())
        });
        assert!(
            matches!(r, Err(Error::Closed)) && !ran,
            "{name}: with_bytes"
        );
        assert!(
            matches!(
                secret.with_bytes_func(|b| Ok(b.to_vec())),
                Err(Error::Closed)
            ),
            "{name}: with_bytes_func"
        );
        assert!(
            matches!(secret.with_bytes_dyn(&mut |_| Ok(())), Err(Error::Closed)),
            "{name}: with_bytes_dyn"
        );
        assert!(
            matches!(secret.reader(), Err(Error::Closed)),
            "{name}: reader"
        );
        assert_eq!(secret.len(), 40, "{name}: len after close");
        assert!(!secret.is_empty());
        assert_eq!(secret.protections(), report_before, "{name}: report");
        secret.close().unwrap();
        assert_eq!(
            Error::Closed.to_string(),
            "secret has already been destroyed"
        );
    }
    let mut buf = memguard::LockedBuffer::from_bytes(&mut [1, 2, 3]).unwrap();
    buf.destroy().unwrap();
    assert!(matches!(buf.bytes(), Err(memguard::Error::Destroyed)));
    assert!(matches!(
        buf.with_bytes(|_| ()),
        Err(memguard::Error::Destroyed)
    ));
    assert!(matches!(buf.reader(), Err(memguard::Error::Destroyed)));
    assert!(matches!(buf.melt(), Err(memguard::Error::Destroyed)));
    assert!(!buf.is_alive());
    buf.destroy().unwrap();
}

#[test]
fn readers_after_close_and_zero_length_reads() {
    for flavour in Flavour::ALL {
        let name = flavour.name();
        let secret = pattern_secret(flavour, 2, 10).unwrap();
        let mut early = secret.reader().unwrap();
        let mut partial = secret.reader().unwrap();
        let mut finished = secret.reader().unwrap();
        // Zero-length reads: at the start, in the middle and at the end they return 0 and move nothing.
        assert_eq!(
            early.read(&mut []).unwrap(),
            0,
            "{name}: empty read at start"
        );
        assert_eq!(early.position(), 0);
        let mut four = [0u8; 4];
        assert_eq!(partial.read(&mut four).unwrap(), 4);
        assert!(is_pattern(2, &four));
        assert_eq!(
            partial.read(&mut []).unwrap(),
            0,
            "{name}: empty read mid-data"
        );
        assert_eq!(partial.position(), 4);
        let mut all = Vec::new();
        finished.read_to_end(&mut all).unwrap();
        assert!(is_pattern(2, &all) && all.len() == 10);
        assert_eq!(
            finished.read(&mut []).unwrap(),
            0,
            "{name}: empty read at end"
        );
        assert_eq!(finished.read_with_eof(&mut four).unwrap(), (0, true));
        secret.close().unwrap();
        // After close every reader fails with the closed error, wherever it stood, whatever its buffer.
        for (what, reader) in [
            ("unread", &mut early),
            ("partial", &mut partial),
            ("finished", &mut finished),
        ] {
            for len in [0, 1, 100] {
                let mut buf = vec![0u8; len];
                let err = reader.read(&mut buf).err();
                let inner = err
                    .as_ref()
                    .and_then(|e| e.get_ref())
                    .and_then(|e| e.downcast_ref::<Error>());
                let mid_data_empty_read = len == 0 && what != "finished";
                assert!(
                    matches!(inner, Some(Error::Closed)) || (mid_data_empty_read && err.is_none()),
                    "{name}: {what} reader, read of {len} after close gave {err:?}"
                );
                assert!(
                    buf.iter().all(|&b| b == 0),
                    "{name}: bytes leaked after close"
                );
            }
        }
    }
}

#[test]
fn nested_access_works_at_depth_and_across_secrets() {
    for flavour in Flavour::ALL {
        let name = flavour.name();
        let a = pattern_secret(flavour, 3, 64).unwrap();
        let other = if flavour == Flavour::Memguard {
            Flavour::ProtectedMemory
        } else {
            Flavour::Memguard
        };
        let b = pattern_secret(other, 4, 5000).unwrap();
        fn nest(s: &dyn Secret, depth: usize) -> securememory::Result<usize> {
            s.with_bytes(|bytes| {
                assert!(is_pattern(3, bytes));
                if depth == 0 {
                    Ok(0)
                } else {
                    nest(s, depth - 1).map(|d| d + 1)
                }
            })
        }
        assert_eq!(nest(a.as_ref(), 64).unwrap(), 64, "{name}: depth 64");
        let both = a
            .with_bytes(|x| {
                b.with_bytes(|y| {
                    a.with_bytes(|z| Ok(is_pattern(3, x) && is_pattern(4, y) && x == z))
                })
            })
            .unwrap();
        assert!(both, "{name}: interleaved");
        // An inner error comes out of the outer call unchanged, and both secrets still work.
        let err = a
            .with_bytes(|_| {
                b.with_bytes(|_| -> securememory::Result<()> { Err(Error::action("inner failed")) })
            })
            .unwrap_err();
        assert!(
            matches!(&err, Error::Action(e) if e.to_string() == "inner failed"),
            "{name}: {err}"
        );
        assert!(a.with_bytes(|x| Ok(is_pattern(3, x))).unwrap());
        a.close().unwrap();
        b.close().unwrap();
    }
}

#[test]
fn close_inside_an_access_is_an_error_not_a_deadlock() {
    let _watchdog = Watchdog::start(Duration::from_secs(60), "close inside with_bytes");
    for flavour in Flavour::ALL {
        let name = flavour.name();
        let a = pattern_secret(flavour, 5, 32).unwrap();
        let b = pattern_secret(flavour, 6, 32).unwrap();
        let inner = a.with_bytes(|_| Ok(a.close())).unwrap();
        assert!(
            matches!(inner, Err(Error::CloseInsideAccess)),
            "{name}: {inner:?}"
        );
        // Two levels down, and from inside another secret's access nested in this one's.
        let deep = a.with_bytes(|_| a.with_bytes(|_| Ok(a.close()))).unwrap();
        assert!(
            matches!(deep, Err(Error::CloseInsideAccess)),
            "{name}: {deep:?}"
        );
        let across = a.with_bytes(|_| b.with_bytes(|_| Ok(a.close()))).unwrap();
        assert!(
            matches!(across, Err(Error::CloseInsideAccess)),
            "{name}: {across:?}"
        );
        // Closing ANOTHER secret from inside an access is fine.
        a.with_bytes(|_| b.close()).unwrap();
        assert!(b.is_closed() && !a.is_closed(), "{name}");
        // The refused close left the secret fully working.
        assert!(a.with_bytes(|x| Ok(is_pattern(5, x))).unwrap(), "{name}");
        a.close().unwrap();
    }
}

#[test]
fn purge_inside_an_access_does_not_deadlock() {
    let _watchdog = Watchdog::start(Duration::from_secs(60), "purge inside with_bytes");
    for flavour in Flavour::ALL {
        let secret = pattern_secret(flavour, 7, 32).unwrap();
        let seen = secret
            .with_bytes(|b| {
                memguard::purge();
                Ok(is_pattern(7, b))
            })
            .unwrap();
        assert!(
            seen,
            "{}: the bytes changed under a running closure",
            flavour.name()
        );
        // Whether purge skipped the busy secret or closed it once the access ended, it closes cleanly now.
        secret.close().unwrap();
    }
}

#[test]
fn locked_buffer_offsets_past_the_end_are_errors() {
    let mut buf = memguard::LockedBuffer::new(16).unwrap();
    let mut src = [0u8; 8];
    fill_pattern(8, &mut src);
    // At the end exactly, nothing fits (Go's `copy` into an empty tail): 0 bytes, not an error.
    assert_eq!(buf.copy_at(16, &src).unwrap(), 0);
    for offset in [17, usize::MAX] {
        assert!(matches!(
            buf.copy_at(offset, &src),
            Err(memguard::Error::OutOfRange { .. })
        ));
        assert!(matches!(
            buf.move_at(offset, &mut src),
            Err(memguard::Error::OutOfRange { .. })
        ));
    }
    assert!(
        is_pattern(8, &src),
        "a refused move must not wipe the source"
    );
    // Copies that run past the end are cut at the end, as in Go.
    assert_eq!(buf.copy_at(12, &src).unwrap(), 4);
    buf.destroy().unwrap();
}
