"""The type stubs match the module (mypy's stubtest) and type-check."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("mypy")


def test_stubtest_finds_no_mismatch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "securememory"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
