"""Upload purging once per interval for the whole host, however many workers run.

distribution runs the upload purger in its one process. ``ocistore serve
--workers N`` has N processes on one storage root, and each runs the purge
loop; without coordination the tree would be walked N times per interval.
Each worker therefore asks :class:`PurgeSchedule` before purging: it takes an
exclusive, non-blocking ``flock`` on a stamp file under the server's lock
directory and purges only if no other worker is purging right now and the
stamp (the time the last purge finished) is at least one interval old. The
kernel drops the lock of a worker that dies mid-purge, so the next worker
due simply purges again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["STAMP_NAME", "PurgeSchedule"]

STAMP_NAME: Final = "upload-purge.stamp"

T = TypeVar("T")


class PurgeSchedule:
    """Decides, across processes, whether this worker's purge is due (see the module docstring)."""

    def __init__(self, lock_dir: str, *, interval: float) -> None:
        self.path = os.path.join(lock_dir, STAMP_NAME)
        self.interval = interval

    def run_if_due(
        self, purge: Callable[[], T], *, now: Callable[[], float] = time.time
    ) -> T | None:
        """``purge()`` if it is due and no other worker is purging; ``None`` when skipped."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another worker is purging now
            last = _read_stamp(fd)
            if last is not None and now() - last < self.interval:
                return None
            result = purge()
            stamp = f"{now():.6f}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, stamp, 0)
            return result
        finally:
            os.close(fd)  # releases the lock


def _read_stamp(fd: int) -> float | None:
    """The last purge's finishing time, or ``None`` for a new or unreadable stamp (purge then)."""
    raw = os.pread(fd, 64, 0)
    with contextlib.suppress(ValueError):
        value = float(raw.decode("ascii", "replace").strip())
        if value == value and value >= 0:  # not NaN
            return value
    return None
