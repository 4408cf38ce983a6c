"""Secrets are closed when garbage-collected; their locked memory is given back."""

from __future__ import annotations

import gc
import sys

import pytest


def locked_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck line")


# Larger than the biggest region the page pool caches (8 pages), so releasing one really unlocks its pages.
UNPOOLED_SIZE = 9 * 4096 + 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmLck from /proc")
def test_dropping_a_secret_releases_its_locked_pages(factory) -> None:
    factory.create_random(UNPOOLED_SIZE).close()  # first use may set up process-wide state that stays
    gc.collect()
    before = locked_kib()
    secrets = [factory.create_random(UNPOOLED_SIZE) for _ in range(4)]
    assert locked_kib() >= before + 4 * UNPOOLED_SIZE // 1024
    del secrets
    gc.collect()
    assert locked_kib() <= before


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
