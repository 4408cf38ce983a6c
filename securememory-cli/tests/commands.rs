//! Runs the real binary: `doctor --json` must report passing proofs on this host and `bench --quick --json` must
//! print one well-formed object per case.
#![cfg(unix)]

use std::process::{Command, Output};

use serde_json::Value;

fn securememory(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_securememory"))
        .args(args)
        .output()
        .expect("the securememory binary runs")
}

/// Sealed secrets the doctor's sealed capacity check holds in these tests: its default of 100,000 takes
/// minutes in a debug build, whose AES-256-GCM is unoptimised.
const SEALED_CHECK: &str = "2000";

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn doctor_json_reports_host_facts_capacity_and_passing_proofs() {
    let out = securememory(&[
        "doctor",
        "--json",
        "--size",
        "64",
        "--sealed-check",
        SEALED_CHECK,
    ]);
    let report = stdout_json(&out);
    assert_eq!(report["secret_size"], 64);

    let memlock = &report["host"]["memlock"];
    for key in [
        "soft_bytes",
        "hard_bytes",
        "cap_ipc_lock",
        "locked_now_bytes",
    ] {
        assert!(
            memlock.get(key).is_some(),
            "host.memlock.{key} missing: {memlock}"
        );
    }
    for key in ["rlimit_soft", "rlimit_hard", "core_pattern", "dumpable"] {
        assert!(
            report["host"]["core"].get(key).is_some(),
            "host.core.{key} missing"
        );
    }
    for key in [
        "no_dump",
        "no_fork",
        "no_huge_pages",
        "guard_install",
        "memfd_secret",
    ] {
        assert!(
            report["host"]["protections"][key]["works"].is_boolean(),
            "host.protections.{key}.works missing"
        );
    }

    let capacity = report["capacity"].as_array().expect("capacity is a list");
    assert!(!capacity.is_empty());
    let page = memcall::page_size() as u64;
    for c in capacity {
        if c["flavour"] == "sealed" {
            assert_eq!(c["locked_bytes_per_secret"], 0, "{c}");
            let m = &c["measured"];
            assert_eq!(m["count"], 2000, "{c}");
            assert_eq!(m["stopped_by"], "cap", "{c}");
            assert_eq!(m["read_back"]["exact"], m["read_back"]["checked"], "{c}");
            assert_eq!(
                m["span"]["first"]["locked_bytes"], m["span"]["last"]["locked_bytes"],
                "{c}"
            );
            continue;
        }
        assert_eq!(
            c["locked_bytes_per_secret"], page,
            "64 bytes round up to one page: {c}"
        );
        let measured = &c["measured"];
        if !measured.is_null() {
            let count = measured["count"].as_u64().expect("count");
            assert!(count > 0, "at least one secret fits: {c}");
            // Measured under the limit, the count cannot beat the arithmetic by more than the cap's slack; when
            // the limit is what stopped it, the arithmetic an operator reads must be within 10 % of reality.
            if let Some(arith) = c["by_arithmetic"].as_u64() {
                assert!(count <= arith + arith / 8 + 16, "{c}");
                if measured["stopped_by"] == "lock-limit" {
                    assert!(
                        count.abs_diff(arith) * 10 <= arith,
                        "arithmetic {arith} vs measured {count}: {c}"
                    );
                }
            }
        }
    }
    assert!(
        capacity.iter().any(|c| !c["measured"].is_null()),
        "some flavour was measured"
    );
    let flavours: Vec<&str> = capacity
        .iter()
        .filter_map(|c| c["flavour"].as_str())
        .collect();
    assert_eq!(
        flavours,
        ["memcall-region", "protected-memory", "memguard", "sealed"],
        "every flavour's capacity"
    );

    let proofs = report["proofs"].as_array().expect("proofs is a list");
    for name in [
        "fault-on-touch",
        "not-readable-after-fork",
        "not-in-core-file",
    ] {
        let of_kind: Vec<&Value> = proofs.iter().filter(|p| p["proof"] == name).collect();
        assert!(!of_kind.is_empty(), "no {name} proof ran");
        for p in of_kind {
            assert_eq!(p["status"], "pass", "{name} failed here: {p}");
            assert!(!p["evidence"].as_str().unwrap_or("").is_empty());
        }
    }

    assert_eq!(report["ok"], true, "failing: {}", report["failing"]);
    assert_eq!(report["failing"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        out.status.code(),
        Some(0),
        "doctor exits 0 when every guarantee holds"
    );
}

/// Runs the binary without CAP_IPC_LOCK (through util-linux `setpriv`) when this process has it, so the
/// locked-memory limit binds as it does for an unprivileged service.
fn securememory_unprivileged(args: &[&str]) -> Output {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if cap_eff & (1 << 14) == 0 {
        return securememory(args);
    }
    Command::new("setpriv")
        .args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"])
        .arg(env!("CARGO_BIN_EXE_securememory"))
        .args(args)
        .output()
        .expect("setpriv (util-linux) is needed to drop CAP_IPC_LOCK for this test")
}

#[test]
fn doctor_fails_naming_the_memlock_check_when_too_many_secrets_are_expected() {
    let out = securememory_unprivileged(&[
        "doctor",
        "--json",
        "--expect",
        "1000000",
        "--sealed-check",
        SEALED_CHECK,
    ]);
    let report = stdout_json(&out);
    assert_eq!(report["host"]["memlock"]["cap_ipc_lock"], false);
    if report["host"]["memlock"]["soft_bytes"].is_null() {
        return; // an unlimited RLIMIT_MEMLOCK holds any number of secrets
    }
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["ok"], false);
    let failing = report["failing"].as_array().unwrap();
    assert!(
        failing
            .iter()
            .all(|f| f.as_str().unwrap().starts_with("memlock capacity")),
        "only the capacity checks fail: {failing:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failing: memlock capacity"), "{stderr}");
    let fix = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "fail")
        .and_then(|c| c["fix"].as_str())
        .unwrap_or("");
    assert!(
        fix.contains("ulimit -l") && fix.contains("LimitMEMLOCK") && fix.contains("IPC_LOCK"),
        "{fix}"
    );
    // The sealed flavour held its secrets without locked memory, so the advice names it.
    let sealed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "capacity (sealed)")
        .expect("a sealed capacity check");
    assert_ne!(sealed["status"], "fail", "{sealed}");
    assert!(fix.contains("SealedSecretFactory"), "{fix}");
}

