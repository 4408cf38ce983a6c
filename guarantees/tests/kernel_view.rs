//! What the kernel itself says about a secret's pages (`/proc/self/smaps`), for both flavours and for memguard
//! locked buffers: locked (`lo`, guarantee 1), left out of core dumps (`dd`, guarantee 2), not inherited by a
//! forked child (`dc`, guarantee 5), no access at rest and read-only inside the closure (guarantee 3). Each
//! secret's own protection report must agree with the kernel.
#![cfg(target_os = "linux")]

mod common;

use common::{is_pattern, Flavour, Kind};
use guarantees::proc_stats::mapping_flags_at;
use securememory::SecretExtensions;

fn assert_hardened(what: &str, flags: &[String]) {
    for (flag, meaning) in [
        ("lo", "locked in RAM"),
        ("dd", "excluded from core dumps"),
        ("dc", "not inherited by fork"),
    ] {
        assert!(
            flags.iter().any(|f| f == flag),
            "{what}: the kernel does not see its pages as {meaning} (VmFlags {flags:?})"
        );
    }
}

#[test]
fn the_kernel_sees_every_secret_locked_undumpable_unforkable_and_no_access_at_rest() {
    for flavour in Flavour::ALL {
        for (id, len) in [(1u64, 32usize), (2, 5000), (3, 40_000)] {
            let what = format!("{} secret of {len} bytes", flavour.name());
            let secret = common::pattern_secret(flavour, id, len).unwrap();
            let (addr, inside) = secret
                .with_bytes(|b| {
                    assert!(is_pattern(id, b));
                    let addr = b.as_ptr() as usize;
                    Ok((addr, mapping_flags_at(addr).map(|(m, _)| m.perms)))
                })
                .unwrap();
            let inside = inside.expect("the secret's pages are mapped");
            assert!(
                inside.starts_with("r--"),
                "{what}: pages are {inside} inside with_bytes, not read-only"
            );
            let (mapping, flags) = mapping_flags_at(addr).expect("the secret's pages are mapped");
            assert!(
                mapping.perms.starts_with("---"),
                "{what}: pages are {} at rest, not no-access",
                mapping.perms
            );
            assert_hardened(&what, &flags);
            let report = secret.protections();
            assert!(
                report.locked && report.no_dump.is_applied() && report.no_fork.is_applied(),
                "{what}: the protection report disagrees with the kernel: {report:?}"
            );
            secret.close().unwrap();
        }
    }
}

#[test]
fn the_kernel_sees_locked_buffers_locked_undumpable_and_unforkable() {
    for len in [32usize, 5000, 40_000] {
        let what = format!("locked buffer of {len} bytes");
        let buffer = Kind::LockedBuffer.hold_pattern(4, len).unwrap();
        let addr = buffer.with_bytes(|b| b.as_ptr() as usize).unwrap();
        let (mapping, flags) = mapping_flags_at(addr).expect("the buffer's pages are mapped");
        // Frozen, as Go's NewBufferFromBytes leaves it: readable at rest, never writable.
        assert!(
            mapping.perms.starts_with("r--"),
            "{what}: pages are {} while frozen",
            mapping.perms
        );
        assert_hardened(&what, &flags);
        buffer.close().unwrap();
    }
}
