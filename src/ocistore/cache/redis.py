"""The Redis descriptor cache: distribution's keys, shared by every instance and the Go registry.

The keys and values are those distribution 2.8's Redis cache writes
(``registry/storage/cache/redis``), so ocistore and the Go registry can share
one Redis database::

    blobs::<digest>                        hash  digest, size (decimal), mediatype
    repository::<name>::blobs              set   digests linked in repository <name>
    repository::<name>::blobs::<digest>    hash  mediatype (the repository's own)

plus keys of ocistore's own, which distribution never reads:
``ocistore::descriptors::generation`` (an integer bumped by every clear made
through this class; see :class:`~ocistore.cache.base.GenerationalCache`) and,
for manifest revisions (:meth:`RedisDescriptorCache.manifest_scoped`),
``ocistore::repository::<name>::manifests`` with a hash per member, laid out
as the repository blob keys. distribution caches no repository membership of
manifests: kept among a repository's blobs, they would make a Go registry
answer blob requests for manifest digests, and keep answering after it deleted
the manifest (it clears no cache entry for a manifest).

Semantics are those of :mod:`ocistore.cache.memory` (the conformance suite):
the first global media type is kept (``HSETNX``), a repository stat needs the
membership and the global hash, and a key of another algorithm also sets the
canonical digest. Where this class departs from distribution, it is on the
side of never answering for a deleted blob:

- a repository ``clear`` removes the membership and the repository's hash
  (distribution clears the *global* hash and keeps the membership); a Go
  registry then misses and asks its storage, and the global entry stays true
  since the blob's data is still there;
- a global hash without a media type, or with a value that does not parse
  (junk another program wrote), is a miss, not an empty media type.

Every stat, set or clear is one round trip (its commands are pipelined);
``stat_many``/``set_many`` are one round trip for the whole batch.

Connections come from a pool with distribution's settings (``maxidle``,
``maxactive``, ``idletimeout``: an exhausted pool is an error, as redigo's
without ``Wait``). When Redis cannot be reached (refused, timed out, reset),
the cache logs one warning, raises :class:`~ocistore.errors.CacheUnavailable`
at once for ``retry_interval`` seconds without dialling, then tries again,
doubling the pause after each failed try up to :data:`RETRY_MAX` (a Redis that
hangs costs a timeout per try, and the caller may be an event loop); the
caching statter answers those requests from storage. Clears that failed while
Redis was unreachable are remembered (a bounded set) and replayed once it
answers again, so that a Go registry reading the same Redis does not keep
answering for a blob deleted meanwhile. A Redis that restarted empty needs
nothing: a miss is always safe.

The client library is valkey-py with its C reply parser (libvalkey), chosen by
measurement over redis-py with hiredis (BENCHMARKS.md); redis-py works too
(``client="redis"``). Either is imported when the first cache is made, so
``import ocistore`` stays free of it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ocistore.cache.base import BlobDescriptorService, validate_descriptor
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import BlobUnknown, CacheError, CacheUnavailable, DigestError
from ocistore.reference import validate_name

__all__ = [
    "CLIENT_LIBRARIES",
    "GENERATION_KEY",
    "RedisDescriptorCache",
    "RedisOptions",
    "blob_key",
    "manifest_set_key",
    "repository_blob_key",
    "repository_set_key",
]

log = logging.getLogger(__name__)

GENERATION_KEY: Final = b"ocistore::descriptors::generation"
CLIENT_LIBRARIES: Final = ("redis", "valkey")
"""Client libraries the cache runs on (the same API; see BENCHMARKS.md for the choice)."""
DEFAULT_CLIENT: Final = "valkey"
RETRY_MAX: Final = 30.0
"""The longest pause, in seconds, between two tries of an unreachable Redis."""
PENDING_CLEARS_MAX: Final = 10_000
"""Failed clears remembered for replay; past this many the oldest are dropped."""
_FIELDS: Final = (b"digest", b"size", b"mediatype")


def blob_key(digest: Digest | str) -> bytes:
    """``blobs::<digest>``: the global descriptor hash."""
    return b"blobs::" + str(digest).encode("ascii")


def repository_set_key(name: str) -> bytes:
    """``repository::<name>::blobs``: the set of digests linked in ``name``."""
    return b"repository::" + name.encode("utf-8") + b"::blobs"


def repository_blob_key(name: str, digest: Digest | str) -> bytes:
    """``repository::<name>::blobs::<digest>``: the repository's own media type."""
    return _local_key(repository_set_key(name), digest)


