#!/usr/bin/env bash
# Runs the Windows backend: cross-builds the tests (unit, integration and doc tests) of memcall, memguard and
# securememory for x86_64-pc-windows-gnu and runs every test executable under Wine, in a fresh prefix in a
# temporary directory. Any failing test, load failure or crash fails the script.
#
# Installs what it needs from Debian (root, idempotent): Debian's Rust 1.96 with its std source (as
# scripts/setup-xcheck.sh does; std is built for the target with -Zbuild-std), the MinGW-w64 linker and wine64 8.
#
# Two things Wine 8 lacks are handled here, not in the library:
# - bcryptprimitives.dll, from which Rust's std imports ProcessPrng: a forwarding DLL built with MinGW
#   (ProcessPrng -> advapi32's RtlGenRandom) goes into the prefix's system32;
# - a crash must fail, not start Wine's debugger (which exits 0): winedbg is disabled.
# What Wine cannot show: real Windows Error Reporting exclusion (kernel32 has no WerRegisterExcludedMemoryBlock,
# so the tests see it reported as unsupported) and real working-set quotas (SetProcessWorkingSetSize is a stub;
# VirtualLock is a real mlock bounded by RLIMIT_MEMLOCK).
#
# Usage: scripts/wine-test.sh [extra cargo test args, e.g. -p securememory-memcall --test round_trip]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-pc-windows-gnu
start=$SECONDS

# --- tools -------------------------------------------------------------------------------------------------
scripts/setup-xcheck.sh >/dev/null
need=()
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64-win32)
[ -x /usr/lib/wine/wine64 ] || need+=(wine64)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's wine64 package does not put its loader on PATH.
WINE=/usr/lib/wine/wine64 WINESERVER=/usr/lib/wine/wineserver
[ -x "$WINE" ] || { echo "wine-test: $WINE missing after installing wine64" >&2; exit 1; }

# --- a fresh prefix with the missing DLL -------------------------------------------------------------------
tmp=$(mktemp -d)
cleanup() {
  local rc=$?
  "$WINESERVER" -k 2>/dev/null || true
  "$WINESERVER" -w 2>/dev/null || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
export WINEPREFIX=$tmp/prefix WINEARCH=win64 WINEDEBUG=-all
# No Mono/Gecko install prompts while the prefix is made; winedbg disabled so an unhandled exception ends the
# process with its exception code instead of a debugger session that exits 0.
export WINEDLLOVERRIDES="mscoree,mshtml=;winedbg.exe=d"
"$WINE" wineboot --init >/dev/null 2>&1
"$WINESERVER" -w

cat >"$tmp/bcryptprimitives.c" <<'EOF'
/* Wine 8 has no bcryptprimitives.dll; Rust's std needs its ProcessPrng. RtlGenRandom is advapi32's
   SystemFunction036. ProcessPrng is documented to always succeed, so a failure of the source aborts. */
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) { ExitProcess(0xC0000420u); }
        data += n;
        len -= n;
    }
    return TRUE;
}
EOF
x86_64-w64-mingw32-gcc -O2 -shared -s -o "$tmp/bcryptprimitives.dll" "$tmp/bcryptprimitives.c" -ladvapi32
cp "$tmp/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
echo "wine-test: prefix ready ($((SECONDS - start)) s)"

# --- build and run -----------------------------------------------------------------------------------------
# Each test executable (and each doc test) runs through this runner: it reports how the process ended, so a
# crash (0xC0000005 and friends) is named in the log and fails the run.
cat >"$tmp/run" <<EOF
#!/usr/bin/env bash
"$WINE" "\$@"
rc=\$?
if [ \$rc -ne 0 ]; then printf 'wine-test: %s exited with %d (0x%X)\n' "\$1" \$rc \$rc >&2; fi
exit \$rc
EOF
chmod +x "$tmp/run"

export RUSTC_BOOTSTRAP=1
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_TARGET_DIR=${WINE_TARGET_DIR:-$PWD/target/wine}
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$tmp/run
# Child-process tests and the guarantee proofs run inside the same Wine session.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-2}
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-p securememory-memcall -p securememory-memguard -p securememory)
log=$tmp/log
set +e
cargo +debian test -Zbuild-std --locked --target "$TARGET" --all-features --no-fail-fast "${args[@]}" 2>&1 |
  tee "$log"
rc=${PIPESTATUS[0]}
if [ $# -eq 0 ]; then
  # The real lock limit, not an injected failure: Wine's VirtualLock is mlock, so a process without
  # CAP_IPC_LOCK under a 256 KiB RLIMIT_MEMLOCK reaches it.
  printf '#!/usr/bin/env bash\nexec setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock prlimit --memlock=262144:262144 %q "$@"\n' \
    "$tmp/run" >"$tmp/run-limited"
  chmod +x "$tmp/run-limited"
  CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$tmp/run-limited \
    cargo +debian test -Zbuild-std --locked --target "$TARGET" --all-features -p securememory-memcall \
    --test windows_faults -- --ignored --exact real_lock_limit_is_reported_as_the_lock_limit --nocapture 2>&1 |
    tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi
set -e

echo
echo "wine-test: summary ($((SECONDS - start)) s)"
awk '/Running |Doc-tests /{name=$0} /^test result:/{print "  " name " -> " $0}' "$log" | sed 's/ *(.*)//'
if [ "$rc" -ne 0 ]; then
  echo "wine-test: FAILED (cargo exit $rc)" >&2
  exit "$rc"
fi
echo "wine-test: all Windows tests passed under Wine"
