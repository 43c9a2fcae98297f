"""A driver that keeps everything in a tree of dicts: for tests and ephemeral registries.

Mirrors distribution's ``inmemory`` driver. All state sits behind one lock, so
the driver is safe to share between threads. Files are ``bytearray``s; a
reader keeps a reference to its file and copies only the bytes each read
asks for, and a ``put_content`` swaps in a new file object, so open readers
keep seeing the old bytes exactly as they would on a filesystem after
``os.replace``.
"""

from __future__ import annotations

import builtins
import io
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, cast

from ocistore.driver.base import Buffer, FileInfo
from ocistore.driver.buffers import byte_view
from ocistore.driver.pathcheck import check_path
from ocistore.driver.walk import walk_tree
from ocistore.errors import DriverError, InvalidOffset, PathNotFound

__all__ = ["InMemoryDriver"]


class _File:
    __slots__ = ("data", "mod_time")

    def __init__(self, data: bytearray, mod_time: float) -> None:
        self.data = data
        self.mod_time = mod_time


class _Dir:
    __slots__ = ("children", "mod_time")

    def __init__(self, mod_time: float) -> None:
        self.children: dict[str, _File | _Dir] = {}
        self.mod_time = mod_time


class InMemoryDriver:
    """A :class:`~ocistore.driver.base.StorageDriver` that stores files in memory."""

    name = "inmemory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._root = _Dir(time.time())

    # --- tree helpers (call with the lock held) -------------------------------

    def _lookup(self, path: str) -> _File | _Dir | None:
        node: _File | _Dir = self._root
        if path == "/":
            return node
        for part in path.split("/")[1:]:
            if not isinstance(node, _Dir):
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def _parent(self, path: str, *, create: bool) -> tuple[_Dir | None, str]:
        """The directory holding ``path`` and the last component (creating directories if asked)."""
        *dirs, leaf = path.split("/")[1:]
        node = self._root
        walked = ""
        now = time.time()
        for part in dirs:
            walked += "/" + part
            child = node.children.get(part)
            if child is None:
                if not create:
                    return None, leaf
                child = node.children[part] = _Dir(now)
                node.mod_time = now
            elif not isinstance(child, _Dir):
                if not create:
                    return None, leaf
                raise DriverError(path, self.name, f"{walked} is a file, not a directory")
            node = child
        return node, leaf

    def _file(self, path: str) -> _File:
        node = self._lookup(path)
        if not isinstance(node, _File):
            raise PathNotFound(path, self.name)
        return node

    def _entries(self, path: str) -> builtins.list[FileInfo]:
        prefix = "" if path == "/" else path
        with self._lock:
            node = self._lookup(path)
            if not isinstance(node, _Dir):
                raise PathNotFound(path, self.name)
            return [_info(f"{prefix}/{name}", child) for name, child in node.children.items()]

    def _unlink_if(self, path: str, node: _File) -> None:
        """Remove ``path`` if it still names ``node`` (used by a cancelled writer)."""
        with self._lock:
            parent, leaf = self._parent(path, create=False)
            if parent is not None and parent.children.get(leaf) is node:
                del parent.children[leaf]
                parent.mod_time = time.time()

    # --- StorageDriver ----------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        check_path(path, self.name)
        with self._lock:
            return bytes(self._file(path).data)

    def put_content(self, path: str, data: Buffer) -> None:
        check_path(path, self.name)
        with byte_view(data) as view:
            content = bytearray(view)
        with self._lock:
            parent, leaf = self._parent(path, create=True)
            assert parent is not None
            if isinstance(parent.children.get(leaf), _Dir):
                raise DriverError(path, self.name, "is a directory")
            now = time.time()
            parent.children[leaf] = _File(content, now)
            parent.mod_time = now

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        check_path(path, self.name)
        if offset < 0:
            raise InvalidOffset(path, offset, self.name)
        with self._lock:
            node = self._file(path)
        return cast(BinaryIO, _MemoryReader(self._lock, node, offset))

    def writer(self, path: str, append: bool = False) -> _MemoryWriter:
        check_path(path, self.name)
        with self._lock:
            parent, leaf = self._parent(path, create=True)
            assert parent is not None
            node = parent.children.get(leaf)
            now = time.time()
            if isinstance(node, _Dir):
                raise DriverError(path, self.name, "is a directory")
            if node is None:
                node = parent.children[leaf] = _File(bytearray(), now)
                parent.mod_time = now
            elif not append:
                node.data.clear()
                node.mod_time = now
        return _MemoryWriter(self, path, node)

    def stat(self, path: str) -> FileInfo:
        check_path(path, self.name, allow_root=True)
        with self._lock:
            node = self._lookup(path)
            if node is None:
                raise PathNotFound(path, self.name)
            return _info(path, node)

    def list(self, path: str) -> builtins.list[str]:
        check_path(path, self.name, allow_root=True)
        prefix = "" if path == "/" else path
        with self._lock:
            node = self._lookup(path)
            if not isinstance(node, _Dir):
                raise PathNotFound(path, self.name)
            names = builtins.list(node.children)
        names.sort()
        return [f"{prefix}/{name}" for name in names]

    def move(self, source: str, dest: str) -> None:
        check_path(source, self.name)
        check_path(dest, self.name)
        with self._lock:
            src_parent, src_leaf = self._parent(source, create=False)
            node = src_parent.children.get(src_leaf) if src_parent is not None else None
            if node is None or src_parent is None:
                raise PathNotFound(source, self.name)
            if isinstance(node, _Dir):
                raise DriverError(source, self.name, "is a directory; only files move")
            if source == dest:
                return
            dst_parent, dst_leaf = self._parent(dest, create=True)
            assert dst_parent is not None
            if isinstance(dst_parent.children.get(dst_leaf), _Dir):
                raise DriverError(dest, self.name, "is a directory")
            now = time.time()
            del src_parent.children[src_leaf]
            dst_parent.children[dst_leaf] = node
            src_parent.mod_time = dst_parent.mod_time = now

    def delete(self, path: str) -> None:
        check_path(path, self.name)
        with self._lock:
            parent, leaf = self._parent(path, create=False)
            if parent is None or leaf not in parent.children:
                raise PathNotFound(path, self.name)
            del parent.children[leaf]
            parent.mod_time = time.time()

    def walk(self, path: str, start_after: str | None = None) -> Iterator[FileInfo]:
        check_path(path, self.name, allow_root=True)
        if start_after is not None:
            check_path(start_after, self.name, allow_root=True)
        return walk_tree(self._entries, path, start_after)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _info(path: str, node: _File | _Dir) -> FileInfo:
    if isinstance(node, _File):
        return FileInfo(path, len(node.data), node.mod_time, False)
    return FileInfo(path, 0, node.mod_time, True)


