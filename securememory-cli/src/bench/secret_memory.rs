//! Workloads on the secret-memory backing (`Backing::SecretMem`), each compared with the same workload on the
//! default anonymous backing.

use std::hint::black_box;

use securememory::{
    Backing, MemguardSecretFactory, ProtectedMemorySecretFactory, Secret, SecretExtensions,
    SecretFactory,
};

use super::stats::Workload;

type Built = Result<Box<dyn Workload>, String>;

const SECRET_LEN: usize = 32;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn protected() -> ProtectedMemorySecretFactory {
    ProtectedMemorySecretFactory::builder()
        .backing(Backing::SecretMem)
        .build()
}

fn memguard() -> MemguardSecretFactory {
    MemguardSecretFactory::builder()
        .backing(Backing::SecretMem)
        .build()
}

fn with_bytes<F: SecretFactory + 'static>(factory: F) -> Built {
    let secret = factory.create_random(SECRET_LEN).map_err(text)?;
    Ok(Box::new(move |iters| {
        for _ in 0..iters {
            secret.with_bytes(|b| Ok(black_box(b[0]))).map_err(text)?;
        }
        Ok(())
    }))
}

/// New and close in a loop; the secret-memory pool is warmed (an area mapped) before timing starts.
fn new_close<F: SecretFactory + 'static>(factory: F) -> Built {
    factory
        .new(&mut [0x5a; SECRET_LEN])
        .map_err(text)?
        .close()
        .map_err(text)?;
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

pub fn with_bytes_protected() -> Built {
    with_bytes(protected())
}

pub fn with_bytes_memguard() -> Built {
    with_bytes(memguard())
}

pub fn new_close_protected() -> Built {
    new_close(protected())
}

pub fn new_close_memguard() -> Built {
    new_close(memguard())
}
