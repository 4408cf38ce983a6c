"""Objects that keep a raw pointer into a secret past with_bytes are reported, and can never read another secret.

numpy (`frombuffer`, `asarray`, `array(copy=None)`) keeps the pointer and holds a derived memoryview as the
array's base; `pickle.PickleBuffer` holds an export that keeps the view from being released. Either way
`with_bytes` raises BufferError and quarantines the secret's pages: after `close()` they are wiped, left
no-access and never given to another secret, so reading the stale object faults instead of returning the next
secret's bytes. Each stale read runs in a child process, inside the window of a new secret of the same size.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap

import pytest

import securememory

numpy = pytest.importorskip("numpy")

FACTORY_NAMES = ["ProtectedMemorySecretFactory", "MemguardSecretFactory", "SealedSecretFactory"]

# How each case makes the object from the view, and how the child then reads it.
CASES = {
    "numpy.frombuffer": ("numpy.frombuffer(view, numpy.uint8)", "stale.tobytes()"),
    "numpy.asarray": ("numpy.asarray(view)", "stale.tobytes()"),
    "numpy.array(copy=None)": ("numpy.array(view, copy=None)", "stale.tobytes()"),
    "memoryview.cast": ("view.cast('B', shape=[SIZE // 8, 8])", "stale.tobytes()"),
    "pickle.PickleBuffer": ("pickle.PickleBuffer(view)", "bytes(stale.raw())"),
    "ctypes.c_char.from_buffer": ("ctypes.c_char.from_buffer(view)", "stale.raw"),
    "(ctypes.c_char * n).from_buffer": ("(ctypes.c_char * SIZE).from_buffer(view)", "bytes(stale)"),
}

STALE_READ_CHILD = textwrap.dedent(
    """
    import ctypes, pickle, sys
    import numpy
    import securememory

    SIZE = 64
    OLD, NEW = bytes([0x11]) * SIZE, bytes([0x5A]) * SIZE
    factory = securememory.{factory}()
    secret = factory.new(bytearray(OLD))
    kept = []
    try:
        secret.with_bytes(lambda view: kept.append({make}))
    except BufferError as error:
        print("BufferError:", error, flush=True)
    except TypeError as error:
        print("refused:", error, flush=True)
        sys.exit(0)
    else:
        print("not reported", flush=True)
    stale = kept[0]
    secret.close()
    new = factory.new(bytearray(NEW))

    def read_stale(view):
        assert bytes(view) == NEW
        print("reading", flush=True)
        try:
            data = {read}
        except Exception as error:
            print("raised", type(error).__name__, flush=True)
            return
        print("read", bytes(data).hex(), flush=True)

    new.with_bytes(read_stale)
    """
)


def run_child(script: str, tmp_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("factory_name", FACTORY_NAMES)
@pytest.mark.parametrize("case", list(CASES))
def test_stale_object_never_reads_the_next_secret(case: str, factory_name: str, tmp_path) -> None:
    make, read = CASES[case]
    child = run_child(STALE_READ_CHILD.format(factory=factory_name, make=make, read=read), tmp_path)
    lines = child.stdout.splitlines()
    new_hex = (bytes([0x5A]) * 64).hex()
    assert new_hex[:16] not in child.stdout, f"the stale {case} read the new secret: {child.stdout}"
    assert lines, child.stderr
    if case.startswith("ctypes") or case.startswith("(ctypes"):
        # ctypes' from_buffer needs a writable buffer; the view is read-only, so nothing escapes at all.
        assert lines == ["refused: underlying buffer is not writable"], child.stdout + child.stderr
        assert child.returncode == 0, child.stderr
        return
    assert lines[0].startswith("BufferError: 1 view(s) of the secret outlived"), child.stdout + child.stderr
    assert lines[1] == "reading", child.stdout + child.stderr
    if child.returncode == 0:
        # A released memoryview refuses to read: the only acceptable non-crash outcome.
        assert lines[2:] == ["raised ValueError"], child.stdout + child.stderr
    else:
        assert child.returncode == -signal.SIGSEGV, child.stdout + child.stderr
        assert lines[2:] == []


@pytest.mark.parametrize("case", ["numpy.frombuffer", "numpy.asarray", "numpy.array(copy=None)"])
def test_numpy_array_over_the_view_is_reported(factory, case: str) -> None:
    make = {
        "numpy.frombuffer": lambda view: numpy.frombuffer(view, numpy.uint8),
        "numpy.asarray": lambda view: numpy.asarray(view),
        "numpy.array(copy=None)": lambda view: numpy.array(view, copy=None),
    }[case]
    kept: list[object] = []
    with factory.new(bytearray(range(32))) as secret:
        with pytest.raises(BufferError, match="not track, such as a numpy array") as raised:
            secret.with_bytes(lambda view: kept.append(make(view)))
        assert "quarantined until every one of them is gone" in str(raised.value)
        # Using an array inside the callback, without keeping it, is fine.
        assert secret.with_bytes(lambda view: int(make(view).sum())) == sum(range(32))


def locked_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmLck from /proc")
def test_quarantine_lasts_exactly_as_long_as_the_escaped_object(factory) -> None:
    size = 10 * 4096
    factory.create_random(size).close()  # first use may set up process-wide state that stays
    gc.collect()
    securememory.trim_caches()
    before = locked_kib()
    secret = factory.create_random(size)
    kept: list[object] = []
    with pytest.raises(BufferError):
        secret.with_bytes(lambda view: kept.append(numpy.frombuffer(view, numpy.uint8)))
    secret.close()
    del secret
    gc.collect()
    securememory.trim_caches()
    # Closed and gone, but quarantined: wiped and no-access, still mapped (and locked), never pooled or trimmed.
    assert locked_kib() >= before + size // 1024
    kept.clear()  # the array, and with it the derived view it held, is gone
    gc.collect()
    securememory.trim_caches()
    assert locked_kib() <= before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmLck from /proc")
def test_quarantine_waits_for_the_last_of_several_escaped_objects(factory) -> None:
    size = 10 * 4096
    factory.create_random(size).close()
    gc.collect()
    securememory.trim_caches()
    before = locked_kib()
    first: list[object] = []
    second: list[object] = []

    def callback(view: memoryview) -> None:
        first.append(numpy.frombuffer(view, numpy.uint8))
        second.append(view[1:])

    secret = factory.create_random(size)
    with pytest.raises(BufferError, match="2 view"):
        secret.with_bytes(callback)
    del secret  # closed by garbage collection
    gc.collect()
    securememory.trim_caches()
    assert locked_kib() >= before + size // 1024
    first.clear()
    gc.collect()
    securememory.trim_caches()
    assert locked_kib() >= before + size // 1024  # the kept slice still holds the quarantine
    second.clear()
    gc.collect()
    securememory.trim_caches()
    assert locked_kib() <= before
