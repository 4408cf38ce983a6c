#!/usr/bin/env bash
# Type-checks (check + clippy -D warnings) the workspace for the non-Linux platforms we support but cannot run
# here. Uses Debian's Rust 1.96 with its matching std source to build std for each target (-Zbuild-std);
# scripts/setup-xcheck.sh installs it. Nothing is linked or run.
#
# Usage: scripts/xcheck.sh [TARGET...]      (default: every supported non-Linux target)
set -uo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-pc-windows-msvc x86_64-apple-darwin aarch64-apple-darwin
  x86_64-unknown-freebsd x86_64-unknown-netbsd x86_64-unknown-openbsd x86_64-unknown-illumos)
# The crates that make sense off Linux: the Python binding and the CLI are built and tested on Linux only.
packages=(${XCHECK_PACKAGES:-$(sed -n 's/^xcheck-packages = \[\(.*\)\]/\1/p' Cargo.toml | tr -d '",')})
pkg_args=(); for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done
export RUSTC_BOOTSTRAP=1
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_TARGET_DIR=${XCHECK_TARGET_DIR:-$PWD/target/xcheck}
fail=0
for t in "${targets[@]}"; do
  start=$SECONDS
  if cargo +debian clippy -q -Zbuild-std --target "$t" "${pkg_args[@]}" --all-features --lib -- -D warnings; then
    r=ok
  else
    r=FAILED; fail=1
  fi
  echo "xcheck: $t: check+clippy $r ($((SECONDS - start)) s)"
done
exit $fail
