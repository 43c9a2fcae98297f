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

Those locks are local to one host. Instances on other hosts sharing one
bucket (``storage.s3``) need a lock they all see: :class:`RedisUploadLocks`
keeps the same two locks in the Redis of the ``redis:`` block, as
``SET key token NX PX ttl`` released by a script that deletes the key only
while it still holds the holder's token. A held lock is renewed every third
of its ttl; a lock whose holder died (kill -9, a lost host) expires after
the ttl. Redis rather than S3 conditional writes: moto, MinIO and AWS do
not agree on ``If-None-Match`` on PutObject, nothing on S3 expires by
itself, and the Redis is already there for the descriptor cache.

Waiting for a state lock blocks in Redis instead of polling it: releasing
a state lock pushes a token onto ``<state key>::released`` (taking the lock
empties that list), and a waiter that found the lock held blocks on
``BLPOP`` of the list, in bounded slices that re-check the lock, so a
holder that died without releasing is waited for no longer than its ttl.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from ocistore.errors import BlobUploadInvalid, StorageUnavailable

if TYPE_CHECKING:
    from ocistore.cache.redis import RedisOptions
    from ocistore.storage.taglocks import TagLocks

__all__ = [
    "DEFAULT_LOCK_TTL",
    "RedisTagLocks",
    "RedisUploadLocks",
    "UploadLock",
    "UploadLocks",
    "redis_lock_key",
]

log = logging.getLogger("ocistore.server")

_MAX_TRIES: Final = 8
DEFAULT_LOCK_TTL: Final = 30.0
"""Seconds a Redis upload lock outlives a holder that stopped renewing it (it died)."""


class UploadLock:
    """A held lock; :meth:`release` (or the context manager) lets it go."""

    @property
    def held(self) -> bool:
        raise NotImplementedError

    def release(self, *, remove: bool = False) -> None:
        raise NotImplementedError


class FileUploadLock(UploadLock):
    """An ``flock`` on a lock file (the open file description is the holder)."""

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
                return FileUploadLock(path, fd, companions=companions)
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


# --- across hosts: Redis ----------------------------------------------------------

