"""The descriptor-cache interfaces (distribution ``registry/storage/cache/cache.go``).

A descriptor cache answers "what is blob X?" (size, media type, canonical
digest) without touching the storage driver. It is never the source of truth:
every provider may forget anything at any time, and the storage layer wraps it
in :class:`~ocistore.cache.cached.CachedBlobStatter`, which validates hits and
swallows cache failures so that a broken cache can never fail a request.

Digest arguments accept a :class:`~ocistore.digest.Digest` or its string form.
An entry's key and its descriptor's digest may differ: a sha512 or blake3 key is
an alias of the sha256-addressed descriptor (distribution's cross-digest link).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest

MEDIA_TYPE_MAX_BYTES = 0xFFFF
"""The longest media type (UTF-8 bytes) a cache accepts; far above any real one."""


@runtime_checkable
class BlobStatter(Protocol):
    """Anything that can describe a blob (distribution ``distribution.BlobStatter``)."""

    def stat(self, digest: Digest | str) -> Descriptor:
        """Return the blob's descriptor; raise :class:`~ocistore.errors.BlobUnknown` if absent."""
        ...


@runtime_checkable
class BlobDescriptorService(Protocol):
    """A statter whose entries can be set and cleared (distribution ``BlobDescriptorService``)."""

    def stat(self, digest: Digest | str) -> Descriptor:
        """Return the cached descriptor; raise :class:`~ocistore.errors.BlobUnknown` on a miss."""
        ...

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        """Remember ``desc`` under ``digest`` (which may be an alias of ``desc.digest``).

        Raises :class:`~ocistore.errors.DigestInvalid` for a bad digest and
        :class:`ValueError` for a descriptor a cache must not hold (no size, wrong type).
        """
        ...

    def clear(self, digest: Digest | str) -> None:
        """Forget ``digest``; raise :class:`~ocistore.errors.BlobUnknown` if it was not there."""
        ...


@runtime_checkable
class BlobDescriptorCacheProvider(BlobDescriptorService, Protocol):
    """A global descriptor cache that also hands out repository-scoped views."""

    def repository_scoped(self, name: str) -> BlobDescriptorService:
        """The view of repository ``name``; raises :class:`~ocistore.errors.NameInvalid`."""
        ...

    def close(self) -> None:
        """Release resources (files, maps). A provider holding files refuses further use."""
        ...


@runtime_checkable
class GenerationalCache(Protocol):
    """A cache with a counter that every ``clear`` bumps (in any process sharing it).

    An in-process cache in front of a shared one compares the counter per request
    and drops its entries when it moved, so that a blob cleared by another worker is
    never served from a stale local copy.
    """

    def generation(self) -> int: ...


def validate_descriptor(key: Digest | str, desc: Descriptor) -> tuple[Digest, Descriptor]:
    """Check what a cache may hold and return ``(key, descriptor)`` in cache form.

    distribution's ``cache.ValidateDescriptor``: a valid digest, a known size and a
    media type. Like distribution's redis cache, a key that differs from
    ``desc.digest`` must use another algorithm (an alias); two different digests
    of one algorithm cannot name the same content. Only the digest, size and media
    type are kept: they are what a blob stat answers, so every provider returns
    the same thing whatever it stores.

    Raises :class:`~ocistore.errors.DigestInvalid` for the key and :class:`ValueError`
    for the descriptor.
    """
    dgst = as_digest(key)
    if not isinstance(desc, Descriptor):
        raise TypeError(f"expected a Descriptor, got {type(desc).__name__}")
    if desc.size < 0:
        raise ValueError(f"cache: invalid length in descriptor of {desc.digest}: {desc.size} < 0")
    if not desc.media_type:
        raise ValueError(f"cache: empty media type on descriptor of {desc.digest}")
    try:
        encoded = desc.media_type.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"cache: media type of {desc.digest} is not valid text") from None
    if len(encoded) > MEDIA_TYPE_MAX_BYTES:
        raise ValueError(
            f"cache: media type of {desc.digest} longer than {MEDIA_TYPE_MAX_BYTES} bytes"
        )
    if dgst != desc.digest and dgst.algorithm == desc.digest.algorithm:
        raise ValueError(
            f"cache: digests differ but their algorithm does not: {dgst} != {desc.digest}"
        )
    if desc.urls or desc.annotations or desc.platform or desc.artifact_type:
        desc = Descriptor(desc.digest, desc.size, desc.media_type)
    return dgst, desc


@dataclass(slots=True)
class CacheMetrics:
    """Counters kept by :class:`~ocistore.cache.cached.CachedBlobStatter`.

    ``errors`` counts cache failures that were swallowed (logged, then answered
    by the backend); ``invalidations`` counts hits dropped because the blob was
    gone. Increments are guarded by a lock so concurrent threads never lose counts.
    """

    hits: int = 0
    misses: int = 0
    errors: int = 0
    invalidations: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(
        self, *, hits: int = 0, misses: int = 0, errors: int = 0, invalidations: int = 0
    ) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.errors += errors
            self.invalidations += invalidations

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Fraction of stats answered by the cache (0.0 before any request)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "errors": self.errors,
                "invalidations": self.invalidations,
            }

    def reset(self) -> None:
        with self._lock:
            self.hits = self.misses = self.errors = self.invalidations = 0
