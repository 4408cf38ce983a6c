#!/usr/bin/env bash
# Builds the portable wheel the package ships (manylinux_2_17, stripped, linked against glibc 2.17 through zig) and
# the sdist, checks what they carry, then installs THAT wheel alone into a fresh venv and runs the pytest suite,
# mypy's stubtest and mypy --strict against it with no Rust toolchain on PATH, and a smoke run of the benchmark.
# Needs python3 (>= 3.9, with venv), a Rust toolchain, and access to PyPI (maturin, ziglang, auditwheel, test
# tools) and crates.io.
#
#   securememory-py/run-tests.sh            # venvs and wheels in ${CARGO_TARGET_DIR:-target}/py-*
#   PYTHON=python3.12 securememory-py/run-tests.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-$root/target}"
build_venv="$target/py-build-venv"
venv="${SECUREMEMORY_PY_VENV:-$target/py-venv}"
dist="$target/py-dist"
step() { printf '\n---- securememory-py: %s ----\n' "$*"; }
trap 'echo "securememory-py: FAILED during: ${current:-setup}" >&2' ERR

current="build tools ($build_venv)"; step "$current"
rm -rf "$build_venv"
"$python" -m venv "$build_venv"
"$build_venv/bin/python" -m pip --disable-pip-version-check install --quiet --upgrade pip
"$build_venv/bin/python" -m pip --disable-pip-version-check install --quiet "maturin>=1.9.4,<2" ziglang auditwheel

