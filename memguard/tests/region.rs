//! GuardedRegion: layout, guard pages, canary, locking and error paths.

mod common;

use memcall::{fault, Op, Protection};
use memguard::{Error, GuardedRegion, Locking};

fn sample_sizes() -> Vec<usize> {
    let page = memcall::page_size();
    let mut sizes: Vec<usize> = (1..=16385).step_by(97).collect();
    for k in 1..=4 {
        sizes.extend([k * page - 1, k * page, k * page + 1]);
    }
    sizes.push(16385);
    sizes.retain(|&s| (1..=16385).contains(&s));
    sizes
}

#[test]
fn layout_matches_go_for_sampled_sizes() {
    let page = memcall::page_size();
    for size in sample_sizes() {
        let region = GuardedRegion::new(size, Locking::Required).unwrap();
        let inner = size.div_ceil(page) * page;
        assert_eq!(region.len(), size);
        assert_eq!(region.inner_len(), inner, "size {size}");
        assert_eq!(region.guard_len(), page);
        assert_eq!(region.mapping_len(), inner + 2 * page);
        assert_eq!(region.canary_len(), inner - size);
        assert!(region.is_locked());
        // Right-aligned: the data ends exactly where the trailing guard starts.
        let end = region.as_ptr() as usize + size;
        assert_eq!(end % page, 0, "size {size}");
        // SAFETY: the inner pages are read-write after `new` and nothing else touches the region.
        let data = unsafe { region.data() };
        assert!(data.iter().all(|&b| b == 0));
        region.destroy().unwrap();
    }
}

#[test]
fn zero_size_is_invalid_length() {
    assert!(matches!(
        GuardedRegion::new(0, Locking::Required),
        Err(Error::InvalidLength { len: 0 })
    ));
    assert!(matches!(
        GuardedRegion::new(usize::MAX - 10, Locking::Required),
        Err(Error::InvalidLength { .. })
    ));
}

#[test]
fn data_round_trips_through_protection_changes() {
    let region = GuardedRegion::new(100, Locking::Required).unwrap();
    // SAFETY: read-write, exclusive.
    unsafe { region.data_mut() }.copy_from_slice(&[7u8; 100]);
    region.protect(Protection::ReadOnly).unwrap();
    // SAFETY: read-only now and nobody writes.
    assert_eq!(unsafe { region.data() }, &[7u8; 100][..]);
    region.protect(Protection::NoAccess).unwrap();
    region.protect(Protection::ReadWrite).unwrap();
    // SAFETY: read-write again.
    assert_eq!(unsafe { region.data() }, &[7u8; 100][..]);
    region.destroy().unwrap();
}

#[test]
fn lock_failure_is_a_typed_error_unless_best_effort() {
    {
        // Every lock fails while the guard lives (the page caches retry once at the limit).
        let _f = fault::fail(Op::Lock)
            .errno(libc::ENOMEM)
            .times(u32::MAX)
            .arm();
        match GuardedRegion::new(32, Locking::Required) {
            Err(Error::Memory(e)) => assert_eq!(e.op(), Some(Op::Lock)),
            other => panic!("expected a lock error, got {other:?}"),
        }
    }
    let _f = fault::fail(Op::Lock)
        .errno(libc::ENOMEM)
        .times(u32::MAX)
        .arm();
    let region = GuardedRegion::new(32, Locking::BestEffort).unwrap();
    assert!(!region.is_locked());
    region.destroy().unwrap();
}

#[test]
fn every_failing_step_of_new_is_reported() {
    for (op, skip) in [(Op::Map, 0), (Op::Protect, 0), (Op::Protect, 1)] {
        let _f = fault::fail(op).after(skip).arm();
        let res = GuardedRegion::new(64, Locking::Required);
        assert!(
            matches!(res, Err(Error::Memory(ref e)) if e.op() == Some(op)),
            "{op:?}/{skip}: {res:?}"
        );
    }
}

#[test]
fn destroy_failure_hands_the_region_back_for_a_retry() {
    let region = GuardedRegion::new(48, Locking::Required).unwrap();
    let err = {
        let _f = fault::fail(Op::Protect).arm();
        region.destroy().unwrap_err()
    };
    assert!(matches!(err.error, Error::Memory(ref e) if e.op() == Some(Op::Protect)));
    let region = err.region.expect("region handed back");
    region.destroy().unwrap();

    let region = GuardedRegion::new(48, Locking::Required).unwrap();
    let err = {
        let _f = fault::fail(Op::Unmap).arm();
        region.destroy().unwrap_err()
    };
    assert!(matches!(err.error, Error::Memory(ref e) if e.op() == Some(Op::Unmap)));
    err.region.expect("region handed back").destroy().unwrap();
}

/// Bytes this process has locked: Linux's VmLck; `None` where the OS does not tell (Windows).
fn locked_now() -> Option<u64> {
    let locked = memcall::locked_bytes();
    assert!(
        locked.is_some() || !cfg!(target_os = "linux"),
        "VmLck is readable on Linux"
    );
    locked
}

