//! Go's `protectedmemory/secret_test.go` (24 tests) and `memguard/secret_test.go` (18 tests), by behaviour,
//! for both page-backed flavours and, where it has the behaviour, the sealed one; plus what Go lacks (close
//! inside access, panic safety, purge, locking policy).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{assert_platform_protections, assert_round_trip, pattern, secret_of, Flavour, KEY};
use memcall::{fault, Op};
use securememory::{Error, Locking, Secret, SecretExtensions, SecretFactory};

fn with_bytes_round_trip<F: Flavour>() {
    let s = secret_of::<F>(b"testing");
    s.with_bytes(|b| {
        assert_eq!(b, b"testing");
        Ok(())
    })
    .unwrap();
    s.close().unwrap();
}

fn with_bytes_on_closed_is_error_and_action_not_called<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    s.close().unwrap();
    let mut called = false;
    let err = s
        .with_bytes(|_| {
            called = true;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "secret has already been destroyed");
    assert!(err.is_closed());
    assert!(!called);
}

fn with_bytes_func_round_trip<F: Flavour>() {
    let s = secret_of::<F>(b"testing");
    let out = s.with_bytes_func(|b| Ok(b.to_vec())).unwrap();
    assert_eq!(out, b"testing");
}

fn with_bytes_func_on_closed_is_error_and_action_not_called<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    s.close().unwrap();
    let mut called = false;
    let err = s
        .with_bytes_func(|b| {
            called = true;
            Ok(b.to_vec())
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "secret has already been destroyed");
    assert!(err.is_closed(), "{err:?}");
    assert!(!called);
}

fn is_closed_after_close<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    assert!(!s.is_closed());
    s.close().unwrap();
    assert!(s.is_closed());
}

fn redundant_close_is_ok<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    s.close().unwrap();
    s.close().unwrap();
    assert!(s.is_closed());
}

fn new_rejects_empty_and_copies_then_wipes_source<F: Flavour>() {
    let err = F::factory().new(&mut []).unwrap_err();
    assert!(matches!(err, Error::InvalidLength { len: 0 }), "{err:?}");
    assert_eq!(err.to_string(), "invalid secret length");

    let mut source = b"testing".to_vec();
    let s = F::factory().new(&mut source).unwrap();
    assert_eq!(source, [0u8; 7], "the caller's bytes are wiped");
    assert_eq!(s.len(), 7);
    assert!(!s.is_empty());
    assert_eq!(s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), b"testing");
}

fn new_copies_exactly_at_page_boundaries<F: Flavour>() {
    let page = memcall::page_size();
    for len in [1, 16, 31, 32, 33, page - 1, page, page + 1, 3 * page] {
        assert_round_trip::<F>(&pattern(len, len as u8));
    }
}

fn create_random_has_requested_size<F: Flavour>() {
    for size in [1, 8, 32, 4096, 4097, 100_000] {
        let s = F::factory().create_random(size).unwrap();
        assert_eq!(s.len(), size);
        if size >= 32 {
            // 2^-256 chance of a false failure.
            assert!(s.with_bytes(|b| Ok(b.iter().any(|&x| x != 0))).unwrap());
        }
    }
    let a = F::factory().create_random(32).unwrap();
    let b = F::factory().create_random(32).unwrap();
    assert_ne!(
        a.with_bytes_func(|x| Ok(x.to_vec())).unwrap(),
        b.with_bytes_func(|x| Ok(x.to_vec())).unwrap()
    );
}

fn create_random_rejects_zero_and_absurd_sizes<F: Flavour>() {
    let err = F::factory().create_random(0).unwrap_err();
    assert!(matches!(err, Error::InvalidLength { len: 0 }), "{err:?}");
    for size in [usize::MAX, 1 << 62] {
        let err = F::factory().create_random(size).unwrap_err();
        assert!(
            matches!(err, Error::InvalidLength { .. } | Error::Memory(_)),
            "{size}: {err:?}"
        );
        let err = F::factory().create_with(size, &mut |_| Ok(())).unwrap_err();
        assert!(
            matches!(err, Error::InvalidLength { .. } | Error::Memory(_)),
            "{size}: {err:?}"
        );
    }
}

fn creation_protect_failure_cleans_up_and_combines_errors<F: Flavour>() {
    for random in [false, true] {
        // The seal fails, then making the pages writable to wipe them fails too.
        let _guard = fault::fail(Op::Protect)
            .after(F::PROTECTS_BEFORE_SEAL)
            .times(2)
            .arm();
        let mut source = *KEY;
        let result = if random {
            F::factory().create_random(32)
        } else {
            F::factory().new(&mut source)
        };
        let err = result.unwrap_err();
        let Error::Cleanup { error, cleanup } = &err else {
            panic!("expected a cleanup error, got {err:?}")
        };
        assert_eq!(error.memory_error().and_then(|e| e.op()), Some(Op::Protect));
        assert!(cleanup.memory_error().is_some(), "{cleanup:?}");
        assert_eq!(err.to_string(), format!("{cleanup}: {error}"));
    }
}

