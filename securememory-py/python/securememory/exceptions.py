"""Exceptions raised by :mod:`securememory`.

Every error the package raises about memory or a secret's state derives from :class:`SecureMemoryError`. Messages
describe what failed (sizes, addresses, limits, the fix) and never contain secret bytes.
"""

from __future__ import annotations

__all__ = [
    "SecureMemoryError",
    "SecretClosedError",
    "InvalidLengthError",
    "MemoryLockError",
    "MemoryProtectionError",
    "IntegrityError",
    "CloseInsideAccessError",
    "ForkedProcessError",
    "RandomSourceError",
]


class SecureMemoryError(Exception):
    """Base class of every error about protected memory or a secret."""


class SecretClosedError(SecureMemoryError):
    """The secret was closed (or is being closed); nothing was read."""


class InvalidLengthError(SecureMemoryError, ValueError):
    """A secret must hold at least one byte and fit in memory."""


class MemoryLockError(SecureMemoryError):
    """Locking the pages failed because the process reached its locked-memory limit.

    The message names the limit in force and how to raise it (``ulimit -l``, ``LimitMEMLOCK=`` for systemd,
    ``/etc/security/limits.conf``, or ``CAP_IPC_LOCK``).
    """


class MemoryProtectionError(SecureMemoryError):
    """A page operation failed: mapping, locking, changing protection or releasing memory."""


class IntegrityError(SecureMemoryError):
    """Memory next to a secret was overwritten (corrupted canary); the secret was wiped and released anyway."""


class CloseInsideAccessError(SecureMemoryError, RuntimeError):
    """``close()`` was called from inside the same secret's ``with_bytes`` callback, which would wait forever."""


class ForkedProcessError(SecureMemoryError):
    """The secret was created before ``fork()``; a child process has no copy of its pages."""


class RandomSourceError(SecureMemoryError):
    """The operating system's random number generator failed."""
