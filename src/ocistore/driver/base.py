"""The storage-driver interface: what the storage layer may ask of a backend.

This is the Python twin of distribution's ``registry/storage/driver.StorageDriver``.
The storage layer sees only this Protocol, so a filesystem, an in-memory tree or
an object store can sit underneath without it noticing.

Paths are absolute, ``/``-separated and match ``^(/[A-Za-z0-9._-]+)+$`` (the root
``/`` is accepted by :meth:`StorageDriver.stat` and :meth:`StorageDriver.list`);
a ``.`` or ``..`` component is refused because it could step out of the root.
Bad paths raise :class:`~ocistore.errors.InvalidPath`, missing ones
:class:`~ocistore.errors.PathNotFound`, bad offsets
:class:`~ocistore.errors.InvalidOffset`; each carries the path and the driver name.
Reading a file where a directory is (or listing/walking a file) is
PathNotFound: nothing of the kind asked for is there. Writing where a
directory is, or below a file, raises the base
:class:`~ocistore.errors.DriverError` with the reason in ``detail``; so does
moving a directory (only files move, as on object stores).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, runtime_checkable

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
elif TYPE_CHECKING:
    from typing_extensions import Buffer
else:  # runtime stand-in on 3.11: annotations are never evaluated
    Buffer = bytes | bytearray | memoryview

__all__ = [
    "DEFAULT_URL_EXPIRY",
    "MAX_URL_EXPIRY",
    "Buffer",
    "FileInfo",
    "FileWriter",
    "StorageDriver",
    "URLForDriver",
]

DEFAULT_URL_EXPIRY: Final = 20 * 60.0
"""Seconds a :meth:`URLForDriver.url_for` URL stays valid unless asked otherwise (distribution's 20 min)."""
MAX_URL_EXPIRY: Final = 7 * 24 * 3600.0
"""The longest expiry S3 signs (SigV4 presigned URLs last at most 7 days)."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` and :meth:`StorageDriver.walk` report about a path.

    ``mod_time`` is seconds since the epoch as a float (nanosecond precision
    where the backend has it); ``size`` is 0 for directories.
    """

    path: str
    size: int
    mod_time: float
    is_dir: bool


@runtime_checkable
class FileWriter(Protocol):
    """A file being written; returned by :meth:`StorageDriver.writer`.

    Exactly one of :meth:`commit`, :meth:`cancel` or :meth:`close` ends it; a
    closed (but not cancelled) file can be reopened with ``writer(path, append=True)``,
    which is how resumable uploads survive between HTTP requests. Once it has
    ended, ``write``/``commit``/``cancel`` raise ValueError, ``close`` does
    nothing (so ``with`` works after a commit) and ``size`` keeps its last value.
    """

    def write(self, data: Buffer) -> int:
        """Append ``data`` (any buffer, not copied) and return the number of bytes written."""
        ...

    @property
    def size(self) -> int:
        """Bytes in the file so far, including what was there before an append."""
        ...

    def fileno(self) -> int | None:
        """The OS file descriptor, or None (the blob writer's write-behind lane writes to it)."""
        ...

    def commit(self) -> None:
        """Make everything written durable (flush and fsync); the writer is unusable afterwards."""
        ...

    def cancel(self) -> None:
        """Discard the file entirely (it is removed)."""
        ...

    def close(self) -> None:
        """Stop writing but keep the contents for a later ``writer(path, append=True)``.

        Like :meth:`commit`, what was written is durable when this returns.
        """
        ...

    def __enter__(self) -> FileWriter: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close (never cancel) the writer."""
        ...


@runtime_checkable
class StorageDriver(Protocol):
    """A hierarchical byte store addressed by absolute ``/`` paths (distribution's StorageDriver)."""

    name: str

    def get_content(self, path: str) -> bytes:
        """The whole file at ``path`` (small files: links, manifests, hash states)."""
        ...

    def put_content(self, path: str, data: Buffer) -> None:
        """Replace the file at ``path`` atomically and durably, creating parents as needed."""
        ...

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A seekable stream positioned at ``offset``; reads past the end are empty."""
        ...

    def writer(self, path: str, append: bool = False) -> FileWriter:
        """Open ``path`` for writing; ``append=False`` truncates, ``append=True`` continues."""
        ...

    def stat(self, path: str) -> FileInfo:
        """Size, modification time and kind of ``path`` (``/`` is allowed)."""
        ...

    def list(self, path: str) -> list[str]:
        """Full paths of the direct children of the directory ``path``, sorted."""
        ...

    def move(self, source: str, dest: str) -> None:
        """Rename ``source`` to ``dest``, replacing ``dest`` if it exists."""
        ...

    def delete(self, path: str) -> None:
        """Remove ``path`` and, for a directory, everything below it."""
        ...

    def walk(self, path: str, start_after: str | None = None) -> Iterator[FileInfo]:
        """Every entry under ``path``, depth first, each directory's children sorted.

        ``start_after`` skips every entry up to and including that path in walk
        order, so a paginated walk can resume where it stopped.
        """
        ...


@runtime_checkable
class URLForDriver(Protocol):
    """A driver whose files a client can fetch without us (distribution's ``URLFor``).

    Optional: the storage layer redirects blob reads only when the driver has
    ``url_for``; the filesystem and in-memory drivers do not, so they never redirect.
    """

    def url_for(self, path: str, *, method: str = "GET", expiry: float = DEFAULT_URL_EXPIRY) -> str:
        """A URL that answers ``method`` (GET or HEAD) on ``path`` for ``expiry`` seconds.

        Raises :class:`~ocistore.errors.InvalidPath` for a bad path and
        ValueError naming the value for another method or an expiry outside
        1 s .. :data:`MAX_URL_EXPIRY`. The file's existence is not checked.
        """
        ...
