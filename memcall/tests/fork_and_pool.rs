//! Regions and pools in a forked child, a pool that cannot be told an unlocked region is locked, and error
//! messages that keep addresses out of their text.
//!
//! The fork scenarios run in a re-executed, single-threaded child of the test binary (so `fork` there copies no
//! other test's threads), which forks again and checks, in the grandchild, what a forked child sees.
#![cfg(target_os = "linux")]

use std::process::Command;

use memcall::{Error, LockMode, Op, Protection, Region, RegionPool};

const ENV: &str = "MEMCALL_FORK_CHILD";

/// Entry point of the child processes started below; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(ENV) else {
        return;
    };
    let code = match scenario.as_str() {
        "region_in_child" => region_in_child(),
        "pool_in_child" => pool_in_child(),
        other => {
            eprintln!("unknown scenario {other}");
            99
        }
    };
    std::process::exit(code);
}

fn run_child(scenario: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, scenario)
        .output()
        .expect("spawn child")
}

/// Forks; the grandchild runs `f` under a 10 s alarm and `_exit`s with its code. Returns the code, or 100 +
/// the signal that killed it.
fn in_fork(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: this process is single-threaded (a re-executed test child); the forked child only runs `f` and
    // `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: `alarm` and `_exit` are always safe to call.
        unsafe {
            libc::alarm(10);
            libc::_exit(f());
        }
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-parameter.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFSIGNALED(status) {
        100 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Maps one ordinary read-write page exactly at `addr` (which must be free), fills it with `byte`.
fn ordinary_page_at(addr: usize, byte: u8) -> Option<*mut u8> {
    let page = memcall::page_size();
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it fails with EEXIST instead.
    let ptr = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED || ptr as usize != addr {
        return None;
    }
    let ptr = ptr.cast::<u8>();
    // SAFETY: the page was just mapped read-write for us.
    unsafe { std::ptr::write_bytes(ptr, byte, page) };
    Some(ptr)
}

/// True when the page at `ptr` is still mapped, readable and holds only `byte`.
fn page_holds(ptr: *mut u8, byte: u8) -> bool {
    let page = memcall::page_size();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let addr = ptr as usize;
    let mapped = maps.lines().any(|l| {
        let (range, rest) = l.split_once(' ').unwrap();
        let (s, e) = range.split_once('-').unwrap();
        let (s, e) = (
            usize::from_str_radix(s, 16).unwrap(),
            usize::from_str_radix(e, 16).unwrap(),
        );
        s <= addr && addr + page <= e && rest.starts_with("rw")
    });
    // SAFETY: read only when the page is mapped read-write (checked just above).
    mapped
        && unsafe { std::slice::from_raw_parts(ptr, page) }
            .iter()
            .all(|&b| b == byte)
}

/// A region made by the parent, in a forked child: every call that would touch the range fails with
/// `Error::Forked`, and `free`/`Drop` forget the handle. The child's own page placed exactly where the
/// parent's region was survives all of it.
fn region_in_child() -> i32 {
    let region = Region::alloc(1).unwrap();
    region.lock().unwrap();
    let addr = region.as_ptr() as usize;
    let other = Region::alloc(1).unwrap();
    let code = in_fork(move || {
        // The parent's pages are not here (no-fork advice): the child puts its own page in the hole.
        let Some(mine) = ordinary_page_at(addr, 0x5A) else {
            return 2;
        };
        if !region.is_forked() {
            return 3;
        }
        let refused = [
            region.protect(Protection::NoAccess),
            region.lock(),
            region.unlock(),
            region.wipe(),
            region.protect_range(0, memcall::page_size(), Protection::ReadOnly),
        ]
        .into_iter()
        .all(|r| matches!(r, Err(Error::Forked)));
        if !refused {
            return 4;
        }
        if region.free().is_err() {
            return 5;
        }
        drop(other);
        if !page_holds(mine, 0x5A) {
            return 6;
        }
        // A region the child maps itself works as usual.
        let own = Region::alloc(1).unwrap();
        if own.is_forked() || own.lock().is_err() || own.free().is_err() {
            return 7;
        }
        0
    });
    if code != 0 {
        eprintln!("region_in_child: forked child returned {code}");
    }
    code
}

/// Pools in a forked child start empty: nothing of the parent's is handed out, trimmed or unmapped, even
/// when the child's own pages sit where the parent's cached regions were.
fn pool_in_child() -> i32 {
    let page = memcall::page_size();
    let pool = RegionPool::new(64 * page);
    let global = RegionPool::global();
    let mut parent_addrs = Vec::new();
    for p in [&pool, global] {
        let held: Vec<_> = (0..4)
            .map(|_| p.acquire(page, LockMode::Required).unwrap())
            .collect();
        for a in held {
            parent_addrs.push(a.region.as_ptr() as usize);
            p.release(a.region, a.locked).unwrap();
        }
    }
    if pool.cached_bytes() != 4 * page || global.cached_bytes() < 4 * page {
        return 2;
    }
    let code = in_fork(|| {
        if pool.cached_bytes() != 0 || global.cached_bytes() != 0 {
            return 3;
        }
        let mine: Vec<_> = parent_addrs
            .iter()
            .filter_map(|&a| ordinary_page_at(a, 0xA5))
            .collect();
        if mine.len() != parent_addrs.len() {
            return 4;
        }
        if pool.trim() != 0 || memcall::pool::trim_all() != 0 {
            return 5;
        }
        for p in [&pool, global] {
            let a = p.acquire(page, LockMode::Required).unwrap();
            if parent_addrs.contains(&(a.region.as_ptr() as usize)) || a.region.is_forked() {
                return 6;
            }
            p.release(a.region, a.locked).unwrap();
            if p.cached_bytes() != page {
                return 7;
            }
        }
        drop(pool);
        if memcall::pool::trim_all() != page {
            return 8;
        }
        if !mine.iter().all(|&p| page_holds(p, 0xA5)) {
            return 9;
        }
        0
    });
    if code != 0 {
        eprintln!("pool_in_child: forked child returned {code}");
    }
    code
}

#[test]
fn a_parents_region_in_a_forked_child_is_refused_and_forgotten_never_unmapped() {
    let out = run_child("region_in_child");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn pools_in_a_forked_child_start_empty_and_never_touch_the_parents_regions() {
    let out = run_child("pool_in_child");
    assert!(out.status.success(), "{out:?}");
}

/// The `Locked:` figure of `/proc/self/smaps` for the mapping containing `addr`, in kB.
fn smaps_locked_kb(addr: usize) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((s, e)) = range.split_once('-') {
                if let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16))
                {
                    inside = s <= addr && addr < e;
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("Locked:") {
                return v.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn a_region_knows_whether_it_is_locked() {
    let region = Region::alloc(2 * memcall::page_size()).unwrap();
    assert!(!region.is_locked());
    region.lock_range(0, memcall::page_size()).unwrap();
    assert!(!region.is_locked(), "a partial lock is not a locked region");
    region.lock().unwrap();
    assert!(region.is_locked());
    region.unlock_range(0, memcall::page_size()).unwrap();
    assert!(!region.is_locked(), "any unlock clears it");
    region.free().unwrap();
}

#[test]
fn an_unlocked_region_released_as_locked_is_never_handed_out_as_locked() {
    let page = memcall::page_size();
    let pool = RegionPool::new(16 * page);
    // Never locked, and claimed locked.
    let never = Region::alloc(page).unwrap();
    pool.release(never, true).unwrap();
    // Locked, then unlocked, and claimed locked.
    let unlocked = pool.acquire(page, LockMode::Required).unwrap();
    unlocked.region.unlock().unwrap();
    pool.release(unlocked.region, true).unwrap();
    assert_eq!(pool.cached_bytes(), 0, "an unlocked region was cached");
    for _ in 0..4 {
        let next = pool.acquire(page, LockMode::Required).unwrap();
        assert!(next.locked && next.region.is_locked());
        let addr = next.region.as_ptr() as usize;
        let kb = smaps_locked_kb(addr).expect("the region is mapped");
        assert!(kb > 0, "handed out as locked, smaps says Locked: {kb} kB");
        pool.release(next.region, next.locked).unwrap();
    }
    pool.trim();
}

/// One error of every variant, each with an address a layout leak would show.
fn every_error() -> Vec<Error> {
    let addr = 0x7f12_3456_7000usize;
    let io = || std::io::Error::from_raw_os_error(libc::ENOMEM);
    let mut errors = vec![
        Error::InvalidLength { len: 0 },
        Error::InvalidRange {
            offset: 4096,
            len: 8192,
            region_len: 4096,
        },
        Error::Forked,
    ];
    errors.extend(Op::ALL.iter().map(|&op| Error::Os {
        op,
        addr,
        len: 4096,
        source: io(),
    }));
    errors.push(Error::LockLimit {
        addr,
        len: 4096,
        limit: None,
        source: io(),
    });
    errors.push(Error::LockLimit {
        addr,
        len: 4096,
        limit: memcall::lock_limit().ok().map(Box::new),
        source: io(),
    });
    errors
}

#[test]
fn error_messages_never_show_addresses_but_debug_keeps_them() {
    for e in every_error() {
        let text = e.to_string();
        assert!(!text.contains("0x"), "address in the message: {text}");
        assert!(
            !text.contains("7f1234567000"),
            "address in the message: {text}"
        );
        let io_text = std::io::Error::from(e).to_string();
        assert!(!io_text.contains("0x"), "address in the message: {io_text}");
    }
    for e in every_error() {
        if let Error::Os { addr, .. } | Error::LockLimit { addr, .. } = e {
            let debug = format!("{e:?}");
            assert!(debug.contains(&addr.to_string()), "{debug}");
        }
    }
    // A real failure, too.
    let region = Region::alloc(1).unwrap();
    let err = region
        .protect_range(1, 1, Protection::ReadOnly)
        .unwrap_err();
    assert!(!err.to_string().contains("0x"), "{err}");
}
