"""Secrets hold exactly the bytes they were made from, and the source is wiped."""

from __future__ import annotations

import array

import pytest

import securememory
from securememory import InvalidLengthError, SecureMemoryError

KEY = bytes(range(1, 33))


def test_new_round_trips_and_wipes_bytearray(factory) -> None:
    source = bytearray(KEY)
    with factory.new(source) as secret:
        assert len(secret) == len(KEY)
        assert secret.with_bytes(bytes) == KEY
        assert secret.with_bytes(lambda view: view.tobytes()) == KEY
    assert source == bytearray(len(KEY))
    source.extend(b"more")  # the export that pinned it during the copy is gone


def test_new_wipes_writable_memoryview_and_array(factory) -> None:
    backing = bytearray(b"header" + KEY)
    view = memoryview(backing)[6:]
    with factory.new(view) as secret:
        assert secret.with_bytes(bytes) == KEY
    assert backing == bytearray(b"header" + bytes(len(KEY)))

    words = array.array("I", [0xDEADBEEF, 0x01020304])
    with factory.new(words) as secret:
        assert len(secret) == 8
        assert secret.with_bytes(bytes) == array.array("I", [0xDEADBEEF, 0x01020304]).tobytes()
    assert list(words) == [0, 0]


def test_new_accepts_immutable_bytes_without_wiping_them(factory) -> None:
    source = bytes(KEY)
    with factory.new(source) as secret:
        assert secret.with_bytes(bytes) == KEY
    assert source == KEY  # documented: an immutable object cannot be wiped


def test_new_rejects_non_buffers_and_non_contiguous_buffers(factory) -> None:
    with pytest.raises(TypeError):
        factory.new("a str is not bytes")
    with pytest.raises(TypeError):
        factory.new(memoryview(bytearray(KEY))[::2])


def test_create_random_has_the_size_asked_and_differs(factory) -> None:
    with factory.create_random(32) as first, factory.create_random(32) as second:
        assert len(first) == 32
        a, b = first.with_bytes(bytes), second.with_bytes(bytes)
        assert len(a) == 32
        assert a != b
        assert a != bytes(32)


def test_large_secret_spanning_pages_round_trips(factory) -> None:
    payload = bytes(i % 251 for i in range(3 * 4096 + 17))
    with factory.new(bytearray(payload)) as secret:
        assert secret.with_bytes(bytes) == payload


@pytest.mark.parametrize("size", [0, -1, -4096])
def test_create_random_rejects_sizes_below_one(factory, size: int) -> None:
    with pytest.raises(InvalidLengthError) as raised:
        factory.create_random(size)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, SecureMemoryError)


@pytest.mark.parametrize("empty", [bytearray(), b"", memoryview(bytearray())])
def test_new_rejects_empty_sources(factory, empty) -> None:
    with pytest.raises(InvalidLengthError):
        factory.new(empty)


def test_failed_new_leaves_the_source_as_it_was(factory) -> None:
    """Documented on new(): the source is wiped only once the secret exists. The MemoryLockError case runs in a
    child process with a low RLIMIT_MEMLOCK (test_errors.py::test_memlock_limit_raises_memory_lock_error_naming_the_limit
    asserts the 4096-byte source is kept there)."""
    backing = bytearray(b"header" + KEY)
    empty_slice = memoryview(backing)[6:6]
    with pytest.raises(InvalidLengthError):
        factory.new(empty_slice)  # an empty window onto a buffer that holds data
    assert backing == bytearray(b"header" + KEY)
    strided = memoryview(backing)[::2]
    with pytest.raises(TypeError):
        factory.new(strided)
    assert backing == bytearray(b"header" + KEY)
    with factory.new(memoryview(backing)[6:]) as secret:  # and on success only the bytes passed are wiped
        assert secret.with_bytes(bytes) == KEY
    assert backing == bytearray(b"header" + bytes(len(KEY)))


def test_the_view_is_read_only_and_covers_the_secret(factory) -> None:
    with factory.new(bytearray(KEY)) as secret:

        def inspect(view: memoryview) -> tuple[bool, int, str]:
            with pytest.raises(TypeError):
                view[0] = 0
            return view.readonly, view.nbytes, view.format

        assert secret.with_bytes(inspect) == (True, len(KEY), "B")
        assert secret.with_bytes(bytes) == KEY


def test_repr_shows_no_bytes(factory) -> None:
    with factory.new(bytearray(b"hunter2-hunter2")) as secret:
        text = repr(secret) + str(secret)
    assert "hunter2" not in text
    assert "len=15" in text
    assert "closed=True" in repr(secret)
    assert "best_effort_locking=False" in repr(factory)


def test_best_effort_locking_is_opt_in() -> None:
    factory = securememory.ProtectedMemorySecretFactory(best_effort_locking=True)
    assert "best_effort_locking=True" in repr(factory)
    with factory.create_random(16) as secret:
        assert len(secret.with_bytes(bytes)) == 16


def test_protection_report(factory) -> None:
    with factory.create_random(64) as secret:
        report = secret.protections()
    assert report["locked"] is True
    sealed = isinstance(factory, securememory.SealedSecretFactory)
    assert report["sealed"] is sealed
    # A sealed secret holds no locked memory of its own: only its scratch copies are locked, while in use.
    assert report["locked_bytes"] == 0 if sealed else report["locked_bytes"] >= 4096
    assert report["no_dump"] == "applied"  # Linux MADV_DONTDUMP
    expected_guards = isinstance(factory, securememory.MemguardSecretFactory)
    assert report["guard_pages"] is expected_guards


def test_secrets_cannot_be_pickled_or_copied(factory) -> None:
    import copy
    import pickle

    with factory.new(bytearray(KEY)) as secret:
        with pytest.raises(TypeError):
            pickle.dumps(secret)
        with pytest.raises(TypeError):
            copy.copy(secret)
