//! A sealed secret's ciphertext is authenticated and bound to the secret: a flipped bit anywhere in
//! `tag || ciphertext`, or another secret's `tag || ciphertext` swapped in, gives `Error::Integrity`, the
//! closure is not run and nothing is returned; the secret is not harmed otherwise (undoing the change makes it
//! readable again) and can be closed. Each secret has its own identity (nonce), so equal plaintexts seal to
//! different ciphertexts.
#![cfg(target_os = "linux")]

mod common;

use common::{is_pattern, sealed_pattern};
use securememory::sealed::SealedSecret;
use securememory::{Error, Secret, SecretExtensions};

/// Reads `secret`, recording whether the closure ran.
fn read(secret: &SealedSecret) -> (securememory::Result<Vec<u8>>, bool) {
    let mut ran = false;
    let result = secret.with_bytes(|b| {
        ran = true;
        Ok(b.to_vec())
    });
    (result, ran)
}

fn assert_refused(secret: &SealedSecret, what: &str) {
    let (result, ran) = read(secret);
    assert!(
        matches!(result, Err(Error::Integrity)),
        "{what}: {result:?}"
    );
    assert!(!ran, "{what}: the closure ran on a forged secret");
    assert!(
        matches!(
            secret.with_bytes_func(|b| Ok(b.to_vec())),
            Err(Error::Integrity)
        ),
        "{what}: with_bytes_func"
    );
    assert_eq!(secret.accessors(), 0, "{what}");
    assert!(!secret.is_closed(), "{what}");
}

#[test]
fn a_flipped_bit_anywhere_is_an_integrity_error_and_the_closure_never_runs() {
    for len in [1, 32, 100, 5000] {
        let secret = sealed_pattern(len as u64, len).unwrap();
        let total = 16 + len;
        // Bits of the tag, of the first, middle and last ciphertext byte.
        for byte in [0, 15, 16, 16 + len / 2, total - 1] {
            for bit in [0, 7] {
                let flip = |b: &mut [u8]| b[byte] ^= 1 << bit;
                secret.tamper(flip).unwrap();
                assert_refused(&secret, &format!("{len} bytes, bit {bit} of byte {byte}"));
                secret.tamper(flip).unwrap();
                assert!(
                    secret
                        .with_bytes(|b| Ok(is_pattern(len as u64, b)))
                        .unwrap(),
                    "{len} bytes: unreadable after the flip was undone"
                );
            }
        }
        secret.close().unwrap();
    }
}

#[test]
fn swapped_ciphertexts_are_integrity_errors_not_the_other_secret() {
    for len in [16, 32, 4096] {
        let a = sealed_pattern(1, len).unwrap();
        let b = sealed_pattern(2, len).unwrap();
        let (id_a, sealed_a) = a.sealed_parts().unwrap();
        let (id_b, sealed_b) = b.sealed_parts().unwrap();
        assert_ne!(id_a, id_b);
        a.tamper(|bytes| bytes.copy_from_slice(&sealed_b)).unwrap();
        b.tamper(|bytes| bytes.copy_from_slice(&sealed_a)).unwrap();
        assert_refused(&a, &format!("{len} bytes: a holding b's ciphertext"));
        assert_refused(&b, &format!("{len} bytes: b holding a's ciphertext"));
        // Swapped back, each reads its own bytes again.
        a.tamper(|bytes| bytes.copy_from_slice(&sealed_a)).unwrap();
        b.tamper(|bytes| bytes.copy_from_slice(&sealed_b)).unwrap();
        assert!(a.with_bytes(|x| Ok(is_pattern(1, x))).unwrap());
        assert!(b.with_bytes(|x| Ok(is_pattern(2, x))).unwrap());
        a.close().unwrap();
        b.close().unwrap();
    }
}

/// Equal plaintexts seal to unrelated ciphertexts (each secret its own nonce), so copying one secret's
/// ciphertext over another's is caught even when their plaintexts are equal.
#[test]
fn equal_plaintexts_seal_differently_and_cannot_be_swapped() {
    let a = sealed_pattern(7, 32).unwrap();
    let b = sealed_pattern(7, 32).unwrap();
    let (_, sealed_a) = a.sealed_parts().unwrap();
    let (_, sealed_b) = b.sealed_parts().unwrap();
    assert_ne!(sealed_a, sealed_b);
    b.tamper(|bytes| bytes.copy_from_slice(&sealed_a)).unwrap();
    assert_refused(&b, "b holding a's ciphertext of the same plaintext");
    assert!(a.with_bytes(|x| Ok(is_pattern(7, x))).unwrap());
}

/// A forged secret can still be closed and dropped, and the refusal leaves no window open behind it (the
/// scratch copy is released): a reader on another thread afterwards gets the same error.
#[test]
fn a_forged_secret_closes_cleanly() {
    let secret = std::sync::Arc::new(sealed_pattern(3, 64).unwrap());
    secret.tamper(|b| b[20] ^= 0x10).unwrap();
    assert_refused(&secret, "flipped");
    let other = std::sync::Arc::clone(&secret);
    let (result, ran) = std::thread::spawn(move || read(&other)).join().unwrap();
    assert!(matches!(result, Err(Error::Integrity)) && !ran);
    assert!(secret.reader().is_ok_and(|mut r| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut out).is_err() && out.is_empty()
    }));
    secret.close().unwrap();
    assert!(matches!(read(&secret).0, Err(Error::Closed)));
}
