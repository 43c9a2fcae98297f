"""Kernel I/O hints for the pure core, and the write-behind lane of an upload.

``start_writeback`` cannot start anything here.

The native core starts writeback with Linux ``sync_file_range`` (see
``native/_io.pyx``), which the ``os`` module does not offer. The pure twin
checks its arguments and the fd the same way and reports that no hint was
taken (False): the later ``fsync`` then does all the work, which is slower
but exactly as durable. (``posix_fadvise(POSIX_FADV_DONTNEED)`` would start
writeback too, but it also drops the pages from the cache, and an upload is
read again right after: at commit on this core, and by the first pull.)

:class:`WriteBehind` appends an upload's received bytes on a thread of its
own while the receiving thread hashes the next piece
(:mod:`ocistore.storage.blobwriter` says why). Here it is a Python thread;
the native core's is a C thread that never takes the GIL.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any, Final

__all__ = ["WriteBehind", "start_writeback"]


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing back ``length`` bytes of ``fd``'s file from ``offset`` (0: to the end).

    True when the kernel took the hint; here always False (nothing happened).
    A bad fd raises OSError; a negative offset or length raises ValueError.
    """
    if offset < 0 or length < 0:
        raise ValueError(f"offset and length must be >= 0, not {offset} and {length}")
    os.fstat(fd)  # a bad fd is an OSError (EBADF) on both cores
    return False


_SLOTS: Final = 4
"""Pieces a :class:`WriteBehind` holds at most (queued or being written), as the native core."""

_WRITEBACK_MIN: Final = 1 << 20
"""Writeback is started once at least this many bytes were written since the last start.

Often enough that the fsync closing an upload finds little left to write,
seldom enough that the hint costs one syscall per MiB.
"""


class _Lane:
    """What a :class:`WriteBehind` shares with its thread (the thread never holds the object)."""

    def __init__(self, fd: int, writeback: bool) -> None:
        self.fd = fd
        self.writeback = writeback
        self.cond = threading.Condition()
        self.queue: deque[tuple[memoryview, int]] = deque()
        self.submitted = 0
        self.done = 0
        self.error: OSError | None = None
        self.stopping = False

    def run(self) -> None:
        cond = self.cond
        unhinted = -1  # where the bytes not yet handed to writeback begin
        while True:
            with cond:
                while not self.queue and not self.stopping:
                    cond.wait()
                if not self.queue:
                    return
                view, offset = self.queue.popleft()
                skip = self.error is not None  # an earlier piece failed: the file ends there
                hint = self.writeback
            error: OSError | None = None
            if not skip:
                try:
                    n = _write_all(self.fd, view)
                except OSError as exc:
                    error = exc
                else:
                    if unhinted < 0:
                        unhinted = offset
                    if hint and offset + n - unhinted >= _WRITEBACK_MIN:
                        try:
                            hint = start_writeback(self.fd, unhinted, offset + n - unhinted)
                        except (OSError, ValueError):
                            hint = False
                        unhinted = offset + n
            view.release()
            with cond:
                if error is not None and self.error is None:
                    self.error = error
                if not skip and error is None and not hint:
                    self.writeback = False
                self.done += 1
                cond.notify_all()


class WriteBehind:
    """Appends pieces of buffers to ``fd``, in order, on a thread of its own.

    With ``writeback``, writeback is started each time at least a MiB more
    was written (:func:`start_writeback`; here that is never taken, so it
    stops after the first try, as the native core stops once the hint is no
    use). At most four pieces are held; :meth:`submit` waits for room. A failed write stops
    the lane (later pieces are not written) and is raised once by the next
    :meth:`settle` (or :meth:`close`), after every queued piece is done. A
    lane dropped without :meth:`close` still writes what it holds, then its
    thread ends. The native core does the same on a C thread that never
    takes the GIL. Not thread-safe: one caller thread.
    """

    def __init__(self, fd: int, writeback: bool) -> None:
        self._lane = _Lane(fd, writeback)
        self._running = True
        self._thread = threading.Thread(
            target=self._lane.run, name="ocistore-write-behind", daemon=True
        )
        self._thread.start()

    def submit(self, data: Any, offset: int) -> None:
        """Queue ``data`` to be appended (nobody may change it until :meth:`settle` saw it written).

        ``offset`` is where it will land, for the writeback hint. Waits while
        the lane already holds its maximum of queued pieces.
        """
        if not self._running:
            raise ValueError("write-behind lane is closed")
        view = memoryview(data)
        lane = self._lane
        with lane.cond:
            while lane.submitted - lane.done >= _SLOTS:
                lane.cond.wait()
            lane.queue.append((view, offset))
            lane.submitted += 1
            lane.cond.notify_all()

    def settle(self, in_flight: int = 0) -> None:
        """Wait until at most ``in_flight`` pieces are still being written.

        After a failed write, waits for every queued piece and raises that
        write's error (once).
        """
        if not self._running:
            return
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0, not {in_flight}")
        lane = self._lane
        with lane.cond:
            while lane.submitted - lane.done > in_flight and lane.error is None:
                lane.cond.wait()
            if lane.error is None:
                return
            while lane.done != lane.submitted:
                lane.cond.wait()
            error, lane.error = lane.error, None
            lane.writeback = False
        raise error

    def _stop(self, *, join: bool = True) -> None:
        if not self._running:
            return
        self._running = False
        with self._lane.cond:
            self._lane.stopping = True
            self._lane.cond.notify_all()
        if join:
            self._thread.join()

    def abandon(self) -> None:
        """Wait for every queued piece, ignore any failure, and stop the thread."""
        self._stop()

    def close(self) -> None:
        """Wait for every queued piece (raising a failed write's error) and stop the thread."""
        try:
            self.settle()
        finally:
            self._stop()

    def __del__(self) -> None:
        if getattr(self, "_running", False):
            self._stop(join=False)


def _write_all(fd: int, view: memoryview) -> int:
    total = view.nbytes
    written = os.write(fd, view)
    while written < total:
        written += os.write(fd, view[written:])
    return total