fn read_only_switch_failure_leaves_counter_and_skips_action<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let mut called = false;
    {
        let _guard = fault::fail(Op::Protect).arm();
        let err = s
            .with_bytes(|_| {
                called = true;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(err, Error::ReadOnly(ref e) if e.op() == Some(Op::Protect)),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("unable to mark memory as read-only: "));
    }
    assert!(!called);
    assert_eq!(F::accessors(&s), 0);
    {
        let _guard = fault::fail(Op::Protect).arm();
        let err = s.with_bytes_func(|b| Ok(b.to_vec())).unwrap_err();
        assert!(matches!(err, Error::ReadOnly(_)), "{err:?}");
    }
    assert_eq!(F::accessors(&s), 0);
    // Still usable and closable (a leaked count would make close wait forever).
    assert_eq!(s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), KEY);
    s.close().unwrap();
}

fn no_access_switch_failure_decrements_and_combines_with_action_error<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let mut called = false;
    let protect_text;
    {
        let _guard = fault::fail(Op::Protect).after(1).arm();
        let err = s
            .with_bytes(|b| {
                called = true;
                assert_eq!(b, KEY);
                Ok(())
            })
            .unwrap_err();
        let Error::Released {
            protect,
            action: None,
        } = &err
        else {
            panic!("expected Released, got {err:?}")
        };
        assert_eq!(protect.op(), Some(Op::Protect));
        protect_text = protect.to_string();
        assert_eq!(
            err.to_string(),
            format!("unable to mark memory as no-access: {protect_text}")
        );
    }
    assert!(called);
    assert_eq!(F::accessors(&s), 0, "the counter is decremented anyway");
    {
        let _guard = fault::fail(Op::Protect).after(1).arm();
        let err = s
            .with_bytes(|_| -> securememory::Result<()> { Err(Error::action("action failed")) })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unable to mark memory as no-access: {protect_text}: action failed")
        );
        let Error::Released {
            action: Some(action),
            ..
        } = err
        else {
            panic!()
        };
        assert_eq!(action.to_string(), "action failed");
    }
    {
        let _guard = fault::fail(Op::Protect).after(1).arm();
        let err = s
            .with_bytes_func(|_| Err(Error::action("action failed")))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unable to mark memory as no-access: {protect_text}: action failed")
        );
    }
    assert_eq!(F::accessors(&s), 0);
    s.close().unwrap();
}

fn action_error_passes_through<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let err = s
        .with_bytes(|_| -> securememory::Result<()> { Err(Error::action("action failed")) })
        .unwrap_err();
    assert!(matches!(err, Error::Action(_)));
    assert_eq!(err.to_string(), "action failed");
    assert_eq!(s.with_bytes(|b| Ok(b.len())).unwrap(), 32);
}

/// Nested closures see the same bytes at the same address (for the sealed flavour: one decrypted copy).
fn nested_access_works<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let (outer_ptr, inner_ptr, inner_len) = s
        .with_bytes(|outer| {
            assert_eq!(F::accessors(&s), 1);
            let (inner_ptr, inner_len) = s.with_bytes(|inner| {
                assert_eq!(F::accessors(&s), 2);
                assert_eq!(outer, inner);
                assert_eq!(inner, KEY);
                Ok((inner.as_ptr() as usize, inner.len()))
            })?;
            // The outer view is intact after the inner closure left.
            assert_eq!(outer, KEY);
            Ok((outer.as_ptr() as usize, inner_ptr, inner_len))
        })
        .unwrap();
    assert_eq!(inner_len, 32);
    assert_eq!(outer_ptr, inner_ptr, "a nested closure saw a second copy");
    assert_eq!(F::accessors(&s), 0);
}

fn close_inside_own_access_is_an_error_not_a_deadlock<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let other = secret_of::<F>(KEY);
    s.with_bytes(|_| {
        assert!(matches!(s.close(), Err(Error::CloseInsideAccess)));
        // Another secret can be closed from in here.
        other.close()?;
        Ok(())
    })
    .unwrap();
    assert!(other.is_closed());
    assert!(!s.is_closed());
    assert!(s.with_bytes(|b| Ok(b == KEY)).unwrap());
    s.close().unwrap();
}

fn panic_in_closure_reprotects_and_releases<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = s.with_bytes(|_| -> securememory::Result<()> { panic!("inside the closure") });
    }));
    assert!(result.is_err());
    assert_eq!(F::accessors(&s), 0);
    let after = s.with_bytes(|b| Ok(b == KEY));
    assert!(matches!(after, Ok(true)), "{after:?}");
    s.close().unwrap();
}

