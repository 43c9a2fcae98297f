"""A 64-bit counter in a small file that every process on the host maps (pure core).

The LMDB descriptor cache bumps it on every clear, in whichever process
clears; an in-process stat cache compares it on every request and drops its
entries when it moved. Reading LMDB's own generation costs a read transaction
(about a microsecond); reading this is one load from a shared mapping.

Format: the file's first 8 bytes hold the value in host byte order (the file
is host-local: it lives beside the LMDB environment). A missing or short
file is created or extended with zeros; nothing else is ever written to it.

Increments take an exclusive ``flock`` on the file around the read and the
write, on both cores, so a native and a pure process sharing one file never
lose a bump. Reads take no lock: a torn read can only look like a change,
which makes a reader drop entries it could have kept, never keep one it must
drop.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from typing import Final

__all__ = ["SharedCounter"]

_VALUE: Final = struct.Struct("=Q")
_MASK: Final = (1 << 64) - 1


class SharedCounter:
    """The counter in file ``path`` (created if missing); ``OSError`` if it cannot be mapped."""

    __slots__ = ("_fd", "_map", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            if os.fstat(fd).st_size < _VALUE.size:
                # Extending never changes a value another process already wrote.
                os.ftruncate(fd, _VALUE.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, _VALUE.size, mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def value(self) -> int:
        """The current value (one load from the shared map)."""
        m = self._map
        if m is None:
            raise ValueError(f"counter {self.path} is closed")
        value: int = _VALUE.unpack_from(m, 0)[0]
        return value

    def bump(self) -> int:
        """Add one (under the file lock) and return the new value."""
        m = self._map
        if m is None:
            raise ValueError(f"counter {self.path} is closed")
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            value: int = (_VALUE.unpack_from(m, 0)[0] + 1) & _MASK
            _VALUE.pack_into(m, 0, value)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return value

    def close(self) -> None:
        """Unmap and close; later calls raise ValueError. Closing twice is fine."""
        m, self._map = self._map, None
        if m is not None:
            m.close()
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"SharedCounter({self.path!r})"