#[test]
fn bench_quick_json_prints_one_object_per_case() {
    let out = securememory(&["bench", "--quick", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        rows.len() >= 10,
        "the whole benchmark set is listed:\n{text}"
    );
    // The memory row has a figure in bytes, not nanoseconds.
    let (memory, rows): (Vec<Value>, Vec<Value>) = rows
        .into_iter()
        .partition(|r| r.get("bytes_per_secret").is_some());
    assert_eq!(memory.len(), 1, "one memory row:\n{text}");
    assert_eq!(memory[0]["name"], "sealed/memory_per_secret");
    assert_eq!(
        memory[0]["count"], 20_000,
        "--quick holds 20,000: {}",
        memory[0]
    );
    assert!(
        memory[0]["bytes_per_secret"]
            .as_f64()
            .is_some_and(|b| b > 0.0),
        "{}",
        memory[0]
    );
    assert_eq!(memory[0]["locked_growth_bytes"], 0, "{}", memory[0]);
    let mut measured = 0;
    for row in &rows {
        for key in ["name", "ns_per_op", "baseline", "baseline_ns", "ratio"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        assert!(row["name"].is_string() && row["baseline"].is_string());
        match (
            row["ns_per_op"].as_f64(),
            row["baseline_ns"].as_f64(),
            row["ratio"].as_f64(),
        ) {
            (Some(ns), Some(base), Some(ratio)) => {
                measured += 1;
                assert!(ns > 0.0 && base > 0.0, "{row}");
                assert!(
                    (ratio - ns / base).abs() <= 1e-6 * ratio.max(1.0),
                    "ratio is ns/baseline: {row}"
                );
            }
            (None, None, None) => {
                let note = row["note"].as_str().unwrap_or("");
                assert!(
                    note.contains("not available"),
                    "a row without figures says why: {row}"
                );
            }
            _ => panic!("figures must be all present or all absent: {row}"),
        }
    }
    assert!(measured > 0, "at least one case was timed:\n{text}");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    for case in [
        "with_bytes/protected_memory",
        "with_bytes/memguard",
        "with_bytes/2_threads_one_secret",
        "with_bytes/1_MiB",
        "new_close/protected_memory",
        "new_close/memguard",
        "create_random_close/protected_memory",
        "create_random_close/memguard",
        "locked_buffer/new_destroy",
        "enclave/seal_open",
        "stream/1_MiB_write_read",
        "with_bytes/sealed",
        "new_close/sealed",
        "create_random_close/sealed",
        "with_bytes/sealed/2_threads",
        "with_bytes/sealed/1_MiB",
        "aead/aes256gcm_open_1_MiB",
    ] {
        assert!(names.contains(&case), "{case} missing from {names:?}");
    }
}

#[test]
fn help_and_version_work_and_bad_sizes_are_refused() {
    let help = securememory(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("doctor") && text.contains("bench") && !text.contains("__child"));

    let version = securememory(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));

    let zero = securememory(&["doctor", "--size", "0"]);
    assert_eq!(zero.status.code(), Some(2), "clap rejects a zero size");
}

#[test]
fn doctor_text_fits_100_columns_unless_wide_and_json_checks_name_their_scenario() {
    let narrow = Command::new(env!("CARGO_BIN_EXE_securememory"))
        .args(["doctor", "--sealed-check", SEALED_CHECK])
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&narrow.stdout);
    assert!(text.contains("Checks and live proofs"), "{text}");
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{line:?}");
    }
    let wide = securememory(&["doctor", "--wide", "--sealed-check", SEALED_CHECK]);
    let wide_text = String::from_utf8_lossy(&wide.stdout);
    assert!(
        wide_text.lines().any(|l| l.chars().count() > 100),
        "{wide_text}"
    );
    assert_eq!(narrow.status.code(), wide.status.code());

    let report = stdout_json(&securememory(&[
        "doctor",
        "--json",
        "--sealed-check",
        SEALED_CHECK,
    ]));
    let registry = ["probe", "fill", "fault", "fork", "core"];
    for check in report["checks"].as_array().expect("checks") {
        match &check["scenario"] {
            Value::Null => {}
            Value::String(name) => assert!(registry.contains(&name.as_str()), "{check}"),
            other => panic!("scenario must be a name or null, not {other}: {check}"),
        }
    }
    for proof in report["proofs"].as_array().expect("proofs") {
        assert!(proof["scenario"].is_string(), "{proof}");
    }
    for scenario in ["probe", "fill", "fault", "fork", "core"] {
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["scenario"] == scenario),
            "no check ran {scenario}"
        );
    }
}

