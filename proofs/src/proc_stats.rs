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
///
/// # Panics
/// When `/proc/self/maps` cannot be read.
pub fn mappings() -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().filter_map(parse_mapping).collect()
}

/// A line of `/proc/self/maps` (or a mapping's first line in `smaps`).
fn parse_mapping(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    Some(Mapping {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        perms: fields.next()?.to_owned(),
        name: fields.nth(3).unwrap_or_default().to_owned(),
    })
}

/// How many mappings this process has, of every kind (the allocator's arenas and thread stacks included, so
/// it moves with threads: never compare it to prove the library leaked nothing; see [`Footprint`]).
pub fn mapping_count() -> usize {
    mappings().len()
}

/// One mapping of `/proc/self/smaps`: the line of `/proc/self/maps`, the kernel's `VmFlags` (`lo` locked, `dd`
/// excluded from core dumps, `dc` not copied on fork, ...) and the resident locked size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsEntry {
    /// The mapping.
    pub mapping: Mapping,
    /// Its `VmFlags`.
    pub flags: Vec<String>,
    /// Its `Locked:` figure in bytes (resident pages that are locked).
    pub locked: u64,
}

impl SmapsEntry {
    /// True when the kernel shows `flag` among the mapping's `VmFlags`.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Every mapping of this process with its `VmFlags` and `Locked:` size, in address order, from one read of
/// `/proc/self/smaps` (look addresses up with [`smaps_entry_at`]).
pub fn smaps() -> Vec<SmapsEntry> {
    let text = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut entries: Vec<SmapsEntry> = Vec::new();
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(last) = entries.last_mut() {
                last.flags = flags.split_whitespace().map(str::to_owned).collect();
            }
            continue;
        }
        if let Some(kb) = line.strip_prefix("Locked:") {
            if let Some(last) = entries.last_mut() {
                last.locked = kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
                    * 1024;
            }
            continue;
        }
        if let Some(mapping) = parse_mapping(line) {
            entries.push(SmapsEntry {
                mapping,
                flags: Vec::new(),
                locked: 0,
            });
        }
    }
    entries
}

/// The entry of `entries` (from [`smaps`]) whose mapping contains `addr`.
pub fn smaps_entry_at(entries: &[SmapsEntry], addr: usize) -> Option<&SmapsEntry> {
    let i = entries.partition_point(|e| e.mapping.end <= addr);
    entries.get(i).filter(|e| e.mapping.start <= addr)
}

/// How many mappings are excluded from core dumps (`dd` in `/proc/self/smaps` VmFlags): secret pages, pooled
/// pages and little else, so a leak of secret mappings shows here even when the allocator's own mappings move.
pub fn no_dump_mapping_count() -> usize {
    smaps().iter().filter(|e| e.has("dd")).count()
}

/// The mapping that contains `addr`, with the kernel's `VmFlags` for it from `/proc/self/smaps` (`lo` locked,
/// `dd` excluded from core dumps, `dc` not copied on fork, ...).
pub fn mapping_flags_at(addr: usize) -> Option<(Mapping, Vec<String>)> {
    let entries = smaps();
    smaps_entry_at(&entries, addr).map(|e| (e.mapping.clone(), e.flags.clone()))
}

/// What this process has mapped for secrets, and nothing else: the figures a leak of secret memory would move.
///
/// Every page the secret-holding crates map is excluded from core dumps (`dd`), and nothing else in a test
/// process is, so the `dd` mappings are exactly the library's. The total mapping count is deliberately absent:
/// it moves with the allocator's per-thread arenas and the threads' stacks (a test that starts threads sees a
/// few more mappings afterwards for reasons that have nothing to do with secrets): it is in `mappings` for
/// reports, and [`Footprint::library_changes_since`] does not compare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// `VmLck` in bytes: memory this process locked (only the library locks memory in a test process).
    pub locked: u64,
    /// `VmRSS` in bytes (reported; compared only with slack, since the allocator's caches move it).
    pub resident: u64,
    /// Lines of `/proc/self/maps`, of every kind: for reports only, never compare it (see above).
    pub mappings: usize,
    /// Mappings flagged `dd` (no-dump): the library's mappings.
    pub no_dump_mappings: usize,
    /// Bytes of the mappings flagged `dd`.
    pub no_dump_bytes: usize,
    /// Bytes of the mappings flagged `lo` (locked), whether resident or not.
    pub locked_mapping_bytes: usize,
}

impl Footprint {
    /// The figures now.
    pub fn now() -> Footprint {
        let entries = smaps();
        let size = |e: &SmapsEntry| e.mapping.end - e.mapping.start;
        Footprint {
            locked: locked(),
            resident: resident(),
            mappings: entries.len(),
            no_dump_mappings: entries.iter().filter(|e| e.has("dd")).count(),
            no_dump_bytes: entries.iter().filter(|e| e.has("dd")).map(size).sum(),
            locked_mapping_bytes: entries.iter().filter(|e| e.has("lo")).map(size).sum(),
        }
    }

