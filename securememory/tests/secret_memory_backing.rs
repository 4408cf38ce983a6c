//! The backing choice: secret memory where the kernel has none is a typed error that says so, and the named
//! best-effort backing falls back to anonymous pages and says so in the protection report. The kernel's
//! refusal is injected (`ENOSYS` on the next map), so this runs the same on kernels with and without secret
//! memory.
#![cfg(target_os = "linux")]

use memcall::{fault, Op};
use securememory::{
    Backing, Error, MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretFactory,
};

const ENOSYS: i32 = 38;

/// Makes one secret from a source.
type Make = Box<dyn Fn(&mut [u8]) -> securememory::Result<Box<dyn Secret>>>;

#[test]
fn secret_memory_without_kernel_support_is_a_typed_error_that_says_what_to_do() {
    let factories: [Make; 2] = [
        Box::new(|s| {
            ProtectedMemorySecretFactory::builder()
                .backing(Backing::SecretMem)
                .build()
                .new(s)
                .map(|s| Box::new(s) as Box<dyn Secret>)
        }),
        Box::new(|s| {
            MemguardSecretFactory::builder()
                .backing(Backing::SecretMem)
                .build()
                .new(s)
                .map(|s| Box::new(s) as Box<dyn Secret>)
        }),
    ];
    for make in factories {
        let mut source = [9u8; 32];
        let err = {
            let _refused = fault::fail(Op::Map).errno(ENOSYS).arm();
            match make(&mut source) {
                Ok(_) => panic!("secret memory was refused, yet a secret was made"),
                Err(e) => e,
            }
        };
        assert!(
            matches!(&err, Error::Memory(m) if m.is_secret_mem_unavailable()),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("memfd_secret") && text.contains("secretmem.enable"),
            "{text}"
        );
        assert_eq!(source, [9u8; 32], "the source is left as it was");
    }
}

#[test]
fn the_best_effort_backing_falls_back_to_anonymous_pages_and_reports_it() {
    let protected = ProtectedMemorySecretFactory::builder()
        .backing(Backing::SecretMemOrAnonymous)
        .build();
    let memguard = MemguardSecretFactory::builder()
        .backing(Backing::SecretMemOrAnonymous)
        .build();
    assert_eq!(protected.backing(), Backing::SecretMemOrAnonymous);
    let first: Box<dyn Secret> = {
        let _refused = fault::fail(Op::Map).errno(ENOSYS).arm();
        Box::new(protected.new(&mut [1u8; 32]).unwrap())
    };
    // Once refused, the process does not ask the kernel again.
    let second: Box<dyn Secret> = Box::new(memguard.new(&mut [2u8; 32]).unwrap());
    for (secret, byte) in [(first, 1u8), (second, 2u8)] {
        let report = secret.protections();
        assert_eq!(report.backing, memcall::Backing::Anonymous, "{report}");
        assert!(report.secret_memory_fallback && report.locked, "{report}");
        assert!(
            report
                .to_string()
                .ends_with("backing: anonymous (secret memory unavailable: best-effort fallback)"),
            "{report}"
        );
        let mut same = false;
        secret
            .with_bytes_dyn(&mut |b| {
                same = b == [byte; 32];
                Ok(())
            })
            .unwrap();
        assert!(same);
        secret.close().unwrap();
    }
}
