#!/usr/bin/env bash
# Installs what scripts/xcheck.sh needs (idempotent; needs root on Debian 12 with rustup): Debian's Rust 1.96
# compiler, cargo and clippy with the std source that matches them, linked into rustup as toolchain "debian".
set -euo pipefail
if rustc +debian -V >/dev/null 2>&1 && cargo +debian clippy -V >/dev/null 2>&1; then exit 0; fi
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  rustc-web cargo-web rust-web-clippy rust-web-src >/dev/null
test -f "$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library/Cargo.lock"
rustup toolchain link debian /usr
rustc +debian -V
