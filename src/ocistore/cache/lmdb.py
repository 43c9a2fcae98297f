"""The LMDB descriptor cache: the default on disk, shared by every process on a host.

One LMDB environment (a directory) holds named sub-databases::

    blobs   global key -> entry               (see ocistore.cache.codec)
    repos   repository key -> membership      (repository-local media type)
    names   repository name (utf-8) -> id     ids are allocated once and never reused
    ids     id -> repository name
    mtypes  media type (utf-8) -> id          a small table: most blobs share a few types
    mtids   id -> media type
    meta    format, generation, id counters

Semantics are those of :mod:`ocistore.cache.memory` (distribution's), without
the LRU bound: entries stay until cleared.

Concurrency and durability:

- LMDB serialises writers across processes with its own lock (``lock=True``) and
  gives readers a snapshot, so any number of processes may share the directory.
  Repository and media-type ids are allocated inside write transactions, so two
  processes can never hand out one id twice.
- ``writemap=False``: pages are written with ``write()``, never through a shared
  writable map, so a stray write in one process cannot scribble on the file.
- Copy-on-write B-trees: a writer that crashes (SIGKILL included) mid-transaction
  leaves the previous committed state; the next opener simply reads that.
- ``durable=False`` (default) opens with ``sync=False, metasync=False``: commits
  are not fsynced. A process crash loses nothing (the page cache survives); an
  operating-system crash may lose recent entries or, LMDB warns, damage the file.
  That is acceptable for a cache, which is never the source of truth: delete the
  directory and it refills. ``durable=True`` fsyncs every commit.
- LMDB environments must not be used across ``fork()``: the cache notices a new
  process id (``os.register_at_fork``) and reopens the environment in the child
  on first use. No read transaction is kept between calls (``max_spare_txns=0``),
  so the child's reopen never frees a reader slot the parent still uses.

Every clear (any scope, any process) bumps a 64-bit *generation* counter in
``meta``; :meth:`LMDBDescriptorCache.generation` reads it in one cheap read
transaction so an in-process cache in front can drop its entries when it moved.
After the commit it also bumps a :class:`SharedCounter` in the file
``generation`` beside the environment (:attr:`LMDBDescriptorCache.counter_path`),
which the stat fast path reads with one load per request instead of a read
transaction.

A value that does not decode (corruption, or junk written by another program)
is a miss: it is counted in :meth:`LMDBDescriptorCache.stats` and overwritten by
the next ``set_descriptor``; it never raises.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, NoReturn

import lmdb

from ocistore import _core, _core_types
from ocistore.cache import codec
from ocistore.cache.base import BlobDescriptorService, validate_descriptor
from ocistore.cache.codec import CorruptEntry, MediaRef
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import BlobUnknown, CacheError
from ocistore.reference import validate_name

log = logging.getLogger(__name__)

FORMAT: Final = b"ocistore-descriptor-cache/1"
DEFAULT_MAP_SIZE: Final = (1 << 40) if sys.maxsize > 2**32 else (1 << 30)
"""1 TiB on 64-bit hosts: address space only, the file grows as entries arrive."""
DEFAULT_MAX_READERS: Final = 1024
MEDIA_TABLE_MAX: Final = 65_536
"""Media types beyond this many distinct ones are stored inline."""
MEDIA_KEY_MAX: Final = 255
"""Longer media types are stored inline rather than in the table."""
_LOCAL_IDS_MAX: Final = 65_536

_META_FORMAT: Final = b"format"
_META_GENERATION: Final = b"generation"
_META_NEXT_REPO: Final = b"next-repository-id"
_META_NEXT_MEDIA: Final = b"next-media-type-id"

_DB_NAMES: Final = (b"blobs", b"repos", b"names", b"ids", b"mtypes", b"mtids", b"meta")
COUNTER_FILE: Final = "generation"
"""The shared clear counter's file, inside the environment directory."""


