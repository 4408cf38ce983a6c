#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test (unit, integration, child-process, doc tests), the
# loom model, docs with warnings denied, the cross-platform type-check and the Python package's tests.
# Installs what it needs (Debian packages for the cross-check, a venv from PyPI for Python). Fails on the first
# failing step and says which.
#
# `scripts/test.sh --quick` runs only formatting, lints and the Rust tests: a contributor's first run, with
# nothing installed beyond the Rust toolchain.
set -euo pipefail
quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n==== %s ====\n' "$*"; }
trap 'echo; echo "FAILED during: ${current:-setup}" >&2' ERR

if $quick; then
  current="cargo fmt --check"; step "$current"; cargo fmt --all --check
  current="cargo clippy"; step "$current"
  cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
  current="cargo test"; step "$current"
  SECUREMEMORY_SKIP_CORE_TESTS=${SECUREMEMORY_SKIP_CORE_TESTS:-1} cargo test --locked --workspace --all-features
  trap - ERR
  step "quick checks passed (the full suite: scripts/test.sh)"
  exit 0
fi

current="tools"; step "system tools the tests use (valgrind, jq, gdb's gcore)"
missing=(); for tool in valgrind jq gcore; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  packages=("${missing[@]/gcore/gdb}")
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

current="cargo fmt --check"; step "$current"
cargo fmt --all --check

current="cargo clippy"; step "$current"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

current="cargo test (all features)"; step "$current"
cargo test --locked --workspace --all-features

current="cargo test (default features)"; step "$current"
cargo test --locked --workspace

current="loom models (secret access state machine, guarded buffer access and purge)"; step "$current"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked -p securememory --release --test loom
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked -p securememory-memguard --lib --release loom

current="soak: 10^6 create/close cycles, and the sealed flavour's 10^6 secrets and full races, release build"; step "$current"
cargo test --locked --release -p securememory-guarantees --test soak --test sealed_capacity --test sealed_races

current="valgrind memcheck"; step "$current"
scripts/valgrind.sh

current="cargo doc"; step "$current"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --all-features

current="minimum supported Rust (rust-version)"; step "$current"
scripts/msrv.sh

current="packaging (publish dry run, licence and README files)"; step "$current"
scripts/package-check.sh

current="cross-platform type-check"; step "$current"
scripts/setup-xcheck.sh
scripts/xcheck.sh

current="Windows backend under Wine (x86_64-pc-windows-gnu)"; step "$current"
scripts/wine-test.sh

if [ -x securememory-py/run-tests.sh ]; then
  current="Python package"; step "$current"
  # The package's benchmark smoke run compares with the Rust rows of this CLI.
  cargo build --locked --release -p securememory-cli
  SECUREMEMORY_CLI="$PWD/target/release/securememory" securememory-py/run-tests.sh
fi

trap - ERR
step "all checks passed"
