"""The ``backing=`` keyword of both factories: secret memory (Linux ``memfd_secret``) the kernel cannot read."""

from __future__ import annotations

import pytest

import securememory

FACTORIES = [securememory.ProtectedMemorySecretFactory, securememory.MemguardSecretFactory]


def _secret_memory_or_skip(cls: type) -> securememory.Secret:
    try:
        return cls(backing="secret_memory").new(bytearray(b"k" * 32))
    except securememory.MemoryProtectionError as e:
        if "memfd_secret" not in str(e):
            raise
        pytest.skip(f"no secret memory here: {e}")


@pytest.mark.parametrize("cls", FACTORIES, ids=lambda cls: cls.__name__)
def test_anonymous_is_the_default(cls: type) -> None:
    factory = cls()
    assert "backing='anonymous'" in repr(factory)
    with factory.create_random(32) as secret:
        report = secret.protections()
        assert report["secret_memory"] is False
        assert report["secret_memory_fallback"] is False


@pytest.mark.parametrize("cls", FACTORIES, ids=lambda cls: cls.__name__)
def test_a_secret_in_secret_memory_reads_back_and_says_so(cls: type) -> None:
    assert "backing='secret_memory'" in repr(cls(backing="secret_memory"))
    secret = _secret_memory_or_skip(cls)
    with secret:
        assert secret.with_bytes(bytes) == b"k" * 32
        report = secret.protections()
        assert report["secret_memory"] is True
        assert report["secret_memory_fallback"] is False
        assert report["locked"] is True
    assert secret.closed


@pytest.mark.parametrize("cls", FACTORIES, ids=lambda cls: cls.__name__)
def test_the_best_effort_backing_always_gives_a_secret_and_reports_which(cls: type) -> None:
    source = bytearray(b"s" * 16)
    with cls(backing="secret_memory_or_anonymous").new(source) as secret:
        assert source == bytearray(16)
        assert secret.with_bytes(bytes) == b"s" * 16
        report = secret.protections()
        # Exactly one: in secret memory, or in anonymous pages because the kernel had none.
        assert report["secret_memory"] != report["secret_memory_fallback"]


@pytest.mark.parametrize("cls", FACTORIES, ids=lambda cls: cls.__name__)
def test_an_unknown_backing_is_a_value_error(cls: type) -> None:
    with pytest.raises(ValueError, match="secret_memory_or_anonymous"):
        cls(backing="tmpfs")
