"""Per-upload locks that hold across worker processes.

Two PATCHes to one upload must not interleave their bytes, even when two
worker processes receive them. Each request that writes to an upload takes
an exclusive, non-blocking ``flock`` on ``<lock_dir>/<uuid>.lock``: the
winner proceeds, the loser is answered 416 with the upload's current Range
(the client then resumes from there). ``flock`` locks belong to an open file
description, so two requests in one process exclude each other as well, and
the kernel drops a lock when its holder dies: no stale locks after a crash.

A lock file is removed once its upload is committed or cancelled. Removing
a file others may have open is racy, so :func:`try_lock` checks after
locking that the path still names the file it locked (else it retries on
the new file), the classic lock-file protocol.

A second lock per upload, ``<uuid>.state.lock``, covers storing its hash
state after a PATCH was answered (:mod:`ocistore.server.deferred_state`):
the PATCH takes it before letting go of the upload's lock, and whoever
reopens the upload next waits for it (:meth:`UploadLocks.wait_for_state`),
so a resume always finds the state of the bytes before it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import Final

from ocistore.errors import BlobUploadInvalid

__all__ = ["UploadLock", "UploadLocks"]

_MAX_TRIES: Final = 8


class UploadLock:
    """A held lock; :meth:`release` (or the context manager) lets it go."""

    def __init__(self, path: str, fd: int, *, companions: tuple[str, ...] = ()) -> None:
        self.path = path
        self._fd: int | None = fd
        self._companions = companions

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, *, remove: bool = False) -> None:
        """Unlock; with ``remove``, also delete the lock file (the upload is finished).

        Removing the upload's lock also removes its state lock: whoever holds
        the upload's lock has waited for any state being stored.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if remove:
            for path in (*self._companions, self.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        os.close(fd)  # closing drops the flock


class UploadLocks:
    """Lock files for uploads under one directory (created on first use)."""

    def __init__(self, lock_dir: str) -> None:
        self.lock_dir = lock_dir

    def _path(self, upload_id: str) -> str:
        # Upload ids reach here validated as UUIDs; refuse anything path-like anyway.
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise BlobUploadInvalid(f"upload id {upload_id!r} cannot name a lock file")
        return os.path.join(self.lock_dir, f"{upload_id}.lock")

    def _state_path(self, upload_id: str) -> str:
        return self._path(upload_id)[: -len(".lock")] + ".state.lock"

    def try_lock(self, upload_id: str) -> UploadLock | None:
        """Take the upload's lock without waiting; None when someone else holds it."""
        return self._try(self._path(upload_id), companions=(self._state_path(upload_id),))

    def try_lock_state(self, upload_id: str) -> UploadLock | None:
        """Take the upload's state lock without waiting (held while its hash state is stored)."""
        return self._try(self._state_path(upload_id))

    def wait_for_state(self, upload_id: str) -> None:
        """Return once nobody holds the upload's state lock (at once if nobody ever took it)."""
        try:
            fd = os.open(self._state_path(upload_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # blocks while a PATCH still stores the state
        finally:
            os.close(fd)

    def _try(self, path: str, *, companions: tuple[str, ...] = ()) -> UploadLock | None:
        for _ in range(_MAX_TRIES):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                os.makedirs(self.lock_dir, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                return UploadLock(path, fd, companions=companions)
            os.close(fd)  # the file was removed (its upload finished) and maybe recreated
        return None

    @contextlib.contextmanager
    def holding(self, upload_id: str) -> Iterator[UploadLock | None]:
        lock = self.try_lock(upload_id)
        try:
            yield lock
        finally:
            if lock is not None:
                lock.release()
