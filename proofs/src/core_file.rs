//! Core dumps: allowing them, finding the file the kernel wrote, and markers to look for in it.
//!
//! A marker is random bytes that the parent knows and the child must never hold in binary form except where the
//! test puts it: the parent passes it hex-encoded (in the environment), and the child decodes it byte by byte
//! straight into its destination with [`decode_hex_into`]. So a marker found in a core file can only come from
//! that destination (or from a copy the code under test made).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where the kernel sends core dumps (`/proc/sys/kernel/core_pattern`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorePattern {
    /// A file, relative to the dumping process's working directory when the pattern is relative.
    File(String),
    /// A pipe to a program (systemd-coredump, apport, ...): no file this test can read.
    Piped(String),
}

/// The core pattern in force.
pub fn core_pattern() -> CorePattern {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .unwrap_or_default()
        .trim()
        .to_owned();
    match pattern.strip_prefix('|') {
        Some(program) => CorePattern::Piped(program.to_owned()),
        None => CorePattern::File(pattern),
    }
}

/// The environment variable that lets core-dump tests be skipped (visibly) where cores go to a pipe.
pub const SKIP_VAR: &str = "SECUREMEMORY_SKIP_CORE_TESTS";

/// The file pattern to use, or `None` when core tests must be skipped. Never passes silently: where cores are
/// piped away, or the hard `RLIMIT_CORE` is 0 so no child may write one, and [`SKIP_VAR`] is not set, this panics
/// so the environment gets fixed or the skip gets chosen.
///
/// # Panics
/// When no core file can be written here and the skip was not asked for.
pub fn file_pattern_or_skip() -> Option<String> {
    let why_not = match (
        core_pattern(),
        crate::sys::core_limit().ok().and_then(|l| l.1),
    ) {
        (CorePattern::Piped(program), _) => format!("core_pattern pipes core dumps to {program:?}"),
        (CorePattern::File(_), Some(0)) => "the hard RLIMIT_CORE is 0".to_owned(),
        (CorePattern::File(pattern), _) => return Some(pattern),
    };
    assert!(
        std::env::var_os(SKIP_VAR).is_some(),
        "{why_not}, so no core file can be read here; set {SKIP_VAR}=1 to skip"
    );
    eprintln!("SKIPPED: {why_not}");
    None
}

/// Raises the soft `RLIMIT_CORE` to the hard one, so an abort writes a core file (allowed without privilege).
///
/// # Errors
/// When the hard limit is 0 (no core can be written) or `setrlimit` fails.
pub fn allow_core_dumps() -> Result<(), String> {
    if let Ok((_, Some(0))) = crate::sys::core_limit() {
        return Err("the hard RLIMIT_CORE is 0: this process cannot write a core file".into());
    }
    crate::sys::raise_core_limit().map_err(|e| format!("setrlimit(RLIMIT_CORE): {e}"))
}

/// The directory core files land in for a child whose working directory is `cwd`, or why none can be read.
///
/// # Errors
/// When `core_pattern` pipes cores to a program or puts them in a per-process directory.
pub fn core_dir(pattern: &CorePattern, cwd: &Path) -> Result<PathBuf, String> {
    let pattern = match pattern {
        CorePattern::Piped(target) => {
            return Err(format!(
                "core_pattern pipes core files to `{target}` (a crash collector such as systemd-coredump or \
                 apport), so no core file can be read back here; inspect one with that tool (e.g. `coredumpctl dump`)"
            ))
        }
        CorePattern::File(pattern) => pattern,
    };
    let parent = Path::new(pattern).parent().unwrap_or(Path::new(""));
    if parent.to_string_lossy().contains('%') {
        return Err(format!(
            "core_pattern `{pattern}` puts cores in a per-process directory"
        ));
    }
    Ok(if parent.is_absolute() {
        parent.to_path_buf()
    } else {
        cwd.join(parent)
    })
}

