"""The stat fast path (pure core): an in-process LRU of blob descriptors kept true by inotify.

A :class:`StatCache` belongs to one filesystem root. It holds the values its
fallbacks return (the storage layer's descriptors: anything with ``digest``
and ``size``) keyed by *(scope, digest string)* in one LRU of ``capacity``
entries shared by every scope; a :class:`StatCacheScope` is the statter of
one scope and sits in front of a *fallback* statter. The cache knows no
layout: the storage layer hands it the template of a blob's data file and,
per repository scope, of a key's link file. The native core
(``native/_statcache.pyx``) has the same classes and behaviour; only its
speed differs.

Why an entry may be trusted without asking the disk:

- *Blob data*, whoever deletes it (this process, another worker, Go's
  ``garbage-collect``, ``rm``, ``rm -rf``): before an entry is filled, the
  directory of its blob's data file is watched with inotify (the file
  deleted, renamed, replaced or written; the directory itself removed or
  renamed), and so is every directory above it up to the root (removed or
  renamed). Any of these drops the blob's entries in every scope (or, above
  the blob, every entry). Every request first asks the kernel whether events
  are queued (``FIONREAD``, one system call) and applies them before looking
  up, so a stat that starts after a deletion returned never sees the deleted
  blob. Blob watches are bounded: when they exceed twice the capacity of the
  caches, those of blobs no longer cached are removed.
- *Repository links* (one small file per digest, deep inside a tree of one
  directory per blob; Go's DELETE removes only that file): watching them
  would cost one watch per cached entry. A repository-scoped hit instead
  stats its link (one ``stat``, no open), which is what the cached path did
  before, minus the data stat that inotify now answers.
- *Link files read through a* :class:`LinkCacheScope` (a tag's current link,
  the tag -> digest resolution): the link's directory is watched for that
  one name being created, written (``IN_MODIFY``: Go 2.8 rewrites a link in
  place, truncating it first), deleted or renamed over (``IN_MOVED_TO``: how
  ocistore's and newer Go's ``PutContent`` replace it) or away, and every
  directory above it up to the root for its own removal or renaming. An
  event on the link drops that entry; the removal or renaming of a directory
  between the link and the shared ancestors (the directories above the blob
  template's first field) drops the entries below it and forgets the watches
  below it (a renamed directory keeps its watches on the inode, which is no
  longer at the path); above that, as for blobs, everything. Link watches
  count with blob watches towards the sweep.
- *Other ocistore processes*: every clear of the shared descriptor cache
  bumps a counter in a small mapped file (``counter_path``); every request
  compares it (one load) and drops everything when it moved.
- *A fill racing with a deletion*: the blob's directories are watched before
  the fallback is asked, and the answer is kept only if no event and no
  clear was applied in between (``epoch``); otherwise it is returned but not
  cached.
- Queue overflow (``IN_Q_OVERFLOW``), the removal or renaming of any watched
  directory, and a ``fork()`` drop every entry; a watch that cannot be added
  (no such directory, the watch limit) means that blob is not cached.

Limits (documented in the storage layer): inotify sees only this host, so a
root shared over a network filesystem must not use this cache (the storage
layer checks the filesystem type); moving a directory *above* the root is
not seen; each cached blob holds one inotify watch (``fs.inotify.max_user_watches``:
a blob whose watch cannot be added is simply not cached).

Threads: one lock (the GIL in the native core) covers the queue check, the
application of events and the LRU, so no thread can consume an event that
another then fails to apply. The fallback is called outside it.

Never import anything above the core here (no ``Digest``, no descriptor, no
path of the tree): what the cache needs is passed in.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat as stat_mod
import string
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from ocistore._core_py.counter import SharedCounter
from ocistore._core_py.digest import parse_digest
from ocistore._core_py.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MASK_ADD,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Inotify,
)

__all__ = [
    "DEFAULT_CAPACITY",
    "Described",
    "Fallback",
    "LinkCacheScope",
    "StatCache",
    "StatCacheScope",
]

log = logging.getLogger("ocistore.statcache")

DEFAULT_CAPACITY: Final = 16_384

ANCESTOR_MASK: Final = IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_MASK_ADD
BLOB_MASK: Final = ANCESTOR_MASK | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY
WATCH_GONE: Final = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT
LINK_MASK: Final = BLOB_MASK | IN_CREATE
DATA_CHANGED: Final = IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_CREATE
MIN_BLOB_WATCHES: Final = 1024
"""Blob watches are swept when above max(this, 2 x the capacity of every cache)."""


class Described(Protocol):
    """What a scope caches: any value naming the blob it describes and that blob's size."""

    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...


