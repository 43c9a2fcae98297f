"""The caching statter: a decorator that asks a cache first and never fails because of it.

distribution ``registry/storage/cache/cachedblobdescriptorstore.go``, plus the
rule of DESIGN.md §2 that a cache never makes a deleted blob visible: a hit is
passed to ``validate`` (the storage layer's cheap existence check of the link
or the data), and an entry whose blob is gone is cleared and answered by the
backend, which raises :class:`~ocistore.errors.BlobUnknown`.

Failures of the cache itself (anything but ``BlobUnknown``) are logged on this
module's logger and counted in :class:`~ocistore.cache.base.CacheMetrics`; the
request is then answered by the backend as if there were no cache. A
:class:`~ocistore.errors.CacheUnavailable` (a cache server that is down, which
its provider reports once) is logged at debug level only. As in
distribution, a stat that met a cache error does not refill the cache (a broken
cache would otherwise see a write per request).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable

from ocistore.cache.base import BlobDescriptorService, BlobStatter, CacheMetrics
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import BlobUnknown, CacheUnavailable

log = logging.getLogger(__name__)


class _Verdict(enum.Enum):
    PRESENT = 1
    GONE = 2
    UNKNOWN = 3


Validator = Callable[[Digest, Descriptor], bool]
"""``validate(digest, descriptor) -> bool``: False when the cached blob is gone."""


class CachedBlobStatter:
    """A :class:`BlobDescriptorService` that prefers ``cache`` and falls back to ``backend``."""

    __slots__ = ("_backend", "_cache", "_validate", "metrics")

    def __init__(
        self,
        cache: BlobDescriptorService,
        backend: BlobStatter,
        *,
        validate: Validator | None = None,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self._cache = cache
        self._backend = backend
        self._validate = validate
        self.metrics = metrics if metrics is not None else CacheMetrics()

    @property
    def cache(self) -> BlobDescriptorService:
        return self._cache

    @property
    def backend(self) -> BlobStatter:
        return self._backend

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        fill = True
        try:
            desc = self._cache.stat(dgst)
        except BlobUnknown:
            self.metrics.count(misses=1)
        except Exception as exc:
            self._cache_failed("stat", dgst, exc)
            self.metrics.count(misses=1)
            fill = False
        else:
            verdict = self._check(dgst, desc)
            if verdict is _Verdict.PRESENT:
                self.metrics.count(hits=1)
                return desc
            self.metrics.count(misses=1, invalidations=int(verdict is _Verdict.GONE))

        desc = self._backend.stat(dgst)
        if fill:
            try:
                self._cache.set_descriptor(dgst, desc)
            except Exception as exc:
                self._cache_failed("set_descriptor", dgst, exc)
        return desc

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """:meth:`stat` for many digests: the ones that exist (misses left out).

        A cache with ``stat_many`` is asked once (LMDB: one read transaction);
        each hit is validated as in :meth:`stat`; the misses are asked of the
        backend one by one and filled in one ``set_many`` when the cache has it.
        """
        wanted = list(dict.fromkeys(as_digest(d) for d in digests))
        found: dict[Digest, Descriptor] = {}
        if not wanted:
            return found
        cached: dict[Digest, Descriptor] = {}
        fill = True
        many = getattr(self._cache, "stat_many", None)
        try:
            if many is not None:
                cached = dict(many(wanted))
            else:
                for dgst in wanted:
                    try:
                        cached[dgst] = self._cache.stat(dgst)
                    except BlobUnknown:
                        continue
        except Exception as exc:
            self._cache_failed("stat_many", wanted[0], exc)
            cached, fill = {}, False
        missing: list[Digest] = []
        for dgst in wanted:
            desc = cached.get(dgst)
            if desc is not None:
                verdict = self._check(dgst, desc)
                if verdict is _Verdict.PRESENT:
                    self.metrics.count(hits=1)
                    found[dgst] = desc
                    continue
                self.metrics.count(invalidations=int(verdict is _Verdict.GONE))
            self.metrics.count(misses=1)
            missing.append(dgst)
        filled: list[tuple[Digest | str, Descriptor]] = []
        for dgst in missing:
            try:
                found[dgst] = desc = self._backend.stat(dgst)
            except BlobUnknown:
                continue
            filled.append((dgst, desc))
        if fill and filled:
            self._fill_many(filled)
        return found

    def _fill_many(self, items: list[tuple[Digest | str, Descriptor]]) -> None:
        set_many = getattr(self._cache, "set_many", None)
        try:
            if set_many is not None:
                set_many(items)
            else:
                for dgst, desc in items:
                    self._cache.set_descriptor(dgst, desc)
        except Exception as exc:
            self._cache_failed("set_many", as_digest(items[0][0]), exc)

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        """Set in the backend (if it can), then in the cache (whose failure is only logged)."""
        dgst = as_digest(digest)
        backend_set = getattr(self._backend, "set_descriptor", None)
        if backend_set is not None:
            backend_set(dgst, desc)
        try:
            self._cache.set_descriptor(dgst, desc)
        except Exception as exc:
            self._cache_failed("set_descriptor", dgst, exc)

    def clear(self, digest: Digest | str) -> None:
        """Clear the backend first (so a concurrent stat cannot refill from it), then the cache.

        ``BlobUnknown`` comes from the backend when it can clear; a backend that
        cannot leaves the answer to the cache.
        """
        dgst = as_digest(digest)
        backend_clear = getattr(self._backend, "clear", None)
        if backend_clear is not None:
            backend_clear(dgst)
        try:
            self._cache.clear(dgst)
        except BlobUnknown:
            if backend_clear is None:
                raise
        except Exception as exc:
            self._cache_failed("clear", dgst, exc)

    def _check(self, dgst: Digest, desc: Descriptor) -> _Verdict:
        """Run ``validate`` on a hit; the entry of a blob that is gone is cleared."""
        if self._validate is None:
            return _Verdict.PRESENT
        try:
            if self._validate(dgst, desc):
                return _Verdict.PRESENT
        except Exception as exc:
            # Unable to tell: the backend, which is the truth, answers this one.
            self.metrics.count(errors=1)
            log.warning("validating cached descriptor of %s failed: %r", dgst, exc)
            return _Verdict.UNKNOWN
        try:
            self._cache.clear(dgst)
        except BlobUnknown:
            pass
        except Exception as exc:
            self._cache_failed("clear", dgst, exc)
        return _Verdict.GONE

    def _cache_failed(self, operation: str, dgst: Digest, exc: Exception) -> None:
        self.metrics.count(errors=1)
        if isinstance(exc, CacheUnavailable):
            # The provider warned once when its server went away; not once per request.
            log.debug("descriptor cache %s of %s skipped: %s", operation, dgst, exc)
            return
        log.error("descriptor cache %s of %s failed: %r", operation, dgst, exc)

    def __repr__(self) -> str:
        return f"CachedBlobStatter(cache={self._cache!r}, backend={self._backend!r})"