class _MemoryReader(io.RawIOBase):
    """A seekable stream over one in-memory file that copies only what each read returns."""

    def __init__(self, lock: threading.RLock, node: _File, offset: int) -> None:
        super().__init__()
        self._lock = lock
        self._node = node
        self._pos = offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            base = 0
        elif whence == io.SEEK_CUR:
            base = self._pos
        elif whence == io.SEEK_END:
            with self._lock:
                base = len(self._node.data)
        else:
            raise ValueError(f"invalid whence {whence!r}")
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._pos = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        with self._lock:
            data = self._node.data
            start = min(self._pos, len(data))
            end = len(data) if size is None or size < 0 else min(len(data), start + size)
            with memoryview(data) as view:
                out = bytes(view[start:end])
        self._pos = start + len(out)
        return out

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Buffer) -> int:
        self._checkClosed()
        with byte_view(buffer) as target, self._lock:
            data = self._node.data
            start = min(self._pos, len(data))
            count = min(len(target), len(data) - start)
            with memoryview(data) as view:
                target[:count] = view[start : start + count]
        self._pos = start + count
        return count


class _MemoryWriter:
    """Appends to one in-memory file; see :class:`~ocistore.driver.base.FileWriter`."""

    def __init__(self, driver: InMemoryDriver, path: str, node: _File) -> None:
        self._driver = driver
        self._path = path
        self._node = node
        self._done: str | None = None  # "committed", "cancelled" or "closed"
        self._final_size = 0

    def _check_open(self) -> None:
        if self._done is not None:
            raise ValueError(f"writer for {self._path} is already {self._done}")

    def write(self, data: Buffer) -> int:
        self._check_open()
        with byte_view(data) as view:
            with self._driver._lock:
                self._node.data += view
                self._node.mod_time = time.time()
            return view.nbytes

    @property
    def size(self) -> int:
        if self._done is not None:
            return self._final_size
        with self._driver._lock:
            return len(self._node.data)

    def fileno(self) -> int | None:
        return None

    def _finish(self, how: str) -> None:
        self._final_size = self.size
        self._done = how

    def commit(self) -> None:
        self._check_open()
        self._finish("committed")

    def cancel(self) -> None:
        self._check_open()
        self._finish("cancelled")
        self._final_size = 0
        self._driver._unlink_if(self._path, self._node)

    def close(self) -> None:
        if self._done is None:
            self._finish("closed")

    def __enter__(self) -> _MemoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
