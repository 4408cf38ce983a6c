//! Workloads on the library's own types. Each constructor sets up outside the timed loop; each operation is
//! what an application does (access a secret, create and close one, seal and open an enclave, stream 1 MiB).

use std::hint::black_box;
use std::io::Read;

use memcall::Region;
use memguard::{Enclave, LockedBuffer};
use securememory::sealed::SealedSecretFactory;
use securememory::stream::SecretStream;
use securememory::{
    MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretExtensions, SecretFactory,
};

use super::stats::Workload;

type Built = Result<Box<dyn Workload>, String>;

const SECRET_LEN: usize = 32;
const MIB: usize = 1 << 20;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `iters` accesses to `secret`, each reading the first byte inside the access window.
fn access<S: Secret + ?Sized>(secret: &S, iters: u64) -> Result<(), String> {
    for _ in 0..iters {
        secret.with_bytes(|b| Ok(black_box(b[0]))).map_err(text)?;
    }
    Ok(())
}

fn with_bytes<F: SecretFactory + 'static>(factory: F, len: usize) -> Built {
    let secret = factory.create_random(len).map_err(text)?;
    Ok(Box::new(move |iters| access(&secret, iters)))
}

pub fn with_bytes_protected() -> Built {
    with_bytes(ProtectedMemorySecretFactory::new(), SECRET_LEN)
}

pub fn with_bytes_memguard() -> Built {
    with_bytes(MemguardSecretFactory::new(), SECRET_LEN)
}

pub fn with_bytes_1mib() -> Built {
    with_bytes(ProtectedMemorySecretFactory::new(), MIB)
}

pub fn with_bytes_sealed() -> Built {
    with_bytes(SealedSecretFactory::new(), SECRET_LEN)
}

/// A 1 MiB sealed secret: every access decrypts (and authenticates) the whole MiB into scratch pages.
pub fn with_bytes_sealed_1mib() -> Built {
    with_bytes(SealedSecretFactory::new(), MIB)
}

/// Two threads accessing one secret; the batch's ns/op is wall time over the operations of both.
pub fn with_bytes_two_threads() -> Built {
    two_threads(ProtectedMemorySecretFactory::new())
}

/// As [`with_bytes_two_threads`] on one sealed secret.
pub fn with_bytes_sealed_two_threads() -> Built {
    two_threads(SealedSecretFactory::new())
}

fn two_threads<F: SecretFactory>(factory: F) -> Built
where
    F::Secret: Sync + 'static,
{
    let secret = factory.create_random(SECRET_LEN).map_err(text)?;
    Ok(Box::new(move |iters: u64| {
        let half = iters / 2;
        std::thread::scope(|s| {
            let other = s.spawn(|| access(&secret, half));
            let mine = access(&secret, iters - half);
            let theirs = other
                .join()
                .unwrap_or_else(|_| Err("the second thread panicked".to_owned()));
            mine.and(theirs)
        })
    }))
}

fn new_close<F: SecretFactory + 'static>(factory: F) -> Built {
    Ok(Box::new(move |iters| {
        for _ in 0..iters {
            let mut source = [0x5a; SECRET_LEN];
            factory
                .new(&mut source)
                .map_err(text)?
                .close()
                .map_err(text)?;
        }
        Ok(())
    }))
}

pub fn new_close_protected() -> Built {
    new_close(ProtectedMemorySecretFactory::new())
}

pub fn new_close_memguard() -> Built {
    new_close(MemguardSecretFactory::new())
}

fn create_random_close<F: SecretFactory + 'static>(factory: F) -> Built {
    Ok(Box::new(move |iters| {
        for _ in 0..iters {
            factory
                .create_random(SECRET_LEN)
                .map_err(text)?
                .close()
                .map_err(text)?;
        }
        Ok(())
    }))
}

pub fn create_random_close_protected() -> Built {
    create_random_close(ProtectedMemorySecretFactory::new())
}

pub fn create_random_close_memguard() -> Built {
    create_random_close(MemguardSecretFactory::new())
}

pub fn new_close_sealed() -> Built {
    new_close(SealedSecretFactory::new())
}

pub fn create_random_close_sealed() -> Built {
    create_random_close(SealedSecretFactory::new())
}

pub fn buffer_new_destroy() -> Built {
    Ok(Box::new(|iters| {
        for _ in 0..iters {
            LockedBuffer::new(SECRET_LEN)
                .map_err(text)?
                .destroy()
                .map_err(text)?;
        }
        Ok(())
    }))
}

/// Seal 32 bytes into an enclave, open it into a buffer, destroy the buffer.
pub fn enclave_seal_open() -> Built {
    Ok(Box::new(|iters| {
        for _ in 0..iters {
            let mut plain = [0x5a; SECRET_LEN];
            let enclave = Enclave::new(&mut plain).map_err(text)?;
            let mut opened = enclave.open().map_err(text)?;
            black_box(opened.size());
            opened.destroy().map_err(text)?;
        }
        Ok(())
    }))
}

/// memguard's `Stream` (Go memguard's): write 1 MiB, read it all back.
pub fn stream_1mib() -> Built {
    let mut data = vec![0x5a; MIB];
    let mut out = vec![0; MIB];
    let mut stream = memguard::Stream::new();
    Ok(Box::new(move |iters| {
        for _ in 0..iters {
            stream.write_moving(&mut data).map_err(text)?;
            stream.read_exact(&mut out).map_err(text)?;
            black_box(&out);
        }
        Ok(())
    }))
}

/// securememory's `SecretStream` (chunks in protected pages): write 1 MiB, read it all back.
pub fn secret_stream_1mib() -> Built {
    let data = vec![0x5a; MIB];
    let mut out = vec![0; MIB];
    Ok(Box::new(move |iters| {
        for _ in 0..iters {
            let mut stream = SecretStream::new();
            stream.write_secret(&data).map_err(text)?;
            stream.read_exact(&mut out).map_err(text)?;
            black_box(&out);
        }
        Ok(())
    }))
}

/// A fresh one-page region: map, harden, lock, then wipe and unmap. The page-layer cost under every secret.
pub fn region_alloc_lock_free() -> Built {
    Ok(Box::new(|iters: u64| {
        for _ in 0..iters {
            let r = Region::alloc(SECRET_LEN).map_err(text)?;
            r.lock().map_err(text)?;
            r.free().map_err(|e| e.error.to_string())?;
        }
        Ok(())
    }))
}
