#!/usr/bin/env bash
# Checks that the published crates build with the minimum Rust version the workspace declares
# (`rust-version` in Cargo.toml), without dev-dependencies: the three libraries with default and with all
# features, and the CLI. The compiler is Debian's rustc-web/cargo-web of that version (bookworm main), unpacked
# into target/msrv-toolchain: nothing is installed over the default toolchain or over the rustc-web that
# scripts/xcheck.sh uses. Only the runtime libraries it links against are installed system-wide.
#
# Usage: scripts/msrv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "msrv: no rust-version in Cargo.toml" >&2; exit 1; }
series=$(echo "$msrv" | cut -d. -f1,2)
root=$PWD/target/msrv-toolchain/$msrv
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! "$root/usr/bin/rustc" -V 2>/dev/null | grep -q "^rustc $series\." ||
  ! "$root/usr/bin/cargo" -V >/dev/null 2>&1; then
  version() { apt-cache madison rustc-web | awk -v s="$series." '$3 ~ "^" s { print $3; exit }'; }
  v=$(version)
  if [ -z "$v" ]; then $SUDO apt-get update -qq; v=$(version); fi
  [ -n "$v" ] || { echo "msrv: Debian offers no rustc-web $series.x" >&2; apt-cache madison rustc-web >&2; exit 1; }
  # What the unpacked compiler and cargo link against (ordinary libraries, co-installable with anything).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "$(apt-cache show "libstd-rust-web-$series=$v" | sed -n 's/^Depends: .*\(libllvm[0-9]*\).*/\1/p' | head -1)" \
    libpcre3 libhttp-parser2.9 >/dev/null
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -q "rustc-web=$v" "cargo-web=$v" "libstd-rust-web-dev=$v" \
    "libstd-rust-web-$series=$v" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  [ "$(ls "$debs"/*.deb | wc -l)" = 4 ] || { echo "msrv: could not download rustc-web $v" >&2; exit 1; }
  rm -rf "$root"; mkdir -p "$root"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf "$debs"
fi
"$root/usr/bin/rustc" -V | grep "^rustc $msrv" || {
  echo "msrv: $("$root/usr/bin/rustc" -V) is not $msrv" >&2; exit 1; }

export RUSTC=$root/usr/bin/rustc RUSTDOC=$root/usr/bin/rustdoc
export CARGO_TARGET_DIR=$PWD/target/msrv
cargo=("$root/usr/bin/cargo")
libs=(-p securememory-memcall -p securememory-memguard -p securememory)
"${cargo[@]}" check --locked "${libs[@]}" --lib
"${cargo[@]}" check --locked "${libs[@]}" --lib --all-features
"${cargo[@]}" check --locked -p securememory-cli --bins
echo "msrv: the published crates build with Rust $msrv"