class _Fork:
    """The current process id, refreshed in a forked child (cheaper than ``os.getpid()``)."""

    pid = os.getpid()
    instances: weakref.WeakSet[LMDBDescriptorCache] = weakref.WeakSet()

    @classmethod
    def after_in_child(cls) -> None:
        cls.pid = os.getpid()
        for cache in list(cls.instances):
            # A lock held by another thread at fork time would never be released here.
            cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Fork.after_in_child)


@dataclass(frozen=True, slots=True)
class _Handles:
    env: lmdb.Environment
    blobs: lmdb._Database
    repos: lmdb._Database
    names: lmdb._Database
    ids: lmdb._Database
    mtypes: lmdb._Database
    mtids: lmdb._Database
    meta: lmdb._Database
    counter: _core_types.SharedCounter
    pid: int


@contextmanager
def _lmdb_errors(path: str) -> Iterator[None]:
    """Report LMDB failures (full map, reader table, I/O) as :class:`CacheError`."""
    try:
        yield
    except lmdb.Error as exc:
        raise CacheError(f"{path}: {type(exc).__name__}: {exc}") from exc


class LMDBDescriptorCache:
    """A persistent descriptor cache in one LMDB environment (directory ``path``).

    One instance per directory and process (LMDB's rule; a second open raises
    :class:`~ocistore.errors.CacheError`); share it between threads freely.

    Keyword-only options: ``map_size`` (bytes of address space, default 1 TiB on
    64-bit), ``max_readers`` (concurrent read transactions across all processes,
    fixed by the first opener), ``durable`` (fsync every commit).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_readers: int = DEFAULT_MAX_READERS,
        durable: bool = False,
    ) -> None:
        self._path = os.fspath(path)
        self._map_size = map_size
        self._max_readers = max_readers
        self._durable = durable
        self._lock = threading.Lock()
        self._repo_ids: dict[str, int] = {}
        self._media_types: dict[int, str] = {}
        self._corrupt = 0
        self._new_counter = _core.SharedCounter  # the core is captured at construction
        self._handles: _Handles | None = self._open()
        _Fork.instances.add(self)

    # --- environment ----------------------------------------------------------------

    def _open(self) -> _Handles:
        try:
            os.makedirs(self._path, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"{self._path}: {exc.strerror or exc}") from exc
        with _lmdb_errors(self._path):
            env = lmdb.open(
                self._path,
                map_size=self._map_size,
                max_dbs=len(_DB_NAMES) + 1,
                max_readers=self._max_readers,
                max_spare_txns=0,
                subdir=True,
                create=True,
                lock=True,
                writemap=False,
                sync=self._durable,
                metasync=self._durable,
                readahead=False,
                meminit=False,
            )
            try:
                with env.begin(write=True) as txn:
                    dbs = [env.open_db(name, txn=txn) for name in _DB_NAMES]
                    meta = dbs[-1]
                    found = txn.get(_META_FORMAT, db=meta)
                    if found is None:
                        txn.put(_META_FORMAT, FORMAT, db=meta)
                    elif found != FORMAT:
                        raise CacheError(
                            f"{self._path}: not an ocistore descriptor cache (format {found!r})"
                        )
            except BaseException:
                env.close()
                raise
        try:
            # A forked child opens its own: flock on an inherited fd would be shared.
            counter = self._new_counter(os.path.join(self._path, COUNTER_FILE))
        except OSError as exc:
            env.close()
            raise CacheError(f"{self._path}: {COUNTER_FILE}: {exc.strerror or exc}") from exc
        blobs, repos, names, ids, mtypes, mtids, meta = dbs
        return _Handles(env, blobs, repos, names, ids, mtypes, mtids, meta, counter, _Fork.pid)

    def _h(self) -> _Handles:
        h = self._handles
        if h is None or h.pid != _Fork.pid:
            return self._reopen()
        return h

    def _reopen(self) -> _Handles:
        with self._lock:
            h = self._handles
            if h is None:
                raise CacheError(f"{self._path}: cache is closed")
            if h.pid == _Fork.pid:
                return h
            # Inherited from the parent: close this process's copy (the parent's
            # reader slots and locks are untouched) and open our own.
            log.debug("reopening descriptor cache %s after fork", self._path)
            h.env.close()
            h.counter.close()
            try:
                self._handles = h = self._open()
            except BaseException:
                self._handles = None
                raise
            return h

    def close(self) -> None:
        """Flush (when not durable) and close the environment; later calls raise CacheError.

        In a forked child that never used the cache this closes the inherited copy,
        which leaves the parent's environment untouched (see the module docstring).
        """
        with self._lock:
            h, self._handles = self._handles, None
        if h is not None:
            h.counter.close()
            with _lmdb_errors(self._path):
                if not self._durable and h.pid == _Fork.pid:
                    h.env.sync(True)
                h.env.close()

    def __enter__(self) -> LMDBDescriptorCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        return self._path

    @property
    def counter_path(self) -> str:
        """The file of the shared clear counter (see the module docstring)."""
        return os.path.join(self._path, COUNTER_FILE)

    def __repr__(self) -> str:
        return f"LMDBDescriptorCache({self._path!r})"

    # --- global scope --------------------------------------------------------------------

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        h = self._h()
        try:
            with h.env.begin() as txn:
                value = txn.get(codec.digest_key(dgst), db=h.blobs)
                if value is None:
                    raise BlobUnknown(dgst)
                return self._decode(txn, h, dgst, value, None)
        except lmdb.Error as exc:
            raise self._failure(exc) from exc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The cached descriptors of ``digests`` (misses left out), in one read transaction."""
        wanted = [as_digest(d) for d in digests]
        h = self._h()
        found: dict[Digest, Descriptor] = {}
        try:
            with h.env.begin() as txn:
                for dgst in wanted:
                    value = txn.get(codec.digest_key(dgst), db=h.blobs)
                    if value is not None:
                        try:
                            found[dgst] = self._decode(txn, h, dgst, value, None)
                        except BlobUnknown:
                            continue
        except lmdb.Error as exc:
            raise self._failure(exc) from exc
        return found

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.set_many([(digest, desc)])

    def set_many(self, items: Iterable[tuple[Digest | str, Descriptor]]) -> None:
        """``set_descriptor`` for many entries in one write transaction (all or nothing).

        Entries already stored as they would be written are detected in a read
        transaction first, so refilling a known blob takes no writer lock.
        """
        checked = [validate_descriptor(d, desc) for d, desc in items]
        h = self._h()
        if self._all_stored(h, checked, None):
            return
        with _lmdb_errors(self._path), h.env.begin(write=True) as txn:
            for dgst, desc in checked:
                self._put_global(txn, h, dgst, desc)

    def clear(self, digest: Digest | str) -> None:
        dgst = as_digest(digest)
        h = self._h()
        with _lmdb_errors(self._path), h.env.begin(write=True) as txn:
            found = txn.delete(codec.digest_key(dgst), db=h.blobs)
            self._bump(txn, h)
        self._bump_shared(h)
        if not found:
            raise BlobUnknown(dgst)

    # --- provider -------------------------------------------------------------------------

    def repository_scoped(self, name: str) -> BlobDescriptorService:
        return _LMDBRepositoryScope(self, validate_name(name))

    def generation(self) -> int:
        """The clear counter shared by every process using this directory."""
        h = self._h()
        try:
            with h.env.begin() as txn:
                value = txn.get(_META_GENERATION, db=h.meta)
        except lmdb.Error as exc:
            raise self._failure(exc) from exc
        if value is None:
            return 0
        try:
            return codec.unpack_u64(value)
        except CorruptEntry as exc:
            raise CacheError(f"{self._path}: generation counter: {exc}") from None

    def purge(self) -> None:
        """Drop every entry (both scopes) and bump the generation.

        The name and media-type tables stay: their ids are permanent, so a view
        still holding an id can never read another repository's entries.
        """
        h = self._h()
        with _lmdb_errors(self._path), h.env.begin(write=True) as txn:
            txn.drop(h.blobs, delete=False)
            txn.drop(h.repos, delete=False)
            self._bump(txn, h)
        self._bump_shared(h)

    def stats(self) -> dict[str, int]:
        """Entry counts, the generation, and how many corrupt values were met (this process)."""
        h = self._h()
        with _lmdb_errors(self._path), h.env.begin() as txn:
            return {
                "entries": txn.stat(h.blobs)["entries"],
                "repository_entries": txn.stat(h.repos)["entries"],
                "repositories": txn.stat(h.names)["entries"],
                "media_types": txn.stat(h.mtypes)["entries"],
                "corrupt": self._corrupt,
                "generation": self.generation(),
            }

    def __len__(self) -> int:
        h = self._h()
        with _lmdb_errors(self._path), h.env.begin() as txn:
            return int(txn.stat(h.blobs)["entries"]) + int(txn.stat(h.repos)["entries"])

    # --- internals -------------------------------------------------------------------------

    def _failure(self, exc: lmdb.Error) -> CacheError:
        return CacheError(f"{self._path}: {type(exc).__name__}: {exc}")

    def _corrupt_miss(self, dgst: Digest, what: str, exc: CorruptEntry) -> NoReturn:
        with self._lock:
            self._corrupt += 1
        log.warning("descriptor cache %s: corrupt %s for %s: %s", self._path, what, dgst, exc)
        raise BlobUnknown(dgst)

    def _decode(
        self,
        txn: lmdb.Transaction[bytes],
        h: _Handles,
        dgst: Digest,
        value: bytes,
        override: MediaRef | None,
    ) -> Descriptor:
        """A global entry as a Descriptor, with a repository's media type if given."""
        try:
            size, media, alias = codec.unpack_entry(value)
            if alias is not None and alias.algorithm == dgst.algorithm:
                raise CorruptEntry(f"alias {alias} of the same algorithm as its key")
            if override is not None:
                self._media_type(txn, h, media)  # the global entry must be whole too
                media = override
            media_type = self._media_types.get(media) if type(media) is int else None
            if media_type is None:
                media_type = self._media_type(txn, h, media)
        except CorruptEntry as exc:
            self._corrupt_miss(dgst, "entry", exc)
        return Descriptor(dgst if alias is None else alias, size, media_type)

    def _unpack(
        self, txn: lmdb.Transaction[bytes], h: _Handles, dgst: Digest, value: bytes
    ) -> tuple[int, MediaRef, Digest | None]:
        """Decode a global entry and check it makes sense for key ``dgst``."""
        size, media, alias = codec.unpack_entry(value)
        if alias is not None and alias.algorithm == dgst.algorithm:
            raise CorruptEntry(f"alias {alias} of the same algorithm as its key")
        self._media_type(txn, h, media)
        return size, media, alias

    def _media_type(self, txn: lmdb.Transaction[bytes], h: _Handles, media: MediaRef) -> str:
        if isinstance(media, str):
            return media
        known = self._media_types.get(media)
        if known is not None:
            return known
        raw = txn.get(codec.pack_u32(media), db=h.mtids)
        if raw is None:
            raise CorruptEntry(f"unknown media type id {media}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptEntry(f"media type {media} is not UTF-8") from None
        if len(self._media_types) < MEDIA_TABLE_MAX:
            self._media_types[media] = text  # committed ids never change
        return text

    def _media_ref(self, txn: lmdb.Transaction[bytes], h: _Handles, media_type: str) -> MediaRef:
        """The table id of ``media_type``, allocated in this write transaction if new."""
        key = media_type.encode("utf-8")
        if len(key) > MEDIA_KEY_MAX:
            return media_type
        found = txn.get(key, db=h.mtypes)
        if found is not None:
            try:
                return codec.unpack_u32(found)
            except CorruptEntry:
                return media_type
        last = self._counter(txn, h, _META_NEXT_MEDIA)
        if last >= MEDIA_TABLE_MAX:
            return media_type
        media_id = last + 1
        txn.put(_META_NEXT_MEDIA, codec.pack_u32(media_id), db=h.meta)
        txn.put(key, codec.pack_u32(media_id), db=h.mtypes)
        txn.put(codec.pack_u32(media_id), key, db=h.mtids)
        return media_id

    def _counter(self, txn: lmdb.Transaction[bytes], h: _Handles, key: bytes) -> int:
        raw = txn.get(key, db=h.meta)
        if raw is None:
            return 0
        try:
            return codec.unpack_u32(raw)
        except CorruptEntry:
            # Never reuse an id that may be out there: skip past every one in use.
            table = h.ids if key == _META_NEXT_REPO else h.mtids
            with txn.cursor(db=table) as cur:
                return max((codec.unpack_repo_id(k) for k in cur.iternext(values=False)), default=0)

    def _put_global(
        self, txn: lmdb.Transaction[bytes], h: _Handles, dgst: Digest, desc: Descriptor
    ) -> None:
        """Set one global entry: digest and size replaced, the first media type kept."""
        if dgst != desc.digest:
            self._put_global(txn, h, desc.digest, desc)
        key = codec.digest_key(dgst)
        media: MediaRef | None = None
        old = txn.get(key, db=h.blobs)
        if old is not None:
            try:
                _, media, _ = self._unpack(txn, h, dgst, old)
            except CorruptEntry:
                media = None  # overwrite the junk
        if media is None:
            media = self._media_ref(txn, h, desc.media_type)
        alias = desc.digest if dgst != desc.digest else None
        value = codec.pack_entry(desc.size, media, alias)
        if value != old:
            txn.put(key, value, db=h.blobs)

    def _all_stored(
        self, h: _Handles, items: list[tuple[Digest, Descriptor]], rid: int | None
    ) -> bool:
        """Whether writing ``items`` (globally, or in repository ``rid``) would change nothing."""
        with _lmdb_errors(self._path), h.env.begin() as txn:
            for dgst, desc in items:
                keys = (dgst,) if dgst == desc.digest else (desc.digest, dgst)
                for key in keys:
                    if not self._stored(txn, h, key, desc, rid):
                        return False
        return True

    def _stored(
        self,
        txn: lmdb.Transaction[bytes],
        h: _Handles,
        key: Digest,
        desc: Descriptor,
        rid: int | None,
    ) -> bool:
        value = txn.get(codec.digest_key(key), db=h.blobs)
        if value is None:
            return False
        try:
            size, _, alias = self._unpack(txn, h, key, value)
            if size != desc.size or alias != (None if key == desc.digest else desc.digest):
                return False
            if rid is None:
                return True  # the first media type is kept globally anyway
            member = txn.get(codec.repository_key(rid, key), db=h.repos)
            if member is None:
                return False
            return self._media_type(txn, h, codec.unpack_membership(member)) == desc.media_type
        except CorruptEntry:
            return False

    def _bump(self, txn: lmdb.Transaction[bytes], h: _Handles) -> None:
        raw = txn.get(_META_GENERATION, db=h.meta)
        try:
            current = 0 if raw is None else codec.unpack_u64(raw)
        except CorruptEntry:
            # Must not fall back to a value a reader may have seen: jump far ahead.
            current = time.time_ns()
        txn.put(_META_GENERATION, codec.pack_u64((current + 1) & 0xFFFF_FFFF_FFFF_FFFF), db=h.meta)

    def _bump_shared(self, h: _Handles) -> None:
        """After a clear's commit: tell in-process caches of every process (see module docstring)."""
        try:
            h.counter.bump()
        except (OSError, ValueError) as exc:
            raise CacheError(f"{self._path}: {COUNTER_FILE}: {exc}") from exc

    def _repo_id(self, name: str, *, create: bool) -> int | None:
        """The permanent id of repository ``name``; allocated (and committed) if ``create``."""
        rid = self._repo_ids.get(name)
        if rid is not None:
            return rid
        key = name.encode("utf-8")
        h = self._h()
        with _lmdb_errors(self._path):
            with h.env.begin() as txn:
                raw = txn.get(key, db=h.names)
            if raw is None and create:
                with h.env.begin(write=True) as txn:
                    raw = txn.get(key, db=h.names)
                    if raw is None:
                        rid = self._counter(txn, h, _META_NEXT_REPO) + 1
                        raw = codec.pack_repo_id(rid)
                        txn.put(_META_NEXT_REPO, codec.pack_u32(rid), db=h.meta)
                        txn.put(key, raw, db=h.names)
                        txn.put(raw, key, db=h.ids)
        if raw is None:
            return None
        try:
            rid = codec.unpack_repo_id(raw)
        except CorruptEntry as exc:
            raise CacheError(f"{self._path}: repository id of {name!r}: {exc}") from None
        if len(self._repo_ids) >= _LOCAL_IDS_MAX:
            self._repo_ids.clear()
        self._repo_ids[name] = rid
        return rid


class _LMDBRepositoryScope:
    """One repository's view: membership and repository-local media type (see memory.py)."""

    __slots__ = ("_cache", "_name")

    def __init__(self, cache: LMDBDescriptorCache, name: str) -> None:
        self._cache = cache
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        cache = self._cache
        rid = cache._repo_id(self._name, create=False)
        if rid is None:
            raise BlobUnknown(dgst)
        h = cache._h()
        try:
            with h.env.begin() as txn:
                return self._stat(txn, h, rid, dgst)
        except lmdb.Error as exc:
            raise cache._failure(exc) from exc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The cached descriptors of ``digests`` in this repository, in one read transaction."""
        wanted = [as_digest(d) for d in digests]
        cache = self._cache
        rid = cache._repo_id(self._name, create=False)
        found: dict[Digest, Descriptor] = {}
        if rid is None:
            return found
        h = cache._h()
        try:
            with h.env.begin() as txn:
                for dgst in wanted:
                    try:
                        found[dgst] = self._stat(txn, h, rid, dgst)
                    except BlobUnknown:
                        continue
        except lmdb.Error as exc:
            raise cache._failure(exc) from exc
        return found

    def _stat(
        self, txn: lmdb.Transaction[bytes], h: _Handles, rid: int, dgst: Digest
    ) -> Descriptor:
        cache = self._cache
        member = txn.get(codec.repository_key(rid, dgst), db=h.repos)
        if member is None:
            raise BlobUnknown(dgst)
        value = txn.get(codec.digest_key(dgst), db=h.blobs)
        if value is None:
            raise BlobUnknown(dgst)
        try:
            media = codec.unpack_membership(member)
        except CorruptEntry as exc:
            cache._corrupt_miss(dgst, f"membership in {self._name}", exc)
        return cache._decode(txn, h, dgst, value, media)

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.set_many([(digest, desc)])

    def set_many(self, items: Iterable[tuple[Digest | str, Descriptor]]) -> None:
        """``set_descriptor`` for many entries in one write transaction."""
        checked = [validate_descriptor(d, desc) for d, desc in items]
        cache = self._cache
        rid = cache._repo_id(self._name, create=True)
        assert rid is not None
        h = cache._h()
        if cache._all_stored(h, checked, rid):
            return
        with _lmdb_errors(cache._path), h.env.begin(write=True) as txn:
            for dgst, desc in checked:
                self._set(txn, h, rid, dgst, desc)

    def _set(
        self, txn: lmdb.Transaction[bytes], h: _Handles, rid: int, dgst: Digest, desc: Descriptor
    ) -> None:
        cache = self._cache
        if dgst != desc.digest:
            self._set(txn, h, rid, desc.digest, desc)
        cache._put_global(txn, h, dgst, desc)
        member = codec.pack_membership(cache._media_ref(txn, h, desc.media_type))
        key = codec.repository_key(rid, dgst)
        if txn.get(key, db=h.repos) != member:
            txn.put(key, member, db=h.repos)

    def clear(self, digest: Digest | str) -> None:
        dgst = as_digest(digest)
        cache = self._cache
        rid = cache._repo_id(self._name, create=False)
        h = cache._h()
        with _lmdb_errors(cache._path), h.env.begin(write=True) as txn:
            found = rid is not None and txn.delete(codec.repository_key(rid, dgst), db=h.repos)
            cache._bump(txn, h)
        cache._bump_shared(h)
        if not found:
            raise BlobUnknown(dgst)

    def __repr__(self) -> str:
        return f"<repository {self._name!r} of {self._cache!r}>"