/// The files of `dir` now, to tell a new core file from older ones.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The newest file of `dir` modified since `since` that is not among `before`: the core file of a child that
/// ran meanwhile.
pub fn new_core(dir: &Path, since: SystemTime, before: &[PathBuf]) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| !before.contains(&e.path()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(m, p)| *m >= since && p.is_file())
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p)
}

/// The core file a child that ran in the fresh directory `dir` left behind, if any.
pub fn find_core(dir: &Path, pattern: &str) -> Option<PathBuf> {
    let cores = core_dir(&CorePattern::File(pattern.to_owned()), dir).ok()?;
    new_core(&cores, SystemTime::UNIX_EPOCH, &[])
}

/// Snapshots the live process `pid` into `path` with gdb's `gcore` (ptrace, which no `RLIMIT_CORE` stops),
/// without reading the binary's debug info (which takes tens of seconds).
///
/// # Errors
/// When gdb cannot be run or wrote no snapshot, with its output.
pub fn gcore(pid: u32, path: &Path) -> Result<(), String> {
    let out = std::process::Command::new("gdb")
        .args([
            "--nx",
            "--batch",
            "--readnever",
            "-p",
            &pid.to_string(),
            "-ex",
        ])
        .arg(format!("gcore {}", path.display()))
        .output()
        .map_err(|e| format!("could not run gdb: {e}"))?;
    if path.is_file() {
        return Ok(());
    }
    Err(format!(
        "gcore wrote no snapshot: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// True when gdb (for [`gcore`]) is on `PATH`.
pub fn has_gdb() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("gdb").is_file()))
}

/// True when gdb (for [`gcore`]) is on `PATH`; false, said on stderr, when it is not and [`SKIP_VAR`] asks
/// for the skip. Never passes silently, like [`file_pattern_or_skip`]; `skipped` names what is skipped.
///
/// # Panics
/// When gdb is not installed and the skip was not asked for.
pub fn has_gdb_or_skip(skipped: &str) -> bool {
    if has_gdb() {
        return true;
    }
    assert!(
        std::env::var_os(SKIP_VAR).is_some(),
        "gdb is not installed; install it or set {SKIP_VAR}=1 to skip"
    );
    eprintln!("SKIPPED ({skipped}): gdb is not installed");
    false
}

/// `len` random bytes from the OS, hex-encoded.
///
/// # Panics
/// When the OS random generator fails.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    crate::sys::getrandom(&mut bytes).expect("the OS random generator");
    hex(&bytes)
}

/// Lower-case hex of `bytes` (hex text never equals the raw bytes a scan looks for).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Decodes `hex` into the binary bytes (for the parent, which looks for them).
///
/// # Panics
/// On malformed hex: markers are made by [`random_hex`].
pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex marker"))
        .collect()
}

/// Decodes `hex` byte by byte straight into `dst`, so the binary bytes exist nowhere else.
///
/// # Panics
/// When `dst` is not exactly half as long as `hex`, or the hex is malformed.
pub fn decode_hex_into(hex: &str, dst: &mut [u8]) {
    assert_eq!(dst.len() * 2, hex.len(), "destination length");
    for (slot, pair) in dst.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).expect("hex marker");
        *slot = u8::from_str_radix(pair, 16).expect("hex marker");
    }
}

/// True when `bytes` equals the binary form of `hex`, compared without decoding it into memory.
pub fn equals_hex(bytes: &[u8], hex: &str) -> bool {
    bytes.len() * 2 == hex.len()
        && bytes.iter().zip(hex.as_bytes().chunks(2)).all(|(b, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                == Some(*b)
        })
}

/// Bytes XORed into every stored needle, so a [`MarkerSet`] never holds a marker in its binary form (a process
/// that scans its own memory would otherwise find the set itself).
const MASK: u8 = 0xA5;

