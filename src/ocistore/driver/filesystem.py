"""The default driver: files under a root directory, laid out as distribution lays them out.

Driver path ``/docker/registry/v2/...`` is the file ``<root>/docker/registry/v2/...``,
exactly as distribution's ``filesystem`` driver stores it, so either registry
can serve a root the other wrote. Beyond distribution, every mutation is
crash safe once it returns:

- ``put_content`` writes a temporary file in the target's directory, fsyncs
  it, ``os.replace``\\ s it over the target and fsyncs the directory: a reader
  sees the old or the new content, never a mix, and the new one survives a crash.
- directories are created on demand, each one fsynced into its parent.
- ``move`` fsyncs the directories on both sides of the rename.
- writers fsync on ``commit`` and ``close`` (see :mod:`.filesystem_writer`).

Every ``os`` call goes through the module at call time (``os.fsync``,
``os.replace``...), so tests can patch them to record the order of operations.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ocistore import _core
from ocistore.driver.base import Buffer, FileInfo
from ocistore.driver.buffers import byte_view
from ocistore.driver.durable import fsync_dir, make_dirs, replace_file
from ocistore.driver.filesystem_writer import FilesystemWriter
from ocistore.driver.pathcheck import check_path
from ocistore.driver.walk import walk_tree
from ocistore.errors import DriverError, InvalidOffset, PathNotFound

__all__ = ["FilesystemDriver"]

_MISSING = (FileNotFoundError, NotADirectoryError)
"""What a lookup raises when nothing of the right kind is at the path."""


class FilesystemDriver:
    """A :class:`~ocistore.driver.base.StorageDriver` over a local directory tree."""

    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.path.abspath(os.fspath(root))
        make_dirs(self._root)
        self._prefix = self._root.rstrip(os.sep)

    @property
    def root(self) -> str:
        """The absolute directory this driver stores under."""
        return self._root

    def full_path(self, path: str) -> str:
        """The OS path of driver path ``path`` (validated; ``/`` is the root itself)."""
        check_path(path, self.name, allow_root=True)
        return self._root if path == "/" else self._prefix + path

    def _make_parent(self, path: str, directory: str) -> None:
        try:
            make_dirs(directory)
        except NotADirectoryError:
            raise DriverError(path, self.name, "a parent directory is a file") from None

    # --- StorageDriver ----------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        check_path(path, self.name)
        try:
            with open(self._prefix + path, "rb", buffering=0) as f:
                return f.readall()
        except (*_MISSING, IsADirectoryError):
            raise PathNotFound(path, self.name) from None

    def put_content(self, path: str, data: Buffer) -> None:
        check_path(path, self.name)
        full = self._prefix + path
        directory = os.path.dirname(full)
        with byte_view(data) as view:
            self._make_parent(path, directory)
            try:
                replace_file(full, view)
            except IsADirectoryError:
                raise DriverError(path, self.name, "is a directory") from None
        fsync_dir(directory)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        check_path(path, self.name)
        if offset < 0:
            raise InvalidOffset(path, offset, self.name)
        try:
            f = open(self._prefix + path, "rb", buffering=0)  # noqa: SIM115 (returned open)
        except (*_MISSING, IsADirectoryError):
            raise PathNotFound(path, self.name) from None
        if offset:
            f.seek(offset)
        return f

    def writer(self, path: str, append: bool = False) -> FilesystemWriter:
        check_path(path, self.name)
        full = self._prefix + path
        self._make_parent(path, os.path.dirname(full))
        fd, created = self._open_for_writing(path, full)
        try:
            if append:
                os.lseek(fd, 0, os.SEEK_END)
            elif not created:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return FilesystemWriter(path, full, fd, created=created)

    def _open_for_writing(self, path: str, full: str) -> tuple[int, bool]:
        flags = os.O_WRONLY | os.O_CLOEXEC
        for _ in range(8):  # only loops while another thread creates/deletes the file
            try:
                return os.open(full, flags | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                pass
            try:
                return os.open(full, flags), False
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                raise DriverError(path, self.name, "is a directory") from None
        raise DriverError(path, self.name, "file keeps appearing and vanishing")

    def stat(self, path: str) -> FileInfo:
        full = self.full_path(path)
        try:
            st = os.stat(full)
        except _MISSING:
            raise PathNotFound(path, self.name) from None
        return _info(path, st)

    def list(self, path: str) -> builtins.list[str]:
        full = self.full_path(path)
        try:
            names = os.listdir(full)
        except _MISSING:
            raise PathNotFound(path, self.name) from None
        prefix = "" if path == "/" else path
        return sorted(f"{prefix}/{name}" for name in names)

    def move(self, source: str, dest: str) -> None:
        check_path(source, self.name)
        check_path(dest, self.name)
        src_full, dst_full = self._prefix + source, self._prefix + dest
        try:
            st = os.stat(src_full)
        except _MISSING:
            raise PathNotFound(source, self.name) from None
        if stat.S_ISDIR(st.st_mode):
            raise DriverError(source, self.name, "is a directory; only files move")
        if source == dest:
            return
        src_dir, dst_dir = os.path.dirname(src_full), os.path.dirname(dst_full)
        self._make_parent(dest, dst_dir)
        try:
            os.replace(src_full, dst_full)
        except FileNotFoundError:
            raise PathNotFound(source, self.name) from None
        except IsADirectoryError:
            raise DriverError(dest, self.name, "is a directory") from None
        fsync_dir(dst_dir)
        if src_dir != dst_dir:
            fsync_dir(src_dir)

    def delete(self, path: str) -> None:
        check_path(path, self.name)
        full = self._prefix + path
        try:
            st = os.lstat(full)
        except _MISSING:
            raise PathNotFound(path, self.name) from None
        try:
            if stat.S_ISDIR(st.st_mode):
                _rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            pass  # deleted concurrently: the outcome the caller asked for
        fsync_dir(os.path.dirname(full))

    def walk(self, path: str, start_after: str | None = None) -> Iterator[FileInfo]:
        check_path(path, self.name, allow_root=True)
        if start_after is not None:
            check_path(start_after, self.name, allow_root=True)
        return walk_tree(self._entries, path, start_after)

    def _entries(self, path: str) -> builtins.list[FileInfo]:
        """Children of ``path`` with one ``stat`` each (``scandir`` saves the listing calls)."""
        prefix = "" if path == "/" else path
        out: builtins.list[FileInfo] = []
        try:
            with os.scandir(self._root if path == "/" else self._prefix + path) as it:
                for entry in it:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue  # removed between listing and stat, as distribution skips it
                    out.append(_info(f"{prefix}/{entry.name}", st))
        except _MISSING:
            raise PathNotFound(path, self.name) from None
        return out

    # --- bulk calls for the garbage collector (optional; see storage/bulk.py) -----------

    cpu_bound_listing = True
    """Listing and reading are system calls that cost CPU, not waits (bulk.listing_threads)."""

    def walk_files(self, path: str) -> Iterator[FileInfo]:
        """Every file below directory ``path`` in no particular order; directories are not statted."""
        for child, mtime, size in self.list_files(path):
            yield FileInfo(child, size, mtime, False)

    def list_files(
        self, path: str, leaf: str | None = None
    ) -> builtins.list[tuple[str, float, int]]:
        """``(path, mtime, size)`` of every file below directory ``path`` (none if it is missing).

        One call of the core's ``walk_files``: the native core lists the
        subtree with the GIL released, so several threads list on several
        cores. With ``leaf``, a directory holding a file of that name is taken
        to hold only it (statted, not listed): the collector's entry directories.
        """
        check_path(path, self.name, allow_root=True)
        prefix = "" if path == "/" else path
        try:
            found = _core.walk_files(self._root if path == "/" else self._prefix + path, leaf)
        except _MISSING:
            return []
        return [(f"{prefix}/{rel}", mtime_ns / 1e9, size) for rel, mtime_ns, size in found]

    def read_contents(self, paths: builtins.list[str]) -> builtins.list[bytes | None]:
        """The content of each file of ``paths``, None where one is missing (one core call)."""
        for path in paths:
            check_path(path, self.name)
        return _core.read_files([self._prefix + path for path in paths])

    def delete_files(
        self, paths: builtins.list[str], *, sync: bool = True, whole: bool = False
    ) -> dict[str, str]:
        """Delete files, then each one's directory if that emptied it; missing files are skipped.

        With ``whole``, a directory that still holds something once its file
        is gone is removed with all it holds (the caller knows it is an entry
        of its own that nothing else may keep). With ``sync`` each directory
        changed is fsynced once, after all the removals (not once per file);
        without, nothing is (the caller can afford to lose the removals in a
        power cut). Returns the files that could not be deleted, with why.
        """
        failed: dict[str, str] = {}
        dirs: dict[str, str] = {}
        fulls: list[str] = []
        for path in paths:
            check_path(path, self.name)
            fulls.append(self._prefix + path)
        # One core call per step: the removals run with the GIL released, so the
        # collector's threads do not queue for it between two blocking system calls.
        for path, full, err in zip(paths, fulls, _core.remove_paths(fulls), strict=True):
            if err not in (0, errno.ENOENT):
                failed[path] = os.strerror(err)
                continue
            dirs[os.path.dirname(full)] = path
        removed = _core.remove_paths(list(dirs), directories=True)
        synced: dict[str, None] = {}
        for (directory, path), err in zip(dirs.items(), removed, strict=True):
            if err == errno.ENOENT:
                continue
            if err:
                if not whole or err not in (errno.ENOTEMPTY, errno.EEXIST):
                    synced[directory] = None  # not empty (something else is there): keep it
                    continue
                try:
                    _rmtree(directory)
                except OSError as exc2:
                    failed[path] = exc2.strerror or str(exc2)
                    synced[directory] = None
                    continue
            synced[os.path.dirname(directory)] = None
        if not sync:
            return failed
        for directory in synced:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(directory)
        return failed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._root!r})"


def _info(path: str, st: os.stat_result) -> FileInfo:
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime_ns / 1e9, is_dir)


def _ignore_missing(func: Callable[..., Any], path: str, exc: BaseException) -> None:
    if not isinstance(exc, FileNotFoundError):
        raise exc


def _rmtree(path: str) -> None:
    """Remove a tree, ignoring entries another thread removed first."""
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_ignore_missing)
    else:
        shutil.rmtree(path, onerror=lambda f, p, info: _ignore_missing(f, p, info[1]))
