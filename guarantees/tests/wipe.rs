//! Guarantee 4, wiped on release. A child holds a random marker in a secret of each flavour and in a memguard
//! locked buffer, then releases them one way (close/destroy, drop, purge) and scans ALL of its own memory through
//! `/proc/self/mem` (which reads no-access pages too) for the markers.
//! - Before release, each marker must be found exactly once, in the mapping of its own secret: the scan works,
//!   and no stray copy (an unwiped source, a temporary) exists anywhere else.
//! - After release, no marker may be found anywhere.
//!
//! Pages that go back to the pool of locked pages are mapped, so the scan sees them; one scenario also takes them
//! out of the pool again and checks they hold zeros.
//!
//! Unmapped pages cannot be read back, so a last scenario makes the unmap itself fail (memcall's fault seam):
//! the release must report the failure and keep the pages for a retry, and those still-mapped pages must
//! already be wiped. That is what proves the wipe happens before the pages are given back.
#![cfg(target_os = "linux")]

mod common;

use common::{ensure, Held, Kind};
use guarantees::core_file::{self, MarkerSet};
use guarantees::proc_stats::{self, Mapping};
use guarantees::Scenario;

const MARKERS_VAR: &str = "GUARANTEES_MARKERS";
const KIND_VAR: &str = "GUARANTEES_KIND";

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// One marker per kind, each in a secret long enough to span two pages, at an offset inside the second.
const LEN: usize = 6000;
const OFFSET: usize = 4500;

/// A holder and the address of its bytes.
type Placed = (Held, usize);

/// The markers from the parent, each decoded straight into the source of a holder of its kind. Returns the
/// holders with the address of their bytes.
fn hold_markers(kinds: &[Kind]) -> Result<(Vec<Placed>, MarkerSet), Box<dyn std::error::Error>> {
    let markers: Vec<String> = std::env::var(MARKERS_VAR)?
        .split(',')
        .map(str::to_owned)
        .collect();
    ensure(markers.len() >= kinds.len(), || "too few markers".into())?;
    let mut held = Vec::new();
    for (kind, hex) in kinds.iter().zip(&markers) {
        let mut source = vec![0u8; LEN];
        core_file::decode_hex_into(hex, &mut source[OFFSET..OFFSET + 32]);
        let holder = kind.hold(&mut source)?;
        let addr = holder.with_bytes(|b| b.as_ptr() as usize)?;
        held.push((holder, addr));
    }
    Ok((held, MarkerSet::from_hex(&markers[..kinds.len()])))
}

/// Each marker is found once, in the mapping that holds its secret's bytes, and nowhere else.
fn assert_found_only_in_place(set: &MarkerSet, held: &[Placed], kinds: &[Kind]) -> Outcome {
    let hits = proc_stats::scan_own_memory(set);
    for (i, (_, addr)) in held.iter().enumerate() {
        let places: Vec<&Mapping> = hits
            .iter()
            .filter(|(m, _)| *m == i)
            .map(|(_, p)| p)
            .collect();
        ensure(!places.is_empty(), || {
            format!(
                "the scan did not find the {} marker while it is alive: the scan proves nothing",
                kinds[i].name()
            )
        })?;
        let stray: Vec<&&Mapping> = places
            .iter()
            .filter(|m| !(m.start <= *addr && *addr < m.end))
            .collect();
        ensure(stray.is_empty(), || {
            format!(
                "a copy of the {} marker outside its secret's pages, in {stray:?}",
                kinds[i].name()
            )
        })?;
    }
    Ok(())
}

fn assert_no_trace(set: &MarkerSet, kinds: &[Kind], after: &str) -> Outcome {
    let hits = proc_stats::scan_own_memory(set);
    ensure(hits.is_empty(), || {
        let found: Vec<String> = hits
            .iter()
            .map(|(i, m)| format!("{} marker in {m:?}", kinds[*i].name()))
            .collect();
        format!("after {after}, secret bytes remain in memory: {found:#?}")
    })?;
    Ok(())
}

fn release_by(how: &str) -> Outcome {
    let (held, set) = hold_markers(&Kind::ALL)?;
    assert_found_only_in_place(&set, &held, &Kind::ALL)?;
    match how {
        "close" => {
            for (h, _) in held {
                h.close()?;
            }
        }
        "drop" => drop(held),
        "purge" => {
            memguard::purge();
            for (h, _) in &held {
                ensure(h.with_bytes(|_| ()).is_err(), || {
                    "a secret is still readable after purge".into()
                })?;
            }
            // Keep the handles alive: the scan must find nothing although they still exist.
            assert_no_trace(&set, &Kind::ALL, how)?;
            drop(held);
        }
        other => return Err(format!("unknown release {other}").into()),
    }
    assert_no_trace(&set, &Kind::ALL, how)
}

fn after_close() -> Outcome {
    release_by("close")
}

fn after_drop() -> Outcome {
    release_by("drop")
}

fn after_purge() -> Outcome {
    release_by("purge")
}

