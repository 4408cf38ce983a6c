//! Every error path of every public function, driven through the `fault-injection` seam.
#![cfg(feature = "fault-injection")]

use memcall::{fault, Error, Op, Outcome, Protection, Region};

const EIO: i32 = 5;
const ENOMEM: i32 = 12;

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
    for needle in [
        "RLIMIT_MEMLOCK",
        "ulimit -l",
        "LimitMEMLOCK",
        "--ulimit memlock",
        "IPC_LOCK",
    ] {
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
