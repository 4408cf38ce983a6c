from __future__ import annotations

import pytest

import securememory

FACTORIES = [
    securememory.ProtectedMemorySecretFactory,
    securememory.MemguardSecretFactory,
    securememory.SealedSecretFactory,
]


@pytest.fixture(params=FACTORIES, ids=lambda cls: cls.__name__)
def factory(request: pytest.FixtureRequest) -> securememory.ProtectedMemorySecretFactory | securememory.MemguardSecretFactory | securememory.SealedSecretFactory:
    return request.param()
