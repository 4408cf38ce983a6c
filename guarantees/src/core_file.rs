//! Core dumps: allowing them, finding the file the kernel wrote, and markers to look for in it.
//!
//! A marker is random bytes that the parent knows and the child must never hold in binary form except where the
//! test puts it: the parent passes it hex-encoded (in the environment), and the child decodes it byte by byte
//! straight into its destination with [`decode_hex_into`]. So a marker found in a core file can only come from
//! that destination (or from a copy the code under test made).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    let why_not = match (core_pattern(), core_limit().1) {
        (CorePattern::Piped(program), _) => format!("core_pattern pipes core dumps to {program:?}"),
        (CorePattern::File(_), 0) => "the hard RLIMIT_CORE is 0".to_owned(),
        (CorePattern::File(pattern), _) => return Some(pattern),
    };
    assert!(
        std::env::var_os(SKIP_VAR).is_some(),
        "{why_not}, so no core file can be read here; set {SKIP_VAR}=1 to skip"
    );
    eprintln!("SKIPPED: {why_not}");
    None
}

/// `(soft, hard)` `RLIMIT_CORE` of this process.
pub fn core_limit() -> (u64, u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable `rlimit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut rl) };
    assert_eq!(rc, 0, "getrlimit(RLIMIT_CORE)");
    (rl.rlim_cur, rl.rlim_max)
}

/// Raises the soft `RLIMIT_CORE` to the hard one, so an abort writes a core file (allowed without privilege).
///
/// # Errors
/// When the hard limit is 0 (no core can be written) or `setrlimit` fails.
pub fn allow_core_dumps() -> Result<(), String> {
    let (_, hard) = core_limit();
    if hard == 0 {
        return Err("the hard RLIMIT_CORE is 0: this process cannot write a core file".into());
    }
    let rl = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: `rl` is a valid `rlimit`; raising the soft limit up to the hard one is always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &rl) } != 0 {
        return Err(format!(
            "setrlimit(RLIMIT_CORE): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The core file a child running in `dir` left behind, if any. A relative `pattern` puts cores in the child's
/// directory, an absolute one where it says; `%p`-style placeholders match anything.
pub fn find_core(dir: &Path, pattern: &str) -> Option<PathBuf> {
    let pattern = Path::new(pattern);
    let dir = match pattern.parent() {
        Some(parent) if pattern.is_absolute() => parent,
        _ => dir,
    };
    let name = pattern.file_name()?.to_string_lossy();
    let prefix = name.split('%').next().unwrap_or_default().to_owned();
    let entries = std::fs::read_dir(dir).ok()?;
    entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
    })
}

/// A fresh, empty directory for one child (to catch its core file).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("securememory-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// `len` random bytes from the OS, hex-encoded.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        // SAFETY: `bytes[filled..]` is writable for `len - filled` bytes.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), len - filled, 0) };
        assert!(n > 0, "getrandom: {}", std::io::Error::last_os_error());
        filled += n as usize;
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