class Fallback(Protocol):
    """What a scope asks on a miss; ``stat`` raises the cache's ``missing`` for an absent key.

    ``stat_many`` is optional (looked up with ``getattr``): a mapping of the
    keys found to their values, the absent ones left out.
    """

    def stat(self, digest: Any, /) -> Any: ...
    def set_descriptor(self, digest: Any, desc: Any, /) -> None: ...
    def clear(self, digest: Any, /) -> None: ...


_FIELDS: Final = {"algorithm": -1, "encoded": 0}


class _Template:
    """A path template in ``str.format`` syntax over a digest: ``{algorithm}``, ``{encoded}``.

    ``{encoded:.N}`` is the first N characters of ``encoded``. ``pieces`` holds
    the literal text (str) and the fields (-1: algorithm, 0: encoded, N > 0:
    its first N characters) in order; ``shared`` the directories above the
    first field, from "" down.
    """

    __slots__ = ("pieces", "shared", "text")

    def __init__(self, text: str, what: str, *, file: bool) -> None:
        if type(text) is not str or not text.startswith("/"):
            raise ValueError(f"{what} must be an absolute path template (str), got {text!r}")
        pieces: list[str | int] = []
        whole = False
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{what} {text!r} is not a format string: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if literal:
                pieces.append(literal)
            if field is None:
                continue
            code = _FIELDS.get(field)
            if code is None or conversion is not None:
                raise ValueError(f"{what} {text!r}: unknown field {{{field}}}")
            if spec:
                width = spec[1:]
                if field != "encoded" or spec[0] != "." or not width.isdigit() or int(width) < 1:
                    raise ValueError(f"{what} {text!r}: unsupported format {{{field}:{spec}}}")
                code = int(width)
            whole = whole or code == 0
            pieces.append(code)
        tail = pieces[-1] if pieces else ""
        if not whole:
            raise ValueError(f"{what} {text!r} must contain {{encoded}}")
        if file and (type(tail) is not str or "/" not in tail or tail.endswith("/")):
            raise ValueError(f"{what} {text!r} must end in a literal file name after the fields")
        self.text = text
        self.pieces: tuple[str | int, ...] = tuple(pieces)
        head = pieces[0] if type(pieces[0]) is str else ""
        top = head[: head.rfind("/")]
        shared = [""] + [top[:i] for i in range(1, len(top)) if top[i] == "/"]
        if top:
            shared.append(top)
        self.shared: frozenset[str] = frozenset(shared)

    def expand(self, algorithm: str, encoded: str) -> str:
        out = []
        for p in self.pieces:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append(algorithm if p < 0 else encoded[:p] if p else encoded)
        return "".join(out)

    def split(self) -> tuple[str, str, str] | None:
        """``(a, b, c)`` when the template is ``<a>{algorithm}<b>{encoded}<c>`` (one f-string)."""
        p = self.pieces
        if len(p) == 5 and p[1] == -1 and p[3] == 0:
            a, b, c = p[0], p[2], p[4]
            if isinstance(a, str) and isinstance(b, str) and isinstance(c, str):
                return a, b, c
        return None


def _digest_key(value: Any) -> str:
    """The default key: a digest string validated by the core, as a plain ``str``."""
    parse_digest(value)
    return str(value)


_LOCK = threading.RLock()
"""Guards the notifier and every cache of the pure core (the native core has the GIL)."""


