//! Sealed secrets remove the locked-memory ceiling: a child that gives up `CAP_IPC_LOCK` under an 8 MiB
//! `RLIMIT_MEMLOCK` (where page-backed secrets stop at about 2,000) holds 1,000,000 live 32-byte sealed secrets,
//! reads 1,000 of them chosen at random back exactly, and neither `VmLck` nor the library's mappings (the
//! no-dump ones) move between 1 and 10^6 secrets; the total mapping count moves by at most a few (the C
//! library's `malloc` serves the large arrays that hold the handles with mappings of their own). Closing them
//! all brings `VmLck` and the mappings back. Memory per secret (RSS delta / count) is printed.
//!
//! The scratch copies are the only locked memory sealed secrets use while they are read: under a small limit,
//! windows nested over more and more secrets end with the usual typed error naming the limit (from
//! `with_bytes`, whose closure then does not run), nothing open is harmed, and once they close the copies are
//! given back (after a trim, `VmLck` is where it was) and reading works again.
//!
//! In a child process: it changes its capabilities and limits, and the watchdog bounds it. The full million
//! runs in release builds (`cargo test --release -p securememory-guarantees --test sealed_capacity`, about 10 s;
//! a debug build seals about 2,000 secrets a second); debug builds run the same proof with 20,000 secrets,
//! which already needs ten times what page-backed secrets can lock under this limit.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{ensure, is_pattern, run_reporting, sealed_pattern, trimmed_footprint, xorshift};
use guarantees::proc_stats::{self, Footprint};
use guarantees::{Scenario, Watchdog};
use memcall::Limit;
use securememory::sealed::{cached_scratch_bytes, SealedSecret};
use securememory::Secret;

const LIMIT: u64 = 8 * 1024 * 1024;
/// Secrets held by the full proof.
const MILLION: usize = 1_000_000;
/// Secrets held by the debug-build proof: ten times the 2,048 pages an 8 MiB limit allows.
const DEBUG_COUNT: usize = 20_000;
const COUNT_VAR: &str = "GUARANTEES_SEALED_COUNT";
/// The goal for memory per live 32-byte sealed secret, asserted at a million (smaller counts are dominated by
/// the allocator's rounding and are only printed).
const BYTES_PER_SECRET: f64 = 256.0;
const CHECKED: usize = 1_000;
const LEN: usize = 32;
/// Mappings the allocator may add for the large arrays (the handles' vector, the purge registry).
const MALLOC_MAPPINGS: usize = 8;

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// `VmLck`, the library's mappings and `VmRSS`, with the page caches trimmed first (what is compared is what
/// live secrets hold, not what is cached for reuse).
fn footprint() -> (Footprint, usize) {
    (trimmed_footprint(), proc_stats::mapping_count())
}

fn read_back(secrets: &[SealedSecret], rng: &mut u64) -> Result<(), String> {
    for _ in 0..CHECKED {
        let i = xorshift(rng) as usize % secrets.len();
        let exact = secrets[i]
            .with_bytes(|b| Ok(b.len() == LEN && is_pattern(i as u64, b)))
            .map_err(|e| format!("reading secret {i}: {e}"))?;
        ensure(exact, || format!("secret {i} did not read back exactly"))?;
    }
    Ok(())
}

fn many_under_8_mib() -> Outcome {
    let count: usize = std::env::var(COUNT_VAR)?.parse()?;
    let _watchdog = Watchdog::start(Duration::from_secs(600), "holding sealed secrets");
    memcall::drop_lock_exemption()?;
    memcall::set_lock_limit(Limit::Bytes(LIMIT))?;
    let mut secrets: Vec<SealedSecret> = Vec::with_capacity(count);
    // One live secret, read once: the process key and a scratch region exist from here on.
    secrets.push(sealed_pattern(0, LEN)?);
    read_back(&secrets, &mut 1)?;
    let (one, one_maps) = footprint();
    let started = Instant::now();
    for i in 1..count {
        match sealed_pattern(i as u64, LEN) {
            Ok(s) => secrets.push(s),
            Err(e) => return Err(format!("secret {i} of {count}: {e}").into()),
        }
    }
    let created = started.elapsed();
    let (full, full_maps) = footprint();
    let per_secret = (full.resident.saturating_sub(one.resident)) as f64 / (count - 1) as f64;
    eprintln!(
        "{count} sealed secrets of {LEN} bytes in {created:?}; RSS delta / count {per_secret:.1} bytes; \
         VmLck {} -> {} bytes; mappings {one_maps} -> {full_maps}; no-dump mappings {} -> {}",
        one.locked, full.locked, one.no_dump_mappings, full.no_dump_mappings
    );
    if count >= MILLION {
        ensure(per_secret <= BYTES_PER_SECRET, || {
            format!("{per_secret:.1} bytes per live sealed secret, above {BYTES_PER_SECRET}")
        })?;
    }
    ensure(
        secrets.iter().all(|s| s.protections().locked_bytes == 0),
        || "a sealed secret reports locked bytes of its own".into(),
    )?;
    let started = Instant::now();
    let mut rng = 0x2545_F491_4F6C_DD1D;
    read_back(&secrets, &mut rng)?;
    eprintln!(
        "{CHECKED} random secrets read back exactly in {:?}",
        started.elapsed()
    );
    let (read, read_maps) = footprint();
    for (when, now, maps) in [("created", full, full_maps), ("read back", read, read_maps)] {
        ensure(now.locked == one.locked, || {
            format!(
                "VmLck {} bytes with {count} secrets {when}, {} with one",
                now.locked, one.locked
            )
        })?;
        ensure(
            now.no_dump_mappings == one.no_dump_mappings
                && now.locked_mapping_bytes == one.locked_mapping_bytes,
            || {
                format!(
                    "the library's mappings moved with {count} secrets {when}: {one:?} -> {now:?}"
                )
            },
        )?;
        ensure(maps <= one_maps + MALLOC_MAPPINGS, || {
            format!("{maps} mappings with {count} secrets {when}, {one_maps} with one")
        })?;
    }
    let started = Instant::now();
    for (i, s) in secrets.iter().enumerate() {
        s.close().map_err(|e| format!("closing secret {i}: {e}"))?;
    }
    let closed = started.elapsed();
    drop(secrets);
    let (end, end_maps) = footprint();
    eprintln!(
        "closed in {closed:?}; VmLck {} bytes, {end_maps} mappings, {} no-dump mappings",
        end.locked, end.no_dump_mappings
    );
    ensure(end.locked == one.locked, || {
        format!(
            "VmLck {} bytes after closing all, {} before",
            end.locked, one.locked
        )
    })?;
    ensure(end.no_dump_mappings == one.no_dump_mappings, || {
        format!("library mappings after closing all: {one:?} -> {end:?}")
    })?;
    ensure(end_maps <= one_maps + MALLOC_MAPPINGS, || {
        format!("{end_maps} mappings after closing all, {one_maps} before")
    })?;
    Ok(())
}

