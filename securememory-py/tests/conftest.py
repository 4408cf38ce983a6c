from __future__ import annotations

import pytest

import securememory

FACTORIES = [securememory.ProtectedMemorySecretFactory, securememory.MemguardSecretFactory]


@pytest.fixture(params=FACTORIES, ids=lambda cls: cls.__name__)
def factory(request: pytest.FixtureRequest) -> securememory.ProtectedMemorySecretFactory | securememory.MemguardSecretFactory:
    return request.param()