class _Entry:
    """One cached descriptor: in its scope's table, the LRU ring, and its blob's chain."""

    __slots__ = ("blob", "bnext", "bprev", "desc", "key", "next", "prev", "table")

    def __init__(self, key: Any, desc: Any, blob: str, table: dict[str, _Entry] | None) -> None:
        self.key = key
        self.desc = desc
        self.blob = blob
        self.table = table
        self.prev: _Entry = self
        self.next: _Entry = self
        self.bprev: _Entry | None = None
        self.bnext: _Entry | None = None


class _Watch:
    __slots__ = ("blob", "name", "path", "root", "under")

    def __init__(
        self, root: str, blob: str | None, path: str, name: str = "", under: bool = False
    ) -> None:
        self.root = root
        self.blob = blob  # the entry key: a blob's digest, a link's driver path; None above
        self.path = path
        self.name = name  # the file of the directory whose changes drop ``blob``'s entries
        self.under = under  # above a link (blob None): gone drops what is below, not everything


class _Notifier:
    """The process's one inotify instance, shared by every StatCache (one fd, one queue check)."""

    def __init__(self) -> None:
        self.ino: Inotify | None = Inotify()
        self.watches: dict[int, list[_Watch]] = {}
        self.paths: dict[str, int] = {}
        self.blob_watches = 0
        self.caches: list[weakref.ref[StatCache]] = []

    def register(self, cache: StatCache) -> None:
        self.reap()
        self.caches = [r for r in self.caches if r() is not None]
        self.caches.append(weakref.ref(cache, functools.partial(_cache_gone, cache.root)))

    def reap(self) -> None:
        """Forget the watches of caches collected since the last call (caller holds the lock)."""
        while _GONE:
            self.gone(_GONE.pop())

    def gone(self, root: str) -> None:
        """A cache was collected: drop its root's watches unless another cache still uses it."""
        self.caches = [r for r in self.caches if r() is not None]
        if not self._live(root):
            self.forget_root(root)

    def _live(self, root: str | None) -> list[StatCache]:
        out = []
        for ref in self.caches:
            cache = ref()
            if cache is not None and (root is None or cache.root == root):
                out.append(cache)
        return out

    def poll(self) -> None:
        """Apply every queued event (caller holds the lock)."""
        if _GONE:
            self.reap()
        ino = self.ino
        if ino is None:
            return
        try:
            if not ino.pending():
                return
            events = ino.read()
        except OSError as exc:
            self.broken(exc)
            return
        for wd, mask, name in events:
            self._apply(wd, mask, name)

    def _apply(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            for cache in self._live(None):
                cache._reset()
            return
        watches = self.watches.get(wd)
        if not watches:
            return  # a watch already forgotten (its root was reset then)
        for w in list(watches):
            if w.blob is None:
                if not mask & WATCH_GONE:
                    continue
                if w.under:  # a directory above links only: drop what is below it
                    self.forget_under(w.root, w.path)
                    for cache in self._live(w.root):
                        cache._drop_under(w.path[len(w.root) :] + "/")
                else:  # a directory above the blobs: trust nothing below
                    self.forget_root(w.root)
                    for cache in self._live(w.root):
                        cache._reset()
            elif mask & WATCH_GONE or (mask & DATA_CHANGED and name == w.name):
                if mask & WATCH_GONE:
                    self.forget_watch(w)
                for cache in self._live(w.root):
                    cache._drop_blob(w.blob)

    def forget(self, which: Callable[[_Watch], bool]) -> None:
        """Remove the watches ``which`` selects (they are added again by the next fill)."""
        for path, wd in list(self.paths.items()):
            watches = self.watches.get(wd, [])
            kept = [w for w in watches if not which(w)]
            if len(kept) == len(watches):
                continue
            self.blob_watches -= sum(w.blob is not None for w in watches) - sum(
                w.blob is not None for w in kept
            )
            if not any(w.path == path for w in kept):
                del self.paths[path]
            if kept:
                self.watches[wd] = kept
            else:
                self.watches.pop(wd, None)
                if self.ino is not None:
                    self.ino.rm_watch(wd)

    def forget_root(self, root: str) -> None:
        self.forget(lambda w: w.root == root)

    def forget_watch(self, watch: _Watch) -> None:
        self.forget(lambda w: w is watch)

    def forget_under(self, root: str, path: str) -> None:
        """Forget the watches of ``path`` and below (a directory removed or renamed)."""
        below = path + "/"
        self.forget(lambda w: w.root == root and (w.path == path or w.path.startswith(below)))

    def watch_blob(self, root: str, data: str, alg: str, encoded: str) -> bool:
        """Watch the directory of the blob's data file (driver path ``data``) and every one above it."""
        if self.ino is None:
            return False
        directory, _, name = data.rpartition("/")
        path = root + directory
        if path in self.paths:
            return True
        end = 0
        while end >= 0:  # "", then every directory down to the blob's parent
            above = root + directory[:end]
            if above not in self.paths and not self._add(above, root, None, ANCESTOR_MASK):
                return False
            end = directory.find("/", end + 1)
        if self.blob_watches >= self._limit():
            self._sweep()
        if not self._add(path, root, f"{alg}:{encoded}", BLOB_MASK, name=name):
            return False
        self.blob_watches += 1
        return True

    def watch_link(self, root: str, key: str, shared: frozenset[str]) -> bool:
        """Watch the directory of link file ``root + key`` for it, and every directory above it."""
        if self.ino is None:
            return False
        directory, _, name = key.rpartition("/")
        path = root + directory
        if self._has(path, key):
            return True
        end = 0
        while end < len(directory):  # "", then every directory down to the link's parent
            suffix = directory[:end]
            above = root + suffix
            under = suffix not in shared
            if not self._has(above, None, under) and not self._add(
                above, root, None, ANCESTOR_MASK, under=under
            ):
                return False
            end = directory.find("/", end + 1)
            if end < 0:
                end = len(directory)
        if self.blob_watches >= self._limit():
            self._sweep()
        if not self._add(path, root, key, LINK_MASK, name=name):
            return False
        self.blob_watches += 1
        return True

    def _has(self, path: str, blob: str | None, under: bool = False) -> bool:
        """Whether ``path`` has the watch of that role (an entry's, or an ancestor's)."""
        wd = self.paths.get(path)
        if wd is None:
            return False
        for w in self.watches.get(wd, ()):
            if w.path == path and w.blob == blob and (blob is not None or w.under == under):
                return True
        return False

    def _limit(self) -> int:
        return max(MIN_BLOB_WATCHES, 2 * sum(c.capacity for c in self._live(None)))

    def _sweep(self) -> None:
        """Remove the watches of entries no cache holds; fills in flight are refused (epoch).

        A directory above links stays watched while a held link is below it.
        """
        held = {(c.root, blob) for c in self._live(None) for blob in c._by_blob}
        needed = set()
        for root, key in held:
            if key.startswith("/"):  # a link's driver path (a digest has no '/')
                end = key.find("/", 1)
                while end > 0:
                    needed.add(root + key[:end])
                    end = key.find("/", end + 1)

        def unheld(w: _Watch) -> bool:
            if w.blob is not None:
                return (w.root, w.blob) not in held
            return w.under and w.path not in needed

        self.forget(unheld)
        for cache in self._live(None):
            cache.epoch += 1

    def _add(
        self,
        path: str,
        root: str,
        blob: str | None,
        mask: int,
        *,
        name: str = "",
        under: bool = False,
    ) -> bool:
        assert self.ino is not None
        try:
            wd = self.ino.add_watch(path, mask)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.info("stat cache: cannot watch %s (%s): not caching blobs there", path, exc)
            return False
        self.paths[path] = wd
        self.watches.setdefault(wd, []).append(_Watch(root, blob, path, name, under))
        return True

    def broken(self, exc: OSError) -> None:
        log.warning("stat cache: inotify failed (%s); validating every hit from now on", exc)
        self.close()
        for cache in self._live(None):
            cache._reset()

    def close(self) -> None:
        ino, self.ino = self.ino, None
        self.watches.clear()
        self.paths.clear()
        self.blob_watches = 0
        if ino is not None:
            ino.close()

    def after_fork(self) -> None:
        """In a forked child: the inherited fd shares the parent's queue; start over."""
        self.close()
        try:
            self.ino = Inotify()
        except OSError as exc:
            log.warning("stat cache: no inotify after fork (%s)", exc)
        for cache in self._live(None):
            cache._reset()


_NOTIFIER: list[_Notifier] = []


_GONE: list[str] = []
"""Roots of collected caches, forgotten at the next poll or register.

A weakref callback can run inside any allocation (a GC pass), even in the
middle of the notifier's own bookkeeping on this thread, so it only queues.
"""


def _cache_gone(root: str, _ref: object) -> None:
    _GONE.append(root)  # atomic; no lock, no dict walked here


def _notifier() -> _Notifier:
    if not _NOTIFIER:
        _NOTIFIER.append(_Notifier())
    return _NOTIFIER[0]


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.RLock()  # another thread may have held it at fork time
    if _NOTIFIER:
        _NOTIFIER[0].after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class StatCache:
    """An LRU of blob descriptors for one filesystem root, kept true by inotify.

    ``blob_path`` is the template of a blob's data file below ``root``
    (``/…/{algorithm}/{encoded:.2}/{encoded}/<file>``: ``str.format`` fields
    of the digest); the caller owns the layout, the cache only expands it.
    ``key`` validates a digest and returns the key a miss is cached under and
    the fallback is asked with (default: the core's check, a plain ``str``);
    keys already of type ``str`` or ``key`` are looked up as they are.
    ``missing`` is what the fallback's ``stat`` raises for an absent digest.
    ``capacity`` bounds the entries of every scope together; ``counter_path``
    names the :class:`~ocistore._core_py.counter.SharedCounter` file that the
    descriptor cache bumps on every clear. Raises ``OSError`` when inotify is
    not available (the caller then validates every hit instead).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        blob_path: str,
        *,
        key: Callable[[Any], str] = _digest_key,
        missing: type[BaseException] = LookupError,
        capacity: int = DEFAULT_CAPACITY,
        counter_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if not callable(key):
            raise TypeError(f"key must be callable, got {key!r}")
        if not (isinstance(missing, type) and issubclass(missing, BaseException)):
            raise TypeError(f"missing must be an exception type, got {missing!r}")
        self._blob_path = _Template(blob_path, "blob_path", file=True)
        self._key = key
        self._key_type: type = key if isinstance(key, type) else str
        self._missing = missing
        self.root = os.path.abspath(os.fspath(root))
        self._capacity = capacity
        self._tables: dict[str, dict[str, _Entry]] = {}
        self._by_blob: dict[str, _Entry] = {}
        self._ring = _Entry(None, None, "", None)
        self._count = 0
        self.epoch = 0
        self._hits = self._misses = self._fills = 0
        self._invalidations = self._evictions = self._resets = 0
        self._counter: SharedCounter | None = None
        self._seen = 0
        with _LOCK:
            self._notifier = _notifier()
            self._notifier.register(self)
        if counter_path is not None:
            self._counter = SharedCounter(counter_path)
            self._seen = self._counter.value()

    # --- public ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def watching(self) -> bool:
        """Whether inotify is working (False after a failure: nothing is cached then)."""
        return self._notifier.ino is not None

    def scope(
        self, fallback: Fallback, *, scope: str = "", link: str | None = None
    ) -> StatCacheScope:
        """The statter of ``scope`` ("" is the global blob store) in front of ``fallback``.

        ``link`` (repository scopes) is the template of the OS path of a key's
        link file (``{algorithm}`` and ``{encoded}`` fields): every hit checks
        that something other than a directory is there.
        """
        template = None if link is None else _Template(link, "link template", file=False)
        with _LOCK:
            table = self._tables.get(scope)
            if table is None:
                table = self._tables[scope] = {}
        return StatCacheScope(self, table, fallback, scope, template)

    def links(self, read: Callable[[str], Any], *, scope: str = "links") -> LinkCacheScope:
        """The cache of link files read by ``read(driver_path)``, in ``scope``'s entries.

        ``read`` is called on a miss with the driver path (absolute, below the
        root) of a file; what it returns is cached until the file or a
        directory above it changes (see the module docstring), what it raises
        is not cached.
        """
        with _LOCK:
            table = self._tables.get(scope)
            if table is None:
                table = self._tables[scope] = {}
        return LinkCacheScope(self, table, read, scope)

    def clear(self) -> None:
        """Drop every entry (and refuse the fills in flight)."""
        with _LOCK:
            self._reset()

    def stats(self) -> dict[str, int]:
        """Entry count and the counters: hits, misses, fills, invalidations, evictions, resets."""
        with _LOCK:
            return {
                "entries": self._count,
                "capacity": self._capacity,
                "hits": self._hits,
                "misses": self._misses,
                "fills": self._fills,
                "invalidations": self._invalidations,
                "evictions": self._evictions,
                "resets": self._resets,
                "watching": int(self.watching),
            }

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Drop every entry and unmap the counter (the cache keeps working, uncached)."""
        with _LOCK:
            self._reset()
            counter, self._counter = self._counter, None
            if counter is not None:
                counter.close()

    def __repr__(self) -> str:
        return f"<StatCache {self.root!r} {self._count}/{self._capacity}>"

    # --- under the lock ---------------------------------------------------------------

    def _refresh(self) -> None:
        counter = self._counter
        if counter is not None:
            value = counter.value()
            if value != self._seen:
                self._seen = value
                self._reset()
        self._notifier.poll()

    def _reset(self) -> None:
        self.epoch += 1
        if self._count:
            self._resets += 1
        for table in self._tables.values():
            table.clear()
        self._by_blob.clear()
        ring = self._ring
        ring.prev = ring.next = ring
        self._count = 0

    def _drop_blob(self, blob: str) -> None:
        self.epoch += 1
        while (e := self._by_blob.get(blob)) is not None:
            self._remove(e)
            self._invalidations += 1

    def _drop_under(self, prefix: str) -> None:
        """Drop the link entries whose driver path starts with ``prefix`` (a directory + '/')."""
        self.epoch += 1
        for key in [k for k in self._by_blob if k.startswith(prefix)]:
            self._drop_blob(key)

    def _touch(self, e: _Entry) -> None:
        ring = self._ring
        if ring.next is e:
            return
        e.prev.next = e.next
        e.next.prev = e.prev
        e.next = ring.next
        e.prev = ring
        ring.next.prev = e
        ring.next = e

    def _remove(self, e: _Entry) -> None:
        e.prev.next = e.next
        e.next.prev = e.prev
        e.prev = e.next = e
        if e.bprev is not None:
            e.bprev.bnext = e.bnext
        elif e.bnext is not None:
            self._by_blob[e.blob] = e.bnext
        else:
            self._by_blob.pop(e.blob, None)
        if e.bnext is not None:
            e.bnext.bprev = e.bprev
        e.bprev = e.bnext = None
        if e.table is not None:
            e.table.pop(e.key, None)
            e.table = None
        self._count -= 1

    def _forget_key(self, table: dict[Any, _Entry], key: Any) -> None:
        """Drop ``key``'s entry of ``table``; the epoch moves, so a fill in flight is not stored."""
        with _LOCK:
            self.epoch += 1
            e = table.get(key)
            if e is not None:
                self._remove(e)

    def _insert(
        self, table: dict[str, _Entry], key: str, desc: Any, blob: str | None = None
    ) -> None:
        old = table.get(key)
        if old is not None:
            self._remove(old)
        if blob is None:
            blob = str(desc.digest)
        e = _Entry(key, desc, blob, table)
        table[key] = e
        ring = self._ring
        e.next = ring.next
        e.prev = ring
        ring.next.prev = e
        ring.next = e
        head = self._by_blob.get(blob)
        if head is not None:
            head.bprev = e
            e.bnext = head
        self._by_blob[blob] = e
        self._count += 1
        self._fills += 1
        while self._count > self._capacity:
            self._remove(ring.prev)
            self._evictions += 1

    def _watch(self, dgst: str) -> bool:
        alg, _, encoded = dgst.partition(":")
        data = self._blob_path.expand(alg, encoded)
        return self._notifier.watch_blob(self.root, data, alg, encoded)

    def _data_matches(self, blob: str, size: int) -> bool:
        alg, _, encoded = blob.partition(":")
        try:
            st = os.stat(self.root + self._blob_path.expand(alg, encoded))
        except OSError:
            return False
        return stat_mod.S_ISREG(st.st_mode) and st.st_size == size


class StatCacheScope:
    """One scope of a :class:`StatCache`: ``stat``, ``stat_many``, ``set_descriptor``, ``clear``.

    Cheap to make (one per repository view): the entries live in the cache.
    """

    __slots__ = ("_cache", "_la", "_lb", "_lc", "_link", "_table", "fallback", "scope")

    def __init__(
        self,
        cache: StatCache,
        table: dict[str, _Entry],
        fallback: Fallback,
        scope: str,
        link: _Template | None,
    ) -> None:
        self._cache = cache
        self._table = table
        self.fallback = fallback
        self.scope = scope
        self._link = link
        # <a>{algorithm}<b>{encoded}<c> (every template the storage layer passes): one f-string
        parts = None if link is None else link.split()
        self._la: str | None = None if parts is None else parts[0]
        self._lb, self._lc = ("", "") if parts is None else parts[1:]

    def stat(self, digest: str) -> Any:
        """The value of ``digest`` in this scope; the fallback's errors (or the key's) as they are."""
        cache = self._cache
        kind = type(digest)
        if kind is not str and kind is not cache._key_type:
            digest = cache._key(digest)  # validated (or raises); then looked up as any key
        with _LOCK:
            cache._refresh()
            e = self._hit(digest)
            if e is not None:
                return e.desc
        return self._miss(digest)

    def stat_many(self, digests: Iterable[str]) -> dict[Any, Any]:
        """The values of ``digests`` that exist in this scope (misses left out).

        Hits are answered here; the misses go to the fallback in one call
        (``stat_many`` when it has one: one LMDB read transaction).
        """
        cache = self._cache
        found: dict[Any, Any] = {}
        pending: list[str] = []
        key = cache._key
        key_type = cache._key_type
        with _LOCK:
            cache._refresh()
            for d in digests:
                kind = type(d)
                if kind is not str and kind is not key_type:
                    d = key(d)
                e = self._hit(d)
                if e is None:
                    pending.append(d)
                else:
                    found[e.key] = e.desc
        if not pending:
            return found
        misses = list(dict.fromkeys(key(d) for d in pending))
        with _LOCK:
            cache._misses += len(misses)
            cache._refresh()
            watched = [cache._watch(m) for m in misses]
            token = cache.epoch
        many = getattr(self.fallback, "stat_many", None)
        if many is not None:
            got: Mapping[Any, Any] = dict(many(misses))
        else:
            got = {}
            missing = cache._missing
            for m in misses:
                try:
                    got[m] = self.fallback.stat(m)
                except missing:
                    continue
        for m, w in zip(misses, watched, strict=True):
            desc = got.get(m)
            if desc is not None:
                found[m] = desc
                self._fill(m, desc, token, w)
        return found

    def set_descriptor(self, digest: str, desc: Any) -> None:
        """Set in the fallback; the entry here is dropped and refilled by the next stat."""
        dgst = self._cache._key(digest)
        try:
            self.fallback.set_descriptor(dgst, desc)
        finally:
            self._forget(dgst)

    def clear(self, digest: str) -> None:
        """Clear in the fallback (which deletes a repository's link), then here."""
        dgst = self._cache._key(digest)
        try:
            self.fallback.clear(dgst)
        finally:
            self._forget(dgst)

    # --- internals ---------------------------------------------------------------------

    def _hit(self, key: str) -> _Entry | None:
        """The entry of ``key`` if it is still true (caller holds the lock)."""
        cache = self._cache
        e = self._table.get(key)
        if e is None:
            return None
        if self._link is None or self._link_ok(e.key):
            cache._touch(e)
            cache._hits += 1
            return e
        cache._remove(e)
        cache._invalidations += 1
        return None

    def _link_ok(self, key: str) -> bool:
        alg, _, encoded = key.partition(":")
        la = self._la
        if la is not None:
            path = f"{la}{alg}{self._lb}{encoded}{self._lc}"
        else:
            link = self._link
            assert link is not None
            path = link.expand(alg, encoded)
        try:
            st = os.stat(path)
        except OSError:
            return False
        return not stat_mod.S_ISDIR(st.st_mode)

    def _miss(self, digest: str) -> Any:
        cache = self._cache
        dgst = cache._key(digest)
        with _LOCK:
            cache._misses += 1
            cache._refresh()
            watched = cache._watch(dgst)
            token = cache.epoch
        desc = self.fallback.stat(dgst)
        self._fill(dgst, desc, token, watched)
        return desc

    def _fill(self, key: str, desc: Described, token: int, watched: bool) -> None:
        """Cache ``desc`` unless an event or a clear came after ``token`` (the answer may be stale)."""
        cache = self._cache
        with _LOCK:
            cache._refresh()
            if cache.epoch != token:
                return
            blob = desc.digest
            if blob != key:
                # An alias (sha512, blake3) or a link naming another blob: watch
                # that blob, then check its data is (still) there.
                if not (cache._watch(blob) and cache._data_matches(blob, desc.size)):
                    return
                cache._refresh()
                if cache.epoch != token:
                    return
            elif not watched:
                return
            cache._insert(self._table, key, desc)

    def _forget(self, dgst: str) -> None:
        self._cache._forget_key(self._table, dgst)

    def __repr__(self) -> str:
        return f"<StatCacheScope {self.scope!r} of {self._cache!r}>"


def _check_link_path(path: str) -> None:
    """A driver path below the root: absolute, no empty, ``.`` or ``..`` component."""
    if type(path) is not str or not path.startswith("/") or "\0" in path:
        raise ValueError(f"link path must be an absolute driver path, got {path!r}")
    for part in path[1:].split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"link path must be an absolute driver path, got {path!r}")


