"""Type stubs for the native module behind :mod:`securememory`."""

from collections.abc import Callable
from types import TracebackType
from typing import Literal, TypeVar, final

from typing_extensions import Buffer, Self

from securememory.reader import SecretReader

__all__ = ["MemguardSecretFactory", "ProtectedMemorySecretFactory", "RawSecretReader", "Secret", "trim_caches"]

_T = TypeVar("_T")

@final
class Secret:
    """Bytes kept in locked, never-dumped memory that is readable only inside ``with_bytes``."""

    def with_bytes(self, func: Callable[[memoryview], _T]) -> _T:
        """Calls ``func(view)`` with a read-only memoryview over the secret's bytes and returns its result.

        The view, and every view sliced, cast or re-wrapped from it, is released when ``func`` returns (using one
        raises ``ValueError``). Keeping any of them past ``func`` is an error: if anything still refers to the
        view or a derived view (a list, a returned view, a numpy array made by ``frombuffer``/``asarray``/
        ``array(copy=None)``, a ``pickle.PickleBuffer``), ``BufferError`` is raised naming what escaped (with
        ``func``'s own exception, if any, as its ``__cause__``), and the secret's pages are quarantined until
        every such object is gone: once the secret is closed they are wiped and left no-access, never reused,
        so a stale pointer faults instead of reading another secret. Copy what must outlive ``func``
        (``bytes(view)``). An exception raised by ``func`` otherwise propagates unchanged.
        Raises ``SecretClosedError`` once the secret is closed, and ``ForkedProcessError`` in a child process
        (including in the child of a ``fork()`` made inside ``func``, where the views are released at once).
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

    def __new__(
        cls,
        *,
        best_effort_locking: bool = False,
        backing: Literal["anonymous", "secret_memory", "secret_memory_or_anonymous"] = "anonymous",
    ) -> Self: ...
    def new(self, source: Buffer) -> Secret:
        """Copies ``source`` into a new secret, then wipes ``source``.

        On success a writable buffer (``bytearray``, writable ``memoryview``, ``array.array``, ...) is zeroed in
        place; an immutable one (``bytes``) cannot be wiped: it is copied through a temporary buffer that is
        zeroed, and the object itself is left as it was.

        On any error no secret exists and ``source`` is left exactly as it was, so the call can be retried (wipe
        it yourself if you give up): ``InvalidLengthError`` for an empty source, ``MemoryLockError`` at the
        locked-memory limit, ``MemoryProtectionError`` when pages cannot be mapped or protected, ``TypeError``
        for an object that is not a contiguous bytes-like buffer.

        Do not use the buffer from another thread meanwhile (the GIL is released during the copy).
        """

    def create_random(self, size: int) -> Secret:
        """A new secret of ``size`` bytes from the OS random generator."""

@final
class MemguardSecretFactory:
    """Makes secrets in guarded buffers: guard pages on both sides and a canary checked on close."""

    def __new__(
        cls,
        *,
        best_effort_locking: bool = False,
        backing: Literal["anonymous", "secret_memory", "secret_memory_or_anonymous"] = "anonymous",
    ) -> Self: ...
    def new(self, source: Buffer) -> Secret:
        """Copies ``source`` into a new secret, then wipes ``source``; on any error ``source`` is left exactly as
        it was (see ``ProtectedMemorySecretFactory.new``)."""

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