/// The unmap fails: the release reports it, the pages stay mapped for a retry, and they are already wiped.
fn before_a_failed_unmap() -> Outcome {
    let kind = Kind::from_env(KIND_VAR)?;
    let (mut held, set) = hold_markers(&[kind])?;
    let (holder, addr) = held.pop().ok_or("no holder")?;
    let holder = std::sync::Arc::new(std::sync::Mutex::new(Some(holder)));
    let failed = {
        let _unmap_fails = memcall::fault::fail(memcall::Op::Unmap)
            .times(u32::MAX)
            .arm();
        release_in_place(&holder)
    };
    ensure(failed.is_err(), || {
        "the release succeeded although unmapping failed".into()
    })?;
    eprintln!(
        "release with a failing unmap: {}",
        failed.err().unwrap_or_default()
    );
    ensure(
        proc_stats::mappings()
            .iter()
            .any(|m| m.start <= addr && addr < m.end),
        || {
            "the pages are gone after a failed release: nothing to retry, and the wipe cannot be checked".into()
        },
    )?;
    assert_no_trace(&set, &[kind], "a release whose unmap failed")?;
    release_in_place(&holder).map_err(|e| format!("retrying the release: {e}"))?;
    assert_no_trace(&set, &[kind], "the retried release")
}

/// A closed protected-memory secret's pages may go back to the process-wide pool of locked pages; whoever gets
/// them next must find zeros. Takes pooled regions until the secret's own comes back (the pool hands out the
/// last region it got first); if it never does, the pages must have been unmapped.
fn pooled_pages_come_back_zeroed() -> Outcome {
    let kind = Kind::Secret(common::Flavour::ProtectedMemory);
    let (mut held, set) = hold_markers(&[kind])?;
    let (holder, addr) = held.pop().ok_or("no holder")?;
    let page = memcall::page_size();
    let region_start = addr - addr % page;
    holder.close()?;
    let pool = memcall::RegionPool::global();
    let mut taken = Vec::new();
    while pool.cached_bytes() > 0 {
        taken.push(pool.acquire(LEN, memcall::LockMode::Required)?);
    }
    match taken
        .iter()
        .find(|a| a.region.as_ptr() as usize == region_start)
    {
        Some(again) => {
            // SAFETY: a region from the pool is read-write and exclusively ours.
            let bytes = unsafe { again.region.as_slice() };
            ensure(bytes.iter().all(|&b| b == 0), || {
                "a pooled page came back holding bytes of a closed secret".into()
            })?;
            eprintln!("the secret's pages came back from the pool, all zero");
        }
        None => ensure(
            !proc_stats::mappings()
                .iter()
                .any(|m| m.start <= addr && addr < m.end),
            || "the closed secret's pages are neither pooled nor unmapped".into(),
        )?,
    }
    drop(taken);
    assert_no_trace(&set, &[kind], "closing and re-acquiring from the pool")
}

/// Closes or destroys the holder without consuming it, so it can be retried.
fn release_in_place(holder: &std::sync::Mutex<Option<Held>>) -> Result<(), String> {
    let mut guard = holder.lock().map_err(|_| "poisoned")?;
    match guard.as_mut() {
        Some(Held::Secret(s)) => s.close().map_err(|e| e.to_string()),
        Some(Held::Buffer(b)) => b.destroy().map_err(|e| e.to_string()),
        None => Err("no holder".into()),
    }
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("after_close", after_close),
        ("after_drop", after_drop),
        ("after_purge", after_purge),
        ("before_a_failed_unmap", before_a_failed_unmap),
        (
            "pooled_pages_come_back_zeroed",
            pooled_pages_come_back_zeroed,
        ),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn run(scenario: &str, kind: Option<Kind>) {
    let markers: Vec<String> = (0..Kind::ALL.len())
        .map(|_| core_file::random_hex(32))
        .collect();
    let mut child = guarantees::run_child(scenario).env(MARKERS_VAR, markers.join(","));
    if let Some(kind) = kind {
        child = child.env(KIND_VAR, kind.name());
    }
    child.run().assert_success();
}

#[test]
fn closing_leaves_no_trace_in_process_memory() {
    run("after_close", None);
}

#[test]
fn dropping_without_close_leaves_no_trace() {
    run("after_drop", None);
}

#[test]
fn purge_leaves_no_trace() {
    run("after_purge", None);
}

#[test]
fn protected_memory_pages_are_wiped_before_they_are_unmapped() {
    run("before_a_failed_unmap", Some(Kind::ALL[0]));
}

#[test]
fn memguard_pages_are_wiped_before_they_are_unmapped() {
    run("before_a_failed_unmap", Some(Kind::ALL[1]));
}

#[test]
fn locked_buffer_pages_are_wiped_before_they_are_unmapped() {
    run("before_a_failed_unmap", Some(Kind::LockedBuffer));
}

#[test]
fn pooled_pages_of_a_closed_secret_come_back_zeroed() {
    run("pooled_pages_come_back_zeroed", None);
}