class LinkCacheScope:
    """Link files of a :class:`StatCache`'s root, read through ``fallback`` and kept true by inotify.

    ``read(path)`` answers from the cache when the file has not changed since
    it was read (one queue check), else calls ``fallback(path)``. Cheap to
    make: the entries live in the cache.
    """

    __slots__ = ("_cache", "_table", "fallback", "scope")

    def __init__(
        self, cache: StatCache, table: dict[str, _Entry], fallback: Callable[[str], Any], scope: str
    ) -> None:
        self._cache = cache
        self._table = table
        self.fallback = fallback
        self.scope = scope

    def read(self, path: str) -> Any:
        """What ``fallback(path)`` returns for link file ``path`` (a driver path); its errors."""
        cache = self._cache
        with _LOCK:
            cache._refresh()
            e = self._table.get(path)
            if e is not None:
                cache._touch(e)
                cache._hits += 1
                return e.desc
            _check_link_path(path)
            cache._misses += 1
            watched = cache._notifier.watch_link(cache.root, path, cache._blob_path.shared)
            token = cache.epoch
        value = self.fallback(path)
        if watched:
            with _LOCK:
                cache._refresh()
                if cache.epoch == token:
                    cache._insert(self._table, path, value, path)
        return value

    def forget(self, path: str) -> None:
        """Drop ``path``'s entry (after writing the link: the next read asks ``fallback``)."""
        self._cache._forget_key(self._table, path)

    def __repr__(self) -> str:
        return f"<LinkCacheScope {self.scope!r} of {self._cache!r}>"
