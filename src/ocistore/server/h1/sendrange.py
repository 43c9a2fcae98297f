"""Sending part of a file to a socket from a thread: from the page cache, without a user-space copy.

The file range is mapped (``mmap``) and the mapping written to the socket in
:data:`WRITE_SIZE` pieces, so the only copy is the kernel's, from the page
cache into the socket; on loopback that beat ``sendfile(2)``, ``splice``
and ``pread`` + ``send`` (BENCHMARKS.md, "HTTP: the server's tuning"). It
runs on a thread because touching a mapped page that is not cached waits
for the disk: that wait must never stall the event loop and every other
connection with it. A wait for the client is the loop's, though
(:data:`PARK_AFTER`).

The socket is written through a duplicate of its descriptor: if the event
loop closes the connection meanwhile (the peer reset it), the number could be
reused by a new connection, and the duplicate keeps these bytes from ever
reaching it. Blob files are immutable once committed (they are renamed into
place complete and only ever unlinked), which is what makes mapping them
safe: truncating a mapped file under a reader would fault it (SIGBUS). A
proxy fill's upload file, sent while it is written, only grows: the range
sent is one already written.
"""

from __future__ import annotations

import mmap
import os
import select
from typing import Final

__all__ = ["PARK_AFTER", "WRITE_SIZE", "MappedRange", "SendTimeout", "write_some"]

WRITE_SIZE: Final = 1 << 20
"""Bytes offered to the socket per ``write`` (it takes what its buffer holds).

The size that pulled fastest among those tried (BENCHMARKS.md, "HTTP: the
server's tuning"). ``SO_SNDBUF`` is left alone: a larger send buffer gained
nothing beyond the noise and costs kernel memory per connection.
"""


PARK_AFTER: Final = 0.05
"""Seconds a sending thread waits for a full socket before handing the wait to the event loop.

A client that reads steadily frees buffer space within microseconds, so a
fast pull never leaves its thread; one that stalls (slow link, paused
client) gives the thread back, and the loop waits for writability at no
cost, so a few slow clients cannot hold every sending thread while others
queue behind them.
"""


class SendTimeout(TimeoutError):
    """The client took no bytes for the send timeout: it is not reading."""


class MappedRange:
    """A read-only mapping of ``count`` bytes of ``fd`` from ``offset`` (clamped to the file's end).

    Made on the event loop (``mmap`` only sets up the mapping; pages are read
    when touched, by the sending thread) and kept across parked waits.
    """

    __slots__ = ("_map", "length", "start", "view")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        size = os.fstat(fd).st_size
        self.length = max(0, min(count, size - offset))
        self._map: mmap.mmap | None = None
        self.start = 0
        self.view = memoryview(b"")
        if self.length:
            base = offset - offset % mmap.ALLOCATIONGRANULARITY
            self._map = mmap.mmap(fd, offset - base + self.length, prot=mmap.PROT_READ, offset=base)
            self.view = memoryview(self._map)
            self.start = offset - base

    def close(self) -> None:
        self.view.release()
        if self._map is not None:
            self._map.close()
            self._map = None


def write_some(sock_fd: int, rng: MappedRange, sent: int) -> int:
    """Write ``rng`` from byte ``sent`` on to the non-blocking socket; return the new ``sent``.

    Runs on a sending thread. Returns early (below ``rng.length``) when the
    socket has had no room for :data:`PARK_AFTER` seconds; raises the
    ``OSError`` of a failed write (the peer went away: ``EPIPE``,
    ``ECONNRESET``).
    """
    view = rng.view
    pos = rng.start + sent
    end = rng.start + rng.length
    poller: select.poll | None = None
    while pos < end:
        piece = view[pos : min(end, pos + WRITE_SIZE)]
        try:
            pos += os.write(sock_fd, piece)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLOUT)
            if not poller.poll(int(PARK_AFTER * 1000)):
                break
        finally:
            piece.release()
    return pos - rng.start