_RELEASE: Final = (
    b"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
_RELEASE_STATE: Final = (
    b"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) "
    b"redis.call('RPUSH', KEYS[2], 1) redis.call('PEXPIRE', KEYS[2], ARGV[2]) "
    b"return 1 end return 0"
)
_TAKE_STATE: Final = (
    b"if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    b"redis.call('DEL', KEYS[2]) return 1 end return 0"
)
_WAIT_SLICE: Final = 0.5
"""Longest single ``BLPOP`` while waiting for a state lock (then the lock is re-checked)."""
_RENEW: Final = (
    b"if redis.call('GET', KEYS[1]) == ARGV[1] then "
    b"return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)


def redis_lock_key(upload_id: str, kind: str = "lock") -> bytes:
    """``ocistore::upload::<uuid>::lock`` (or ``::state``): never read by distribution."""
    return f"ocistore::upload::{upload_id}::{kind}".encode("ascii")


def _released_key(key: bytes) -> bytes:
    """The list a state lock's release pushes onto, for a waiter blocked in ``BLPOP``."""
    return key + b"::released"


class RedisUploadLock(UploadLock):
    """One held Redis lock: the key holds our token until :meth:`release` or expiry."""

    def __init__(
        self, owner: RedisUploadLocks, key: bytes, token: bytes, *, signal: bool = False
    ) -> None:
        self._owner = owner
        self.key = key
        self.token = token
        self.signal = signal  # a state lock: its release wakes a waiter
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def release(self, *, remove: bool = False) -> None:
        """Delete the key if it still holds our token (``remove`` changes nothing here)."""
        if not self._held:
            return
        self._held = False
        self._owner._release(self)


class RedisUploadLocks(UploadLocks):
    """The upload and state locks in Redis, seen by every instance on one bucket.

    ``lock_dir`` still holds this host's purge schedule. A Redis that cannot be
    reached when a lock is wanted fails the request with
    :class:`~ocistore.errors.StorageUnavailable` (503, the client retries):
    without the lock, two instances could interleave one upload's bytes.
    """

    def __init__(
        self, lock_dir: str, options: RedisOptions, *, ttl: float = DEFAULT_LOCK_TTL
    ) -> None:
        super().__init__(lock_dir)
        if not ttl > 0:
            raise ValueError(f"upload lock ttl {ttl!r} is not a positive duration")
        self.options = options
        self.ttl = ttl
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._held: dict[bytes, RedisUploadLock] = {}
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._wake = threading.Event()
        self._down: tuple[type[BaseException], ...] = (OSError, *_redis_errors())

    # --- the seam (UploadLocks' interface) -------------------------------------

    def try_lock(self, upload_id: str) -> UploadLock | None:
        self._path(upload_id)  # the same check of the id
        return self._try_key(redis_lock_key(upload_id))

    def try_lock_state(self, upload_id: str) -> UploadLock | None:
        self._path(upload_id)
        return self._try_key(redis_lock_key(upload_id, "state"), signal=True)

    def wait_for_state(self, upload_id: str) -> None:
        """Block until the state lock is gone (released, or expired with its dead holder).

        One ``EXISTS`` when nobody holds it; else ``BLPOP`` on the list its
        release pushes onto, in slices that re-check the lock (an expired
        holder pushes nothing), up to the ttl and a second.
        """
        key = redis_lock_key(upload_id, "state")
        released = _released_key(key)
        deadline = time.monotonic() + self.ttl + 1.0
        socket_timeout = self.options.read_timeout or self.options.write_timeout
        while self._call("EXISTS", key):
            left = deadline - time.monotonic()
            if left <= 0:  # renewed past its ttl: a stuck holder
                log.warning("upload %s: hash state still being stored; going on", upload_id)
                return
            wait = min(left, _WAIT_SLICE)
            if socket_timeout:  # a blocked read must end before the socket's timeout
                wait = min(wait, socket_timeout / 2)
            self._call("BLPOP", released, f"{max(wait, 0.01):.3f}")

    # --- Redis ------------------------------------------------------------------

    def _redis(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = _make_client(self.options)
            return self._client

    def _call(self, *args: Any) -> Any:
        try:
            return self._redis().execute_command(*args)
        except self._down as exc:
            keys = [a for a in args if isinstance(a, bytes) and a.startswith(b"ocistore::")]
            raise StorageUnavailable(
                keys[0].decode() if keys else str(args[0]),
                f"redis {self.options.addr} (upload locks)",
                f"unreachable: {exc}",
            ) from exc

    def _try_key(self, key: bytes, *, signal: bool = False) -> UploadLock | None:
        token = secrets.token_hex(16).encode("ascii")
        ttl_ms = max(int(self.ttl * 1000), 1)
        if signal:  # a fresh holding: no release token of an earlier one left behind
            ok = self._call("EVAL", _TAKE_STATE, 2, key, _released_key(key), token, ttl_ms)
        else:
            ok = self._call("SET", key, token, "NX", "PX", ttl_ms)
        if not ok:
            return None
        lock = RedisUploadLock(self, key, token, signal=signal)
        with self._held_lock:
            self._held[key] = lock
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="ocistore-lock-renew", daemon=True
                )
                self._renewer.start()
        return lock

    def _release(self, lock: RedisUploadLock) -> None:
        with self._held_lock:
            if self._held.get(lock.key) is lock:
                del self._held[lock.key]
        try:
            if lock.signal:
                self._redis().execute_command(
                    "EVAL",
                    _RELEASE_STATE,
                    2,
                    lock.key,
                    _released_key(lock.key),
                    lock.token,
                    max(int(self.ttl * 1000), 1),
                )
            else:
                self._redis().execute_command("EVAL", _RELEASE, 1, lock.key, lock.token)
        except self._down as exc:
            log.warning(
                "releasing upload lock %s failed (it expires in %gs): %s",
                lock.key.decode(),
                self.ttl,
                exc,
            )

    def _renew_loop(self) -> None:
        """Extend every held lock each third of the ttl; ends when none is held."""
        while True:
            self._wake.wait(self.ttl / 3)
            with self._held_lock:
                held = list(self._held.values())
                if not held:
                    self._renewer = None
                    return
            for lock in held:
                try:
                    renewed = self._redis().execute_command(
                        "EVAL", _RENEW, 1, lock.key, lock.token, int(self.ttl * 1000)
                    )
                except self._down as exc:
                    log.warning("renewing upload lock %s failed: %s", lock.key.decode(), exc)
                    continue
                if not renewed and lock.held:
                    log.warning("upload lock %s expired while held", lock.key.decode())


def _redis_errors() -> tuple[type[Exception], ...]:
    import valkey.exceptions

    return (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError)


def _make_client(options: RedisOptions) -> Any:
    """A thread-safe valkey client with the ``redis:`` block's address, timeouts and TLS."""
    import valkey

    from ocistore.cache.redis import _io_timeout, _tls_kwargs

    kwargs: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "db": options.db,
        "password": options.password or None,
        "socket_connect_timeout": options.dial_timeout or None,
        "socket_timeout": _io_timeout(options),
        "protocol": 2,
        "max_connections": options.max_active or None,
    }
    if options.uses_tls:
        kwargs["ssl"] = True
        kwargs.update(_tls_kwargs(options))
    return valkey.Valkey(**kwargs)


class RedisTagLocks:
    """The repositories' tag locks (:mod:`ocistore.storage.taglocks`) in Redis, for many hosts.

    A host-local lock is taken first, so only one thread per host polls Redis;
    then ``ocistore::tags::<name>::lock`` with the upload locks' token, ttl and
    renewal. A lock not won within the ttl (its holder renews it: a stuck
    holder) fails the request with :class:`~ocistore.errors.StorageUnavailable`.
    """

    def __init__(self, redis_locks: RedisUploadLocks, local: TagLocks) -> None:
        self.redis_locks = redis_locks
        self.local = local

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[None]:
        with self.local.holding(name):
            key = f"ocistore::tags::{name}::lock".encode()
            deadline = time.monotonic() + self.redis_locks.ttl
            pause = 0.002
            while (lock := self.redis_locks._try_key(key)) is None:
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"tag lock of repository {name!r}",
                        f"redis {self.redis_locks.options.addr}",
                        f"not released within {self.redis_locks.ttl:g}s",
                    )
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            try:
                yield
            finally:
                lock.release()
