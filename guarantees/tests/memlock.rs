//! Guarantee 1, never swapped: every secret's pages are locked, and when the locked-memory limit is reached
//! creation fails with a typed error that names the limit, without harming any live secret (Go's memguard
//! panics and destroys every buffer in the process there), and closing everything returns `VmLck` to where it
//! started.
//!
//! Each scenario runs in a child that gives up `CAP_IPC_LOCK` (root ignores the limit otherwise) and lowers
//! `RLIMIT_MEMLOCK` to 256 KiB. The caches of locked pages (memcall's pool for protected-memory secrets,
//! memguard's for guarded mappings) may keep up to their caps after a close; they are trimmed
//! (`memcall::pool::trim_all()`) before `VmLck` is compared, so what is compared is memory that secrets still
//! hold. That the caches never make anyone fail is a test of its own.
#![cfg(target_os = "linux")]

mod common;

use common::{ensure, Flavour, Held, Kind};
use guarantees::proc_stats;
use guarantees::Scenario;
use memcall::Limit;
use securememory::{Locking, Secret, SecretExtensions, SecretFactory};

const LIMIT: u64 = 256 * 1024;
const KIND_VAR: &str = "GUARANTEES_KIND";

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn without_lock_exemption() -> Outcome {
    memcall::drop_lock_exemption()?;
    memcall::set_lock_limit(Limit::Bytes(LIMIT))?;
    Ok(())
}

/// Secret sizes cycle through sub-page, one-page and two-page secrets.
fn size_of(id: u64) -> usize {
    [32, 4096, 5000, 100][id as usize % 4]
}

fn kinds_from_env() -> Result<Vec<Kind>, String> {
    if std::env::var(KIND_VAR).as_deref() == Ok("mixed") {
        Ok(Kind::ALL.to_vec())
    } else {
        Ok(vec![Kind::from_env(KIND_VAR)?])
    }
}

fn exhaust() -> Outcome {
    let kinds = kinds_from_env()?;
    without_lock_exemption()?;
    // Process-wide state made on first use (registries, key material) is not a leak: make it before measuring.
    for kind in &kinds {
        kind.hold_pattern(0, 32)?.close()?;
    }
    memcall::pool::trim_all();
    let start = proc_stats::locked();
    let mut held: Vec<(u64, Held)> = Vec::new();
    let err = loop {
        let id = held.len() as u64 + 1;
        let kind = kinds[id as usize % kinds.len()];
        match kind.hold_pattern(id, size_of(id)) {
            Ok(h) => held.push((id, h)),
            Err(e) => break (kind, e),
        }
        ensure(held.len() < 10_000, || "the limit never applied".into())?;
    };
    let (kind, err) = err;
    let locked_at_failure = proc_stats::locked();
    eprintln!(
        "{} secrets held ({} bytes locked), then {}: {}",
        held.len(),
        locked_at_failure,
        kind.name(),
        err
    );
    let message = err.to_string();
    ensure(
        err.memory_error().is_some_and(|e| e.is_lock_limit()),
        || format!("not the typed lock-limit error: {err:?}"),
    )?;
    ensure(message.contains("RLIMIT_MEMLOCK is 256 KiB"), || {
        format!("the message does not name the limit: {message}")
    })?;
    let page = memcall::page_size() as u64;
    ensure(locked_at_failure + 3 * page > LIMIT, || {
        format!("creation failed at {locked_at_failure} bytes locked, well below the limit")
    })?;
    // A second attempt fails the same way and locks nothing more: the failed attempt left nothing behind.
    let again = kind.hold_pattern(u64::MAX, size_of(3));
    ensure(
        again
            .as_ref()
            .err()
            .and_then(|e| e.memory_error())
            .is_some_and(|e| e.is_lock_limit()),
        || "a second attempt at the limit did not fail with the lock-limit error".into(),
    )?;
    ensure(proc_stats::locked() == locked_at_failure, || {
        "failed attempts changed VmLck (leaked locked pages)".into()
    })?;
    for (id, h) in &held {
        ensure(h.holds_pattern(*id)?, || {
            format!("secret {id} lost its bytes when the limit was hit")
        })?;
    }
    for (_, h) in held {
        h.close()?;
    }
    let locked = proc_stats::locked();
    let cached = memcall::pool::trim_all();
    eprintln!(
        "after closing everything: VmLck {locked} bytes, of which {cached} cached for reuse (trimmed before comparing)"
    );
    let end = proc_stats::locked();
    ensure(end == start, || {
        format!("VmLck is {end} bytes after closing everything, {start} before")
    })?;
    Ok(())
}