fn close_waits_for_running_closures<F: Flavour>() {
    let s = Arc::new(secret_of::<F>(KEY));
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            s.with_bytes(|b| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(b == KEY)
            })
        })
    };
    entered_rx.recv().unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let closer = {
        let (s, closed) = (Arc::clone(&s), Arc::clone(&closed));
        std::thread::spawn(move || {
            let r = s.close();
            closed.store(true, Ordering::SeqCst);
            r
        })
    };
    // New accessors are refused as soon as closing starts; the running one still sees its bytes.
    while !matches!(s.with_bytes(|_| Ok(())), Err(Error::Closed)) {
        std::thread::yield_now();
    }
    assert!(
        !closed.load(Ordering::SeqCst),
        "close returned while a closure was running"
    );
    release_tx.send(()).unwrap();
    assert!(reader.join().unwrap().unwrap());
    closer.join().unwrap().unwrap();
    assert!(s.is_closed());
}

fn drop_closes<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let report = s.protections();
    drop(s);
    // Nothing to observe in-process without races; the leak test binary checks the counts. Here: no panic,
    // and the report was readable.
    assert_eq!(report.locked_bytes > 0, report.locked);
}

fn protections_report<F: Flavour>() {
    let s = secret_of::<F>(KEY);
    let r = s.protections();
    assert!(r.locked);
    assert!(r.locked_bytes >= memcall::page_size());
    assert_platform_protections(&r);
    let text = r.to_string();
    assert!(text.contains("locked: yes"), "{text}");
}

fn lock_failure_required_is_error_best_effort_is_reported<F: Flavour>() {
    let other = secret_of::<F>(KEY);
    {
        // Every lock fails while the guard lives (the page caches retry once at the limit).
        let _guard = fault::fail(Op::Lock)
            .errno(libc::ENOMEM)
            .times(u32::MAX)
            .arm();
        let err = F::factory().new(&mut KEY.to_vec()).unwrap_err();
        let e = err.memory_error().expect("a memory error");
        assert_eq!(e.op(), Some(Op::Lock), "{err}");
    }
    {
        // Every lock fails while the guard lives (the page caches retry once at the limit).
        let _guard = fault::fail(Op::Lock)
            .errno(libc::ENOMEM)
            .times(u32::MAX)
            .arm();
        let s = F::factory_with(Locking::BestEffort)
            .new(&mut KEY.to_vec())
            .unwrap();
        let r = s.protections();
        assert!(!r.locked);
        assert_eq!(r.locked_bytes, 0);
        assert_eq!(s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), KEY);
    }
    // Other secrets are untouched by a failed creation.
    assert_eq!(other.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), KEY);
}

fn dyn_secret_works<F: Flavour>() {
    let s: Box<dyn Secret> = Box::new(secret_of::<F>(KEY));
    assert_eq!(s.with_bytes(|b| Ok(b.len())).unwrap(), 32);
    assert_eq!(s.with_bytes_func(|b| Ok(b.to_vec())).unwrap(), KEY);
    s.close().unwrap();
    assert!(s.is_closed());
}

fn debug_output_has_no_secret_bytes<F: Flavour>() {
    let s = secret_of::<F>(b"hunter2-hunter2");
    let text = format!("{s:?} {:?} {:?}", s.reader().unwrap(), s.quarantine());
    assert!(!text.contains("hunter2"), "{text}");
    let inside = s.with_bytes(|_| Ok(format!("{s:?}"))).unwrap();
    assert!(!inside.contains("hunter2"), "{inside}");
}

// The sealed flavour has no pages of its own to protect, lock or report (its scratch pages are proven in
// `sealed.rs` and `guarantees/tests/sealed_*.rs`).
for_flavours!(
    every: [
        with_bytes_round_trip,
        with_bytes_on_closed_is_error_and_action_not_called,
        with_bytes_func_round_trip,
        with_bytes_func_on_closed_is_error_and_action_not_called,
        is_closed_after_close,
        redundant_close_is_ok,
        new_rejects_empty_and_copies_then_wipes_source,
        new_copies_exactly_at_page_boundaries,
        create_random_has_requested_size,
        create_random_rejects_zero_and_absurd_sizes,
        action_error_passes_through,
        nested_access_works,
        close_inside_own_access_is_an_error_not_a_deadlock,
        panic_in_closure_reprotects_and_releases,
        close_waits_for_running_closures,
        dyn_secret_works,
        debug_output_has_no_secret_bytes,
    ],
    page_backed: [
        creation_protect_failure_cleans_up_and_combines_errors,
        read_only_switch_failure_leaves_counter_and_skips_action,
        no_access_switch_failure_decrements_and_combines_with_action_error,
        drop_closes,
        protections_report,
        lock_failure_required_is_error_best_effort_is_reported,
    ],
);
