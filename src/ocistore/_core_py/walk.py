"""Listing a directory tree and reading many small files in one call (pure core).

``walk_files`` lists every file below a directory (``os.scandir``; directories
are known by their entry type, never statted) and ``read_files`` reads whole
files. The native twin (``native/_walk.pyx``) does the same system calls
with the GIL released, so several threads list and read on several cores;
results and errors are the same on both cores.
"""

from __future__ import annotations

import os

__all__ = ["read_files", "walk_files"]

_GONE = (FileNotFoundError, NotADirectoryError)


def walk_files(top: str) -> list[tuple[str, int, int]]:
    """Every file below directory ``top``: ``(relative path, mtime in ns, size)``, in no order.

    Relative paths use ``/``. Directories are entered, never reported, and
    never followed through a symlink; a file's size and mtime are those of
    what it names (a symlink is followed). Entries that vanish while the
    walk runs are skipped. ``top`` missing or not a directory raises
    FileNotFoundError or NotADirectoryError; other failures raise OSError.
    """
    out: list[tuple[str, int, int]] = []
    with os.scandir(top) as it:
        entries = list(it)
    _walk(top, "", entries, out)
    return out


def _walk(
    top: str, rel: str, entries: list[os.DirEntry[str]], out: list[tuple[str, int, int]]
) -> None:
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                with os.scandir(f"{top}/{child}") as it:
                    below = list(it)
                _walk(top, child, below, out)
                continue
            st = entry.stat()
        except _GONE:
            continue
        out.append((child, st.st_mtime_ns, st.st_size))


def read_files(paths: list[str]) -> list[bytes | None]:
    """The whole content of each file of ``paths``, in order; None for one that is missing.

    A path that names a directory, or under a missing directory, counts as
    missing; any other failure raises OSError naming the path.
    """
    out: list[bytes | None] = []
    for path in paths:
        try:
            with open(path, "rb", buffering=0) as f:
                out.append(f.readall())
        except (*_GONE, IsADirectoryError):
            out.append(None)
    return out
