"""Listing a directory tree and reading many small files in one call (pure core).

``walk_files`` lists every file below a directory (``os.scandir``; directories
are known by their entry type, never statted), ``read_files`` reads whole
files and ``remove_paths`` removes files or directories. The native twin
(``native/_walk.pyx``) does the same system calls with the GIL released, so
several threads list, read and remove in parallel; results and errors are the
same on both cores.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["read_files", "remove_paths", "walk_files"]

_GONE = (FileNotFoundError, NotADirectoryError)


def walk_files(top: str, leaf: str | None = None) -> list[tuple[str, int, int]]:
    """Every file below directory ``top``: ``(relative path, mtime in ns, size)``, in no order.

    Relative paths use ``/``. Directories are entered, never reported, and
    never followed through a symlink; a file's size and mtime are those of
    what it names (a symlink is followed). Entries that vanish while the
    walk runs are skipped. ``top`` missing or not a directory raises
    FileNotFoundError or NotADirectoryError; other failures raise OSError.

    With ``leaf`` (a file name), a directory below ``top`` that holds a regular
    file of that name is taken to hold only it: the file is statted by its
    path and the directory is not listed (what else it holds is not reported).
    """
    out: list[tuple[str, int, int]] = []
    with os.scandir(top) as it:
        entries = list(it)
    _walk(top, "", entries, out, leaf)
    return out


def _walk(
    top: str,
    rel: str,
    entries: list[os.DirEntry[str]],
    out: list[tuple[str, int, int]],
    leaf: str | None,
) -> None:
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                if leaf is not None:
                    try:
                        st = os.stat(f"{top}/{child}/{leaf}")
                    except OSError:
                        pass  # no such regular file (or it cannot be statted): list it
                    else:
                        if stat.S_ISREG(st.st_mode):
                            out.append((f"{child}/{leaf}", st.st_mtime_ns, st.st_size))
                            continue
                with os.scandir(f"{top}/{child}") as it:
                    below = list(it)
                _walk(top, child, below, out, leaf)
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


def remove_paths(paths: list[str], directories: bool = False) -> list[int]:
    """Unlink each file of ``paths`` (``directories``: rmdir each directory), in order.

    One errno per path, 0 where it was removed; nothing raises.
    """
    remove = os.rmdir if directories else os.unlink
    out: list[int] = []
    for path in paths:
        try:
            remove(path)
        except OSError as exc:
            out.append(exc.errno or errno.EIO)
        else:
            out.append(0)
    return out
