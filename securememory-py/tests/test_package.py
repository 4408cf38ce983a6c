"""What the installed distribution says about itself."""

from __future__ import annotations

import importlib.metadata

import securememory


def test_version_matches_the_distribution() -> None:
    assert isinstance(securememory.__version__, str)
    assert securememory.__version__ == importlib.metadata.version("securememory")
    assert "__version__" in securememory.__all__


def test_metadata_names_licenses_and_urls() -> None:
    metadata = importlib.metadata.metadata("securememory")
    assert metadata["License-Expression"] == "Apache-2.0 OR MIT"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Repository", "Documentation", "Issues"} <= urls.keys()
    classifiers = metadata.get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert not [c for c in classifiers if c.startswith("Operating System") and "Linux" not in c]
