"""Statters: what a blob is, answered from the driver (distribution ``blobStatter``, ``linkedBlobStatter``).

Two layers, as in distribution:

- :class:`GlobalBlobStatter` stats ``blobs/<alg>/<xx>/<hex>/data``: the blob
  exists iff that path is a file.
- :class:`LinkedBlobStatter` first reads the repository's link
  (``_layers/<alg>/<hex>/link`` or ``_manifests/revisions/…/link``), then asks
  the global statter about the digest the link names. A blob pushed as sha512
  or blake3 is an alias link whose content is the sha256 digest.

Either may be wrapped in the cache's ``CachedBlobStatter``; each offers an
``is_valid(digest, descriptor)`` check, cheap enough to run on every cache hit,
so that a cached entry never makes a blob visible once its link or data is
gone, whoever removed it (ocistore, distribution's garbage collector, ``rm``).

Corrupt links (a trailing newline, an unknown algorithm, garbage) are treated
as absent: stat raises :class:`~ocistore.errors.BlobUnknown` and logs a
warning naming the link's path and what is wrong with it. That is the side
distribution errs on for a directory found where blob data should be, it keeps
a damaged tree readable, and a later put or commit rewrites the link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ocistore.cache.base import BlobDescriptorCacheProvider, BlobDescriptorService, CacheMetrics
from ocistore.descriptor import OCTET_STREAM, Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.driver.base import StorageDriver
from ocistore.errors import BlobUnknown, DigestError, DigestInvalid, PathNotFound, Unsupported
from ocistore.storage import paths
from ocistore.storage.wholefiles import read_whole, stat_whole

__all__ = [
    "LAYERS",
    "MANIFESTS",
    "GlobalBlobStatter",
    "LinkLayout",
    "LinkedBlobStatter",
    "read_link",
    "with_cache",
]

log = logging.getLogger("ocistore.storage")

LINK_MAX: Final = 512  # a link holds one digest (sha512: 135 bytes); more is garbage


@dataclass(frozen=True, slots=True)
class LinkLayout:
    """Where a linked store keeps its links: layers and manifests differ only here."""

    kind: str
    link: Callable[[str, Digest], paths.PathSpec]
    root: Callable[[str], paths.PathSpec]

    def link_path(self, name: str, digest: Digest) -> str:
        return paths.path_for(self.link(name, digest))

    def root_path(self, name: str) -> str:
        return paths.path_for(self.root(name))


LAYERS: Final = LinkLayout("layers", paths.LayerLink, paths.Layers)
MANIFESTS: Final = LinkLayout("manifests", paths.ManifestRevisionLink, paths.ManifestRevisions)


def read_link(driver: StorageDriver, path: str) -> Digest:
    """The digest held by the link file at ``path``.

    Raises :class:`~ocistore.errors.PathNotFound` when there is no link and
    :class:`~ocistore.errors.DigestInvalid` (whose reason names ``path``) when
    the content is not exactly one supported digest string.
    """
    raw = read_whole(driver, path)
    if len(raw) > LINK_MAX:
        raise DigestInvalid(raw[:64], f"link file {path} holds {len(raw)} bytes, not a digest")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DigestInvalid(raw, f"link file {path} is not ASCII") from None
    try:
        return Digest(text)
    except DigestError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise DigestInvalid(text, f"link file {path}: {reason}") from None


class GlobalBlobStatter:
    """Stat blobs in the global store from their data file (no repository check)."""

    __slots__ = ("_driver",)

    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        path = paths.path_for(paths.BlobData(dgst))
        try:
            info = stat_whole(self._driver, path)
        except PathNotFound:
            raise BlobUnknown(dgst) from None
        if info.is_dir:
            # A directory where data should be is a corrupt tree: not knowing
            # the blob is the safe answer (distribution does the same).
            log.warning("blob path should not be a directory: %s", path)
            raise BlobUnknown(dgst)
        return Descriptor(digest=dgst, size=info.size, media_type=OCTET_STREAM)

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        """Nothing to record: the descriptor is derived from the data file."""

    def clear(self, digest: Digest | str) -> None:
        raise Unsupported(
            "clear on the global blob statter (blobs leave only by garbage collection)"
        )

    def is_valid(self, digest: Digest, desc: Descriptor) -> bool:
        """Cheap cache check: the data file is still there with the cached size."""
        return _data_matches(self._driver, desc)


class LinkedBlobStatter:
    """Stat a blob through a repository's link, then the global statter."""

    __slots__ = ("_driver", "_global", "layout", "name")

    def __init__(
        self,
        driver: StorageDriver,
        global_statter: GlobalBlobStatter | BlobDescriptorService,
        name: str,
        layout: LinkLayout = LAYERS,
    ) -> None:
        self._driver = driver
        self._global = global_statter
        self.name = name
        self.layout = layout

    def link_path(self, digest: Digest) -> str:
        return self.layout.link_path(self.name, digest)

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        path = self.link_path(dgst)
        try:
            target = read_link(self._driver, path)
        except PathNotFound:
            raise BlobUnknown(dgst) from None
        except DigestError as exc:
            log.warning("ignoring corrupt %s link for %s: %s", self.layout.kind, dgst, exc)
            raise BlobUnknown(dgst) from None
        try:
            return self._global.stat(target)
        except BlobUnknown:
            # A link whose blob was garbage collected: unknown, never a 500.
            raise BlobUnknown(dgst) from None

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        """Links are written at commit (and by put/mount); nothing to do here."""

    def clear(self, digest: Digest | str) -> None:
        """Remove the link (the blob itself stays until garbage collection)."""
        path = self.link_path(as_digest(digest))
        try:
            self._driver.delete(path)
        except PathNotFound:
            raise BlobUnknown(digest) from None

    def is_valid(self, digest: Digest, desc: Descriptor) -> bool:
        """Cheap cache check: the link still exists and so does the data it leads to."""
        try:
            info = stat_whole(self._driver, self.link_path(digest))
        except PathNotFound:
            return False
        return not info.is_dir and _data_matches(self._driver, desc)


def _data_matches(driver: StorageDriver, desc: Descriptor) -> bool:
    try:
        info = stat_whole(driver, paths.path_for(paths.BlobData(desc.digest)))
    except PathNotFound:
        return False
    return not info.is_dir and (desc.size < 0 or info.size == desc.size)


def with_cache(
    cache: BlobDescriptorService | BlobDescriptorCacheProvider | None,
    backend: GlobalBlobStatter | LinkedBlobStatter,
    metrics: CacheMetrics | None = None,
) -> BlobDescriptorService:
    """``backend`` behind the cache (validated on every hit), or ``backend`` itself without one.

    ``metrics`` collects the hits and misses (a registry shares one across its statters).
    """
    if cache is None:
        return backend
    from ocistore.cache.cached import CachedBlobStatter

    return CachedBlobStatter(cache, backend, validate=backend.is_valid, metrics=metrics)
