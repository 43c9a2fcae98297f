"""The filesystem driver's :class:`~ocistore.driver.base.FileWriter`: a raw fd, no buffering.

Writes go straight to the file descriptor with ``os.write`` on memoryview
slices, so nothing is copied in Python, and the same fd can be handed to the
core's write-behind lane (``fileno()``), which appends on a thread of its own.
``size`` asks the kernel for the fd's offset, so it stays right whoever wrote
through the fd.

``commit()`` and ``close()`` both leave the bytes durable: the data is
fsynced and, for a file this writer created, so is its directory. That lets
the storage layer write a hash state right after ``close()`` without it ever
vouching for bytes that are not on disk (DESIGN.md §2).
"""

from __future__ import annotations

import os
from types import TracebackType

from ocistore.driver.base import Buffer
from ocistore.driver.buffers import byte_view
from ocistore.driver.durable import close_later, fsync_dir, write_all

__all__ = ["FilesystemWriter"]


class FilesystemWriter:
    """Writes one file of a :class:`~ocistore.driver.filesystem.FilesystemDriver`."""

    def __init__(self, path: str, full_path: str, fd: int, *, created: bool) -> None:
        self._path = path
        self._full = full_path
        self._fd = fd
        self._done: str | None = None  # "committed", "cancelled" or "closed"
        self._final_size = 0
        self._unsynced = False  # bytes may have been written since the last fsync
        self._dir_synced = not created

    @property
    def path(self) -> str:
        return self._path

    def _check_open(self) -> None:
        if self._done is not None:
            raise ValueError(f"writer for {self._path} is already {self._done}")

    def write(self, data: Buffer) -> int:
        self._check_open()
        with byte_view(data) as view:
            if not view.nbytes:
                return 0
            self._unsynced = True
            return write_all(self._fd, view)

    @property
    def size(self) -> int:
        if self._done is not None:
            return self._final_size
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def fileno(self) -> int | None:
        self._check_open()
        self._unsynced = True  # whoever holds the fd may write through it
        return self._fd

    def _sync(self) -> None:
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = False
        if not self._dir_synced:
            fsync_dir(os.path.dirname(self._full))
            self._dir_synced = True

    def _finish(self, how: str, *, sync: bool) -> None:
        try:
            self._final_size = os.lseek(self._fd, 0, os.SEEK_CUR)
            if sync:
                self._sync()
        finally:
            self._done = how
            os.close(self._fd)

    def commit(self) -> None:
        self._check_open()
        self._finish("committed", sync=True)

    def close(self) -> None:
        if self._done is None:
            self._finish("closed", sync=True)

    def cancel(self) -> None:
        """Remove the file; freeing its blocks is left to a background thread.

        A duplicate of the fd outlives the unlink and is closed by
        :func:`~ocistore.driver.durable.close_later`, so the caller does not
        wait while the filesystem frees a large file's blocks.
        """
        self._check_open()
        ours = os.fstat(self._fd)
        keep = os.dup(self._fd)
        try:
            self._finish("cancelled", sync=False)
            self._final_size = 0
            try:
                there = os.stat(self._full)
            except (FileNotFoundError, NotADirectoryError):
                return
            if (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino):
                os.unlink(self._full)
        finally:
            close_later(keep)

    def __enter__(self) -> FilesystemWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A writer dropped without close/commit/cancel must not leak its fd.
        if getattr(self, "_done", "") is None:
            self._done = "closed"
            os.close(self._fd)

    def __repr__(self) -> str:
        state = self._done or "open"
        return f"<{type(self).__name__} {self._path} {state}>"
