//! Allocate, write, protect, lock, unlock, free across the sizes that matter, and argument validation.

use memcall::{page_size, round_to_pages, Error, Protection, Region};

fn sizes() -> Vec<usize> {
    let page = page_size();
    vec![1, page - 1, page, page + 1, 1 << 20]
}

#[test]
fn round_trip_every_size() {
    for size in sizes() {
        let mut region = Region::alloc(size).expect("alloc");
        assert_eq!(region.len(), round_to_pages(size).unwrap());
        assert_eq!(region.as_ptr() as usize % page_size(), 0, "page-aligned");
        // SAFETY: the region is read-write after allocation and this handle is the only user.
        let bytes = unsafe { region.as_mut_slice() };
        assert!(bytes.iter().all(|&b| b == 0), "fresh pages are zeroed");
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        region.lock().expect("lock");
        region.protect(Protection::NoAccess).expect("no-access");
        region.protect(Protection::ReadOnly).expect("read-only");
        // SAFETY: read-only now and nothing writes it while `view` lives.
        let view = unsafe { region.as_slice() };
        assert!(view.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        region.unlock().expect("unlock");
        region.free().expect("free");
    }
}

#[test]
fn hardening_is_reported_on_linux() {
    let region = Region::alloc(1).unwrap();
    let h = region.hardening();
    if cfg!(target_os = "linux") {
        assert!(h.no_dump.is_applied(), "{h:?}");
        assert!(h.no_fork.is_applied(), "{h:?}");
    }
    region.free().unwrap();
}

/// Windows: crash-report exclusion is applied exactly when kernel32 offers `WerRegisterExcludedMemoryBlock`
/// (Windows 10 version 1703 and Server 2016 on; not Wine), and reported `Unsupported` otherwise, never faked.
/// The Unix-only measures are `Unsupported`.
#[cfg(windows)]
#[test]
fn crash_report_exclusion_is_reported_honestly_on_windows() {
    use memcall::Outcome;
    #[link(name = "kernel32")]
    extern "system" {
        fn GetModuleHandleA(name: *const u8) -> *mut std::ffi::c_void;
        fn GetProcAddress(
            module: *mut std::ffi::c_void,
            name: *const u8,
        ) -> *const std::ffi::c_void;
    }
    // SAFETY: NUL-terminated names; kernel32 is loaded in every process and its handle needs no release.
    let offered = unsafe {
        let kernel32 = GetModuleHandleA(c"kernel32.dll".as_ptr().cast());
        !kernel32.is_null()
            && !GetProcAddress(kernel32, c"WerRegisterExcludedMemoryBlock".as_ptr().cast())
                .is_null()
    };
    let region = Region::alloc(1).unwrap();
    let h = region.hardening();
    let expected = if offered {
        Outcome::Applied
    } else {
        Outcome::Unsupported
    };
    assert_eq!(h.crash_report_exclusion, expected, "{h:?}");
    assert_eq!(h.no_dump, Outcome::Unsupported, "{h:?}");
    assert_eq!(h.no_fork, Outcome::Unsupported, "{h:?}");
    region.free().unwrap();
}

/// Windows has no process-wide count of locked bytes: `locked_bytes()` says so with `None`, and the lock limit
/// leaves `locked_now` unknown too.
#[cfg(windows)]
#[test]
fn locked_bytes_are_unknown_on_windows() {
    let region = Region::alloc(1).unwrap();
    region.lock().unwrap();
    assert_eq!(memcall::locked_bytes(), None);
    let limit = memcall::lock_limit().unwrap();
    assert_eq!(limit.locked_now, None);
    assert!(limit.to_string().contains("working-set size"), "{limit}");
    region.unlock().unwrap();
    region.free().unwrap();
}

#[test]
fn wipe_zeroes_and_leaves_region_writable() {
    let mut region = Region::alloc(100).unwrap();
    // SAFETY: read-write and exclusively ours.
    unsafe { region.as_mut_slice() }.fill(0x5A);
    region.protect(Protection::NoAccess).unwrap();
    region.wipe().unwrap();
    // SAFETY: `wipe` left the region read-write.
    assert!(unsafe { region.as_slice() }.iter().all(|&b| b == 0));
    region.free().unwrap();
}

#[test]
fn invalid_lengths_are_typed_errors() {
    for len in [0, usize::MAX, isize::MAX as usize] {
        match Region::alloc(len) {
            Err(Error::InvalidLength { len: l }) => assert_eq!(l, len),
            other => panic!("len {len}: expected InvalidLength, got {other:?}"),
        }
    }
}

#[test]
fn invalid_ranges_are_typed_errors() {
    let page = page_size();
    let region = Region::alloc(2 * page).unwrap();
    let bad = [
        (1, page),
        (0, 0),
        (0, page + 1),
        (page, 2 * page),
        (usize::MAX - page + 1, page),
    ];
    for (offset, len) in bad {
        let err = region
            .protect_range(offset, len, Protection::ReadOnly)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidRange { .. }),
            "{offset}+{len}: {err}"
        );
        assert!(region.lock_range(offset, len).is_err());
        assert!(region.unlock_range(offset, len).is_err());
    }
    region
        .protect_range(page, page, Protection::NoAccess)
        .unwrap();
    region.lock_range(0, page).unwrap();
    region.free().unwrap();
}

#[test]
fn lock_limit_is_readable() {
    let limit = memcall::lock_limit().unwrap();
    if cfg!(target_os = "linux") {
        assert!(limit.exempt.is_some());
        assert!(limit.locked_now.is_some());
        assert!(limit.to_string().contains("RLIMIT_MEMLOCK"));
    }
}
