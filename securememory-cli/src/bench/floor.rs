//! The baselines every figure is divided by, measured in the same run: the mprotect pair on locked pages, a
//! 32-byte getrandom, and the AEADs the encrypted types use (XChaCha20-Poly1305 under memguard's enclaves and
//! streams, AES-256-GCM under sealed secrets: the crypto floors).

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::XChaCha20Poly1305;
use memcall::{Protection, Region};

use super::stats::Workload;

/// mprotect(READ) + mprotect(NONE) on a locked region of `pages` pages whose pages are resident (the state a
/// live secret's pages are in).
pub struct FloorPair {
    region: Region,
}

impl FloorPair {
    pub fn new(pages: usize) -> Result<FloorPair, String> {
        let region = Region::alloc(pages * memcall::page_size()).map_err(|e| e.to_string())?;
        region
            .lock()
            .map_err(|e| format!("the floor needs a locked region: {e}"))?;
        // Resident pages, as a live secret's are.
        proofs::sys::make_resident(&region).map_err(|e| e.to_string())?;
        region
            .protect(Protection::NoAccess)
            .map_err(|e| e.to_string())?;
        Ok(FloorPair { region })
    }
}

impl Workload for FloorPair {
    fn run(&mut self, iters: u64) -> Result<(), String> {
        for _ in 0..iters {
            self.region
                .protect(Protection::ReadOnly)
                .map_err(|e| e.to_string())?;
            self.region
                .protect(Protection::NoAccess)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// One getrandom(2) call for 32 bytes.
pub struct Getrandom32 {
    buf: [u8; 32],
}

impl Getrandom32 {
    pub fn new() -> Getrandom32 {
        Getrandom32 { buf: [0; 32] }
    }
}

impl Workload for Getrandom32 {
    fn run(&mut self, iters: u64) -> Result<(), String> {
        for _ in 0..iters {
            proofs::sys::getrandom(&mut self.buf).map_err(|e| e.to_string())?;
            std::hint::black_box(&self.buf);
        }
        Ok(())
    }
}

/// XChaCha20-Poly1305 seal and open of `len` bytes in chunks of `chunk` bytes, each with its own nonce and
/// associated data: the crypto floor under memguard's `Enclave` (one 32-byte chunk) and `Stream` (1 MiB in the
/// stream's chunk size). The construction and sizes are the library's; nothing else is timed.
pub struct AeadSealOpen {
    cipher: XChaCha20Poly1305,
    buf: Vec<u8>,
    chunk: usize,
}

impl AeadSealOpen {
    pub fn new(len: usize, chunk: usize) -> AeadSealOpen {
        AeadSealOpen {
            cipher: XChaCha20Poly1305::new(&[7u8; 32].into()),
            buf: vec![0x5a; len],
            chunk,
        }
    }
}

impl Workload for AeadSealOpen {
    fn run(&mut self, iters: u64) -> Result<(), String> {
        let mut nonce = [0u8; 24];
        // A binding the size of the stream's: kind, 16-byte id, chunk index.
        let mut ad = [0u8; 25];
        for i in 0..iters {
            for (n, chunk) in self.buf.chunks_mut(self.chunk).enumerate() {
                nonce[..8].copy_from_slice(&i.to_le_bytes());
                ad[17..].copy_from_slice(&(n as u64).to_le_bytes());
                let tag = self
                    .cipher
                    .encrypt_in_place_detached(&nonce.into(), &ad, chunk)
                    .map_err(|_| "seal failed".to_owned())?;
                self.cipher
                    .decrypt_in_place_detached(&nonce.into(), &ad, chunk, &tag)
                    .map_err(|_| "open failed".to_owned())?;
            }
            std::hint::black_box(&self.buf);
        }
        Ok(())
    }
}

/// AES-256-GCM open of `len` bytes, straight from the `aes-gcm` crate: the ciphertext is copied into the
/// output buffer and decrypted and authenticated there (an out-of-place open, which is what reading a sealed
/// secret into scratch pages has to do at least). The crypto floor under a sealed secret's access.
pub struct AesGcmOpen {
    cipher: Aes256Gcm,
    sealed: Vec<u8>,
    tag: aes_gcm::Tag,
    out: Vec<u8>,
}

/// Nonce and associated data of the reference open (an identity and a length, as sealing binds).
const GCM_NONCE: [u8; 12] = [3; 12];
const GCM_AD: [u8; 16] = [9; 16];

impl AesGcmOpen {
    pub fn new(len: usize) -> Result<AesGcmOpen, String> {
        let cipher = Aes256Gcm::new(&[7u8; 32].into());
        let mut sealed = vec![0x5a; len];
        let tag = cipher
            .encrypt_in_place_detached(&GCM_NONCE.into(), &GCM_AD, &mut sealed)
            .map_err(|_| "AES-256-GCM seal failed".to_owned())?;
        Ok(AesGcmOpen {
            cipher,
            sealed,
            tag,
            out: vec![0; len],
        })
    }
}

impl Workload for AesGcmOpen {
    fn run(&mut self, iters: u64) -> Result<(), String> {
        for _ in 0..iters {
            self.out.copy_from_slice(&self.sealed);
            self.cipher
                .decrypt_in_place_detached(&GCM_NONCE.into(), &GCM_AD, &mut self.out, &self.tag)
                .map_err(|_| "AES-256-GCM open failed".to_owned())?;
            std::hint::black_box(&self.out);
        }
        Ok(())
    }
}
