//! Bytes in a `SecretStream` and bytes copied between protected places never sit in ordinary memory: a child
//! puts a random marker in, then scans all of its own memory (`/proc/self/mem`, no-access pages included).
//! - The partly filled tail chunk of a stream is no-access and no-dump between writes, like a sealed chunk.
//! - `purge()` reaches the tail chunk: afterwards the marker is nowhere.
//! - `SecretReader::copy_to` moves a secret into a stream with no ordinary buffer in between: the marker is
//!   found only in no-access, no-dump pages (the secret's and the stream chunk's).
#![cfg(target_os = "linux")]

use guarantees::core_file::{self, MarkerSet};
use guarantees::proc_stats::{self, Mapping};
use guarantees::Scenario;
use securememory::stream::SecretStream;
use securememory::{ProtectedMemorySecretFactory, Secret, SecretFactory};

const MARKER_VAR: &str = "GUARANTEES_MARKER";

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn marker() -> Result<(MarkerSet, Vec<u8>), Box<dyn std::error::Error>> {
    let hex = std::env::var(MARKER_VAR)?;
    let mut source = vec![0u8; 32];
    core_file::decode_hex_into(&hex, &mut source);
    Ok((MarkerSet::from_hex(&[hex]), source))
}

/// The marker is somewhere, and only in no-access pages excluded from core dumps.
fn only_in_protected_pages(set: &MarkerSet, what: &str) -> Outcome {
    let hits = proc_stats::scan_own_memory(set);
    if hits.is_empty() {
        return Err(
            format!("{what}: the scan did not find the marker at all: it proves nothing").into(),
        );
    }
    let exposed: Vec<(Mapping, Vec<String>)> = hits
        .iter()
        .filter_map(|(_, m)| proc_stats::mapping_flags_at(m.start))
        .filter(|(m, flags)| !m.perms.starts_with("---") || !flags.iter().any(|f| f == "dd"))
        .collect();
    if !exposed.is_empty() {
        return Err(format!(
            "{what}: the marker sits in readable or dumpable memory: {exposed:#?}"
        )
        .into());
    }
    Ok(())
}

fn tail_is_protected_between_writes() -> Outcome {
    let (set, mut source) = marker()?;
    let mut stream = SecretStream::new();
    stream.write_from(&mut source)?;
    only_in_protected_pages(&set, "a stream's partly filled chunk")?;
    // Another write wakes the chunk and puts it back to rest.
    stream.write_secret(b"more")?;
    only_in_protected_pages(&set, "after a second write")?;
    let mut out = [0u8; 36];
    let n = stream.read_secret(&mut out)?;
    let hex = std::env::var(MARKER_VAR)?;
    if n != 36 || !core_file::equals_hex(&out[..32], &hex) || &out[32..] != b"more" {
        return Err("the stream did not give back what was written".into());
    }
    memcall::wipe_bytes(&mut out);
    Ok(())
}

fn purge_reaches_the_tail() -> Outcome {
    let (set, mut source) = marker()?;
    let mut stream = SecretStream::new();
    stream.write_from(&mut source)?;
    only_in_protected_pages(&set, "before purge")?;
    memguard::purge();
    let hits = proc_stats::scan_own_memory(&set);
    if !hits.is_empty() {
        return Err(format!("after purge the tail chunk's bytes remain: {hits:#?}").into());
    }
    match stream.write_secret(b"x") {
        Err(securememory::Error::Closed) => {}
        other => return Err(format!("a purged stream must refuse writes, got {other:?}").into()),
    }
    Ok(())
}

fn copy_to_passes_no_ordinary_buffer() -> Outcome {
    let (set, mut source) = marker()?;
    let secret = ProtectedMemorySecretFactory::new().new(&mut source)?;
    let mut stream = SecretStream::new();
    let copied = secret.reader()?.copy_to(&mut stream)?;
    if copied != 32 || stream.len() != 32 {
        return Err(format!("copied {copied}, stream holds {}", stream.len()).into());
    }
    only_in_protected_pages(&set, "after SecretReader::copy_to")?;
    secret.close()?;
    let next = stream.next_chunk()?.ok_or("the stream lost its chunk")?;
    only_in_protected_pages(&set, "as the stream's sealed chunk")?;
    next.close()?;
    if !proc_stats::scan_own_memory(&set).is_empty() {
        return Err("closing both left a copy behind".into());
    }
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("tail_is_protected", tail_is_protected_between_writes),
        ("purge_reaches_the_tail", purge_reaches_the_tail),
        ("copy_to", copy_to_passes_no_ordinary_buffer),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn run(scenario: &str) {
    guarantees::run_child(scenario)
        .env(MARKER_VAR, core_file::random_hex(32))
        .run()
        .assert_success();
}

#[test]
fn a_streams_partly_filled_chunk_is_no_access_between_writes() {
    run("tail_is_protected");
}

#[test]
fn purge_wipes_a_streams_partly_filled_chunk() {
    run("purge_reaches_the_tail");
}

#[test]
fn copy_to_moves_a_secret_into_a_stream_without_an_ordinary_copy() {
    run("copy_to");
}