/// Opens a window on `secrets[depth]` inside the window of every secret before it, until one fails; returns
/// the depth reached and that error. Each open window checks its bytes.
fn nest(secrets: &[SealedSecret], depth: usize) -> (usize, Option<securememory::Error>) {
    let Some(secret) = secrets.get(depth) else {
        return (depth, None);
    };
    let mut inner = (depth, None);
    let opened = secret.with_bytes(|b| {
        if !is_pattern(depth as u64, b) {
            return Err(securememory::Error::action(format!(
                "secret {depth} read wrong bytes"
            )));
        }
        inner = nest(secrets, depth + 1);
        Ok(())
    });
    match opened {
        Ok(()) => inner,
        Err(e) => (depth, Some(e)),
    }
}

/// Under a 128 KiB limit: nested windows over 8 KiB sealed secrets fail at the limit with the typed error that
/// names it, and everything is given back afterwards.
fn scratch_at_the_limit() -> Outcome {
    const SMALL: u64 = 128 * 1024;
    const SECRET: usize = 8192;
    let _watchdog = Watchdog::start(Duration::from_secs(300), "nested sealed windows");
    memcall::drop_lock_exemption()?;
    memcall::set_lock_limit(Limit::Bytes(SMALL))?;
    let secrets: Vec<SealedSecret> = (0..64)
        .map(|i| sealed_pattern(i, SECRET))
        .collect::<Result<_, _>>()?;
    let (base, _) = footprint();
    let (depth, err) = nest(&secrets, 0);
    let err = err.ok_or("64 nested windows of 8 KiB fit under a 128 KiB lock limit")?;
    eprintln!("{depth} nested windows open, then: {err}");
    ensure(depth >= 4, || {
        format!("only {depth} windows fit under the limit")
    })?;
    // `Error::Memory(LockLimit)`: the scratch pages could not be locked (not a failed protection change).
    let lock_limit = match &err {
        securememory::Error::Memory(e) => e.is_lock_limit(),
        _ => false,
    };
    ensure(lock_limit, || {
        format!("not the typed lock-limit error: {err:?}")
    })?;
    ensure(
        err.to_string().contains("RLIMIT_MEMLOCK is 128 KiB"),
        || format!("the message does not name the limit: {err}"),
    )?;
    let (after, _) = footprint();
    ensure(after.locked == base.locked, || {
        format!(
            "VmLck {} bytes after the windows closed, {} before",
            after.locked, base.locked
        )
    })?;
    ensure(cached_scratch_bytes() == 0, || {
        "scratch cached after a trim".into()
    })?;
    for (i, s) in secrets.iter().enumerate() {
        ensure(s.with_bytes(|b| Ok(is_pattern(i as u64, b)))?, || {
            format!("secret {i} unreadable after the limit was hit")
        })?;
        s.close()?;
    }
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("many_under_8_mib", many_under_8_mib),
        ("scratch_at_the_limit", scratch_at_the_limit),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn hold(count: usize) {
    run_reporting(
        guarantees::run_child("many_under_8_mib")
            .env(COUNT_VAR, count.to_string())
            .timeout(Duration::from_secs(900)),
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "run with --release: cargo test --release -p securememory-guarantees --test sealed_capacity"
)]
fn a_million_sealed_secrets_live_under_an_8_mib_lock_limit_without_cap_ipc_lock() {
    hold(MILLION);
}

#[test]
fn twenty_thousand_sealed_secrets_live_under_an_8_mib_lock_limit_without_cap_ipc_lock() {
    hold(DEBUG_COUNT);
}

#[test]
fn nested_windows_at_the_lock_limit_fail_typed_and_give_everything_back() {
    run_reporting(guarantees::run_child("scratch_at_the_limit").timeout(Duration::from_secs(300)));
}
