//! Every error path of every public function, driven through the `fault-injection` seam.
#![cfg(feature = "fault-injection")]

use memcall::{fault, Error, Op, Outcome, Protection, Region};

// An unrelated failure and the lock-limit code: errno on Unix; on Windows ERROR_GEN_FAILURE and
// ERROR_WORKING_SET_QUOTA (5 there is ERROR_ACCESS_DENIED, which also counts as the lock limit).
#[cfg(unix)]
const EIO: i32 = 5;
#[cfg(unix)]
const ENOMEM: i32 = 12;
#[cfg(windows)]
const EIO: i32 = 31;
#[cfg(windows)]
const ENOMEM: i32 = 1453;

#[test]
fn map_failure_is_typed() {
    let _g = fault::fail(Op::Map).errno(ENOMEM).arm();
    let err = Region::alloc(10).unwrap_err();
    assert_eq!(err.op(), Some(Op::Map));
    assert_eq!(err.raw_os_error(), Some(ENOMEM));
    assert!(
        err.to_string().contains("could not map 4096 bytes"),
        "{err}"
    );
}

#[test]
fn advice_failure_is_recorded_not_fatal() {
    let _g = fault::fail(Op::Advise).errno(EIO).times(u32::MAX).arm();
    let region = Region::alloc(1).unwrap();
    let h = region.hardening();
    assert_eq!(h.no_dump, Outcome::Failed(EIO));
    assert_eq!(h.no_fork, Outcome::Failed(EIO));
    assert!(!h.no_dump.is_applied());
    drop(_g);
    region.free().unwrap();
}

#[test]
fn protect_failure_is_typed_and_region_stays_usable() {
    let region = Region::alloc(1).unwrap();
    {
        let _g = fault::fail(Op::Protect).errno(EIO).arm();
        let err = region.protect(Protection::NoAccess).unwrap_err();
        assert_eq!(err.op(), Some(Op::Protect));
        assert_eq!(err.raw_os_error(), Some(EIO));
    }
    region.protect(Protection::ReadOnly).unwrap();
    region.free().unwrap();
}

#[test]
fn lock_failure_at_the_limit_names_the_limit_and_the_fix() {
    let region = Region::alloc(1).unwrap();
    let _g = fault::fail(Op::Lock).errno(ENOMEM).arm();
    let err = region.lock().unwrap_err();
    assert!(err.is_lock_limit());
    let msg = err.to_string();
    #[cfg(target_os = "linux")]
    let needles = [
        "RLIMIT_MEMLOCK",
        "ulimit -l",
        "LimitMEMLOCK",
        "--ulimit memlock",
        "IPC_LOCK",
    ];
    #[cfg(all(unix, not(target_os = "linux")))]
    let needles: [&str; 0] = [];
    #[cfg(windows)]
    let needles = [
        "working-set size",
        "SetProcessWorkingSetSize",
        "Raise the job's limit",
        "ulimit -l",
    ];
    for needle in needles {
        assert!(msg.contains(needle), "missing {needle:?} in {msg}");
    }
    match &err {
        Error::LockLimit { limit, .. } => assert!(limit.is_some()),
        other => panic!("{other:?}"),
    }
    drop(_g);
    region.free().unwrap();
}

#[test]
fn other_lock_failures_are_plain_os_errors() {
    let region = Region::alloc(1).unwrap();
    let _g = fault::fail(Op::Lock).errno(EIO).arm();
    let err = region.lock().unwrap_err();
    assert!(!err.is_lock_limit());
    assert_eq!(err.op(), Some(Op::Lock));
    drop(_g);
    region.free().unwrap();
}

/// Windows: `VirtualLock` past the working-set quota makes the backend grow the working set and retry. The
/// rule's first firing is skipped by the region layer's check and hits the backend's first `VirtualLock`.
#[cfg(windows)]
#[test]
fn lock_at_the_working_set_quota_grows_it_and_retries() {
    let region = Region::alloc(1).unwrap();
    let g = fault::fail(Op::Lock).after(1).errno(ENOMEM).arm();
    region.lock().unwrap();
    assert!(g.exhausted(), "the first VirtualLock was not reached");
    assert!(region.is_locked());
    drop(g);
    region.unlock().unwrap();
    region.free().unwrap();
}

/// Windows: when the retry after growing the working set still fails, the error is the lock limit.
#[cfg(windows)]
#[test]
fn lock_still_over_the_quota_after_growing_is_the_lock_limit() {
    let region = Region::alloc(1).unwrap();
    let g = fault::fail(Op::Lock).after(1).times(2).errno(ENOMEM).arm();
    let err = region.lock().unwrap_err();
    assert!(g.exhausted(), "the retry did not happen");
    assert!(err.is_lock_limit(), "{err}");
    assert_eq!(err.raw_os_error(), Some(ENOMEM));
    assert!(!region.is_locked());
    drop(g);
    region.free().unwrap();
}

