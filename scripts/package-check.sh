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
