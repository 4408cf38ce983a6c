//! The baselines every figure is divided by, measured in the same run: the mprotect pair on locked pages and a
//! 32-byte getrandom.

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