/// Windows: when growing the working set is refused (a job object's limit), the quota error is reported, not
/// the refusal.
#[cfg(windows)]
#[test]
fn refused_working_set_growth_reports_the_quota() {
    let region = Region::alloc(1).unwrap();
    let lock = fault::fail(Op::Lock).after(1).errno(ENOMEM).arm();
    let grow = fault::fail(Op::Limit).errno(EIO).arm();
    let err = region.lock().unwrap_err();
    assert!(lock.exhausted() && grow.exhausted(), "growth was not tried");
    assert!(err.is_lock_limit(), "{err}");
    assert_eq!(err.raw_os_error(), Some(ENOMEM));
    assert!(err.to_string().contains("working-set size"), "{err}");
    drop((lock, grow));
    region.free().unwrap();
}

/// Windows: `ERROR_ACCESS_DENIED` from `VirtualLock` (Wine past RLIMIT_MEMLOCK, a policy refusing locks) is the
/// lock limit too, and the message names it and the fix.
#[cfg(windows)]
#[test]
fn access_denied_lock_is_the_lock_limit() {
    const ERROR_ACCESS_DENIED: i32 = 5;
    let region = Region::alloc(1).unwrap();
    let g = fault::fail(Op::Lock).errno(ERROR_ACCESS_DENIED).arm();
    let err = region.lock().unwrap_err();
    assert!(err.is_lock_limit(), "{err}");
    assert!(err.to_string().contains("working-set size"), "{err}");
    drop(g);
    region.free().unwrap();
}

#[test]
fn unlock_failure_is_typed() {
    let region = Region::alloc(1).unwrap();
    region.lock().unwrap();
    let _g = fault::fail(Op::Unlock).errno(EIO).arm();
    assert_eq!(region.unlock().unwrap_err().op(), Some(Op::Unlock));
    drop(_g);
    region.unlock().unwrap();
    region.free().unwrap();
}

#[test]
fn free_failures_hand_the_region_back_for_a_retry() {
    let region = Region::alloc(1).unwrap();
    let region = {
        let _g = fault::fail(Op::Protect).arm();
        let err = region.free().unwrap_err();
        assert_eq!(err.error.op(), Some(Op::Protect));
        err.region
    };
    let region = {
        let _g = fault::fail(Op::Unmap).arm();
        let err = region.free().unwrap_err();
        assert_eq!(err.error.op(), Some(Op::Unmap));
        // The wipe already happened before the unmap failed.
        // SAFETY: the failed free left the region read-write.
        assert!(unsafe { err.region.as_slice() }.iter().all(|&b| b == 0));
        err.region
    };
    region.free().unwrap();
}

#[test]
fn wipe_failure_writes_nothing() {
    let mut region = Region::alloc(1).unwrap();
    // SAFETY: read-write and exclusively ours.
    let bytes = unsafe { region.as_mut_slice() };
    bytes[0] = 7;
    {
        let _g = fault::fail(Op::Protect).arm();
        assert!(region.wipe().is_err());
    }
    // SAFETY: still read-write: the injected failure changed nothing.
    assert_eq!(unsafe { region.as_slice() }[0], 7);
    region.free().unwrap();
}

#[test]
fn core_dump_switch_and_limit_failures_are_typed() {
    let _g = fault::fail(Op::Limit).times(2).arm();
    assert_eq!(
        memcall::disable_core_dumps().unwrap_err().op(),
        Some(Op::Limit)
    );
    #[cfg(target_os = "linux")]
    assert_eq!(
        memcall::set_lock_limit(memcall::Limit::Unlimited)
            .unwrap_err()
            .op(),
        Some(Op::Limit)
    );
}

#[test]
fn rules_can_skip_calls_and_expire() {
    let region = Region::alloc(1).unwrap();
    let g = fault::fail(Op::Protect).after(1).arm();
    region.protect(Protection::ReadOnly).unwrap();
    assert!(region.protect(Protection::NoAccess).is_err());
    assert!(g.exhausted());
    region.protect(Protection::NoAccess).unwrap();
    drop(g);
    region.free().unwrap();
}

#[test]
fn rules_are_per_thread() {
    let _g = fault::fail(Op::Map).times(u32::MAX).arm();
    let other = std::thread::spawn(|| Region::alloc(1).map(|r| r.free().is_ok()));
    assert!(other.join().unwrap().unwrap());
    assert!(Region::alloc(1).is_err());
}

#[test]
fn errors_convert_to_io_errors() {
    let _g = fault::fail(Op::Map).errno(ENOMEM).arm();
    let io: std::io::Error = Region::alloc(1).unwrap_err().into();
    assert!(io.to_string().contains("could not map"));
    let invalid: std::io::Error = Region::alloc(0).unwrap_err().into();
    assert_eq!(invalid.kind(), std::io::ErrorKind::InvalidInput);
}

#[cfg(target_os = "linux")]
#[test]
fn dumpable_switch_failure_is_typed() {
    assert!(memcall::is_dumpable().is_ok());
    let _g = fault::fail(Op::Limit).arm();
    assert_eq!(
        memcall::set_dumpable(true).unwrap_err().op(),
        Some(Op::Limit)
    );
}
