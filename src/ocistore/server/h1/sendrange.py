"""Sending part of a file to a socket from a thread: from the page cache, without a user-space copy.

The file range is mapped (``mmap``) and the mapping written to the socket in
:data:`WRITE_SIZE` pieces, so the only copy is the kernel's, from the page
cache into the socket. Measured with curl on loopback (1 GiB, page cache
warm, 2 vCPUs): about 3.5-4 GB/s, where ``sendfile(2)`` reached about
2 GB/s (it moves 64 KiB per round through an internal pipe), ``splice``
through a 1 MiB pipe 1.4-1.8 GB/s (page references cost the receiving side
more on this loopback than the sender's copy saves), and a ``pread`` into
a buffer then ``send`` about 2.5 GB/s. It runs on a thread
because touching a mapped page that is not cached waits for the disk: that
wait must not stall the event loop and every other connection with it.

The socket is written through a duplicate of its descriptor: if the event
loop closes the connection meanwhile (the peer reset it), the number could be
reused by a new connection, and the duplicate keeps these bytes from ever
reaching it. Blob files are immutable once committed (they are renamed into
place complete and only ever unlinked), which is what makes mapping them
safe: truncating a mapped file under a reader would fault it (SIGBUS).
"""

from __future__ import annotations

import mmap
import os
import select
from typing import Final

__all__ = ["WRITE_SIZE", "SendTimeout", "send_file_range"]

WRITE_SIZE: Final = 1 << 20
"""Bytes offered to the socket per ``write`` (it takes what its buffer holds).

1 and 2 MiB pulled a 1 GiB blob fastest (about 3.4-3.5 GB/s, as fast as a
minimal blocking mmap + send server on the same file); 4 MiB about 10%
slower, 512 KiB 18% and 256 KiB 30% slower (curl on loopback, six
interleaved pulls each; ``MADV_SEQUENTIAL`` on the mapping made no
difference). A larger socket send buffer (``SO_SNDBUF``) gained about 5%,
within the noise, at the cost of kernel memory per connection: not set.
"""


class SendTimeout(TimeoutError):
    """The client took no bytes for the send timeout: it is not reading."""


def send_file_range(sock_fd: int, fd: int, offset: int, count: int, timeout: float) -> int:
    """Write ``count`` bytes of ``fd`` from ``offset`` to the non-blocking socket ``sock_fd``.

    Returns the bytes written: fewer than ``count`` only when the file ends
    first. Raises :class:`SendTimeout` when the socket accepts nothing for
    ``timeout`` seconds, and the ``OSError`` of a failed write (the peer went
    away: ``EPIPE``, ``ECONNRESET``).
    """
    if count <= 0:
        return 0
    size = os.fstat(fd).st_size
    count = min(count, size - offset)
    if count <= 0:
        return 0
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    m = mmap.mmap(fd, offset - base + count, prot=mmap.PROT_READ, offset=base)
    try:
        view = memoryview(m)
        try:
            return _write_all(sock_fd, view, offset - base, count, timeout)
        finally:
            view.release()
    finally:
        m.close()


def _write_all(sock_fd: int, view: memoryview, pos: int, count: int, timeout: float) -> int:
    end = pos + count
    start = pos
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    wait_ms = max(1, int(timeout * 1000))
    while pos < end:
        piece = view[pos : min(end, pos + WRITE_SIZE)]
        try:
            pos += os.write(sock_fd, piece)
        except BlockingIOError:
            if not poller.poll(wait_ms):
                raise SendTimeout(f"the client took no data for {timeout:g}s") from None
        finally:
            piece.release()
    return pos - start
