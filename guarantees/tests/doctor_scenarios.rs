//! Every scenario of the proof registry (`proofs::scenarios::REGISTRY`), the ones `securememory doctor` runs on
//! a user's host, run here with CI's sizes and asserted: the doctor and CI prove each guarantee with the same
//! code. (`core` runs at 100 secrets + 20 buffers in `core_dump.rs`.)
#![cfg(target_os = "linux")]

use guarantees::scenarios::fault::{self, FaultParams};
use guarantees::scenarios::fill::{self, FillParams};
use guarantees::scenarios::fork::{self, ForkParams};
use guarantees::scenarios::{probe, Status, REGISTRY};
use guarantees::Launcher;
use proofs::Flavour;

#[test]
fn child_entry() {
    guarantees::dispatch(&[]);
}

/// A scenario added to the registry without a CI test here (or in `core_dump.rs`) fails this test, and so does
/// a flavour the doctor measures capacity for without a `fill` test below.
#[test]
fn every_registry_scenario_is_run_in_ci() {
    const RUN_IN_CI: [&str; 5] = ["probe", "fill", "fault", "fork", "core"];
    for scenario in REGISTRY {
        assert!(
            RUN_IN_CI.contains(&scenario.name),
            "registry scenario {:?} ({}) has no CI test",
            scenario.name,
            scenario.proves
        );
    }
    for flavour in Flavour::CAPACITY {
        // A new flavour fails to compile here until it says which test fills it.
        let fill_test = match flavour {
            Flavour::Region | Flavour::ProtectedMemory | Flavour::Memguard => {
                fill_tested_up_to_the_limit(flavour)
            }
            // `fill_sealed_past_the_memlock_limit_with_vmlck_and_mappings_flat`.
            Flavour::Sealed => true,
            // A frozen buffer is no secret flavour of the doctor's; were it added, it needs a fill test.
            Flavour::LockedBuffer => false,
        };
        assert!(
            fill_test,
            "the doctor measures {flavour:?} with `fill`, which has no CI test for it"
        );
    }
}

/// The flavours `fill_each_flavour_up_to_the_memlock_limit_and_fail_typed` runs (`Flavour::ALL`), which must
/// be page-backed: the limit binds only those.
fn fill_tested_up_to_the_limit(flavour: Flavour) -> bool {
    Flavour::ALL.contains(&flavour) && flavour.page_backed()
}

#[test]
fn probe_a_fresh_secret_of_every_flavour_carries_every_protection() {
    let probes = probe::run(&Launcher::test_binary());
    let flavours: Vec<&str> = probes.secrets.iter().map(|s| s.flavour.as_str()).collect();
    assert_eq!(flavours, ["protected-memory", "memguard"], "{probes:#?}");
    for s in &probes.secrets {
        assert!(s.complete(), "{s:#?}");
    }
}

#[test]
fn fault_every_flavour_faults_at_rest_and_memguard_past_its_data() {
    let launcher = Launcher::test_binary();
    for flavour in Flavour::ALL {
        fault::prove(
            &launcher,
            FaultParams {
                flavour,
                past_end: false,
            },
        )
        .assert_pass();
    }
    let flavour = Flavour::Memguard;
    fault::prove(
        &launcher,
        FaultParams {
            flavour,
            past_end: true,
        },
    )
    .assert_pass();
}

/// The control: a protected-memory secret has no guard page, so the byte after its data is readable during an
/// access and the judge must say the proof failed.
#[test]
fn fault_the_judge_fails_an_unguarded_secret_read_past_its_data() {
    let flavour = Flavour::ProtectedMemory;
    let verdict = fault::prove(
        &Launcher::test_binary(),
        FaultParams {
            flavour,
            past_end: true,
        },
    );
    assert_eq!(verdict.status, Status::Fail, "{verdict:#?}");
    assert!(
        verdict.evidence.contains("exited with status 3"),
        "{verdict:#?}"
    );
}

