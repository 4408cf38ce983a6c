//! What `/proc/self` says about this process's memory: locked bytes, resident size, mappings, and the memory
//! itself (read through `/proc/self/mem`, which reads no-access pages too).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::core_file::MarkerSet;

/// A `kB` field of `/proc/self/status` in bytes.
///
/// # Panics
/// When the field is missing (every Linux kernel this project supports has the ones used here).
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kb * 1024
}

/// Bytes this process has locked (`VmLck`).
pub fn locked() -> u64 {
    status_bytes("VmLck")
}

/// Resident set size in bytes (`VmRSS`).
pub fn resident() -> u64 {
    status_bytes("VmRSS")
}

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// `rwxp`-style permissions.
    pub perms: String,
    /// The file or pseudo-name (`[heap]`, `[stack]`), empty for anonymous memory.
    pub name: String,
}

/// The mappings of this process now.
pub fn mappings() -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.to_owned();
            let name = fields.nth(3).unwrap_or_default().to_owned();
            Some(Mapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
                perms,
                name,
            })
        })
        .collect()
}

/// How many mappings this process has.
pub fn mapping_count() -> usize {
    mappings().len()
}

/// How many mappings are excluded from core dumps (`dd` in `/proc/self/smaps` VmFlags): secret pages, pooled
/// pages and little else, so a leak of secret mappings shows here even when the allocator's own mappings move.
pub fn no_dump_mapping_count() -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    smaps
        .lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .filter(|flags| flags.split_whitespace().any(|f| f == "dd"))
        .count()
}

/// The process-wide figures a leak would move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// `VmLck` in bytes.
    pub locked: u64,
    /// `VmRSS` in bytes.
    pub resident: u64,
    /// Lines of `/proc/self/maps`.
    pub mappings: usize,
    /// Mappings flagged `dd` (no-dump).
    pub no_dump_mappings: usize,
}

impl Footprint {
    /// The figures now.
    pub fn now() -> Footprint {
        Footprint {
            locked: locked(),
            resident: resident(),
            mappings: mapping_count(),
            no_dump_mappings: no_dump_mapping_count(),
        }
    }
}

/// Pseudo-mappings that `/proc/self/mem` cannot or need not read.
fn unreadable(m: &Mapping) -> bool {
    m.name.starts_with("[vvar") || m.name == "[vsyscall]"
}

/// Reservations larger than this with no access at all are address space nobody has written (allocator arenas,
/// thread-stack reserves); reading them would only fault in zero pages.
const UNTOUCHED_RESERVATION: usize = 64 << 20;

/// Scans every mapping of this process, no-access ones included, for the markers of `set`, and returns the
/// indices found with the mapping each was found in. Reading goes through `/proc/self/mem`, which ignores page
/// protection, so a secret that sits in mapped memory is found wherever it is.
pub fn scan_own_memory(set: &MarkerSet) -> Vec<(usize, Mapping)> {
    const CHUNK: usize = 1 << 20;
    let mem = File::open("/proc/self/mem").expect("open /proc/self/mem");
    let mut buf = vec![0u8; CHUNK + 64];
    let mut hits = Vec::new();
    let maps = mappings();
    for m in &maps {
        if unreadable(m) || (m.perms.starts_with("---") && m.end - m.start > UNTOUCHED_RESERVATION)
        {
            continue;
        }
        let mut found = vec![false; set.len()];
        let mut at = m.start;
        while at < m.end {
            // Overlap chunks by 64 bytes so a marker that straddles two chunks is still seen.
            let len = (m.end - at).min(CHUNK + 64);
            let n = read_fully(&mem, &mut buf[..len], at);
            set.scan(&buf[..n], &mut found);
            if len < CHUNK + 64 {
                break;
            }
            at += CHUNK;
        }
        if found.contains(&true) {
            // The buffer now holds what was found; clear it so scanning the heap it lives in does not find it again.
            buf.iter_mut().for_each(|b| *b = 0);
        }
        hits.extend(
            found
                .iter()
                .enumerate()
                .filter(|(_, f)| **f)
                .map(|(i, _)| (i, m.clone())),
        );
    }
    hits
}

/// Reads as much of `[at, at + buf.len())` as the kernel gives; stops at the first unreadable byte.
fn read_fully(mem: &File, buf: &mut [u8], at: usize) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match mem.read_at(&mut buf[done..], (at + done) as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}
