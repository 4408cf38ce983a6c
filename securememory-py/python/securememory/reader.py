"""``SecretReader``: a secret as a binary, read-only file object."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from securememory._native import RawSecretReader, Secret

if TYPE_CHECKING:
    # Private alias: a name only type checkers know must not look like part of the module.
    from typing_extensions import Buffer as _Buffer


class SecretReader(io.RawIOBase):
    """Reads a secret's bytes, one access window per call. Made by :meth:`Secret.reader`.

    Every read copies secret bytes into ordinary Python memory: prefer ``readinto`` with a ``bytearray`` you wipe
    afterwards over ``read``, whose ``bytes`` result cannot be wiped. Closing the reader does not close the
    secret; reading after the secret was closed raises :class:`~securememory.SecretClosedError`.
    """

    def __init__(self, raw: RawSecretReader) -> None:
        super().__init__()
        self._raw = raw

    @property
    def secret(self) -> Secret:
        """The secret being read."""
        return self._raw.secret

    def readable(self) -> bool:
        self._check_open()
        return True

    def readinto(self, buffer: _Buffer) -> int:
        """Copies the next bytes into ``buffer`` and returns how many (0 at the end)."""
        self._check_open()
        return self._raw.readinto(buffer)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"position={self._raw.position}"
        return f"<securememory.SecretReader len={len(self._raw.secret)} {state}>"
