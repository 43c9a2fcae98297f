"""Feeding a range of a file to a hasher (pure core).

``hash_file`` reads the range with ``os.preadv`` into one reused buffer and
hands each piece to ``hasher.update``: one copy from the page cache per byte
and a Python call per piece. The native twin (``native/filehash.c``) maps
large ranges and hashes them in place, with no copy and without the GIL,
catching the SIGBUS a mapped file cut short would raise; a plain ``mmap``
here could not catch it and the process would die. Both cores raise
:class:`FileTruncated` when the file ends before the range does.
"""

from __future__ import annotations

import os
from typing import Any, Final

from ocistore._core_py.errors import FileTruncated

__all__ = ["hash_file"]

CHUNK: Final = 128 << 10
"""Bytes read per call: large enough for few calls, small enough to stay in the CPU's cache."""


def hash_file(hasher: Any, fd: int, offset: int, length: int) -> None:
    """Feed ``length`` bytes of ``fd``'s file from ``offset`` to ``hasher.update``, in order.

    Raises :class:`FileTruncated` when the file ends first (it was cut short),
    OSError for a failed read, ValueError for a negative offset or length.
    After an error the hasher has taken an unspecified part of the range.
    The file position of ``fd`` is not used or moved.
    """
    if offset < 0 or length < 0:
        raise ValueError(f"offset and length must be >= 0, not {offset} and {length}")
    if length == 0:
        os.fstat(fd)  # a bad fd is an OSError (EBADF) on both cores
        return
    buf = bytearray(min(length, CHUNK))
    end = offset + length
    with memoryview(buf) as view:
        while offset < end:
            want = min(len(buf), end - offset)
            got = _pread_into(fd, view[:want], offset)
            if not got:
                raise FileTruncated(end, os.fstat(fd).st_size)
            hasher.update(view[:got])
            offset += got


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)  # pragma: no cover - no preadv (Windows)
    view[: len(data)] = data  # pragma: no cover
    return len(data)  # pragma: no cover
