"""Many Python threads share one secret while another thread closes it."""

from __future__ import annotations

import threading

import pytest

from securememory import SecretClosedError

KEY = bytes(range(200, 232))
THREADS = 8
CALLS = 1000


def test_eight_threads_read_while_another_closes(factory) -> None:
    secret = factory.new(bytearray(KEY))
    start = threading.Barrier(THREADS + 1)
    halfway = threading.Event()
    closed = threading.Event()
    outcomes: list[dict[str, int]] = [{"bytes": 0, "closed": 0, "wrong": 0} for _ in range(THREADS)]
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        counts = outcomes[index]
        try:
            start.wait()
            for call in range(CALLS):
                if index == 0 and call == CALLS // 2:
                    # One reader pauses halfway until the close has happened, so both outcomes occur.
                    halfway.set()
                    assert closed.wait(timeout=120)
                try:
                    value = secret.with_bytes(bytes)
                except SecretClosedError:
                    counts["closed"] += 1
                    continue
                counts["bytes" if value == KEY else "wrong"] += 1
        except BaseException as error:  # recorded and asserted on below
            errors.append(error)

    def closer() -> None:
        start.wait()
        assert halfway.wait(timeout=120)
        secret.close()  # waits for callbacks already inside the window
        closed.set()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(THREADS)]
    threads.append(threading.Thread(target=closer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread deadlocked"
    assert errors == []
    assert secret.closed
    assert sum(c["wrong"] for c in outcomes) == 0
    assert sum(c["bytes"] + c["closed"] for c in outcomes) == THREADS * CALLS
    assert outcomes[0]["bytes"] == CALLS // 2
    assert outcomes[0]["closed"] == CALLS - CALLS // 2


def test_threads_inside_long_callbacks_delay_close_until_they_finish(factory) -> None:
    secret = factory.new(bytearray(KEY))
    inside = threading.Event()
    release = threading.Event()
    seen: list[bytes] = []

    def slow(view: memoryview) -> None:
        inside.set()
        release.wait(timeout=60)
        seen.append(bytes(view))

    worker = threading.Thread(target=secret.with_bytes, args=(slow,))
    worker.start()
    assert inside.wait(timeout=60)
    closer = threading.Thread(target=secret.close)
    closer.start()  # blocks in Rust with the GIL released, so this thread keeps running
    release.set()
    worker.join(timeout=60)
    closer.join(timeout=60)
    assert not worker.is_alive() and not closer.is_alive()
    assert seen == [KEY]
    assert secret.closed


def test_nested_with_bytes_on_one_secret(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:
        assert secret.with_bytes(lambda outer: (bytes(outer), secret.with_bytes(bytes))) == (KEY, KEY)


def test_nested_with_bytes_while_another_thread_closes_does_not_deadlock(factory) -> None:
    secret = factory.new(bytearray(KEY))
    closing = threading.Thread(target=secret.close)
    outcome: list[object] = []

    def callback(view: memoryview) -> bytes:
        closing.start()
        # close() is now waiting for this callback (or about to); a nested access must not wait for close.
        while not secret.closed and closing.is_alive():
            try:
                outcome.append(secret.with_bytes(bytes))
            except SecretClosedError as error:
                outcome.append(error)
                break
            if len(outcome) > 1000:
                break
        return bytes(view)

    assert secret.with_bytes(callback) == KEY
    closing.join(timeout=60)
    assert not closing.is_alive()
    assert secret.closed
    assert all(item == KEY or isinstance(item, SecretClosedError) for item in outcome)


def test_threads_keeping_slices_while_another_closes_leave_only_released_views(factory) -> None:
    secret = factory.new(bytearray(KEY))
    kept: list[memoryview] = []
    reported: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def keeper() -> None:
        try:
            start.wait()
            for _ in range(200):
                try:
                    secret.with_bytes(lambda view: kept.append(view[1:9]))
                except BufferError:
                    reported.append(1)
                except SecretClosedError:
                    return
        except BaseException as error:  # recorded and asserted on below
            errors.append(error)

    threads = [threading.Thread(target=keeper) for _ in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    while len(kept) < 100 and any(thread.is_alive() for thread in threads):
        threading.Event().wait(0.001)
    secret.close()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert kept
    assert len(reported) == len(kept)  # every kept slice was reported
    for view in kept:
        with pytest.raises(ValueError):
            bytes(view)
