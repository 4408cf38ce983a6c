"""Type stubs for the native module behind :mod:`securememory`."""

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar, final

from typing_extensions import Buffer, Self

from securememory.reader import SecretReader

__all__ = ["MemguardSecretFactory", "ProtectedMemorySecretFactory", "RawSecretReader", "Secret", "trim_caches"]

_T = TypeVar("_T")

@final
class Secret:
    """Bytes kept in locked, never-dumped memory that is readable only inside ``with_bytes``."""

    def with_bytes(self, func: Callable[[memoryview], _T]) -> _T:
        """Calls ``func(view)`` with a read-only memoryview over the secret's bytes and returns its result.

        The view (and every view derived from it) is released when ``func`` returns; using a kept one raises
        ``ValueError``. An exception raised by ``func`` propagates unchanged and the pages are protected again.
        Raises ``SecretClosedError`` once the secret is closed.
        """

    def reader(self) -> SecretReader:
        """A binary file object (``io.RawIOBase``) reading the secret from its start."""

    def protections(self) -> dict[str, bool | int | str]:
        """Which protections took effect for this secret, as found when it was created.

        Keys: ``locked`` and ``locked_bytes`` (never swapped), ``no_dump`` / ``no_fork`` / ``no_huge_pages``
        (``"applied"``, ``"not supported on this OS"`` or ``"failed (...)"``), ``guard_pages``, ``canary``,
        ``fork_detection``.
        """

    def close(self) -> None:
        """Wipes and releases the memory, waiting for callbacks running in other threads. Idempotent."""

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""

    def __len__(self) -> int: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

@final
class ProtectedMemorySecretFactory:
    """Makes secrets backed by whole protected pages (locked, never dumped, no-access outside ``with_bytes``)."""

    def __new__(cls, *, best_effort_locking: bool = False) -> Self: ...
    def new(self, source: Buffer) -> Secret:
        """Copies ``source`` into a new secret and wipes it.

        A writable buffer (``bytearray``, writable ``memoryview``, ...) is zeroed in place; an immutable one
        (``bytes``) cannot be wiped, only copied. Do not use the buffer from another thread meanwhile.
        """

    def create_random(self, size: int) -> Secret:
        """A new secret of ``size`` bytes from the OS random generator."""

@final
class MemguardSecretFactory:
    """Makes secrets in guarded buffers: guard pages on both sides and a canary checked on close."""

    def __new__(cls, *, best_effort_locking: bool = False) -> Self: ...
    def new(self, source: Buffer) -> Secret:
        """Copies ``source`` into a new secret and wipes it (see ``ProtectedMemorySecretFactory.new``)."""

    def create_random(self, size: int) -> Secret:
        """A new secret of ``size`` bytes from the OS random generator."""

@final
class RawSecretReader:
    """The native reader behind ``SecretReader``."""

    def readinto(self, buffer: Buffer) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def secret(self) -> Secret: ...

def trim_caches() -> int:
    """Gives every cached locked page back to the OS and returns how many bytes that freed.

    Closed secrets' pages are wiped and may be kept (still locked) for reuse; call this before measuring locked
    memory or to shrink the process after a burst.
    """