def manifest_set_key(name: str) -> bytes:
    """``ocistore::repository::<name>::manifests``: ocistore's manifest revisions of ``name``.

    distribution caches no repository membership for manifests; were they kept in
    ``repository::<name>::blobs``, a Go registry would answer a blob request for a
    manifest's digest (or for a manifest it deleted) from them.
    """
    return b"ocistore::repository::" + name.encode("utf-8") + b"::manifests"


def _local_key(set_key: bytes, digest: Digest | str) -> bytes:
    return set_key + b"::" + str(digest).encode("ascii")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """distribution's ``redis:`` block (durations in seconds; ``None``: no limit).

    ``max_active`` 0 means unbounded, as in distribution. TLS (the keys of
    distribution 3's ``redis.tls``) is on when ``tls`` is set or any TLS file
    is named: the server's certificate and host name are verified against
    ``tls_root_cas`` (PEM files; empty: the system's CAs), and
    ``tls_certificate`` with ``tls_key`` is the client certificate, if any.
    """

    addr: str = "127.0.0.1:6379"
    password: str = ""
    db: int = 0
    dial_timeout: float | None = 1.0
    read_timeout: float | None = 1.0
    write_timeout: float | None = 1.0
    max_idle: int = 16
    max_active: int = 64
    idle_timeout: float | None = 300.0
    tls: bool = False
    tls_certificate: str = ""
    tls_key: str = ""
    tls_root_cas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.tls_root_cas, list):  # from JSON (ServerConfig.to_env)
            object.__setattr__(self, "tls_root_cas", tuple(self.tls_root_cas))
        if bool(self.tls_certificate) != bool(self.tls_key):
            raise ValueError(
                f"redis tls certificate {self.tls_certificate!r} and key {self.tls_key!r}: "
                "give both or neither"
            )
        host, sep, port = self.addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"redis addr {self.addr!r} is not host:port")
        if isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0:
            raise ValueError(f"redis db {self.db!r} is not a database number (>= 0)")
        for name in ("max_idle", "max_active"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"redis pool {name} {value!r} is not a count (>= 0)")
        for name in ("dial_timeout", "read_timeout", "write_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"redis {name} {value!r} is not a duration (>= 0)")

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.tls_certificate or self.tls_root_cas)

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])


class _Pool:
    """redigo's pool: at most ``max_active`` connections, ``max_idle`` of them kept idle.

    Idle connections older than ``idle_timeout`` are closed when met. A forked
    child forgets its parent's connections (the client library never shuts a
    socket down from another process).
    """

    def __init__(self, factory: Callable[[], Any], options: RedisOptions) -> None:
        self._factory = factory
        self._options = options
        self._lock = threading.Lock()
        self._idle: collections.deque[tuple[float, Any]] = collections.deque()
        self._active = 0
        self._pid = os.getpid()

    def get(self) -> Any:
        stale: list[Any] = []
        with self._lock:
            self._check_fork()
            limit = self._options.idle_timeout
            now = time.monotonic()
            conn = None
            while self._idle:
                since, candidate = self._idle.pop()
                if limit and now - since > limit:
                    stale.append(candidate)
                    self._active -= 1
                    continue
                conn = candidate
                break
            if conn is None:
                if self._options.max_active and self._active >= self._options.max_active:
                    raise CacheError(
                        f"redis {self._options.addr}: connection pool exhausted "
                        f"(maxactive {self._options.max_active})"
                    )
                self._active += 1
        for old in stale:
            old.disconnect()
        if conn is None:
            try:
                conn = self._factory()
            except BaseException:
                with self._lock:
                    self._active -= 1
                raise
        return conn

    def put(self, conn: Any) -> None:
        with self._lock:
            if os.getpid() == self._pid and len(self._idle) < self._options.max_idle:
                self._idle.append((time.monotonic(), conn))
                return
            self._active -= 1
        conn.disconnect()

    def discard(self, conn: Any) -> None:
        with self._lock:
            self._active -= 1
        conn.disconnect()

    def drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), collections.deque()
            self._active -= len(idle)
        for _, conn in idle:
            conn.disconnect()

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._idle.clear()
            self._active = 0


