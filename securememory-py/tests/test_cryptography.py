"""A real client: AES-256-GCM from `cryptography`, keyed from a secret inside with_bytes."""

from __future__ import annotations

import os

import pytest

aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")

MESSAGE = b"attack at dawn; bring the envelope keys"
ASSOCIATED = b"tenant-42"


def test_aes_gcm_keyed_inside_with_bytes(factory) -> None:
    with factory.create_random(32) as key:
        nonce = os.urandom(12)
        ciphertext = key.with_bytes(lambda k: aead.AESGCM(k).encrypt(nonce, MESSAGE, ASSOCIATED))
        assert MESSAGE not in ciphertext
        assert len(ciphertext) == len(MESSAGE) + 16
        plaintext = key.with_bytes(lambda k: aead.AESGCM(k).decrypt(nonce, ciphertext, ASSOCIATED))
        assert plaintext == MESSAGE

        # The same key bytes, copied out once for comparison only, decrypt identically outside the package.
        assert aead.AESGCM(key.with_bytes(bytes)).decrypt(nonce, ciphertext, ASSOCIATED) == MESSAGE


def test_wrong_key_fails_authentication(factory) -> None:
    from cryptography.exceptions import InvalidTag

    with factory.create_random(32) as key, factory.create_random(32) as other:
        nonce = os.urandom(12)
        ciphertext = key.with_bytes(lambda k: aead.AESGCM(k).encrypt(nonce, MESSAGE, None))
        with pytest.raises(InvalidTag):
            other.with_bytes(lambda k: aead.AESGCM(k).decrypt(nonce, ciphertext, None))
        assert not other.closed  # the callback's exception left the secret usable


def test_key_from_a_wiped_bytearray(factory) -> None:
    raw = bytearray(os.urandom(32))
    expected = aead.AESGCM(bytes(raw)).encrypt(b"\0" * 12, MESSAGE, None)
    with factory.new(raw) as key:
        assert raw == bytearray(32)
        assert key.with_bytes(lambda k: aead.AESGCM(k).encrypt(b"\0" * 12, MESSAGE, None)) == expected
