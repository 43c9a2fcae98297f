"""Writing an upload's bytes on other threads while the writing thread hashes them.

sha256 of a MiB and its copy into the page cache cost about the same. Done
one after the other on the thread that receives an upload, that thread fell
behind the network, and an HTTP PATCH waited for the backlog after its last
byte arrived. Two ways to overlap them, both releasing the GIL on each side
(``os.write``; the hashers' ``update``):

- :func:`hash_while_writing`, for any buffer: a helper thread writes a piece
  while the caller hashes it, and the call returns once both are done (the
  caller may then reuse the buffer). A piece costs the longer of the two.
- the core's ``WriteBehind`` (``ocistore._core_py.io``; a C thread in the
  native core), for immutable ``bytes`` only: pieces go to a thread of the
  upload's own that appends them in order, and the caller hashes the next
  piece while the previous one is still being written (one piece in
  flight). The caller waits for a write only when it is two pieces ahead.
  Chunked 16 MiB pushes gained ~15% over the former (paired interleaved runs
  of ``benchmarks/http/registry_compare.py``'s chunked push).

A failed write (a full disk) stops a ``WriteBehind``: pieces queued after it
are not written, and its next ``settle`` raises the error once every queued
piece is accounted for, so the file holds a prefix of what was submitted and
its size says how long.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Final, Protocol

from ocistore._perprocess import PerProcess
from ocistore.driver.durable import write_all

__all__ = ["WRITE_HELPERS", "hash_while_writing"]

WRITE_HELPERS: Final = 4
"""Threads (per process, shared by all uploads) that write pieces for :func:`hash_while_writing`."""

StartWriteback = Callable[[int, int, int], bool]


class _Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...


_helpers = PerProcess(
    lambda: ThreadPoolExecutor(WRITE_HELPERS, thread_name_prefix="ocistore-write")
)


def hash_while_writing(fd: int, hasher: _Hasher, view: memoryview) -> int:
    """Write ``view`` to ``fd`` on a helper thread while hashing it here; return the bytes written.

    The write is always waited for, even when hashing fails, so ``view`` is
    never released under it. When the write fails the hasher has seen bytes
    the file has not: the caller drops the hasher then.
    """
    pending = _helpers.get().submit(write_all, fd, view)
    try:
        hasher.update(view)
    except BaseException:
        wait([pending])
        raise
    return pending.result()
