"""Copying bytes that arrive on a stream into a file, hashing them on the way (pure core).

``copy_hashed`` is how a pull-through cache stores an upstream body: each
read lands in one reused buffer, is fed to the hasher and written to the
file, with no other copy. The native twin (``native/_hashing.pyx``) does the
same loop in C without the GIL for its own hashers; both stop at the same
points and return the same values (pinned by tests/test_streamhash_core.py).
"""

from __future__ import annotations

import fcntl
import math
import os
import select
import time
from typing import Any

__all__ = ["copy_hashed"]


def copy_hashed(
    hasher: Any, src: int, dst: int, length: int, buffer: Any, wait: float
) -> tuple[int, bool]:
    """Up to ``length`` bytes from the stream ``src`` appended to ``dst`` and fed to ``hasher``.

    Reads into ``buffer`` (a writable buffer, reused; its size is the most
    read at once) and returns ``(copied, ended)``: ``ended`` when ``src``
    reached its end; ``copied < length`` without ``ended`` when ``wait``
    seconds passed first (so a slow stream still reports what came every
    ``wait`` seconds; ``copied`` is 0 when no byte came at all), whether
    ``src`` is blocking or not (a socket an event loop made non-blocking). Every byte counted in ``copied`` was hashed and
    written (``dst``'s file position moves). OSError for a failed read or
    write, ValueError for a negative ``length`` or ``wait`` or an empty
    buffer; after an error the hasher has taken an unspecified part of the
    bytes.
    """
    if length < 0 or wait < 0:
        raise ValueError(f"length and wait must be >= 0, not {length} and {wait}")
    with memoryview(buffer) as whole:
        if whole.readonly or not whole.nbytes:
            raise ValueError("buffer must be a writable buffer of at least one byte")
        view = whole.cast("B")
        poller = select.poll()
        poller.register(src, select.POLLIN)
        # A blocking ``src`` is polled before each read, so that ``wait`` holds for it too.
        blocking = not fcntl.fcntl(src, fcntl.F_GETFL) & os.O_NONBLOCK
        deadline = time.monotonic() + wait
        done = 0
        while done < length:
            piece = view[: min(view.nbytes, length - done)]
            try:
                if blocking and not _readable(poller, deadline):
                    return done, False
                n = os.readv(src, [piece])
            except BlockingIOError:
                if not _readable(poller, deadline):
                    return done, False
                continue
            if n == 0:
                return done, True
            hasher.update(piece[:n])
            _write_all(dst, piece[:n])
            done += n
        return done, False


def _readable(poller: select.poll, deadline: float) -> bool:
    """Wait until the polled ``src`` is readable (True) or ``deadline`` passed (False)."""
    left = deadline - time.monotonic()
    return left > 0 and bool(poller.poll(math.ceil(left * 1000)))


def _write_all(fd: int, view: memoryview) -> None:
    while view.nbytes:
        view = view[os.write(fd, view) :]
