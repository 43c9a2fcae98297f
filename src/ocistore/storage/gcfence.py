"""The epoch protocol that lets a collection sweep while registries keep writing.

A collection (:mod:`ocistore.storage.gc`) publishes an *epoch* in storage
under :data:`~ocistore.storage.paths.GC_EPOCHS`::

    <epoch>/heartbeat          rewritten every few seconds while the collection lives
    <epoch>/pins/<uuid>        digests a writer is about to rely on (one file per call)
    <epoch>/condemned/<n>      digests the sweeper means to delete, batch n
    <epoch>/done/<n>           written once batch n is decided (the digests deleted)

Writers (every :class:`~ocistore.storage.registry.Registry`) call
:meth:`GcFence.protect` with the digests they are about to rely on *before*
they check that those exist: a manifest PUT (its references), a blob HEAD or
GET, a mount, an upload commit of a blob already stored. ``protect`` costs an
attribute test while no epoch exists; during one it writes a pin, then reads
the condemned batches and waits for the decision of any batch that names one
of its digests. The sweeper writes a batch, *then* reads the pins, and
deletes only unpinned digests. Because each side writes before it reads (and
storage is strongly consistent: a local filesystem, S3 since 2020), at least
one sees the other: the sweeper spares the blob, or the writer waits for the
batch to be decided and then finds the blob gone and answers "unknown". The
full argument, with the grace period and the settle wait, is docs/gc.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Final

from ocistore.digest import Digest
from ocistore.driver.base import StorageDriver
from ocistore.errors import PathNotFound, RegistryError, StorageUnavailable
from ocistore.storage.paths import GC_EPOCHS

__all__ = [
    "HEARTBEAT",
    "REFRESH",
    "STALE",
    "Epoch",
    "GcBusy",
    "GcFence",
    "epoch_alive",
]

REFRESH: Final = 1.0
"""Seconds a writer trusts its view of the epochs before listing them again."""
HEARTBEAT: Final = 5.0
"""Seconds between two heartbeats of a live collection."""
STALE: Final = 120.0
"""A heartbeat older than this marks a dead collection (unless its host says so sooner)."""
WAIT: Final = 60.0
"""Longest a writer waits for a condemned batch to be decided before answering 503."""
_POLL: Final = 0.02


class GcBusy(RuntimeError):
    """Another live collection holds an older epoch on this root."""


def _parse_digests(raw: bytes) -> set[str]:
    return {line for line in raw.decode("ascii", "replace").split("\n") if line}


def epoch_alive(driver: StorageDriver, epoch: str, *, now: float | None = None) -> bool:
    """Whether the collection that owns ``epoch`` may still be running.

    Dead: no heartbeat file, a heartbeat older than :data:`STALE`, or one
    written on this host by a process that no longer exists.
    """
    path = f"{GC_EPOCHS}/{epoch}/heartbeat"
    try:
        info = driver.stat(path)
        raw = driver.get_content(path)
    except PathNotFound:
        return False
    if (now if now is not None else time.time()) - info.mod_time > STALE:
        return False
    host, _, pid = raw.decode("ascii", "replace").partition(" ")
    if host == socket.gethostname() and pid.strip().isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


class GcFence:
    """The writer's side: :meth:`protect` digests before relying on them (thread-safe)."""

    def __init__(self, driver: StorageDriver, *, refresh: float = REFRESH) -> None:
        self.driver = driver
        self.refresh = refresh
        self._lock = threading.Lock()
        self._epochs: tuple[str, ...] = ()
        self._seen_at = -1e18
        self._pinned: dict[str, set[str]] = {}
        self._batches: dict[tuple[str, str], set[str]] = {}

    def view_age(self) -> float:
        """Seconds since the epochs were last listed."""
        return time.monotonic() - self._seen_at

    def epochs(self, *, fresh: bool = False) -> tuple[str, ...]:
        """The epochs present, listed at most :attr:`refresh` seconds ago (now if ``fresh``)."""
        if not fresh and time.monotonic() - self._seen_at < self.refresh:
            return self._epochs
        started = time.monotonic()
        try:
            found = tuple(p.rsplit("/", 1)[-1] for p in self.driver.list(GC_EPOCHS))
        except PathNotFound:
            found = ()
        with self._lock:
            self._epochs = found
            self._seen_at = started
            for gone in set(self._pinned) - set(found):
                del self._pinned[gone]
            for key in [k for k in self._batches if k[0] not in found]:
                del self._batches[key]
        return found

    def protect(self, digests: Iterable[Digest | str], *, fresh: bool = False) -> None:
        """Pin ``digests`` in every live epoch and wait out any batch that condemns one.

        Call it *before* checking that the digests exist; afterwards a blob
        found present stays until the next collection begins. Raises
        :class:`~ocistore.errors.StorageUnavailable` (503, retryable) if a
        batch naming one of them is not decided within :data:`WAIT` seconds.
        """
        epochs = self.epochs(fresh=fresh)
        if not epochs:
            return
        wanted = {str(d) for d in digests}
        if not wanted:
            return
        for epoch in epochs:
            self._protect_in(epoch, wanted)

    def _protect_in(self, epoch: str, wanted: set[str]) -> None:
        base = f"{GC_EPOCHS}/{epoch}"
        with self._lock:
            new = wanted - self._pinned.setdefault(epoch, set())
        if new:
            for attempt in range(3):
                try:
                    self.driver.put_content(
                        f"{base}/pins/{uuid.uuid4().hex}", "\n".join(sorted(new)).encode()
                    )
                    break
                except (RegistryError, OSError):
                    # The collection removes its epoch while we pin (it deletes
                    # the heartbeat first): then there is nothing to wait for.
                    if not epoch_alive(self.driver, epoch):
                        return
                    if attempt == 2:
                        raise
            with self._lock:
                self._pinned.setdefault(epoch, set()).update(new)
        try:
            batches = self.driver.list(f"{base}/condemned")
        except PathNotFound:
            return
        for path in batches:
            name = path.rsplit("/", 1)[-1]
            key = (epoch, name)
            cached = self._batches.get(key)
            if cached is None:
                try:
                    cached = _parse_digests(self.driver.get_content(path))
                except PathNotFound:
                    continue  # the epoch ended meanwhile
                with self._lock:
                    self._batches[key] = cached
            if cached & wanted:
                self._wait_decided(epoch, name)

    def _wait_decided(self, epoch: str, batch: str) -> None:
        done = f"{GC_EPOCHS}/{epoch}/done/{batch}"
        deadline = time.monotonic() + WAIT
        checked_alive = time.monotonic()
        while True:
            try:
                self.driver.stat(done)
                return
            except PathNotFound:
                pass
            now = time.monotonic()
            if now - checked_alive > 1.0:
                checked_alive = now
                if not epoch_alive(self.driver, epoch):
                    return  # its collector died: nothing more will be deleted
            if now > deadline:
                raise StorageUnavailable(
                    done, self.driver.name, "garbage collection is deciding this blob; retry"
                )
            time.sleep(_POLL)  # polling storage with a deadline: no notification on S3


