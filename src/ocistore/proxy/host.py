"""One fill per blob for every worker on the host: a per-digest lock and a published state.

The worker that takes ``<lock_dir>/proxy-fills/<algorithm>-<hex>.lock``
(``flock``, exclusive, non-blocking) runs the :class:`~ocistore.proxy.fill.Fill`;
the lock is released by the kernel if that worker dies, so it doubles as the
filler's liveness. Once the upstream answered, the filler publishes
``<base>.state`` (replaced atomically): its pid, the descriptor the clients
read (the upload's file or the spool), that file's device and inode, the
blob's size, and, once the whole download hashed to the digest, ``verified``.

A client in another worker follows with a :class:`RemoteFill`: it opens the
file through ``/proc/<pid>/fd/<fd>`` (checked against the published inode),
sends what the file holds, and withholds the last byte of its range until it
saw ``verified`` (or, if the state vanished first, hashed the file itself and
found the blob committed). When the lock is released without a committed
blob, the response is cut short and the worker takes the fill over, so the
blob still arrives for the next request. Several instances on one bucket keep
separate lock directories: each fetches once, and the commits (content
addressed, verified) agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, Final

from ocistore.digest import Digest
from ocistore.proxy.fill import SEND, Fill, FillFailed, Run
from ocistore.server.http import StreamRange

__all__ = ["HostFills", "RemoteFill"]

log = logging.getLogger("ocistore.proxy")

POLL_MIN: Final = 0.002
POLL_MAX: Final = 0.02
"""Seconds between looks at a file that is not growing (another process writes it)."""


class HostFills:
    """The per-digest locks and states under ``<lock_dir>/proxy-fills``."""

    def __init__(self, lock_dir: str) -> None:
        self.dir = os.path.join(lock_dir, "proxy-fills")

    def _base(self, digest: Digest) -> str:
        return os.path.join(self.dir, f"{digest.algorithm}-{digest.encoded}")

    def lock_path(self, digest: Digest) -> str:
        return self._base(digest) + ".lock"

    def state_path(self, digest: Digest) -> str:
        return self._base(digest) + ".state"

    def try_lead(self, digest: Digest) -> int | None:
        """The locked descriptor if this worker is to fill ``digest``, else None."""
        os.makedirs(self.dir, exist_ok=True)
        path = self.lock_path(digest)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # The previous holder unlinks the file before it unlocks: make sure we
            # locked the file that is at the path now, or try again.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.state_path(digest))  # a dead filler's
                return fd
            os.close(fd)

    def publish(self, digest: Digest, fd: int, size: int, fill_id: str, verified: bool) -> None:
        st = os.fstat(fd)
        doc = {
            "id": fill_id,
            "pid": os.getpid(),
            "fd": fd,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "size": size,
            "verified": verified,
        }
        path = self.state_path(digest)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def release(self, digest: Digest, lock_fd: int) -> None:
        """Drop the state and the lock file (unlinked while still locked), then unlock."""
        for path in (self.state_path(digest), self.lock_path(digest)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(lock_fd)

    def read_state(self, digest: Digest) -> dict[str, Any] | None:
        try:
            with open(self.state_path(digest)) as f:
                doc = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def held(self, lock_fd: int) -> bool:
        """Whether another descriptor holds the lock ``lock_fd`` was opened on."""
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        return False


class RemoteFill:
    """A fill run by another worker on this host, as :class:`~ocistore.proxy.fill.Fill` is used.

    :meth:`open` decides: ``"follow"`` (the size is known, :meth:`body` may
    stream), ``"committed"`` (the blob is in the store) or ``"orphan"`` (no
    one fills it: the caller should lead).
    """

    def __init__(
        self,
        host: HostFills,
        digest: Digest,
        committed: Callable[[], bool],
        take_over: Callable[[], Fill | None],
        open_committed: Callable[[], BinaryIO],
    ) -> None:
        self.host = host
        self.digest = digest
        self.size: int | None = None
        self.ended = False
        self.verified = False
        self._committed = committed
        self._take_over = take_over
        self._open_committed = open_committed
        self._state: dict[str, Any] | None = None
        self._fd = -1
        self._lock_fd = -1

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1

    async def open(self, deadline: float) -> str:
        loop = asyncio.get_running_loop()
        try:
            self._lock_fd = os.open(self.host.lock_path(self.digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return "committed" if self._committed() else "orphan"
        delay = POLL_MIN
        while True:
            state = self.host.read_state(self.digest)
            if state is not None and self._attach(state):
                if self.host.held(self._lock_fd):
                    self._state = state
                    self.size = int(state["size"])
                    self.verified = bool(state["verified"])
                    log.debug("proxy: following worker %s's fill of %s", state["pid"], self.digest)
                    return "follow"
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
            if not self.host.held(self._lock_fd):
                self.close()
                return "committed" if self._committed() else "orphan"
            if loop.time() > deadline:
                self.close()
                raise FillFailed(f"another worker's fill of {self.digest} did not start in time")
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def _attach(self, state: dict[str, Any]) -> bool:
        """Open the filler's file, if ``state`` still describes it."""
        try:
            fd = os.open(f"/proc/{int(state['pid'])}/fd/{int(state['fd'])}", os.O_RDONLY)
        except (OSError, KeyError, ValueError):
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (state.get("dev"), state.get("ino")):
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def started(self) -> None:
        return None

    async def finished(self) -> None:
        """Wait until the filler let go; raises :class:`FillFailed` unless the blob was committed."""
        delay = POLL_MIN
        while self.host.held(self._lock_fd):
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
        self.ended = True
        self.close()
        if not self._committed():
            log.warning("proxy: the worker filling %s is gone; taking the fill over", self.digest)
            fill = self._take_over()
            if fill is None:
                raise FillFailed(f"another worker's fill of {self.digest} failed")
            await fill.finished()

    def body(self, first: int, length: int, read: Run) -> AsyncIterator[bytes | StreamRange]:
        return self._body(first, first + length, read)

    async def _body(self, pos: int, end: int, read: Run) -> AsyncIterator[bytes | StreamRange]:
        assert self.size is not None and self._state is not None
        fd = self._fd
        start = pos
        delay = POLL_MIN
        try:
            while pos < end:
                have = os.fstat(fd).st_size
                limit = end if self.verified else min(have, end - 1)
                if pos < limit:
                    # What the file holds is sent as a range of it (no copy through Python).
                    yield StreamRange(fd, pos, limit - pos)
                    pos = limit
                    delay = POLL_MIN
                    continue
                if await self._check(fd, have, read):
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX)
        except _Orphaned:
            pass
        finally:
            self.close()
        if pos >= end:
            return
        log.warning("proxy: the worker filling %s is gone; taking the fill over", self.digest)
        if pos != start:  # bytes of the lost download were sent: only an error is safe now
            self._take_over()
            raise FillFailed(f"another worker's fill of {self.digest} ended without the blob")
        async for chunk in self._replacement(pos, end, read):
            yield chunk

    async def _replacement(
        self, pos: int, end: int, read: Run
    ) -> AsyncIterator[bytes | StreamRange]:
        """The response continued from the fill that replaces the lost one (nothing sent yet)."""
        deadline = asyncio.get_running_loop().time() + 60
        for _ in range(3):
            fill = self._take_over()
            if fill is not None:
                await fill.started()
                if fill.ended:
                    await fill.finished()
                    break
                async for piece in fill.body(pos, end - pos, read):
                    yield piece
                return
            other = RemoteFill(
                self.host, self.digest, self._committed, self._take_over, self._open_committed
            )
            outcome = await other.open(deadline)
            if outcome == "follow":
                async for other_piece in other._body(pos, end, read):
                    yield other_piece
                return
            if outcome == "committed":
                break
        else:
            raise FillFailed(f"another worker's fill of {self.digest} ended without the blob")
        # The replacement was quicker than this response: the store has the blob.
        f = await read(self._open_committed)
        try:
            await read(f.seek, pos)
            while pos < end:
                chunk = await read(f.read, min(SEND, end - pos))
                if not chunk:
                    raise FillFailed(f"the stored {self.digest} ended at {pos}")
                pos += len(chunk)
                yield chunk
        finally:
            await read(f.close)

    async def _check(self, fd: int, have: int, read: Run) -> bool:
        """Look at the filler while starved: True if it verified, :class:`_Orphaned` if gone."""
        assert self._state is not None
        state = self.host.read_state(self.digest)
        if state is not None and state.get("id") == self._state["id"]:
            if state.get("verified"):
                self.verified = True
                return True
            if self.host.held(self._lock_fd):
                return False
        elif self.host.held(self._lock_fd):
            return False  # the state is gone: committed, or being cleaned up after a failure
        # The filler let go before this response saw it verify.
        if (
            have == self.size
            and self._committed()
            and await read(_hash_fd, fd, self.digest.algorithm, have) == self.digest.encoded
        ):
            self.verified = True
            return True
        raise _Orphaned


class _Orphaned(Exception):
    """The filler let go without the blob committed."""


def _hash_fd(fd: int, algorithm: str, size: int) -> str:
    h = hashlib.new(algorithm)
    pos = 0
    while pos < size:
        chunk = os.pread(fd, min(SEND, size - pos), pos)
        if not chunk:
            break
        h.update(chunk)
        pos += len(chunk)
    return h.hexdigest()