current="build the manylinux_2_17 wheel and the sdist"; step "$current"
rm -rf "$dist"
# zig links its own static libunwind in place of libgcc_s. But glibc ends a thread (pthread_exit, which CPython
# < 3.14 uses on daemon threads at exit) with a forced unwind driven by the system's libgcc_s, and that unwinder
# calling into frames whose personality routine uses the static libunwind crashes (SIGSEGV; see
# tests/test_processes.py). So the module links the system libgcc_s.so.1 (allowed by every manylinux policy) and
# takes its _Unwind_* from there. Its own target dir: these flags would otherwise invalidate other release builds.
libgcc_s="$(cc -print-file-name=libgcc_s.so.1)"
[ -f "$libgcc_s" ] || { echo "libgcc_s.so.1 not found (cc -print-file-name gave '$libgcc_s')" >&2; false; }
# The build venv first on PATH: maturin finds zig there (the ziglang package).
(cd "$here" && PATH="$build_venv/bin:$PATH" CARGO_TARGET_DIR="$target/py-wheel-build" \
  RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=$libgcc_s" \
  maturin build --release --compatibility manylinux2014 --zig --out "$dist")
(cd "$here" && PATH="$build_venv/bin:$PATH" maturin sdist --out "$dist")
wheels=("$dist"/securememory-*-cp39-abi3-*manylinux_2_17_"$(uname -m)"*.whl)
sdists=("$dist"/securememory-*.tar.gz)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one manylinux_2_17 wheel in $dist" >&2; false; }
wheel="${wheels[0]}"
sdist="${sdists[0]}"

current="check the wheel and the sdist"; step "$current"
"$build_venv/bin/auditwheel" show "$wheel" | tee "$dist/auditwheel.txt"
grep -q 'consistent with the following platform tag:' "$dist/auditwheel.txt"
grep -q "\"manylinux_2_17_$(uname -m)\"" "$dist/auditwheel.txt"
grep -q "libgcc_s.so.1" "$dist/auditwheel.txt"
"$build_venv/bin/python" - "$wheel" "$sdist" <<'EOF'
import sys, tarfile, zipfile

wheel, sdist = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    for license in ("LICENSE-APACHE", "LICENSE-MIT"):
        assert any(n.endswith(f".dist-info/licenses/{license}") for n in names), f"{license} missing from the wheel"
    metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for line in ("License-File: LICENSE-APACHE", "License-File: LICENSE-MIT", "License-Expression: Apache-2.0 OR MIT",
                 "Project-URL: Documentation", "Project-URL: Issues"):
        assert line in metadata, f"METADATA lacks {line!r}"
    native = zf.read(next(n for n in names if n.startswith("securememory/_native")))
    # Section names from the ELF64 section headers: a stripped module has no .symtab and no .debug_* sections.
    shoff = int.from_bytes(native[0x28:0x30], "little")
    shentsize, shnum, shstrndx = (int.from_bytes(native[o:o + 2], "little") for o in (0x3A, 0x3C, 0x3E))
    headers = [native[shoff + i * shentsize:shoff + (i + 1) * shentsize] for i in range(shnum)]
    strtab_at = int.from_bytes(headers[shstrndx][0x18:0x20], "little")
    sections = [native[strtab_at + int.from_bytes(h[0:4], "little"):].split(b"\0", 1)[0].decode() for h in headers]
    assert ".text" in sections, sections
    unstripped = [name for name in sections if name == ".symtab" or name.startswith(".debug")]
    assert not unstripped, f"the native module is not stripped: {unstripped}"
with tarfile.open(sdist) as tf:
    top = {m.name.split("/", 1)[1] for m in tf.getmembers() if m.name.count("/") == 1}
    for license in ("LICENSE-APACHE", "LICENSE-MIT"):
        assert license in top, f"{license} missing from the sdist"
print(f"wheel {wheel.rsplit('/', 1)[-1]}: {len(open(wheel, 'rb').read())} bytes, native module {len(native)} bytes")
EOF

current="create the test venv ($venv)"; step "$current"
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
"${pip[@]}" install --quiet "pytest>=7" "cryptography>=42" "mypy>=1.10" typing_extensions "numpy>=2"

current="install the wheel"; step "$current"
"${pip[@]}" install --quiet --no-index --no-deps "$wheel"

# A PATH with the venv and the few commands the tests use, and nothing of Rust: the tests must need no compiler.
tools="$target/py-test-path"
rm -rf "$tools"; mkdir -p "$tools"
for tool in sh bash env setpriv uname; do
  found="$(command -v "$tool" || true)"
  [ -n "$found" ] && ln -s "$found" "$tools/$tool"
done
test_env=(env -u CARGO_TARGET_DIR -u RUSTUP_TOOLCHAIN -u CARGO_HOME -u RUSTUP_HOME PATH="$venv/bin:$tools")
if "${test_env[@]}" sh -c 'command -v cargo || command -v rustc || command -v maturin'; then
  echo "a Rust toolchain is still on the tests' PATH" >&2; false
fi
# The installed wheel is what gets imported, not the source tree.
(cd "$here/tests" && "${test_env[@]}" python -c '
import securememory, sys
assert securememory.__file__.startswith(sys.prefix), securememory.__file__
print("testing", securememory.__file__, securememory.__version__)')

current="pytest"; step "$current"
(cd "$here/tests" && "${test_env[@]}" python -m pytest -c "$here/pyproject.toml" --rootdir "$here" -p no:cacheprovider "$here/tests")

# A short run of the benchmark, only to show it works: its figures are printed, never checked. The Rust
# baselines come from the securememory command-line tool: $SECUREMEMORY_CLI, or a release build of
# securememory-cli in the target dir (cargo build --release -p securememory-cli); without one the table says so.
current="benchmark smoke run (python -m securememory.bench --smoke)"; step "$current"
cli="${SECUREMEMORY_CLI:-}"
if [ -z "$cli" ] && [ -x "$target/release/securememory" ]; then cli="$target/release/securememory"; fi
(cd "$here/tests" && "${test_env[@]}" SECUREMEMORY_CLI="$cli" python -m securememory.bench --smoke)

current="stubtest"; step "$current"
(cd "$here/tests" && "${test_env[@]}" python -m mypy.stubtest securememory)

current="mypy --strict"; step "$current"
(cd "$here" && "${test_env[@]}" python -m mypy --strict --cache-dir=/dev/null python/securememory)

trap - ERR
step "all passed"
