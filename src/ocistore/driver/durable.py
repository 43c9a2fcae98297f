"""Small POSIX helpers that make a path survive a crash once a call returns.

A file's data is durable after ``fsync`` of the file; its *name* is durable
only after ``fsync`` of the directory holding it, and a new directory's name
only after ``fsync`` of its parent. These helpers call ``os`` functions through
the module at call time, so tests can patch ``os.fsync``/``os.mkdir`` to record
the order of operations.

:func:`close_later` is the one helper here that is about time, not
durability: it closes a descriptor on a background thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import threading
from queue import SimpleQueue

from ocistore._perprocess import PerProcess

__all__ = ["close_later", "fsync_dir", "make_dirs", "replace_file", "write_all"]

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def fsync_dir(path: str) -> None:
    """Flush the directory ``path`` itself (its list of names) to stable storage."""
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """Create directory ``path`` and its missing parents, each made durable in its parent.

    Raises NotADirectoryError when a component exists and is not a directory.
    A directory another thread creates concurrently is fsynced here as well,
    so neither caller returns before the name is durable.
    """
    missing: list[str] = []
    current = path
    while True:
        try:
            st = os.stat(current)
        except FileNotFoundError:
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                raise
            current = parent
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"not a directory: {current}")
        break
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o777)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(f"not a directory: {directory}") from None
        fsync_dir(os.path.dirname(directory))


def replace_file(path: str, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a synced temporary file, without syncing the directory.

    The temporary file beside ``path`` (a new name, ``.tmp-<name>-<random>``,
    created exclusively) is written and fsynced before it is renamed to
    ``path``: whoever opens ``path``, now or after a crash, finds its old
    content (or nothing) or all of ``data``, never a part. The rename itself
    is not made durable here (no fsync of the directory, which costs a
    journal commit): after a crash ``path`` may be missing, or a temporary
    file may be left. Callers that need the name durable sync the directory
    after (the filesystem driver's ``put_content``); callers that do not are
    those whose loss is harmless, such as a hash state (its absence costs a
    re-hash). FileNotFoundError when the directory does not exist.
    """
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".tmp-{name}-{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            write_all(fd, memoryview(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_all(fd: int, view: memoryview) -> int:
    """Write every byte of ``view`` to ``fd`` (``os.write`` may write less), without copying."""
    total = view.nbytes
    written = os.write(fd, view)
    while written < total:
        written += os.write(fd, view[written:])
    return total


def _close_forever(queue: SimpleQueue[int]) -> None:
    while True:
        fd = queue.get()
        with contextlib.suppress(OSError):  # nobody to tell; the fd is gone either way
            os.close(fd)


def _start_closer() -> SimpleQueue[int]:
    queue: SimpleQueue[int] = SimpleQueue()
    threading.Thread(
        target=_close_forever, args=(queue,), name="ocistore-close", daemon=True
    ).start()
    return queue


_closer = PerProcess(_start_closer)


def close_later(fd: int) -> None:
    """Close ``fd`` on a background thread (one per process) instead of now.

    Why: when ``fd`` is the last reference to a file already unlinked, the
    close frees the file's blocks, and ext4 takes time in proportion to the
    file's size for that, mostly waiting on its journal (an upload removed
    after its blob turned out to exist; BENCHMARKS.md, "HTTP: the server's
    tuning"). Nobody has to wait for that
    space to come back: the file's name is already gone, and after a crash
    the filesystem frees an unlinked inode by itself. Unlinking while a
    duplicate of the descriptor stays open, then handing the duplicate here,
    takes that time off the request.

    Descriptors still queued when the process exits are closed by the kernel.
    """
    _closer.get().put(fd)