#[test]
fn the_internal_child_entry_refuses_to_run_without_a_scenario() {
    let out = securememory(&["__child"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn absurd_expect_is_a_usage_error_not_a_panic() {
    for expect in ["18446744073709551615", "1000000000001", "0"] {
        let out = securememory(&["doctor", "--expect", expect]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--expect {expect}: {stderr}");
        assert!(stderr.contains("--expect"), "--expect {expect}: {stderr}");
        assert!(!stderr.contains("panicked"), "--expect {expect}: {stderr}");
    }
}

#[test]
fn doctor_leaves_no_core_file_in_the_working_directory() {
    let dir = std::env::temp_dir().join(format!("securememory-cli-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Core files allowed (raising the soft limit may be refused; the test then proves less, not nothing).
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -c unlimited 2>/dev/null; exec \"$0\" doctor --json --sealed-check \"$1\"",
    ])
    .arg(env!("CARGO_BIN_EXE_securememory"))
    .arg(SEALED_CHECK)
    .current_dir(&dir)
    .env("SECUREMEMORY_KEEP_CORE_DUMPS", "1");
    let out = cmd.output().expect("the securememory binary runs");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        left.is_empty(),
        "doctor left files in its working directory: {left:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_and_man_page_are_generated_from_the_command_definition() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = securememory(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(
            script.contains("doctor") && script.contains("expect"),
            "{shell}: {script}"
        );
        assert!(
            !script.contains("__child"),
            "{shell}: internal subcommand leaked"
        );
    }
    let out = securememory(&["man"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        page.starts_with(".ie") || page.contains(".TH securememory 1"),
        "{page}"
    );
    assert!(
        page.contains("doctor") && !page.contains("__child"),
        "{page}"
    );
}

#[test]
fn help_fits_a_100_column_terminal() {
    for args in [
        &["--help"][..],
        &["doctor", "--help"],
        &["bench", "--help"],
        &["completions", "--help"],
        &["man", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_securememory"))
            .args(args)
            .env("COLUMNS", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            assert!(line.chars().count() <= 100, "{args:?}: {line:?}");
        }
    }
}
