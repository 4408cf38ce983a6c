//! The core-file proof: a child holding secrets dumps core; the file must hold a heap control marker and none of
//! the secrets.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::child::ChildOptions;
use crate::cli::Flavour;
use crate::doctor::host::CoreFacts;
use crate::doctor::proofs::{child_error, proof, scenario, Proof};
use crate::doctor::scenarios::Line;
use crate::holder::unhex;
use crate::report::Status;

fn contains(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where the secret, or either half of it, occurs: a partial copy (say, a buffer whose head was reused) is as
/// much a leak as a whole one.
fn find_any_half(haystack: &[u8], secret: &[u8]) -> Option<usize> {
    let (a, b) = secret.split_at(secret.len() / 2);
    contains(haystack, secret)
        .or_else(|| contains(haystack, a))
        .or_else(|| contains(haystack, b))
}

/// Where core files land for a child whose working directory is `cwd`, when they land in a file at all.
fn core_dir(core: &CoreFacts, cwd: &Path) -> Result<PathBuf, String> {
    let pattern = core.core_pattern.as_deref().unwrap_or("core");
    if let Some(target) = core.pipe_target() {
        return Err(format!(
            "core_pattern pipes core files to `{target}` (a crash collector such as systemd-coredump or apport), \
             so no core file can be read back here; inspect one with that tool (e.g. `coredumpctl dump`)"
        ));
    }
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

fn newest_file_since(dir: &Path, since: SystemTime, before: &[PathBuf]) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| !before.contains(&e.path()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(m, p)| *m >= since && p.is_file())
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p)
}

/// A core file of a child holding secrets must contain the heap control marker and none of the secrets.
pub fn not_in_core_file(core: &CoreFacts) -> Vec<Proof> {
    const NAME: &str = "not-in-core-file";
    let flavours = Flavour::ALL;
    let all = |status: Status, evidence: String| -> Vec<Proof> {
        flavours
            .iter()
            .map(|f| proof(NAME, f.name(), status, evidence.clone()))
            .collect()
    };
    let cwd = match crate::child::scratch_dir() {
        Ok(d) => d,
        Err(e) => {
            return all(
                Status::Skip,
                format!("cannot prove here: no scratch directory ({e})"),
            )
        }
    };
    let result = (|| {
        let dir = core_dir(core, &cwd)
            .map_err(|why| (Status::Skip, format!("cannot prove here: {why}")))?;
        let before: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        let start = SystemTime::now() - Duration::from_secs(1);
        let opts = ChildOptions {
            cwd: Some(&cwd),
            env: vec![("SECUREMEMORY_KEEP_CORE_DUMPS", "1".to_owned())],
            timeout: Duration::from_secs(120),
        };
        let out = scenario("core", None, &[], &opts).map_err(|e| (Status::Fail, e))?;
        let lines = out.reports::<Line>();
        if let Some(e) = child_error(&out) {
            return Err((Status::Fail, format!("the child could not set up: {e}")));
        }
        let control = lines
            .iter()
            .find(|l| l.flavour.is_none() && l.marker.is_some());
        let Some(control) = control else {
            return Err((
                Status::Fail,
                format!("the child {} before holding its secrets", out.describe()),
            ));
        };
        let Some(path) = newest_file_since(&dir, start, &before) else {
            return Err((
                Status::Skip,
                format!(
                    "cannot prove here: the child {} but wrote no core file in {} (its RLIMIT_CORE was {}, \
                     dumpable {})",
                    out.describe(),
                    dir.display(),
                    match control.core_limit {
                        Some(Some(b)) => format!("{b} bytes"),
                        _ => "unlimited".to_owned(),
                    },
                    control.dumpable.map_or("unknown".to_owned(), |d| d.to_string())
                ),
            ));
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| (Status::Fail, format!("reading {}: {e}", path.display())));
        if !path.starts_with(&cwd) {
            let _ = std::fs::remove_file(&path);
        }
        let bytes = bytes?;
        let marker_at = control
            .marker
            .as_deref()
            .and_then(unhex)
            .and_then(|m| contains(&bytes, &m));
        let Some(marker_at) = marker_at else {
            return Err((
                Status::Fail,
                format!(
                    "the core file ({} bytes) lacks the heap control marker, so it proves nothing",
                    bytes.len()
                ),
            ));
        };
        let head = format!(
            "core file of {} bytes from a child that {}; heap control marker found at offset {marker_at}",
            bytes.len(),
            out.describe()
        );
        Ok(flavours
            .iter()
            .map(|f| {
                let secret = lines
                    .iter()
                    .find(|l| l.flavour.as_deref() == Some(f.name()))
                    .and_then(|l| l.marker.as_deref())
                    .and_then(unhex);
                match secret.map(|s| find_any_half(&bytes, &s)) {
                    Some(None) => proof(
                        NAME,
                        f.name(),
                        Status::Pass,
                        format!("{head}; secret absent (neither half of it found)"),
                    ),
                    Some(Some(at)) => proof(
                        NAME,
                        f.name(),
                        Status::Fail,
                        format!("{head}; SECRET (or half of it) FOUND at offset {at}"),
                    ),
                    None => proof(
                        NAME,
                        f.name(),
                        Status::Fail,
                        "the child reported no secret".to_owned(),
                    ),
                }
            })
            .collect())
    })();
    let _ = std::fs::remove_dir_all(&cwd);
    result.unwrap_or_else(|(status, evidence)| all(status, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pattern: &str) -> CoreFacts {
        CoreFacts {
            rlimit_soft: None,
            rlimit_hard: None,
            core_pattern: Some(pattern.to_owned()),
            core_uses_pid: None,
            suid_dumpable: None,
            dumpable: None,
            coredump_filter: None,
        }
    }

    #[test]
    fn core_files_are_looked_for_where_core_pattern_puts_them() {
        let cwd = Path::new("/tmp/x");
        assert_eq!(core_dir(&facts("core"), cwd).unwrap(), cwd.to_path_buf());
        assert_eq!(
            core_dir(&facts("core.%e.%p"), cwd).unwrap(),
            cwd.to_path_buf()
        );
        assert_eq!(
            core_dir(&facts("/var/crash/core.%p"), cwd).unwrap(),
            Path::new("/var/crash")
        );
        let piped = core_dir(&facts("|/lib/systemd/systemd-coredump %P %u"), cwd).unwrap_err();
        assert!(piped.contains("systemd-coredump"), "{piped}");
        assert!(core_dir(&facts("/var/crash/%e/core"), cwd).is_err());
    }

    #[test]
    fn marker_search_finds_exact_runs_only() {
        let hay = b"xxabcdefyy";
        assert_eq!(contains(hay, b"abcdef"), Some(2));
        assert_eq!(contains(hay, b"abcdeg"), None);
        assert_eq!(contains(hay, b""), None);
        assert_eq!(find_any_half(hay, b"zzzzcdef"), Some(4));
        assert_eq!(find_any_half(hay, b"abcdzzzz"), Some(2));
        assert_eq!(find_any_half(hay, b"zzzzzzzz"), None);
    }
}
