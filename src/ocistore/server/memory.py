"""The C allocator's settings for a server worker: body chunks reuse memory instead of faulting it in.

A pushed blob reaches the app as ``bytes`` of up to 256 KiB each (uvloop's
read size, under ``ocistore.server.h1``) or up to 2 MiB (granian's read
buffer, ``run.HTTP1_BUFFER``), thousands per GiB, allocated on one
thread and freed on the writer thread soon after. glibc's malloc serves
that size from its heaps, but gives the freed top of a heap back to the
kernel as soon as it exceeds its trim threshold (by default twice the last
mmap threshold), so the next chunks are written into fresh pages: every
4 KiB page faulted in and zeroed by the kernel, then unmapped again
(BENCHMARKS.md, "HTTP: the server's tuning").

:func:`tune_allocator` fixes the mmap threshold above the largest chunk and
lets a heap keep up to :data:`TRIM_THRESHOLD` of free memory, so the few MiB
an upload has in flight are allocated once and reused. What a worker keeps
is bounded by what it had in flight at its peak (the body pump holds at most
``pump.HIGH_WATER`` plus one batch per upload), never more than the trim
threshold per heap beyond that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

MMAP_THRESHOLD: Final = 4 << 20
"""Allocations at least this large get their own mapping (body chunks are at most 2 MiB)."""

TRIM_THRESHOLD: Final = 32 << 20
"""Free memory at the top of a heap that is kept rather than given back to the kernel."""

_M_TRIM_THRESHOLD: Final = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD: Final = -3


def tune_allocator() -> bool:
    """Apply the settings above to this process's malloc; False where it is not glibc's.

    Safe to call more than once. Only the allocator's tuning changes, not
    what any code may allocate; on other C libraries nothing happens.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it: musl's mallopt is a no-op)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set: int = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trim_set: int = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return mmap_set == 1 and trim_set == 1