class Epoch:
    """The collector's side: publish an epoch, heartbeat it, condemn batches, read pins."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self.base = f"{GC_EPOCHS}/{self.id}"
        self._pins: set[str] = set()
        self._pin_files: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_beat = 0.0
        self._batch = 0

    def begin(self) -> None:
        """Publish the epoch; :class:`GcBusy` if an older live one exists (it is then withdrawn).

        Dead epochs (see :func:`epoch_alive`) are removed.
        """
        self._beat()
        try:
            others = [p.rsplit("/", 1)[-1] for p in self.driver.list(GC_EPOCHS)]
        except PathNotFound:
            others = []
        for other in sorted(others):
            if other == self.id:
                continue
            if not epoch_alive(self.driver, other):
                _remove(self.driver, f"{GC_EPOCHS}/{other}")
            elif other < self.id:
                self.end()
                raise GcBusy(f"collection {other} is running on this root")
        self._thread = threading.Thread(target=self._run, name="gc-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self.driver.put_content(
            f"{self.base}/heartbeat", f"{socket.gethostname()} {os.getpid()}".encode()
        )
        self.last_beat = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self._beat()
            except Exception:
                continue

    def fresh(self) -> bool:
        """Whether writers still count this epoch as alive (checked before every deletion)."""
        return time.monotonic() - self.last_beat < STALE / 2

    def condemn(self, digests: Iterable[str]) -> str:
        """Publish a batch; returns its name for :meth:`decided`."""
        self._batch += 1
        name = f"{self._batch:08d}"
        self.driver.put_content(f"{self.base}/condemned/{name}", "\n".join(digests).encode())
        return name

    def pinned(self) -> set[str]:
        """Every digest pinned so far (new pin files are read; old ones are immutable)."""
        try:
            files = self.driver.list(f"{self.base}/pins")
        except PathNotFound:
            return self._pins
        for path in files:
            if path in self._pin_files:
                continue
            try:
                self._pins |= _parse_digests(self.driver.get_content(path))
            except PathNotFound:
                continue
            self._pin_files.add(path)
        return self._pins

    def decided(self, name: str, deleted: Iterable[str]) -> None:
        self.driver.put_content(f"{self.base}/done/{name}", "\n".join(deleted).encode())

    def end(self) -> None:
        """Stop the heartbeat and remove the epoch (writers stop pinning within :data:`REFRESH`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(PathNotFound):
            self.driver.delete(f"{self.base}/heartbeat")
        _remove(self.driver, self.base)


def _remove(driver: StorageDriver, path: str) -> None:
    """Delete an epoch directory; a writer may still be pinning there (its view is
    up to REFRESH old), so try a few times, then leave the rest: it has no
    heartbeat, and the next collection removes it as a dead epoch."""
    for _ in range(5):
        try:
            driver.delete(path)
            return
        except PathNotFound:
            return
        except (RegistryError, OSError):
            time.sleep(_POLL)
