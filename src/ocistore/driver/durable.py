"""Small POSIX helpers that make a path survive a crash once a call returns.

A file's data is durable after ``fsync`` of the file; its *name* is durable
only after ``fsync`` of the directory holding it, and a new directory's name
only after ``fsync`` of its parent. These helpers call ``os`` functions through
the module at call time, so tests can patch ``os.fsync``/``os.mkdir`` to record
the order of operations.
"""

from __future__ import annotations

import os
import stat

__all__ = ["fsync_dir", "make_dirs", "write_all"]

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


def write_all(fd: int, view: memoryview) -> int:
    """Write every byte of ``view`` to ``fd`` (``os.write`` may write less), without copying."""
    total = view.nbytes
    written = os.write(fd, view)
    while written < total:
        written += os.write(fd, view[written:])
    return total
