"""Type stubs for the native module behind :mod:`securememory`."""

import os
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Protocol, TypeVar, final

from typing_extensions import Buffer, Self

from securememory.reader import SecretReader

__all__ = ["MemguardSecretFactory", "ProtectedMemorySecretFactory", "RawSecretReader", "SealedSecretFactory", "Secret", "__version__", "trim_caches"]

__version__: str
"""The package's version (the Rust workspace's version)."""

_T = TypeVar("_T")

class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...

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
        ``fork_detection``, ``secret_memory`` / ``secret_memory_fallback``, ``sealed`` (encrypted at rest; then
        ``locked_bytes`` is 0 and ``locked`` is about its scratch copies).
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

    def from_file(self, path: str | os.PathLike[str], *, max_len: int = 1048576) -> Secret:
        """Reads the file at ``path`` (a key file, a mounted Kubernetes secret) to its end straight into a new secret.

        The bytes go from the OS into locked pages (no Python object ever holds them). Raises the usual ``OSError``
        subclass when the file cannot be opened or read, ``InvalidLengthError`` when it is empty or longer than
        ``max_len`` bytes (1 MiB by default). The GIL is released while reading.
        """

    def from_fd(self, fd: int, *, max_len: int = 1048576) -> Secret:
        """Reads the open file descriptor ``fd`` (a pipe, a socket, standard input as ``0``) to its end straight
        into a new secret, at most ``max_len`` bytes.

        ``fd`` is duplicated first and stays open; reading a regular file advances its shared offset. Raises
        ``OSError`` for a bad descriptor or a failed read, ``InvalidLengthError`` when the input is empty or longer
        than ``max_len``. The GIL is released while reading (a pipe blocks until the writer closes it).
        """

    def from_readable(self, readable: _ReadInto, size: int) -> Secret:
        """A new secret of exactly ``size`` bytes, filled by ``readable.readinto(view)`` calls that write straight
        into its locked pages.

        Pass an unbuffered binary file object (``open(path, "rb", buffering=0)``, a ``socket.SocketIO``): a
        buffered one (``open(path, "rb")``, ``io.BytesIO``) keeps its own copy of what it reads, in ordinary
        memory. ``readinto`` must not keep the buffer it is given: if anything still refers to it afterwards,
        ``BufferError`` is raised, the secret's pages are quarantined while the kept objects live, and no secret is
        returned. Raises ``EOFError`` when the stream ends before ``size`` bytes, ``BlockingIOError`` when a
        non-blocking stream has no data, ``TypeError`` without a ``readinto`` method, ``InvalidLengthError`` for a
        size below 1, and whatever ``readinto`` raises; the pages are wiped on every error.
        """

    def from_env(self, name: str) -> Secret:
        """Moves the environment variable ``name`` into a new secret, overwrites its value with zeros where the C
        library keeps it (the block ``/proc/self/environ`` shows, or ``setenv``'s copy) and removes it from the
        environment and from ``os.environ``.

        What cannot be wiped: Python's own copy. ``os.environ`` was filled when the interpreter started, with a
        ``bytes`` (and, once read, a ``str``) copy of every variable; those objects are immutable, so removing
        the name drops the reference and the memory is freed but not wiped. The copies that the shell or parent
        process made are out of reach too. The GIL stays held during the call, so no Python thread changes the
        environment meanwhile; a native thread calling ``setenv`` at the same time is a data race. Raises
        ``KeyError`` when the variable is not set, ``ValueError`` for a name that cannot exist (empty, ``=``),
        ``InvalidLengthError`` when the value is empty (the variable is then left set).
        """

@final
class MemguardSecretFactory:
    """Makes secrets in guarded buffers: guard pages on both sides and a canary checked on close.

    Its methods take the same arguments, raise the same errors and release the GIL the same way as
    ``ProtectedMemorySecretFactory``'s, whose docstrings they share: ``new`` wipes ``source`` (and leaves it as it
    was on any error), the readers write straight into the secret's pages, and ``from_env`` cannot wipe Python's
    own ``os.environ`` copy.
    """

    def __new__(
        cls,
        *,
        best_effort_locking: bool = False,
        backing: Literal["anonymous", "secret_memory", "secret_memory_or_anonymous"] = "anonymous",
    ) -> Self: ...
    def new(self, source: Buffer) -> Secret: ...
    def create_random(self, size: int) -> Secret: ...
    def from_file(self, path: str | os.PathLike[str], *, max_len: int = 1048576) -> Secret: ...
    def from_fd(self, fd: int, *, max_len: int = 1048576) -> Secret: ...
    def from_readable(self, readable: _ReadInto, size: int) -> Secret: ...
    def from_env(self, name: str) -> Secret: ...

@final
class SealedSecretFactory:
    """Makes sealed secrets: encrypted at rest in ordinary memory under a per-process key no thread can read at
    rest, decrypted into locked scratch pages only while ``with_bytes`` runs; no locked memory per secret.

    Its methods take the same arguments, raise the same errors and release the GIL the same way as
    ``ProtectedMemorySecretFactory``'s, whose docstrings they share. What differs is where the bytes go: ``new``
    encrypts a copy of ``source`` (then wipes ``source``), ``create_random`` and the readers (``from_file``,
    ``from_fd``, ``from_readable``, ``from_env``) put the plaintext in locked scratch pages and seal it from
    there, so it exists in the clear only in locked memory.
    """

    def __new__(cls, *, best_effort_locking: bool = False) -> Self: ...
    def new(self, source: Buffer) -> Secret: ...
    def create_random(self, size: int) -> Secret: ...
    def from_file(self, path: str | os.PathLike[str], *, max_len: int = 1048576) -> Secret: ...
    def from_fd(self, fd: int, *, max_len: int = 1048576) -> Secret: ...
    def from_readable(self, readable: _ReadInto, size: int) -> Secret: ...
    def from_env(self, name: str) -> Secret: ...

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
