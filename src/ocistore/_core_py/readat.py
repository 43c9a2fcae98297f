"""Reading file data without waiting for the disk (pure core).

``pread_nowait`` reads what the page cache already holds (``os.preadv`` with
``RWF_NOWAIT``, Linux) and answers None when the data would have to come from
the disk, so the caller can read from the event loop on a hit and go to the
thread pool on a miss. Here the bytes land in a ``bytearray`` first and are
copied once more into the returned ``bytes`` (``os.preadv`` has no bytes-
returning form); the native twin (``native/_readat.pyx``) reads into the
``bytes`` directly. Results and errors are the same on both cores.
"""

from __future__ import annotations

import errno
import os

__all__ = ["pread_nowait"]

_CANNOT = frozenset({errno.EAGAIN, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})
"""errnos meaning "this platform or this file cannot read without waiting": ask the pool."""


def pread_nowait(fd: int, length: int, offset: int) -> bytes | None:
    """Up to ``length`` bytes at ``offset`` if the page cache holds them, else None.

    Returns the bytes read without waiting for the disk: all of them, fewer
    when only the first pages are cached, ``b""`` at the end of the file.
    None means the first byte is not cached (or this platform or file cannot
    tell): read it with a blocking ``pread`` off the event loop. A bad fd or
    an I/O error raises OSError; a negative length or offset raises ValueError.
    """
    if length < 0 or offset < 0:
        raise ValueError(f"length and offset must be >= 0, not {length} and {offset}")
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None or not hasattr(os, "preadv"):
        os.fstat(fd)  # a bad fd is an OSError (EBADF) on both cores
        return None
    buf = bytearray(length)
    try:
        n = os.preadv(fd, [buf], offset, flag)
    except OSError as exc:
        if exc.errno in _CANNOT:
            return None
        raise
    with memoryview(buf) as view:
        return bytes(view[:n])