/// In a child (VmLck is process-wide): corrupting the canary is reported, and the pages are released anyway.
#[test]
fn corrupted_canary_is_reported_and_pages_are_released() {
    if common::scenario().as_deref() == Some("canary") {
        let before = locked_now();
        let region = GuardedRegion::new(100, Locking::Required).unwrap();
        assert!(region.is_locked());
        assert!(locked_now() > before || before.is_none());
        // SAFETY: the byte just below the data is in the canary slack, inside the read-write inner pages.
        unsafe { *region.as_ptr().sub(1) ^= 0x5a };
        let err = region.destroy().unwrap_err();
        assert!(
            matches!(err.error, Error::CanaryCorrupted { len: 100, .. }),
            "{err:?}"
        );
        assert!(err.region.is_none());
        assert_eq!(locked_now(), before, "locked pages released");
        std::process::exit(0);
    }
    let out = common::run_child(
        "corrupted_canary_is_reported_and_pages_are_released",
        "canary",
    );
    common::assert_exit_code(&out, 0);
}

#[test]
fn writing_one_byte_past_the_data_faults() {
    if common::scenario().as_deref() == Some("overflow") {
        let region = GuardedRegion::new(33, Locking::Required).unwrap();
        // SAFETY: deliberately not: this writes the first byte of the trailing guard page, which must fault.
        unsafe { region.as_ptr().add(33).write_volatile(1) };
        common::child_survived();
    }
    common::assert_faulted(&common::run_child(
        "writing_one_byte_past_the_data_faults",
        "overflow",
    ));
}

#[test]
fn reading_the_leading_guard_faults() {
    if common::scenario().as_deref() == Some("underflow") {
        let region = GuardedRegion::new(memcall::page_size(), Locking::Required).unwrap();
        // SAFETY: deliberately not: the data fills its page, so the byte before it is in the leading guard.
        let b = unsafe { region.as_ptr().sub(1).read_volatile() };
        eprintln!("read {b}");
        common::child_survived();
    }
    common::assert_faulted(&common::run_child(
        "reading_the_leading_guard_faults",
        "underflow",
    ));
}

#[test]
fn writing_read_only_data_faults() {
    if common::scenario().as_deref() == Some("frozen") {
        let region = GuardedRegion::new(16, Locking::Required).unwrap();
        region.protect(Protection::ReadOnly).unwrap();
        // SAFETY: deliberately not: the inner pages are read-only, so this write must fault.
        unsafe { region.as_ptr().write_volatile(1) };
        common::child_survived();
    }
    common::assert_faulted(&common::run_child(
        "writing_read_only_data_faults",
        "frozen",
    ));
}

#[test]
fn destroy_checks_the_canary_of_a_no_access_region() {
    let region = GuardedRegion::new(20, Locking::Required).unwrap();
    region.protect(Protection::NoAccess).unwrap();
    region.destroy().unwrap();

    let region = GuardedRegion::new(20, Locking::Required).unwrap();
    // SAFETY: the byte 5 below the data is in the canary slack, inside the read-write inner pages.
    unsafe { *region.as_ptr().sub(5) = region.as_ptr().sub(5).read().wrapping_add(1) };
    region.protect(Protection::NoAccess).unwrap();
    let err = region.destroy().unwrap_err();
    assert!(matches!(err.error, Error::CanaryCorrupted { len: 20, .. }));
    assert!(err.region.is_none(), "freed anyway");
}

/// Virtual memory of this process in kB (`VmSize`): a region left mapped would add at least 12 kB.
#[cfg(target_os = "linux")]
fn mapped_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// In a child (mappings and locked bytes are process-wide): whichever step of `new` fails, nothing stays
/// mapped or locked.
#[cfg(target_os = "linux")]
#[test]
fn failed_new_leaves_nothing_mapped_or_locked() {
    if common::scenario().as_deref() == Some("no_leak") {
        // Warm up everything made once per process (canary pattern, the fault rules' storage).
        GuardedRegion::new(1, Locking::Required)
            .unwrap()
            .destroy()
            .unwrap();
        drop(fault::fail(Op::Lock).after(1000).arm());
        // The warm-up's mapping went to the cache of armed regions: empty it so the baseline has none.
        memguard::trim_cache();
        let (mapped, locked) = (mapped_kb(), locked_now());
        for (op, skip) in [(Op::Lock, 0), (Op::Protect, 0), (Op::Protect, 1)] {
            // Every lock fails while the guard lives (the page caches retry once at the limit).
            let times = if op == Op::Lock { u32::MAX } else { 1 };
            for _ in 0..20 {
                let _f = fault::fail(op).after(skip).times(times).arm();
                assert!(GuardedRegion::new(5000, Locking::Required).is_err());
            }
            assert_eq!(mapped_kb(), mapped, "{op:?}/{skip}: mapped memory");
            assert_eq!(locked_now(), locked, "{op:?}/{skip}: locked bytes");
        }
        std::process::exit(0);
    }
    let out = common::run_child("failed_new_leaves_nothing_mapped_or_locked", "no_leak");
    common::assert_exit_code(&out, 0);
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<GuardedRegion>();
    check::<memguard::LockedBuffer>();
    check::<memguard::Enclave>();
    check::<memguard::Stream>();
    check::<memguard::Coffer>();
}