/// The named weaker mode: past the limit, a best-effort factory still makes readable secrets, and says they
/// are not locked.
fn best_effort_past_the_limit() -> Outcome {
    let flavour = common::child_flavour()?;
    without_lock_exemption()?;
    let mut held = Vec::new();
    while flavour
        .new_shared(&mut [7u8; 32])
        .map(|s| held.push(s))
        .is_ok()
    {
        ensure(held.len() < 10_000, || "the limit never applied".into())?;
    }
    let mut source = [9u8; 64];
    let weak: Box<dyn Secret> = match flavour {
        Flavour::ProtectedMemory => Box::new(
            securememory::ProtectedMemorySecretFactory::with_locking(Locking::BestEffort)
                .new(&mut source)?,
        ),
        Flavour::Memguard => Box::new(
            securememory::memguard::MemguardSecretFactory::with_locking(Locking::BestEffort)
                .new(&mut source)?,
        ),
    };
    ensure(!weak.protections().locked, || {
        "a secret past the limit claims to be locked".into()
    })?;
    ensure(weak.with_bytes(|b| Ok(b.iter().all(|&x| x == 9)))?, || {
        "wrong bytes".into()
    })?;
    ensure(held.iter().all(|s| s.protections().locked), || {
        "a secret made with the default factory is not locked".into()
    })?;
    weak.close()?;
    Ok(())
}

/// Locked pages cached for reuse after close must not starve anyone: fill the limit with protected-memory
/// secrets, close them all (their pages may stay cached, locked, in the pool), then every other kind must still
/// get locked memory, since no secret is alive.
fn closed_secrets_do_not_starve_other_kinds() -> Outcome {
    without_lock_exemption()?;
    let first = Kind::Secret(Flavour::ProtectedMemory);
    let mut held = Vec::new();
    let mut id = 1;
    while let Ok(h) = first.hold_pattern(id, 32) {
        held.push(h);
        id += 1;
        ensure(held.len() < 10_000, || "the limit never applied".into())?;
    }
    for h in held {
        h.close()?;
    }
    eprintln!(
        "after closing {} secrets: VmLck {} bytes, {} of them cached by memcall's pool",
        id - 1,
        proc_stats::locked(),
        memcall::RegionPool::global().cached_bytes()
    );
    // The kinds that do not draw from the pool first: a pool user would make the pool give way for everyone.
    let mut starved = Vec::new();
    for kind in Kind::ALL.into_iter().rev() {
        match kind.hold_pattern(id, 5000) {
            Ok(h) => h.close()?,
            Err(e) => starved.push(format!(
                "{} could not be created with no secret alive ({} bytes locked, {} cached by the pool): {e}",
                kind.name(),
                proc_stats::locked(),
                memcall::RegionPool::global().cached_bytes()
            )),
        }
    }
    ensure(starved.is_empty(), || starved.join("\n"))?;
    Ok(())
}

