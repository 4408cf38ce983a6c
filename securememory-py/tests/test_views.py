"""A memoryview kept past with_bytes never reads protected or freed memory: it raises ValueError."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

KEY = bytes(range(100, 132))


def keep(kept: list[memoryview]):
    def callback(view: memoryview) -> None:
        kept.append(view)
        kept.append(view[4:12])
        kept.append(view.cast("B", shape=[4, 8]))
        kept.append(memoryview(view))
        kept.append(view.toreadonly())
        kept.append(view[1:][2:])

    return callback


def uses(view: memoryview):
    return [
        lambda: view[0],
        lambda: bytes(view),
        lambda: view.tobytes(),
        lambda: len(view),
        lambda: view.hex(),
        lambda: view[0:2],
        lambda: view.tolist(),
        lambda: bytearray(view),
        lambda: memoryview(view),
    ]


def assert_all_released(kept: list[memoryview]) -> None:
    assert kept
    for view in kept:
        for use in uses(view):
            with pytest.raises(ValueError, match="released"):
                use()
        assert view != KEY  # comparing a released view compares identity, never memory


def test_kept_views_raise_value_error_while_secret_is_open(factory) -> None:
    kept: list[memoryview] = []
    with factory.new(bytearray(KEY)) as secret:
        secret.with_bytes(keep(kept))
        assert_all_released(kept)
        assert secret.with_bytes(bytes) == KEY


def test_kept_views_raise_value_error_after_close(factory) -> None:
    kept: list[memoryview] = []
    secret = factory.new(bytearray(KEY))
    secret.with_bytes(keep(kept))
    secret.close()
    assert_all_released(kept)


def test_view_kept_by_raising_callback_is_released(factory) -> None:
    kept: list[memoryview] = []

    def callback(view: memoryview) -> None:
        kept.append(view[3:])
        raise KeyError("boom")

    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(KeyError):
            secret.with_bytes(callback)
    assert_all_released(kept)


def test_views_used_inside_the_callback_work(factory) -> None:
    def callback(view: memoryview) -> tuple[bytes, list[int], int]:
        return bytes(view[:4]), view.cast("B", shape=[4, 8]).tolist()[1], sum(view)

    with factory.new(bytearray(KEY)) as secret:
        head, row, total = secret.with_bytes(callback)
    assert head == KEY[:4]
    assert row == list(KEY[8:16])
    assert total == sum(KEY)


def test_buffer_export_held_past_the_callback_is_reported(factory) -> None:
    """An object still holding a buffer exported from the view is reported as BufferError (it must not be used)."""
    held: list[pickle.PickleBuffer] = []
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(BufferError, match="still held"):
            secret.with_bytes(lambda view: held.append(pickle.PickleBuffer(view)))
        held[0].release()  # releasing does not read the memory
        assert secret.with_bytes(bytes) == KEY


FAULT_CHILD = textwrap.dedent(
    """
    import pickle, securememory
    secret = securememory.{factory}().new(bytearray(range(64)))
    held = []
    try:
        secret.with_bytes(lambda view: held.append(pickle.PickleBuffer(view)))
    except BufferError:
        pass
    print("reading", flush=True)
    bytes(held[0].raw()[:4])
    print("read")
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("factory_name", ["ProtectedMemorySecretFactory", "MemguardSecretFactory"])
def test_raw_pointer_kept_past_the_window_faults_in_a_child(factory_name: str, tmp_path) -> None:
    """Control for the tests above: the pages really are no-access after the callback, so a consumer that
    bypasses the memoryview (the reported BufferError case) dies by SIGSEGV. Released views are what keep
    every other kept reference from doing the same."""
    child = subprocess.run(
        [sys.executable, "-c", FAULT_CHILD.format(factory=factory_name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert child.stdout.splitlines() == ["reading"], child.stderr
    assert child.returncode == -signal.SIGSEGV


CHILD = textwrap.dedent(
    """
    import gc, sys
    import securememory

    factories = [securememory.ProtectedMemorySecretFactory(), securememory.MemguardSecretFactory()]
    for factory in factories:
        kept = []
        secret = factory.new(bytearray(range(64)))
        secret.with_bytes(lambda v: kept.extend([v, v[8:], v.cast("B", shape=[8, 8]), memoryview(v)]))
        for closing in (False, True):
            if closing:
                secret.close()
                gc.collect()
            for view in kept:
                for use in (lambda: view[0], lambda: bytes(view), lambda: view.tobytes(), lambda: len(view),
                            lambda: view.tolist(), lambda: view[1:3], lambda: bytearray(view)):
                    try:
                        use()
                    except ValueError:
                        continue
                    sys.exit("a kept view was still readable")
    print("ok")
    """
)


def test_kept_views_never_crash_a_child_process_100_runs() -> None:
    for run in range(100):
        child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
        assert child.returncode == 0, f"run {run}: exit {child.returncode}, stderr: {child.stderr[-2000:]}"
        assert child.stdout.strip() == "ok"


def test_returned_view_is_released(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:
        view = secret.with_bytes(lambda v: v)
        assert_all_released([view])


def test_unreleasable_export_and_raising_callback_reports_both(factory) -> None:
    held: list[pickle.PickleBuffer] = []

    def callback(view: memoryview) -> None:
        held.append(pickle.PickleBuffer(view))
        raise KeyError("from the callback")

    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(BufferError) as raised:
            secret.with_bytes(callback)
        assert isinstance(raised.value.__cause__, KeyError)
        held[0].release()
