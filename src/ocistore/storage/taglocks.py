"""Mutual exclusion for tag writes, untags and manifest deletes of one repository.

Tagging writes two links (the index entry, then ``current/link``); untagging
removes the tag's directory tree. Run concurrently, the removal fails on a
directory the tag is writing into (ENOTEMPTY) and the tag's rename fails on a
directory just removed (ENOENT); a manifest delete that looked up the tags
pointing at it can also miss a tag written in between and leave it pointing
at the deleted revision. Distribution 2.8 has the same races.

No driver offers a compare-and-swap that would make the tag tree safe without
a lock (the layout is distribution's: a plain ``rmtree``-able directory), so
every tag mutation of a repository holds that repository's lock:
:meth:`TagStore.tag <ocistore.storage.tagstore.TagStore.tag>`, ``untag``, and
:meth:`ManifestStore.put(tag=...) <ocistore.storage.manifeststore.ManifestStore.put>`
from its revision link to its tag, :meth:`ManifestStore.delete
<ocistore.storage.manifeststore.ManifestStore.delete>` from its lookup to its
unlink. Each is then one of the serial orders. Reads take no lock: every
link is replaced by rename, so a reader sees a tag before or after, or none
(TAG_UNKNOWN / MANIFEST_UNKNOWN, as after a delete).

Providers:

- :class:`FileTagLocks` (the default on a filesystem root): an ``flock`` on
  ``<dir>/<sha256 of the name>.lock``; excludes threads, worker processes and
  other hosts whose lock directory is the same (``flock`` is mapped to POSIX
  locks on NFS). The files are small, one per repository, and never removed
  (removing a lock file others may hold is how two holders happen).
- :class:`ThreadTagLocks` (the default on other drivers): one process only.
  Instances sharing a bucket need a lock they all see: ``ocistore serve``
  puts the Redis lock of :mod:`ocistore.server.locks` in front when upload
  locks live in Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from ocistore.driver.base import StorageDriver

__all__ = [
    "LOCK_DIRNAME",
    "FileTagLocks",
    "TagLocks",
    "ThreadTagLocks",
    "default_tag_locks",
]

LOCK_DIRNAME: Final = "ocistore-locks"
"""Directory under a filesystem root for lock files (outside distribution's ``docker/`` tree)."""

_STRIPES: Final = 64


class TagLocks(Protocol):
    """A context manager per repository name that excludes every other holder of that name."""

    def holding(self, name: str) -> contextlib.AbstractContextManager[object]: ...


class ThreadTagLocks:
    """Striped in-process locks (a fixed set: made-up names cannot grow it)."""

    def __init__(self) -> None:
        self._locks = tuple(threading.Lock() for _ in range(_STRIPES))

    def holding(self, name: str) -> contextlib.AbstractContextManager[object]:
        lock = self._locks[hash(name) % _STRIPES]
        return lock


class FileTagLocks:
    """``flock`` on one lock file per repository in ``lock_dir`` (created when needed)."""

    def __init__(self, lock_dir: str | os.PathLike[str]) -> None:
        self.lock_dir = os.fspath(lock_dir)

    def path(self, name: str) -> str:
        """The lock file of repository ``name`` (hashed: names hold ``/``)."""
        key = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        return os.path.join(self.lock_dir, f"{key}.lock")

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[None]:
        path = self.path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(self.lock_dir, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new open file description: threads wait too
            yield
        finally:
            os.close(fd)  # closing drops the lock


def default_tag_locks(driver: StorageDriver) -> TagLocks:
    """File locks beside a filesystem driver's tree, else in-process locks."""
    from ocistore.driver.filesystem import FilesystemDriver

    if isinstance(driver, FilesystemDriver):
        return FileTagLocks(os.path.join(driver.root, LOCK_DIRNAME, "tags"))
    return ThreadTagLocks()
