"""The registry and its repositories (distribution ``registry/storage/registry.go``).

:class:`Registry` holds what every repository shares: the driver, the
descriptor cache, the global blob store and its statter, and the options
(Go's functional options become keyword-only arguments). :meth:`Registry.repository`
validates a name and hands out a cheap :class:`Repository` view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from ocistore.cache.base import BlobDescriptorCacheProvider, BlobDescriptorService, CacheMetrics
from ocistore.driver.base import DEFAULT_URL_EXPIRY, MAX_URL_EXPIRY, StorageDriver
from ocistore.errors import NameInvalid, NameUnknown, PathNotFound
from ocistore.reference import validate_name
from ocistore.storage import hotcache, paths
from ocistore.storage.blobstore import BlobStore
from ocistore.storage.gcfence import GcFence
from ocistore.storage.linkedblobstore import LinkedBlobStore
from ocistore.storage.statter import MANIFESTS, GlobalBlobStatter, with_cache
from ocistore.storage.taglocks import TagLocks, default_tag_locks

if TYPE_CHECKING:
    from ocistore._core_types import StatCache
    from ocistore.storage.manifeststore import ManifestStore
    from ocistore.storage.tagstore import TagStore

__all__ = ["Registry", "Repository"]

_STORABLE_NAME: Final = re.compile(r"[A-Za-z0-9._/-]+")

PatternLike = str | re.Pattern[str]


def _compile(pattern: PatternLike | None) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern)


class Registry:
    """A registry over one storage driver.

    Options (all keyword-only; defaults are distribution's):

    - ``cache``: a descriptor cache provider (``None``: every stat asks the driver).
    - ``delete_enabled``: allow deleting blobs and manifests (else ``Unsupported``).
    - ``resumable_digest``: store hash states on close and resume from them
      (effective on a core with ``HASH_STATES``; otherwise commit re-reads).
    - ``redirect``: blob reads may be redirected to URLs of the driver, if it has
      ``url_for`` (:class:`~ocistore.driver.base.URLForDriver`; distribution's
      ``EnableRedirect``); ``redirect_expiry``: their lifetime in seconds.
    - ``manifest_urls_allow`` / ``manifest_urls_deny``: regexes (strings or
      compiled) for foreign layer URLs; ``None`` allow means distribution's
      default (refuse foreign URLs unless an allow pattern admits them).
    - ``validate_index_children``: an index may only reference manifests the
      repository has; ``index_platforms`` limits that check to these platforms.
    - ``stat_cache_size``: entries of the in-process stat cache put in front of
      ``cache`` on a local filesystem root (0: none; see :mod:`ocistore.storage.hotcache`).
    - ``tag_locks``: what tag writes, untags and manifest deletes hold
      (:mod:`ocistore.storage.taglocks`; default: lock files beside a filesystem
      root, in-process locks on other drivers).
    """

    def __init__(
        self,
        driver: StorageDriver,
        *,
        cache: BlobDescriptorCacheProvider | None = None,
        delete_enabled: bool = False,
        resumable_digest: bool = True,
        redirect: bool = False,
        redirect_expiry: float = DEFAULT_URL_EXPIRY,
        manifest_urls_allow: PatternLike | None = None,
        manifest_urls_deny: PatternLike | None = None,
        validate_index_children: bool = True,
        index_platforms: Iterable[Mapping[str, Any]] | None = None,
        stat_cache_size: int = hotcache.DEFAULT_SIZE,
        tag_locks: TagLocks | None = None,
    ) -> None:
        self.driver = driver
        self.cache = cache
        self.gc_fence = GcFence(driver)
        """Pins what this registry relies on while a collection runs (docs/gc.md)."""
        self.delete_enabled = delete_enabled
        self.resumable_digest = resumable_digest
        if not 1 <= redirect_expiry <= MAX_URL_EXPIRY:
            raise ValueError(
                f"redirect_expiry {redirect_expiry!r}: must be 1 to {MAX_URL_EXPIRY:.0f} seconds"
            )
        self.redirect = redirect
        self.redirect_expiry = redirect_expiry
        self.manifest_urls_allow = _compile(manifest_urls_allow)
        self.manifest_urls_deny = _compile(manifest_urls_deny)
        self.validate_index_children = validate_index_children
        self.index_platforms: tuple[Mapping[str, Any], ...] | None = (
            tuple(index_platforms) if index_platforms is not None else None
        )
        self.stat_cache: StatCache | None = hotcache.open_stat_cache(
            driver, cache, size=stat_cache_size
        )
        """The in-process stat cache (None: every cache hit is validated against the driver)."""
        self.cache_metrics = CacheMetrics()
        """Hits and misses of the descriptor cache, over every statter of this registry."""
        self.blob_statter: BlobDescriptorService = hotcache.front(
            self.stat_cache, with_cache(cache, GlobalBlobStatter(driver), self.cache_metrics)
        )
        """The global statter (cached when there is a cache): a blob exists iff its data does."""
        self.tag_locks: TagLocks = tag_locks if tag_locks is not None else default_tag_locks(driver)
        """Held by tag writes, untags and manifest deletes (:mod:`ocistore.storage.taglocks`)."""
        self.blobs = BlobStore(
            driver, self.blob_statter, redirect_expiry=redirect_expiry if redirect else None
        )
        """The global blob store; ``blobs.enumerate()`` walks every blob (garbage collection)."""

    def repository(self, name: str) -> Repository:
        """The repository ``name`` (it need not exist yet); raises :class:`NameInvalid`."""
        validate_name(name)
        if _STORABLE_NAME.fullmatch(name) is None:
            # distribution's grammar allows a port ("host:5000/x"), but no
            # storage driver path can hold ':'.
            raise NameInvalid(name, "contains characters a storage path cannot hold (':')")
        return Repository(self, name)

    def repositories(self, n: int = 100, last: str | None = None) -> list[str]:
        """Up to ``n`` repository names after ``last``, in distribution's catalog order."""
        from ocistore.storage import catalog

        return catalog.repositories(self.driver, n, last)

    def enumerate(self) -> Iterator[str]:
        """Every repository name, in catalog order."""
        from ocistore.storage import catalog

        return catalog.enumerate_repositories(self.driver)

    def remove(self, name: str) -> None:
        """Delete repository ``name`` with everything under it; raises :class:`NameUnknown`.

        Blobs stay in ``blobs/`` until garbage collection; a cached descriptor
        cannot revive them here since every cache hit checks the link.
        """
        self.repository(name)
        try:
            self.driver.delete(paths.path_for(paths.RepositoryRoot(name)))
        except PathNotFound:
            raise NameUnknown(name) from None


class Repository:
    """One repository: ``blobs`` (layers and configs), ``manifests``, ``tags``.

    ``manifest_blobs`` is the linked store over ``_manifests/revisions`` that
    the manifest store keeps its payloads in (distribution links manifests
    exactly like layers, in another directory).
    """

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name

    @cached_property
    def blobs(self) -> LinkedBlobStore:
        return LinkedBlobStore(self.registry, self.name)

    @cached_property
    def manifest_blobs(self) -> LinkedBlobStore:
        return LinkedBlobStore(self.registry, self.name, layout=MANIFESTS)

    @cached_property
    def manifests(self) -> ManifestStore:
        from ocistore.storage.manifeststore import ManifestStore

        return ManifestStore(self)

    @cached_property
    def tags(self) -> TagStore:
        from ocistore.storage.tagstore import TagStore

        return TagStore(self)

    def __repr__(self) -> str:
        return f"Repository({self.name!r})"