/// Sealed secrets hold no locked memory at rest, so far more of them live under the limit than page-backed ones
/// could; only open access windows take locked scratch pages. Opening nested windows on ever more secrets ends
/// in the typed lock-limit error, the windows already open still read their exact bytes, and once they all
/// close `VmLck` is back where it started.
fn sealed_windows_at_the_limit() -> Outcome {
    use securememory::sealed::SealedSecretFactory;
    without_lock_exemption()?;
    let factory = SealedSecretFactory::new();
    factory.create_random(32)?.with_bytes(|_| Ok(()))?;
    memcall::pool::trim_all();
    let start = proc_stats::locked();
    // Four times what 256 KiB of locked pages could hold as page-backed secrets.
    let count = 4 * (LIMIT as usize / 4096);
    let secrets = (0..count)
        .map(|i| factory.new(&mut [i as u8; 32]))
        .collect::<Result<Vec<_>, _>>()?;
    ensure(proc_stats::locked() == start, || {
        format!(
            "{count} sealed secrets at rest locked memory: {} -> {}",
            start,
            proc_stats::locked()
        )
    })?;
    /// Opens windows on `secrets[i..]`, each inside the previous one, until one fails; returns how many opened
    /// and the error that stopped them, checking every open window's bytes on the way back out.
    fn nest(
        secrets: &[securememory::sealed::SealedSecret],
        i: usize,
    ) -> securememory::Result<(usize, Option<securememory::Error>)> {
        let Some(secret) = secrets.get(i) else {
            return Ok((i, None));
        };
        match secret.with_bytes(|bytes| {
            let deeper = nest(secrets, i + 1)?;
            if bytes != [i as u8; 32] {
                return Err(securememory::Error::action(format!(
                    "window {i} read wrong bytes"
                )));
            }
            Ok(deeper)
        }) {
            Ok(deeper) => Ok(deeper),
            Err(e) if e.memory_error().is_some_and(|m| m.is_lock_limit()) => Ok((i, Some(e))),
            Err(e) => Err(e),
        }
    }
    let (opened, err) = nest(&secrets, 0)?;
    let err = err.ok_or("the limit never applied to the scratch pages")?;
    eprintln!("{count} sealed secrets live, {opened} windows open at once, then: {err}");
    ensure(opened > 0 && opened < count, || {
        format!("{opened} windows opened")
    })?;
    ensure(
        err.to_string().contains("RLIMIT_MEMLOCK is 256 KiB"),
        || format!("the message does not name the limit: {err}"),
    )?;
    for (i, secret) in secrets.iter().enumerate() {
        ensure(secret.with_bytes(|b| Ok(b == [i as u8; 32]))?, || {
            format!("secret {i} changed")
        })?;
    }
    for secret in &secrets {
        secret.close()?;
    }
    memcall::pool::trim_all();
    ensure(proc_stats::locked() == start, || {
        format!(
            "VmLck {} after closing, {} before",
            proc_stats::locked(),
            start
        )
    })?;
    Ok(())
}

#[test]
fn child_entry() {
    const SCENARIOS: &[(&str, Scenario)] = &[
        ("exhaust", exhaust),
        ("sealed_windows_at_the_limit", sealed_windows_at_the_limit),
        ("best_effort_past_the_limit", best_effort_past_the_limit),
        (
            "closed_secrets_do_not_starve_other_kinds",
            closed_secrets_do_not_starve_other_kinds,
        ),
    ];
    guarantees::dispatch(SCENARIOS);
}

fn exhaust_in_child(kind: &str) {
    guarantees::run_child("exhaust")
        .env(KIND_VAR, kind)
        .run()
        .assert_success();
}

#[test]
fn at_the_limit_protected_memory_secrets_fail_typed_and_harm_nothing() {
    exhaust_in_child("protected_memory");
}

#[test]
fn at_the_limit_memguard_secrets_fail_typed_and_harm_nothing() {
    exhaust_in_child("memguard");
}

#[test]
fn at_the_limit_locked_buffers_fail_typed_and_harm_nothing() {
    exhaust_in_child("locked_buffer");
}

#[test]
fn at_the_limit_a_mix_of_all_three_fails_typed_and_harms_nothing() {
    exhaust_in_child("mixed");
}

#[test]
fn best_effort_protected_memory_secrets_work_past_the_limit_and_say_so() {
    common::run_for("best_effort_past_the_limit", Flavour::ProtectedMemory).assert_success();
}

#[test]
fn best_effort_memguard_secrets_work_past_the_limit_and_say_so() {
    common::run_for("best_effort_past_the_limit", Flavour::Memguard).assert_success();
}

#[test]
fn locked_pages_cached_after_close_do_not_starve_other_kinds() {
    guarantees::run_child("closed_secrets_do_not_starve_other_kinds")
        .run()
        .assert_success();
}

#[test]
fn sealed_secrets_outnumber_the_limit_and_only_open_windows_hit_it_typed() {
    guarantees::run_child("sealed_windows_at_the_limit")
        .run()
        .assert_success();
}
