"""Every Python example of the package's README runs as written, in a fresh interpreter."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("cryptography")
    child = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert child.returncode == 0, f"example {index + 1}:\n{BLOCKS[index]}\n{child.stderr}"
    assert child.stderr == ""
