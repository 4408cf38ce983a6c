"""The GIL is kept where the binding cannot wait for Python code, and released where it could.

The binding keeps the GIL when it sees no other Python thread (one entry in `threading._active`). A thread the
interpreter did not start (a C library's thread calling into Python through ctypes or an extension's callback)
is not registered there, so these tests use one, and run in a child process with a timeout: a deadlock fails, never hangs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

FACTORY_NAMES = ["ProtectedMemorySecretFactory", "MemguardSecretFactory"]

FOREIGN_THREAD = textwrap.dedent(
    """
    import ctypes, sys, threading, time
    import securememory

    secret = securememory.{factory}().create_random(32)
    state = {{"inside": False, "seen": None}}

    def callback(view):
        state["inside"] = True
        time.sleep(0.3)  # releases the GIL inside the access window
        state["seen"] = bytes(view)

    THREAD = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)

    @THREAD
    def foreign(arg):
        try:
            secret.with_bytes(callback)
        except Exception as error:
            print("foreign thread:", type(error).__name__, error, flush=True)
        return None

    libc = ctypes.CDLL(None)
    libc.pthread_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    libc.pthread_join.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    thread = ctypes.c_ulong()
    assert libc.pthread_create(ctypes.byref(thread), None, foreign, None) == 0
    while not state["inside"]:
        time.sleep(0.01)
    assert len(threading._active) == 1, threading._active  # the binding sees no other Python thread
    {action}
    assert libc.pthread_join(thread.value, None) == 0
    assert state["seen"] is not None and len(state["seen"]) == 32
    print("ok", flush=True)
    """
)

ACTIONS = {
    # close() must wait for the foreign thread's callback with the GIL released: that callback needs the GIL to
    # return.
    "close": "secret.close(); assert secret.closed",
    # Entering the window the foreign thread holds open, and leaving it, never waits for it.
    "with_bytes": "assert secret.with_bytes(len) == 32",
    # Allocating and closing another secret never waits for it either.
    "new_close": "securememory.{factory}().new(bytearray(b'k' * 32)).close()",
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pthread_create through ctypes")
@pytest.mark.parametrize("factory_name", FACTORY_NAMES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_callback_in_a_thread_python_did_not_start_never_deadlocks(
    factory_name: str, action: str, tmp_path
) -> None:
    script = FOREIGN_THREAD.format(factory=factory_name, action=ACTIONS[action].format(factory=factory_name))
    try:
        child = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{action} deadlocked against a callback in a foreign thread")
    assert child.returncode == 0, child.stdout + child.stderr
    assert child.stdout.splitlines() == ["ok"], child.stdout + child.stderr


@pytest.fixture(params=[False, True], ids=["alone", "with-another-thread"])
def other_thread(request):
    """Runs the test with no other Python thread, or with one alive (waiting): the binding then releases the GIL
    around allocation and closing."""
    if not request.param:
        if len(threading._active) != 1:  # type: ignore[attr-defined]
            pytest.skip("another test left a thread running")
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_new_copies_and_wipes_every_kind_of_source(factory, other_thread) -> None:
    key = bytes(range(1, 33))
    source = bytearray(key)
    with factory.new(source) as secret:
        assert secret.with_bytes(bytes) == key
    assert source == bytearray(32)
    source.extend(b"more")  # no export is left behind: the array can be resized again
    assert len(source) == 36
    with factory.new(key) as secret:  # bytes cannot be wiped: copied, the copy wiped
        assert secret.with_bytes(bytes) == key
    view_source = bytearray(key)
    with factory.new(memoryview(view_source)[:16]) as secret:
        assert secret.with_bytes(bytes) == key[:16]
    assert view_source == bytearray(16) + bytearray(key[16:])
    with factory.create_random(48) as secret:
        assert len(secret.with_bytes(bytes)) == 48
    assert secret.closed
