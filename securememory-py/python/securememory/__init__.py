"""Secrets in memory that is never swapped, never dumped and unreadable outside a short access window.

>>> from securememory import ProtectedMemorySecretFactory
>>> factory = ProtectedMemorySecretFactory()
>>> key = bytearray(b"0123456789abcdef0123456789abcdef")
>>> with factory.new(key) as secret:  # copies the key into protected pages and wipes `key`
...     secret.with_bytes(lambda view: view[:4].tobytes())
b'0123'
>>> bytes(key) == bytes(32)
True

* ``ProtectedMemorySecretFactory`` / ``MemguardSecretFactory`` / ``SealedSecretFactory`` make :class:`Secret`
  objects (``SealedSecretFactory``: encrypted at rest, no locked memory per secret) from a buffer
  (``new``, which wipes a writable source once the secret exists and leaves it intact on any error) or from the
  OS random generator (``create_random``).
* ``Secret.with_bytes(fn)`` calls ``fn`` with a read-only ``memoryview`` over the protected pages themselves (no
  copy) and returns its result. The view, and every view sliced or cast from it, is released when ``fn``
  returns. Keeping one (or a numpy array over it) past ``fn`` raises ``BufferError`` and quarantines the
  secret's pages while the kept objects live, so they can never read another secret. Copy what must outlive
  ``fn`` (``bytes(view)``) -- that copy is ordinary memory.
* ``Secret.reader()`` is a binary file object (:class:`io.RawIOBase`).
* ``trim_caches()`` gives the locked pages kept for reuse by closed secrets back to the OS.
* Errors derive from :class:`SecureMemoryError` (see :mod:`securememory.exceptions`).
* ``python -m securememory.bench`` measures what the binding adds to the Rust library (see
  :mod:`securememory.bench`).
"""

from __future__ import annotations

from securememory._native import (
    MemguardSecretFactory,
    ProtectedMemorySecretFactory,
    SealedSecretFactory,
    Secret,
    __version__,
    trim_caches,
)
from securememory.exceptions import (
    CloseInsideAccessError,
    ForkedProcessError,
    IntegrityError,
    InvalidLengthError,
    MemoryLockError,
    MemoryProtectionError,
    RandomSourceError,
    SecretClosedError,
    SecureMemoryError,
)
from securememory.reader import SecretReader

__all__ = [
    "__version__",
    "CloseInsideAccessError",
    "ForkedProcessError",
    "IntegrityError",
    "InvalidLengthError",
    "MemguardSecretFactory",
    "MemoryLockError",
    "MemoryProtectionError",
    "ProtectedMemorySecretFactory",
    "RandomSourceError",
    "SealedSecretFactory",
    "Secret",
    "SecretClosedError",
    "SecretReader",
    "SecureMemoryError",
    "trim_caches",
]
