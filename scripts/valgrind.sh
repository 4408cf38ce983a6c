#!/usr/bin/env bash
# Runs the Rust test suites of memcall, memguard and securememory, and the in-process guarantee tests, under
# valgrind memcheck: invalid reads/writes, use of uninitialised memory and definite/indirect leaks fail the run.
#
# What cannot run under valgrind, and is skipped out loud (each skip is printed):
# - the loom model (built only with --cfg loom; the plain binary holds no test);
# - the soak (release-only, 10^6 cycles) and the other guarantee binaries whose every test runs in a child
#   process: valgrind does not follow exec, so those children run natively and valgrind would only watch the
#   parent wait for them.
# Valgrind 3.19 answers mlock2 and memfd_secret with ENOSYS ("unhandled syscall"). memcall locks with
# mlock2(MLOCK_ONFAULT) and falls back to mlock on ENOSYS, so under valgrind the fallback is what runs (printed
# at the start; the lock-on-fault path itself is covered by the native runs only); memfd_secret is not used.
#
# Usage: scripts/valgrind.sh            (about 5-10 minutes on a 2-core machine)
# Env:   CARGO_TARGET_DIR (default target/valgrind), VALGRIND_TIMEOUT per binary in seconds (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/valgrind}"
timeout_s="${VALGRIND_TIMEOUT:-600}"

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is not installed (apt-get install jq)" >&2; exit 1; }

# Whole binaries not run, as "crate-dir:target  reason".
SKIP_BINARIES=(
  "securememory:loom  the loom model needs --cfg loom and runs in scripts/test.sh"
  "guarantees:soak  release-only soak (cargo test --release -p securememory-guarantees --test soak)"
  "guarantees:core_dump  every test runs in a child process, which valgrind does not follow"
  "guarantees:fault  every test runs in a child process, which valgrind does not follow"
  "guarantees:fork  every test runs in a child process, which valgrind does not follow"
  "guarantees:memlock  every test runs in a child process, which valgrind does not follow"
  "guarantees:races  every test runs in a child process, which valgrind does not follow"
  "guarantees:wipe  every test runs in a child process, which valgrind does not follow"
  "guarantees:fork_lifecycle  every test runs in a child process, which valgrind does not follow"
  "guarantees:signal_exit  every test runs in a child process, which valgrind does not follow"
  "guarantees:stream_copies  every test runs in a child process, which valgrind does not follow"
  "guarantees:input_no_copy  every test runs in a child process, which valgrind does not follow"
  "guarantees:doctor_scenarios  every test runs in a child process, which valgrind does not follow"
  "guarantees:env_no_copy  every test runs in a child process, which valgrind does not follow"
  "guarantees:secret_memory  every test runs in a child process (traced by the parent), which valgrind does not follow"
  "guarantees:enclave_key  keyed operations switch to memguard's private stack, which memcheck cannot follow (see below)"
  "guarantees:purge_race  enclaves (private stack, see below), and 500,000 operations"
  "memguard:memguard  unit tests of the private stack and the coffer (private stack, see below)"
  "memguard:enclave  keyed operations run on memguard's private stack (see below)"
  "memguard:stream  keyed operations run on memguard's private stack (see below)"
  "memguard:stream_reuse  keyed operations run on memguard's private stack (see below)"
  "memguard:purge  the enclave key's rekeying runs on memguard's private stack (see below)"
  "securememory:glob_import  opens a memguard Enclave, whose keyed operations run on the private stack (see below)"
  "securememory:sealed  sealing and opening run on memguard's private stack (see below)"
  "guarantees:sealed_tamper  sealing and opening run on memguard's private stack (see below)"
  "guarantees:sealed_capacity  every test runs in a child process, which valgrind does not follow"
  "guarantees:sealed_core  every proof runs in a child process (and the key-window search would take hours under memcheck)"
  "guarantees:sealed_races  every test runs in a child process, which valgrind does not follow"
  "guarantees:sealed_wipe  every test runs in a child process, which valgrind does not follow"
)
# The private stack: memguard runs every keyed operation (enclaves, streams, the coffer's re-split, sealing and
# opening sealed secrets) on a stack it switches to itself, in locked no-dump pages, so the key never sits on an
# ordinary stack. memcheck tracks one stack per thread and reports every access on a switched-to stack as
# invalid; those binaries are skipped here and covered by the native runs. In the binaries that run, the tests
# of the sealed flavour (every one has "sealed" in its name: the generic suites put them in a `sealed` module)
# are skipped for the same reason.
SKIP_TESTS=(--skip sealed)

valgrind_args=(
  --quiet
  --error-exitcode=1
  --leak-check=full
  --show-leak-kinds=definite,indirect
  --errors-for-leak-kinds=definite,indirect
  # Children forked by a test inherit every live allocation of the parent and exit with _exit: checking them
  # for leaks would report the parent's memory. Their own faults are asserted by the tests.
  --child-silent-after-fork=yes
  --fair-sched=yes
  --suppressions=scripts/valgrind.supp
)

echo "NOTE: valgrind answers mlock2 with ENOSYS, so memcall's plain-mlock fallback runs here instead of lock-on-fault"
echo "NOTE: tests named *sealed* are skipped in every binary (the sealed flavour runs on memguard's private stack)"
echo "==== building test binaries ($CARGO_TARGET_DIR)"
mapfile -t binaries < <(
  cargo test --locked -p securememory-memcall -p securememory-memguard -p securememory -p securememory-guarantees \
    --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test)
           | "\(.manifest_path | split("/") | .[-2]):\(.target.name) \(.executable)"'
)
[ "${#binaries[@]}" -gt 0 ] || { echo "no test binaries were built" >&2; exit 1; }

# The warning's first line can follow the test harness's progress dots on the same line.
mlock2_noise='s/--[0-9]+-- WARNING: unhandled amd64-linux syscall: 325//; /^--[0-9]+-- (You may be able to write your own handler|Read the file README_MISSING_SYSCALL_OR_IOCTL|Nevertheless we consider this a bug|it at http:\/\/valgrind.org\/support\/bug_reports.html)/d'
failed=()
for entry in "${binaries[@]}"; do
  name="${entry%% *}"
  exe="${entry#* }"
  skip_reason=""
  for s in "${SKIP_BINARIES[@]}"; do
    [ "${s%%  *}" = "$name" ] && skip_reason="${s#*  }"
  done
  if [ -n "$skip_reason" ]; then
    echo "---- SKIPPED $name: $skip_reason"
    continue
  fi
  echo "==== valgrind $name"
  start=$SECONDS
  # valgrind prints a five-line warning for every mlock2 call it does not know (the NOTE above); drop those.
  if timeout "$timeout_s" valgrind "${valgrind_args[@]}" "$exe" --test-threads=1 -q "${SKIP_TESTS[@]}" 2>&1 |
    sed -E "$mlock2_noise"; then
    echo "     ok in $((SECONDS - start)) s"
  else
    echo "     FAILED ($name, after $((SECONDS - start)) s)"
    failed+=("$name")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "valgrind found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "==== valgrind: all clean"