/// Finds which of many markers (each at least 8 bytes long) occur in a haystack, in one pass. The markers are
/// kept masked, never in binary form.
#[derive(Debug)]
pub struct MarkerSet {
    /// One bit per possible first two bytes of a marker (unmasked): a cheap filter before the hash lookup, so
    /// scanning a large core file stays fast even in a debug build.
    first_pairs: Vec<u64>,
    by_prefix: HashMap<u64, Vec<usize>>,
    masked: Vec<Vec<u8>>,
}

impl MarkerSet {
    /// A set of hex-encoded markers, decoded straight into masked form.
    ///
    /// # Panics
    /// On malformed hex or a marker shorter than 8 bytes.
    pub fn from_hex<S: AsRef<str>>(markers: &[S]) -> Self {
        let masked: Vec<Vec<u8>> = markers
            .iter()
            .map(|hex| {
                let hex = hex.as_ref();
                assert!(hex.len() >= 16, "markers must be at least 8 bytes long");
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex marker") ^ MASK)
                    .collect()
            })
            .collect();
        let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut first_pairs = vec![0u64; 1 << 10];
        for (i, m) in masked.iter().enumerate() {
            by_prefix.entry(word(m)).or_default().push(i);
            let pair = pair_index(m[0] ^ MASK, m[1] ^ MASK);
            first_pairs[pair / 64] |= 1 << (pair % 64);
        }
        MarkerSet {
            first_pairs,
            by_prefix,
            masked,
        }
    }

    /// How many markers the set holds.
    pub fn len(&self) -> usize {
        self.masked.len()
    }

    /// True when the set holds no marker.
    pub fn is_empty(&self) -> bool {
        self.masked.is_empty()
    }

    /// Indices of the markers found in `haystack`, in order, without duplicates.
    pub fn found_in(&self, haystack: &[u8]) -> Vec<usize> {
        let mut found = vec![false; self.masked.len()];
        self.scan(haystack, &mut found);
        (0..found.len()).filter(|&i| found[i]).collect()
    }

    /// Marks in `found` (one flag per marker) the markers that occur in `haystack`.
    pub fn scan(&self, haystack: &[u8], found: &mut [bool]) {
        if haystack.len() < 8 {
            return;
        }
        let mask_word = u64::from_ne_bytes([MASK; 8]);
        for start in 0..=haystack.len() - 8 {
            let pair = pair_index(haystack[start], haystack[start + 1]);
            if self.first_pairs[pair / 64] & (1 << (pair % 64)) == 0 {
                continue;
            }
            let Some(candidates) = self.by_prefix.get(&(word(&haystack[start..]) ^ mask_word))
            else {
                continue;
            };
            for &i in candidates {
                let m = &self.masked[i];
                if haystack.len() - start >= m.len()
                    && haystack[start..start + m.len()]
                        .iter()
                        .zip(m)
                        .all(|(h, m)| h ^ MASK == *m)
                {
                    found[i] = true;
                }
            }
        }
    }
}

fn pair_index(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_ne_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_wherever_they_are() {
        let (a_hex, b_hex) = (random_hex(32), random_hex(32));
        let a = unhex(&a_hex);
        let mut hay = vec![7u8; 1000];
        hay[990..].copy_from_slice(&a[..10]);
        hay.extend_from_slice(&a[10..]);
        hay.extend_from_slice(&a);
        let set = MarkerSet::from_hex(&[a_hex.clone(), b_hex, a_hex[32..].to_owned()]);
        assert_eq!(set.found_in(&hay), vec![0, 2]);
        assert!(set.found_in(&hay[..1000]).is_empty());
        assert!(
            set.found_in(&hay[..1021]).is_empty(),
            "a marker cut short is not a match"
        );
    }

    #[test]
    fn hex_round_trips_and_compares_in_place() {
        let hex = random_hex(16);
        let mut dst = [0u8; 16];
        decode_hex_into(&hex, &mut dst);
        assert_eq!(dst.to_vec(), unhex(&hex));
        assert!(equals_hex(&dst, &hex));
        dst[3] ^= 1;
        assert!(!equals_hex(&dst, &hex));
    }
}
