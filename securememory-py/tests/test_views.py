"""A view kept past with_bytes is an error (BufferError), and a kept memoryview never reads memory: it is released."""

from __future__ import annotations

import gc
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

import securememory

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


def test_kept_views_are_reported_and_released_while_secret_is_open(factory) -> None:
    kept: list[memoryview] = []
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(BufferError, match="6 view") as raised:
            secret.with_bytes(keep(kept))
        message = str(raised.value)
        assert "the memoryview passed to the callback (held by list)" in message
        assert message.count("a memoryview derived from it (held by list)") == 5
        assert "quarantined" in message
        assert_all_released(kept)
        assert secret.with_bytes(bytes) == KEY  # the secret itself is still usable


def test_kept_views_are_released_after_close(factory) -> None:
    kept: list[memoryview] = []
    secret = factory.new(bytearray(KEY))
    with pytest.raises(BufferError):
        secret.with_bytes(keep(kept))
    secret.close()
    assert_all_released(kept)


def test_view_kept_by_raising_callback_is_reported_with_the_exception_as_cause(factory) -> None:
    kept: list[memoryview] = []

    def callback(view: memoryview) -> None:
        kept.append(view[3:])
        raise KeyError("boom")

    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(BufferError) as raised:
            secret.with_bytes(callback)
        assert isinstance(raised.value.__cause__, KeyError)
    assert_all_released(kept)


def test_views_only_in_a_raising_callbacks_locals_are_not_an_escape(factory) -> None:
    """The traceback keeps the callback's frame, and so its locals, alive; those locals are cleared."""

    def callback(view: memoryview) -> None:
        head = view[:4]
        grid = view.cast("B", shape=[4, 8])
        assert head[0] == grid[0, 0]
        raise KeyError("boom")

    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(KeyError) as raised:
            secret.with_bytes(callback)
        assert raised.value.__cause__ is None
        assert raised.value.__traceback__ is not None


def test_view_in_a_garbage_cycle_is_not_an_escape(factory) -> None:
    def callback(view: memoryview) -> int:
        cycle: list[object] = [view[1:]]
        cycle.append(cycle)
        return len(cycle)

    gc.disable()  # the cycle survives the callback; with_bytes itself collects it
    try:
        with factory.new(bytearray(KEY)) as secret:
            assert secret.with_bytes(callback) == 2
    finally:
        gc.enable()


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
        with pytest.raises(BufferError, match=r"held by pickle\.PickleBuffer, still exported"):
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
        try:
            secret.with_bytes(lambda v: kept.extend([v, v[8:], v.cast("B", shape=[8, 8]), memoryview(v)]))
        except BufferError:
            pass
        else:
            sys.exit("kept views were not reported")
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


def test_returned_view_is_reported_and_released(factory) -> None:
    kept: list[memoryview] = []
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(BufferError, match="returned by the callback"):
            secret.with_bytes(lambda v: kept.append(v) or v)
        assert_all_released(kept)


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


def test_monkey_patching_gc_after_import_changes_nothing(factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gc functions were resolved when the module was imported; patched ones are never called."""
    calls: list[str] = []

    def blind(name: str):
        def patched(*args: object) -> list[object]:
            calls.append(name)
            return []

        return patched

    for name in ("get_referrers", "get_referents", "collect"):
        monkeypatch.setattr(gc, name, blind(name))
    monkeypatch.setattr("weakref.finalize", lambda *args: calls.append("finalize"))
    kept: list[memoryview] = []
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(BufferError, match="6 view"):
            secret.with_bytes(keep(kept))
        assert secret.with_bytes(bytes) == KEY
    assert_all_released(kept)
    assert calls == []


def test_a_failing_callback_that_kept_nothing_still_raises_only_its_exception(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(ZeroDivisionError) as raised:
            secret.with_bytes(lambda view: view[0] / 0)
        assert raised.value.__cause__ is None
        assert securememory.Secret.with_bytes(secret, bytes) == KEY
