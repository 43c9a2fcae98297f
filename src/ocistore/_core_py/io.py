"""Kernel I/O hints for the pure core: ``start_writeback`` cannot start anything here.

The native core starts writeback with Linux ``sync_file_range`` (see
``native/_io.pyx``), which the ``os`` module does not offer. The pure twin
checks its arguments and the fd the same way and reports that no hint was
taken (False): the later ``fsync`` then does all the work, which is slower
but exactly as durable. (``posix_fadvise(POSIX_FADV_DONTNEED)`` would start
writeback too, but it also drops the pages from the cache, and an upload is
read again right after: at commit on this core, and by the first pull.)
"""

from __future__ import annotations

import os

__all__ = ["start_writeback"]


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing back ``length`` bytes of ``fd``'s file from ``offset`` (0: to the end).

    True when the kernel took the hint; here always False (nothing happened).
    A bad fd raises OSError; a negative offset or length raises ValueError.
    """
    if offset < 0 or length < 0:
        raise ValueError(f"offset and length must be >= 0, not {offset} and {length}")
    os.fstat(fd)  # a bad fd is an OSError (EBADF) on both cores
    return False
