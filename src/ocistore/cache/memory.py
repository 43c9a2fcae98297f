"""The in-memory descriptor cache: one bounded LRU shared by the global and repository scopes.

Semantics follow distribution's caches (``cache/memory/memory.go`` and the redis
provider, which spells out the repository model):

- The global scope maps a digest to its descriptor. Setting a digest that is
  already known replaces its digest and size but keeps the first media type,
  so a repository cannot change what others see (distribution: "we already know
  it, do nothing" / ``HSETNX mediatype``).
- A repository scope records membership plus a *repository-local* media type.
  Its ``stat`` needs both the membership and the global descriptor, and answers
  with the repository's media type. Its ``set_descriptor`` writes membership,
  the local media type and the global entry.
- A key whose algorithm differs from the descriptor's digest (a sha512 or blake3
  alias of a sha256 blob) also sets the canonical digest, in both scopes.
- ``clear`` removes one entry of one scope and raises
  :class:`~ocistore.errors.BlobUnknown` when it was absent (as the redis provider).

Global entries and repository entries (keyed by ``(name, digest)``) share one
LRU of ``size`` entries, like distribution's single ARC cache; ``size <= 0``
means unbounded, as there. Every operation holds one lock, so instances are
safe to share between threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from ocistore.cache.base import BlobDescriptorService, validate_descriptor
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import BlobUnknown
from ocistore.reference import validate_name

DEFAULT_SIZE: Final = 10_000

# A global key is the digest string; a repository key is (name, digest).
_Key = str | tuple[str, str]


class MemoryDescriptorCache:
    """A bounded, thread-safe LRU descriptor cache (distribution's ``inmemory`` provider)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"size must be an int, got {size!r}")
        self._size = size if size > 0 else None
        self._lock = threading.Lock()
        self._global: OrderedDict[_Key, Descriptor | str] = OrderedDict()
        self._generation = 0
        self._closed = False

    # --- BlobDescriptorService (global scope) -------------------------------------

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        with self._lock:
            desc = self._get(dgst)
        if not isinstance(desc, Descriptor):
            raise BlobUnknown(dgst)
        return desc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The cached descriptors of ``digests`` (misses left out), under one lock."""
        wanted = [as_digest(d) for d in digests]
        with self._lock:
            found = {d: self._get(d) for d in wanted}
        return {d: v for d, v in found.items() if isinstance(v, Descriptor)}

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        dgst, desc = validate_descriptor(digest, desc)
        with self._lock:
            self._set_global(dgst, desc)

    def clear(self, digest: Digest | str) -> None:
        dgst = as_digest(digest)
        with self._lock:
            self._generation += 1
            if self._global.pop(dgst, None) is None:
                raise BlobUnknown(dgst)

    # --- provider ---------------------------------------------------------------------

    def repository_scoped(self, name: str) -> BlobDescriptorService:
        return _RepositoryScope(self, validate_name(name))

    def close(self) -> None:
        """Drop every entry; the cache stays usable (there is nothing to release)."""
        with self._lock:
            self._global.clear()
            self._generation += 1

    def generation(self) -> int:
        """Bumped by every ``clear`` in any scope (see :class:`~ocistore.cache.base.GenerationalCache`)."""
        return self._generation

    def set_many(self, items: Iterable[tuple[Digest | str, Descriptor]]) -> None:
        """``set_descriptor`` for many entries (validated first, then set under one lock)."""
        checked = [validate_descriptor(d, desc) for d, desc in items]
        with self._lock:
            for dgst, desc in checked:
                self._set_global(dgst, desc)

    def __len__(self) -> int:
        """Entries held, global and repository-scoped together."""
        return len(self._global)

    @property
    def size(self) -> int | None:
        """The bound (``None``: unbounded)."""
        return self._size

    def __enter__(self) -> MemoryDescriptorCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals (callers hold the lock) --------------------------------------------------

    def _get(self, key: _Key) -> Descriptor | str | None:
        value = self._global.get(key)
        if value is not None:
            self._global.move_to_end(key)
        return value

    def _put(self, key: _Key, value: Descriptor | str) -> None:
        self._global[key] = value
        self._global.move_to_end(key)
        if self._size is not None:
            while len(self._global) > self._size:
                self._global.popitem(last=False)

    def _set_global(self, dgst: Digest, desc: Descriptor) -> None:
        if dgst != desc.digest:
            self._set_global(desc.digest, desc)
        known = self._get(dgst)
        if isinstance(known, Descriptor) and known.media_type != desc.media_type:
            desc = Descriptor(desc.digest, desc.size, known.media_type)
        self._put(dgst, desc)


class _RepositoryScope:
    """One repository's view: membership and the repository-local media type."""

    __slots__ = ("_name", "_parent")

    def __init__(self, parent: MemoryDescriptorCache, name: str) -> None:
        self._parent = parent
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        with self._parent._lock:
            desc = self._stat(dgst)
        if desc is None:
            raise BlobUnknown(dgst)
        return desc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The cached descriptors of ``digests`` in this repository, under one lock."""
        wanted = [as_digest(d) for d in digests]
        with self._parent._lock:
            found = {d: self._stat(d) for d in wanted}
        return {d: v for d, v in found.items() if v is not None}

    def _stat(self, dgst: Digest) -> Descriptor | None:
        parent = self._parent
        media_type = parent._get((self._name, dgst))
        if not isinstance(media_type, str):
            return None
        desc = parent._get(dgst)
        if not isinstance(desc, Descriptor):
            return None
        if desc.media_type != media_type:
            desc = Descriptor(desc.digest, desc.size, media_type)
        return desc

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        dgst, desc = validate_descriptor(digest, desc)
        with self._parent._lock:
            self._set(dgst, desc)

    def set_many(self, items: Iterable[tuple[Digest | str, Descriptor]]) -> None:
        checked = [validate_descriptor(d, desc) for d, desc in items]
        with self._parent._lock:
            for dgst, desc in checked:
                self._set(dgst, desc)

    def clear(self, digest: Digest | str) -> None:
        dgst = as_digest(digest)
        parent = self._parent
        with parent._lock:
            parent._generation += 1
            if parent._global.pop((self._name, dgst), None) is None:
                raise BlobUnknown(dgst)

    def _set(self, dgst: Digest, desc: Descriptor) -> None:
        parent = self._parent
        if dgst != desc.digest:
            self._set(desc.digest, desc)
        parent._set_global(dgst, desc)
        parent._put((self._name, dgst), desc.media_type)

    def __repr__(self) -> str:
        return f"<repository {self._name!r} of {self._parent!r}>"