def _load_client(name: str) -> tuple[Any, Any, tuple[type[BaseException], ...]]:
    """The library's ``Connection`` and ``SSLConnection`` and its errors that mean "unreachable"."""
    if name == "redis":
        import redis.connection as connection
        import redis.exceptions as exceptions
    elif name == "valkey":
        import valkey.connection as connection  # type: ignore[no-redef]
        import valkey.exceptions as exceptions  # type: ignore[no-redef]
    else:
        raise ValueError(f"client {name!r}: use one of {', '.join(CLIENT_LIBRARIES)}")
    down = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
    return connection.Connection, connection.SSLConnection, down


class RedisDescriptorCache:
    """A descriptor cache in Redis, in distribution's key format (see the module docstring).

    ``RedisDescriptorCache(RedisOptions(addr="redis:6379", db=0))``; ``client``
    picks the library (``redis`` or ``valkey``), ``parser`` its reply parser
    (``None``: the library's default, its C parser when installed), and
    ``retry_interval`` how long an unreachable Redis is left alone.
    Safe to share between threads.
    """

    def __init__(
        self,
        options: RedisOptions | None = None,
        *,
        client: str = DEFAULT_CLIENT,
        parser: Any = None,
        retry_interval: float = 1.0,
    ) -> None:
        self.options = options if options is not None else RedisOptions()
        conn_class, ssl_class, self._down_errors = _load_client(client)
        self.client = client
        self.retry_interval = retry_interval
        kwargs: dict[str, Any] = {
            "host": self.options.host,
            "port": self.options.port,
            "db": self.options.db,
            "password": self.options.password or None,
            "socket_connect_timeout": self.options.dial_timeout or None,
            "socket_timeout": _io_timeout(self.options),
            "retry_on_timeout": False,
            "health_check_interval": 0,
            "protocol": 2,  # RESP2, as distribution's client: no HELLO, any Redis or Valkey
        }
        if parser is not None:
            kwargs["parser_class"] = parser
        cls = conn_class
        if self.options.uses_tls:
            cls = ssl_class
            kwargs.update(_tls_kwargs(self.options))
        self._pool = _Pool(lambda: _connect(cls, kwargs), self.options)
        self._state_lock = threading.Lock()
        self._down_until = 0.0
        self._down = False
        self._failures = 0
        self._pending: collections.OrderedDict[tuple[bytes | None, str], None] = (
            collections.OrderedDict()
        )
        self._closed = False

    # --- BlobDescriptorService (global scope) -------------------------------------

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        (reply,) = self._run([(b"HMGET", blob_key(dgst), *_FIELDS)])
        desc = self._parse(dgst, reply)
        if desc is None:
            raise BlobUnknown(dgst)
        return desc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The cached descriptors of ``digests`` (misses left out), in one round trip."""
        wanted = list(dict.fromkeys(as_digest(d) for d in digests))
        if not wanted:
            return {}
        replies = self._run([(b"HMGET", blob_key(d), *_FIELDS) for d in wanted])
        found = {d: self._parse(d, r) for d, r in zip(wanted, replies, strict=True)}
        return {d: v for d, v in found.items() if v is not None}

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.set_many([(digest, desc)])

    def set_many(self, items: Iterable[tuple[Digest | str, Descriptor]]) -> None:
        """``set_descriptor`` for many entries (all validated first), in one round trip."""
        checked = [validate_descriptor(d, desc) for d, desc in items]
        commands: list[tuple[Any, ...]] = []
        for dgst, desc in checked:
            if dgst != desc.digest:
                commands += _set_global(desc.digest, desc)
            commands += _set_global(dgst, desc)
        if commands:
            self._check(self._run(commands))

    def clear(self, digest: Digest | str) -> None:
        dgst = as_digest(digest)
        if not self._clear(None, dgst):
            raise BlobUnknown(dgst)

    # --- provider ------------------------------------------------------------------

    def repository_scoped(self, name: str) -> BlobDescriptorService:
        """Repository ``name``'s blobs (layers, configs), in distribution's keys."""
        name = validate_name(name)
        return _RedisRepositoryScope(self, name, repository_set_key(name))

    def manifest_scoped(self, name: str) -> BlobDescriptorService:
        """Repository ``name``'s manifest revisions, in keys of ocistore's own (:func:`manifest_set_key`)."""
        name = validate_name(name)
        return _RedisRepositoryScope(self, name, manifest_set_key(name))

    def generation(self) -> int:
        """ocistore's clear counter in Redis (clears made by a Go registry do not move it)."""
        (raw,) = self._run([(b"GET", GENERATION_KEY)])
        try:
            return 0 if raw is None else int(raw)
        except (TypeError, ValueError):
            raise CacheError(
                f"redis {self.options.addr}: {GENERATION_KEY!r} is not a number"
            ) from None

    def close(self) -> None:
        """Close every connection; later calls raise :class:`~ocistore.errors.CacheError`."""
        self._closed = True
        self._pool.drop_idle()

    def __len__(self) -> int:
        """Keys of distribution's two families in the database (a full ``SCAN``: diagnostics)."""
        total = 0
        for pattern in (b"blobs::*", b"repository::*"):
            cursor = b"0"
            while True:
                ((cursor, keys),) = self._run(
                    [(b"SCAN", cursor, b"MATCH", pattern, b"COUNT", 1000)]
                )
                total += len(keys)
                if cursor in (b"0", 0):
                    break
        return total

    def pending_clears(self) -> int:
        """Clears that failed while Redis was unreachable and wait to be replayed."""
        with self._state_lock:
            return len(self._pending)

    def __enter__(self) -> RedisDescriptorCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisDescriptorCache({self.options.addr!r}, db={self.options.db})"

    # --- internals -----------------------------------------------------------------------

    def _parse(self, key: Digest, reply: Any) -> Descriptor | None:
        """A descriptor from an ``HMGET digest size mediatype`` reply; junk is a miss."""
        if isinstance(reply, Exception):
            raise CacheError(f"redis {self.options.addr}: {blob_key(key)!r}: {reply}")
        raw_digest, raw_size, raw_media = reply
        if raw_digest is None or raw_size is None or not raw_media:
            return None
        try:
            dgst = Digest(raw_digest.decode("ascii"))
            size = int(raw_size)
            media_type = raw_media.decode("utf-8")
        except (DigestError, UnicodeDecodeError, ValueError):
            log.warning("ignoring malformed redis entry %r", blob_key(key))
            return None
        if size < 0 or (dgst != key and dgst.algorithm == key.algorithm):
            log.warning("ignoring malformed redis entry %r", blob_key(key))
            return None
        return Descriptor(dgst, size, media_type)

    def _clear(self, set_key: bytes | None, dgst: Digest) -> bool:
        """Clear one entry; True if it was there. A clear Redis did not get is remembered."""
        try:
            removed = self._check(self._run(_clear_commands(set_key, dgst)))[0]
        except CacheUnavailable:
            with self._state_lock:
                self._pending[(set_key, str(dgst))] = None
                self._pending.move_to_end((set_key, str(dgst)))
                while len(self._pending) > PENDING_CLEARS_MAX:
                    self._pending.popitem(last=False)
            raise
        return bool(removed)

    def _replay(self) -> None:
        """Send the clears that failed while Redis was unreachable (called before other work)."""
        if not self._pending:
            return
        with self._state_lock:
            pending = list(self._pending)
        commands: list[tuple[Any, ...]] = []
        for set_key, text in pending:
            commands += _clear_commands(set_key, Digest(text))
        self._run(commands, replaying=True)  # an error reply (a key of another type) is dropped
        with self._state_lock:
            for entry in pending:
                self._pending.pop(entry, None)
        log.info(
            "redis %s: replayed %d clears made while it was down", self.options.addr, len(pending)
        )

    def _check(self, replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, Exception):
                raise CacheError(f"redis {self.options.addr}: {reply}")
        return replies

    def _run(self, commands: Sequence[tuple[Any, ...]], *, replaying: bool = False) -> list[Any]:
        """Send ``commands`` in one write and read every reply (errors as exception values)."""
        if self._closed:
            raise CacheError(f"redis {self.options.addr}: the cache is closed")
        if self._down and time.monotonic() < self._down_until:
            raise CacheUnavailable(f"redis {self.options.addr} is unreachable")
        if self._pending and not replaying:
            self._replay()
        conn = None
        try:
            conn = self._pool.get()
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except self._down_errors:
                    raise
                except Exception as exc:  # an error reply: the connection stays in step
                    replies.append(exc)
        except self._down_errors as exc:
            if conn is not None:
                self._pool.discard(conn)
            raise self._unreachable(exc) from exc
        except BaseException:
            if conn is not None:
                self._pool.discard(conn)
            raise
        self._pool.put(conn)
        if self._down:
            self._reachable()
        return replies

    def _unreachable(self, exc: BaseException) -> CacheUnavailable:
        with self._state_lock:
            first = not self._down
            self._down = True
            pause = min(self.retry_interval * 2.0 ** min(self._failures, 16), RETRY_MAX)
            self._failures += 1
            self._down_until = time.monotonic() + pause
        self._pool.drop_idle()
        if first:
            log.warning(
                "redis %s unreachable (%s): descriptors come from storage; retrying after %gs",
                self.options.addr,
                exc,
                self.retry_interval,
            )
        return CacheUnavailable(f"redis {self.options.addr} is unreachable: {exc}")

    def _reachable(self) -> None:
        with self._state_lock:
            was_down, self._down = self._down, False
            self._failures = 0
        if was_down:
            log.info("redis %s is reachable again", self.options.addr)