#[test]
fn fork_no_flavour_is_readable_by_a_forked_child() {
    let launcher = Launcher::test_binary();
    for flavour in Flavour::ALL {
        fork::prove(&launcher, ForkParams { flavour }).assert_pass();
    }
}

/// Without `CAP_IPC_LOCK`, secrets fill the limit exactly (within the pages the process had locked before)
/// and the next one fails with the typed lock-limit error.
#[test]
fn fill_each_flavour_up_to_the_memlock_limit_and_fail_typed() {
    let limit = memcall::lock_limit().expect("the memlock limit");
    let page = memcall::page_size() as u64;
    let launcher = Launcher::test_binary();
    for flavour in Flavour::ALL {
        let cap = limit.soft.bytes().map_or(4096, |soft| soft / page + 64);
        let params = FillParams {
            flavour,
            size: 32,
            cap,
            drop_ipc_lock: true,
            read_back: 0,
        };
        let measured = fill::measure(&launcher, params).expect("a report");
        let Some(soft) = limit.soft.bytes() else {
            assert_eq!(measured.stopped_by, "cap", "{measured:#?}");
            continue;
        };
        assert!(measured.ipc_lock_dropped, "{measured:#?}");
        assert_eq!(
            measured.stopped_by, "lock-limit",
            "{flavour:?}: {measured:#?}"
        );
        assert!(
            measured.count <= soft / page && measured.count + 64 >= soft / page,
            "{flavour:?}: {} secrets under a {soft}-byte limit: {measured:#?}",
            measured.count
        );
        let error = measured.error.unwrap_or_default();
        assert!(
            error.contains("ulimit -l"),
            "the error says how to raise the limit: {error}"
        );
        let marginal = measured.marginal.expect("more than 128 secrets fit");
        assert!(
            (marginal.locked_bytes - page as f64).abs() < 1.0,
            "{marginal:#?}"
        );
    }
}

/// Sealed secrets, the doctor's live check at CI's size: a child without `CAP_IPC_LOCK` holds twice as many of
/// them as the memlock limit allows page-backed secrets (at least 10,000; the doctor holds 100,000 in a
/// release build, CI's debug build seals some hundred times slower), every one of a sample read back holds
/// exactly its bytes, and `VmLck` and the number of mappings stay flat from the first secret to the last.
#[test]
fn fill_sealed_past_the_memlock_limit_with_vmlck_and_mappings_flat() {
    let page = memcall::page_size() as u64;
    let soft = memcall::lock_limit()
        .expect("the memlock limit")
        .soft
        .bytes();
    let count = soft.map_or(10_000, |soft| (soft / page * 2).clamp(10_000, 50_000));
    let params = FillParams {
        flavour: Flavour::Sealed,
        size: 32,
        cap: count,
        drop_ipc_lock: true,
        read_back: 1_000,
    };
    let measured = fill::measure(&Launcher::test_binary(), params).expect("a report");
    assert_eq!(measured.stopped_by, "cap", "{measured:#?}");
    assert_eq!(measured.count, count, "{measured:#?}");
    assert!(measured.ipc_lock_dropped, "{measured:#?}");
    let read = measured.read_back.as_ref().expect("a read-back");
    assert_eq!(read.checked, 1_000, "{measured:#?}");
    assert!(read.all_exact(), "{measured:#?}");
    let span = measured.span.as_ref().expect("a footprint span");
    assert_eq!((span.from, span.to), (1, count), "{measured:#?}");
    assert_eq!(span.locked_growth(), 0, "VmLck grew: {measured:#?}");
    assert!(
        span.mapping_growth() <= 8,
        "mappings grew with the count: {measured:#?}"
    );
    let closed = measured.after_close.expect("a footprint after closing");
    assert!(
        closed.mappings <= span.last.mappings,
        "closing them all added mappings: {measured:#?}"
    );
    assert!(
        closed.locked_bytes <= read.locked_bytes_after.expect("VmLck after reading"),
        "closing them all locked more: {measured:#?}"
    );
}
