"""Secrets are closed when garbage-collected; their locked memory is given back."""

from __future__ import annotations

import gc
import sys

import pytest

import securememory


def locked_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmLck from /proc")
@pytest.mark.parametrize("size", [32, 9 * 4096 + 1], ids=["one-page", "ten-pages"])
def test_dropping_a_secret_releases_its_locked_pages(factory, size: int) -> None:
    # Closed secrets' pages may stay locked in a reuse cache; trimming it isolates what live secrets hold.
    factory.create_random(size).close()  # first use may set up process-wide state that stays
    gc.collect()
    securememory.trim_caches()
    before = locked_kib()
    if isinstance(factory, securememory.SealedSecretFactory):
        # Sealed secrets lock nothing at rest: a thousand of them leave VmLck where it was (give or take a
        # private stack or a scratch page of the process).
        many = [factory.create_random(size) for _ in range(1000)]
        assert locked_kib() <= before + 64
        del many
        gc.collect()
        securememory.trim_caches()
        assert locked_kib() <= before
        return
    secrets = [factory.create_random(size) for _ in range(4)]
    assert locked_kib() >= before + 4 * max(4, size // 1024)
    del secrets
    gc.collect()
    freed = securememory.trim_caches()
    assert locked_kib() <= before
    assert freed >= 0


def test_secret_in_a_reference_cycle_is_collected(factory) -> None:
    class Holder:
        pass

    holder = Holder()
    holder.self = holder  # type: ignore[attr-defined]
    holder.secret = factory.create_random(16)  # type: ignore[attr-defined]
    reader = holder.secret.reader()  # type: ignore[attr-defined]
    del holder
    gc.collect()
    assert len(reader.read()) == 16  # the reader keeps its secret alive