class _RedisRepositoryScope:
    """One repository's view: a membership set plus a media type hash per member.

    ``set_key`` is the set (``repository::<name>::blobs`` for blobs); a member's
    hash is ``<set_key>::<digest>``.
    """

    __slots__ = ("_cache", "_name", "_set_key")

    def __init__(self, cache: RedisDescriptorCache, name: str, set_key: bytes) -> None:
        self._cache = cache
        self._name = name
        self._set_key = set_key

    @property
    def name(self) -> str:
        return self._name

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        desc = self._parse(dgst, self._cache._run(self._stat_commands(dgst)))
        if desc is None:
            raise BlobUnknown(dgst)
        return desc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The cached descriptors of ``digests`` in this repository, in one round trip."""
        wanted = list(dict.fromkeys(as_digest(d) for d in digests))
        if not wanted:
            return {}
        commands: list[tuple[Any, ...]] = []
        for dgst in wanted:
            commands += self._stat_commands(dgst)
        replies = self._cache._run(commands)
        found: dict[Digest, Descriptor] = {}
        for i, dgst in enumerate(wanted):
            desc = self._parse(dgst, replies[3 * i : 3 * i + 3])
            if desc is not None:
                found[dgst] = desc
        return found

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.set_many([(digest, desc)])

    def set_many(self, items: Iterable[tuple[Digest | str, Descriptor]]) -> None:
        """``set_descriptor`` for many entries (all validated first), in one round trip."""
        checked = [validate_descriptor(d, desc) for d, desc in items]
        commands: list[tuple[Any, ...]] = []
        for dgst, desc in checked:
            if dgst != desc.digest:
                commands += self._set_commands(desc.digest, desc)
            commands += self._set_commands(dgst, desc)
        if commands:
            self._cache._check(self._cache._run(commands))

    def clear(self, digest: Digest | str) -> None:
        dgst = as_digest(digest)
        if not self._cache._clear(self._set_key, dgst):
            raise BlobUnknown(dgst)

    def _stat_commands(self, dgst: Digest) -> list[tuple[Any, ...]]:
        return [
            (b"SISMEMBER", self._set_key, str(dgst)),
            (b"HMGET", blob_key(dgst), *_FIELDS),
            (b"HGET", _local_key(self._set_key, dgst), b"mediatype"),
        ]

    def _set_commands(self, dgst: Digest, desc: Descriptor) -> list[tuple[Any, ...]]:
        return [
            (b"SADD", self._set_key, str(dgst)),
            *_set_global(dgst, desc),
            (b"HSET", _local_key(self._set_key, dgst), b"mediatype", desc.media_type),
        ]

    def _parse(self, dgst: Digest, replies: list[Any]) -> Descriptor | None:
        member, global_reply, local = replies
        if isinstance(member, Exception):
            raise CacheError(f"redis: {self._set_key!r}: {member}")
        if not member:
            return None
        desc = self._cache._parse(dgst, global_reply)
        if desc is None:
            return None
        if isinstance(local, Exception):
            raise CacheError(f"redis: {_local_key(self._set_key, dgst)!r}: {local}")
        if local:
            try:
                media_type = local.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if media_type != desc.media_type:
                desc = Descriptor(desc.digest, desc.size, media_type)
        return desc

    def __repr__(self) -> str:
        return f"<{self._set_key.decode('utf-8', 'replace')} of {self._cache!r}>"


def _set_global(dgst: Digest, desc: Descriptor) -> list[tuple[Any, ...]]:
    key = blob_key(dgst)
    return [
        (b"HSET", key, b"digest", str(desc.digest), b"size", desc.size),
        (b"HSETNX", key, b"mediatype", desc.media_type),
    ]


def _clear_commands(set_key: bytes | None, dgst: Digest) -> list[tuple[Any, ...]]:
    """The first command's reply says whether the entry was there; the generation moves anyway."""
    if set_key is None:
        first: list[tuple[Any, ...]] = [(b"HDEL", blob_key(dgst), *_FIELDS)]
    else:
        first = [(b"SREM", set_key, str(dgst)), (b"DEL", _local_key(set_key, dgst))]
    return [*first, (b"INCR", GENERATION_KEY)]


def _io_timeout(options: RedisOptions) -> float | None:
    """The client has one socket timeout: the longer of the read and write timeouts."""
    timeouts = [t for t in (options.read_timeout, options.write_timeout) if t]
    return max(timeouts) if timeouts else None


def _tls_kwargs(options: RedisOptions) -> dict[str, Any]:
    """The client's TLS arguments; the CA files are read now, so a bad path fails at start."""
    kwargs: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if options.tls_root_cas:
        pem = []
        for path in options.tls_root_cas:
            try:
                with open(path, encoding="ascii") as f:
                    pem.append(f.read())
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"redis tls root CA {path!r}: {exc}") from None
        kwargs["ssl_ca_data"] = "\n".join(pem)
    if options.tls_certificate:
        kwargs["ssl_certfile"] = options.tls_certificate
        kwargs["ssl_keyfile"] = options.tls_key
    return kwargs


def _connect(cls: Any, kwargs: dict[str, Any]) -> Any:
    conn = cls(**kwargs)
    conn.connect()
    return conn