    /// Every difference from `base` in what the library maps or locks (`resident` is not compared), as
    /// messages; empty when there is none.
    pub fn library_changes_since(&self, base: &Footprint) -> Vec<String> {
        let mut changes = Vec::new();
        if self.locked != base.locked {
            changes.push(format!(
                "VmLck {} bytes, {} before",
                self.locked, base.locked
            ));
        }
        if self.no_dump_mappings != base.no_dump_mappings {
            changes.push(format!(
                "{} no-dump mappings, {} before",
                self.no_dump_mappings, base.no_dump_mappings
            ));
        }
        if self.no_dump_bytes != base.no_dump_bytes {
            changes.push(format!(
                "{} bytes of no-dump mappings, {} before",
                self.no_dump_bytes, base.no_dump_bytes
            ));
        }
        if self.locked_mapping_bytes != base.locked_mapping_bytes {
            changes.push(format!(
                "{} bytes of locked mappings, {} before",
                self.locked_mapping_bytes, base.locked_mapping_bytes
            ));
        }
        changes
    }
}

/// True for the pseudo-mappings that `/proc/self/mem` cannot or need not read (`[vvar…]`, `[vsyscall]`).
pub fn unreadable(m: &Mapping) -> bool {
    m.name.starts_with("[vvar") || m.name == "[vsyscall]"
}

/// Scans every mapping of this process, no-access ones included, for the markers of `set`, and returns the
/// indices found with the mapping each was found in. Reading goes through `/proc/self/mem`, which ignores page
/// protection, so a secret that sits in mapped memory is found wherever it is. Only pages that are resident or
/// swapped out (per `/proc/self/pagemap`) are read: the others have never been written and read as zeros.
pub fn scan_own_memory(set: &MarkerSet) -> Vec<(usize, Mapping)> {
    let mem = File::open("/proc/self/mem").expect("open /proc/self/mem");
    let pagemap = File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
    let page = page_size();
    let mut buf = Vec::new();
    let mut hits = Vec::new();
    for m in mappings().iter().filter(|m| !unreadable(m)) {
        let mut found = vec![false; set.len()];
        for (start, end) in backed_runs(&pagemap, m, page) {
            // Runs of backed pages are read whole, so a marker that spans pages within a run is seen.
            buf.resize(end - start, 0);
            let n = read_fully(&mem, &mut buf, start);
            set.scan(&buf[..n], &mut found);
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

fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The address ranges of `m` whose pages are resident or swapped out, coalesced into runs, read from
/// `pagemap` (`/proc/self/pagemap`, open) for pages of `page` bytes. The others have never been written and
/// read as zeros, so a scan of memory can skip them.
pub fn backed_runs(pagemap: &File, m: &Mapping, page: usize) -> Vec<(usize, usize)> {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    let pages = (m.end - m.start) / page;
    let mut entries = vec![0u8; pages * 8];
    let n = read_fully(pagemap, &mut entries, (m.start / page) * 8);
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, entry) in entries[..n].chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(entry);
        if u64::from_ne_bytes(word) & (PRESENT | SWAPPED) == 0 {
            continue;
        }
        let addr = m.start + i * page;
        match runs.last_mut() {
            Some(run) if run.1 == addr => run.1 = addr + page,
            _ => runs.push((addr, addr + page)),
        }
    }
    runs
}

/// Reads as much of `[at, at + buf.len())` of `file` (such as `/proc/self/mem`) as the kernel gives into
/// `buf`, and returns how many bytes that was; stops at the first unreadable byte.
pub fn read_fully(file: &File, buf: &mut [u8], at: usize) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], (at + done) as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::Footprint;

    /// A leaked no-dump, locked page (what a leaked secret looks like) shows in the footprint; the page going
    /// away takes it back to where it was.
    #[test]
    fn a_leaked_secret_page_shows_in_the_library_footprint() {
        let base = Footprint::now();
        let page = super::page_size();
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        // SAFETY: `ptr..ptr+page` is the mapping made just above, used by nothing else.
        unsafe {
            assert_eq!(libc::madvise(ptr, page, libc::MADV_DONTDUMP), 0);
            assert_eq!(libc::mlock(ptr, page), 0);
        }
        let leaked = Footprint::now();
        let changes = leaked.library_changes_since(&base);
        // SAFETY: the mapping is ours and nothing refers to it any more.
        unsafe { libc::munmap(ptr, page) };
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(Footprint::now().library_changes_since(&base).is_empty());
    }
}
