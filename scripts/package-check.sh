#!/usr/bin/env bash
# Checks that every publishable crate of the workspace would publish: `cargo publish --dry-run --workspace`
# packages them all together (in dependency order, each verified by building it from its packaged sources
# against the others), then each package's file list must hold LICENSE-APACHE and LICENSE-MIT (the same text
# as the workspace's) and, where its manifest sets `readme`, that file. Needs the crates.io index; nothing is
# uploaded. Extra arguments go to `cargo publish` (e.g. --allow-dirty for a working tree with changes).
#
# Usage: scripts/package-check.sh [CARGO PUBLISH ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "package-check: $*" >&2; exit 1; }

# name, manifest directory and readme of each publishable package (`publish` unset or naming a registry).
mapfile -t crates < <(cargo metadata --locked --no-deps --format-version 1 | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") != []:
        d = os.path.dirname(p["manifest_path"])
        readme = os.path.relpath(os.path.join(d, p["readme"]), d) if p.get("readme") else ""
        print(p["name"], d, readme, sep="\t")
')
[ ${#crates[@]} -gt 0 ] || fail "no publishable package found"

# The dry run verifies each package against the others through a temporary local registry, and cargo extracts
# those packages under $CARGO_HOME/registry/src/ once per name and version: an earlier run's extraction of the
# same version (with older sources) would be reused. Remove this workspace's own extractions first.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
mapfile -t extracted < <(cargo metadata --locked --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") != []:
        print(p["name"] + "-" + p["version"])
')
for id in "${extracted[@]}"; do
  for stale in "$cargo_home"/registry/src/*/"$id"; do
    if [ -d "$stale" ]; then rm -rf "$stale"; fi
  done
done
# Likewise their build outputs: cargo takes a registry package's sources as fixed per version, so the
# verification builds in a target directory of its own, emptied first.
target_dir=$(cargo metadata --locked --no-deps --format-version 1 | python3 -c '
import json, sys
print(json.load(sys.stdin)["target_directory"])')
export CARGO_TARGET_DIR="$target_dir/package-check"
rm -rf "$CARGO_TARGET_DIR"

cargo publish --dry-run --workspace --locked "$@" || fail "cargo publish --dry-run failed"

for line in "${crates[@]}"; do
  IFS=$'\t' read -r name dir readme <<<"$line"
  list=$(cargo package --list --locked --allow-dirty -p "$name") || fail "$name: cargo package --list failed"
  required=(LICENSE-APACHE LICENSE-MIT ${readme:+"$readme"})
  for file in "${required[@]}"; do
    grep -qxF "$file" <<<"$list" || fail "$name: $file is not in the package"
  done
  for file in LICENSE-APACHE LICENSE-MIT; do
    cmp -s "$dir/$file" "$file" || fail "$name: $dir/$file differs from the workspace's $file"
  done
  echo "package-check: $name ships ${required[*]}"
done
echo "package-check: ${#crates[@]} crates package and verify"
