#!/usr/bin/env bash
# Builds and installs the Python package into a fresh venv, then runs its pytest suite and mypy's stubtest.
# Needs python3 (>= 3.9, with venv), a Rust toolchain, and access to PyPI and crates.io.
#
#   securememory-py/run-tests.sh            # venv in ${CARGO_TARGET_DIR:-target}/py-venv (or $SECUREMEMORY_PY_VENV)
#   PYTHON=python3.12 securememory-py/run-tests.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="${SECUREMEMORY_PY_VENV:-$target/py-venv}"
step() { printf '\n---- securememory-py: %s ----\n' "$*"; }
trap 'echo "securememory-py: FAILED during: ${current:-setup}" >&2' ERR

current="create venv ($venv)"; step "$current"
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

current="install test tools"; step "$current"
"${pip[@]}" install --quiet --upgrade pip
"${pip[@]}" install --quiet "maturin>=1.9.4,<2" "pytest>=7" "cryptography>=42" "mypy>=1.10" typing_extensions "numpy>=2"

current="pip install ./securememory-py"; step "$current"
# Build into the workspace's own target dir so repeated runs reuse compiled crates.
(cd "$root" && CARGO_TARGET_DIR="$target" "${pip[@]}" install --quiet ./securememory-py)

current="pytest"; step "$current"
# Run from the tests dir so `securememory` is imported from the venv, not from the source tree.
(cd "$here/tests" && "$venv/bin/python" -m pytest -c "$here/pyproject.toml" --rootdir "$here" -p no:cacheprovider "$here/tests")

current="stubtest"; step "$current"
(cd "$here/tests" && "$venv/bin/python" -m mypy.stubtest securememory)

current="mypy --strict"; step "$current"
(cd "$here" && "$venv/bin/python" -m mypy --strict --cache-dir=/dev/null python/securememory)

trap - ERR
step "all passed"
