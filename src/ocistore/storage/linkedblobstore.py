"""A repository's view of the blob store (distribution ``registry/storage/linkedblobstore.go``).

A repository sees a blob only through a link under it (``_layers/<alg>/<hex>/link``
for layers and configs, ``_manifests/revisions/<alg>/<hex>/link`` for
manifests; :class:`~ocistore.storage.statter.LinkLayout` says which). Every
read checks the link first, so one repository can never read another's blobs
by guessing digests. Deleting a blob here removes the link only; the data goes
when garbage collection finds nothing linking to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from ocistore.cache.base import BlobDescriptorService
from ocistore.descriptor import OCTET_STREAM, Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.driver.base import Buffer
from ocistore.errors import (
    BlobMounted,
    BlobUnknown,
    DigestError,
    NameInvalid,
    PathNotFound,
    RegistryError,
    Unsupported,
)
from ocistore.storage import hotcache, paths
from ocistore.storage.blobstore import BlobStore
from ocistore.storage.blobwriter import BlobWriter, UploadStatus, upload_status
from ocistore.storage.statter import (
    LAYERS,
    MANIFESTS,
    LinkedBlobStatter,
    LinkLayout,
    with_cache,
)

if TYPE_CHECKING:
    from ocistore.storage.registry import Registry

__all__ = ["LinkedBlobStore"]

log = logging.getLogger("ocistore.storage")


def _scoped_cache(
    registry: Registry, name: str, layout: LinkLayout
) -> BlobDescriptorService | None:
    """The repository's descriptor cache for ``layout``.

    A provider shared with other programs (Redis) may keep manifest revisions
    apart from the blobs distribution caches: it then has ``manifest_scoped``.
    """
    cache = registry.cache
    if cache is None:
        return None
    manifest_scoped = getattr(cache, "manifest_scoped", None)
    if layout is MANIFESTS and manifest_scoped is not None:
        scope: BlobDescriptorService = manifest_scoped(name)
        return scope
    return cache.repository_scoped(name)


class LinkedBlobStore:
    """Blobs of one repository: stat, get, open, put, mount, delete, enumerate, uploads.

    Every digest argument accepts a :class:`~ocistore.digest.Digest` or its
    string form. Stats go through the registry's descriptor cache (repository
    scoped) when there is one; each cache hit is checked against the link and
    the data, so a deleted blob never reappears through the cache. With the
    registry's stat cache (:mod:`ocistore.storage.hotcache`) a hit stats the
    link only: inotify reports the data's removal.
    """

    __slots__ = ("_access", "_linked", "blobstore", "layout", "name", "registry")

    def __init__(self, registry: Registry, name: str, *, layout: LinkLayout = LAYERS) -> None:
        self.registry = registry
        self.name = name
        self.layout = layout
        self.blobstore: BlobStore = registry.blobs
        self._linked = LinkedBlobStatter(
            registry.driver, registry.blob_statter, name, layout=layout
        )
        scoped = _scoped_cache(registry, name, layout)
        self._access: BlobDescriptorService = hotcache.front_linked(
            registry.stat_cache,
            registry.driver,
            with_cache(scoped, self._linked, registry.cache_metrics),
            scope=f"{layout.kind}:{name}",
            root_path=layout.root_path(name),
        )

    # --- reading -----------------------------------------------------------------

    def stat(self, digest: Digest | str) -> Descriptor:
        """The canonical descriptor of a blob linked here; raises :class:`BlobUnknown`.

        For a blob linked under sha512 or blake3 the descriptor names the
        sha256 digest it is stored under.
        """
        self.registry.gc_fence.protect((digest,))  # before looking: see docs/gc.md
        return self._access.stat(digest)

    def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        """The canonical descriptors of those ``digests`` linked here (the others left out).

        One batch for manifest verification: hits from the stat cache, the
        rest from the descriptor cache in one read transaction, then the driver.
        """
        digests = list(digests)
        self.registry.gc_fence.protect(digests)
        return hotcache.stat_many(self._access, digests)

    def exists(self, digest: Digest | str) -> bool:
        try:
            self.stat(digest)
        except BlobUnknown:
            return False
        return True

    def get(self, digest: Digest | str) -> bytes:
        """The whole blob (at most 4 MiB, else :class:`~ocistore.errors.BlobTooLarge`)."""
        return self.blobstore.read(self.stat(digest))

    def open(self, digest: Digest | str) -> BinaryIO:
        """A seekable reader that streams the blob from storage (never loads it whole)."""
        return self.blobstore.open_data(self.stat(digest).digest)

    def redirect_url(self, digest: Digest | str) -> str | None:
        """A URL a client may GET the blob from directly, if the registry redirects; else None.

        Raises :class:`~ocistore.errors.BlobUnknown` when the blob is not in this repository.
        """
        desc = self.stat(digest)
        return self.blobstore.redirect_url(desc.digest)

    def enumerate(self) -> Iterator[Digest]:
        """Every digest linked here whose blob is still present, in walk order.

        The digest is taken from the link's path (so a sha512 alias is listed
        as itself); links whose blob is gone or whose content is corrupt are skipped.
        """
        root = self.layout.root_path(self.name)
        try:
            entries = self.registry.driver.walk(root)
        except PathNotFound:
            return
        for info in entries:
            if info.is_dir or not paths.is_link_path(info.path):
                continue
            try:
                dgst = paths.digest_from_link_path(info.path)
            except DigestError as exc:
                log.warning("skipping stray link %s: %s", info.path, exc)
                continue
            if self.exists(dgst):
                yield dgst

    # --- writing -----------------------------------------------------------------

    def put(self, media_type: str, data: Buffer) -> Descriptor:
        """Store small content (manifests, configs) and link it here.

        Writes the blob only if its data file is missing (asked of the driver,
        not the cache), then writes the link; returns the descriptor with
        ``media_type`` (``application/octet-stream`` when empty).
        """
        desc = self.blobstore.put(media_type, data)
        self.link_blob(desc)
        return desc.with_(media_type=media_type or OCTET_STREAM)

    def link_blob(self, canonical: Descriptor, *aliases: Digest) -> None:
        """Link ``canonical`` (and every alias digest) to the canonical blob, then fill the cache.

        The blob data must already be durable: the link is the commit point
        that makes a blob visible.
        """
        seen: set[Digest] = set()
        for dgst in (canonical.digest, *aliases):
            if dgst in seen:
                continue
            seen.add(dgst)
            self.blobstore.link(self._linked.link_path(dgst), canonical.digest)
        # Cache what an uncached stat would answer (the blob store keeps no media type).
        entry = Descriptor(digest=canonical.digest, size=canonical.size, media_type=OCTET_STREAM)
        for dgst in seen:
            self._remember(dgst, entry)

    def mount(self, source_repo: str, digest: Digest | str) -> Descriptor:
        """Link a blob that repository ``source_repo`` holds into this one (no data copied).

        Raises :class:`BlobUnknown` when the source does not link the blob,
        :class:`~ocistore.errors.NameInvalid` for a bad source name.
        """
        dgst = as_digest(digest)
        source = self.registry.repository(source_repo).blobs
        canonical = source.stat(dgst)  # the access check on the source
        self.link_blob(canonical, dgst)
        return canonical

    def delete(self, digest: Digest | str) -> None:
        """Unlink the blob from this repository; :class:`Unsupported` unless deletes are enabled."""
        if not self.registry.delete_enabled:
            raise Unsupported("blob delete (delete_enabled is off)")
        dgst = as_digest(digest)
        self.stat(dgst)  # BlobUnknown if it is not linked here
        self._access.clear(dgst)

    # --- uploads -----------------------------------------------------------------

    def create(
        self, *, mount_from: str | None = None, digest: Digest | str | None = None
    ) -> BlobWriter:
        """Start an upload; with ``mount_from`` and ``digest``, try a cross-repository mount first.

        A successful mount raises :class:`~ocistore.errors.BlobMounted`
        (carrying the descriptor) instead of starting an upload; a failed one
        falls back to a new upload, as distribution does.
        """
        if mount_from is not None and digest is not None:
            try:
                desc = self.mount(mount_from, digest)
            except (BlobUnknown, NameInvalid, DigestError):
                pass
            else:
                raise BlobMounted(desc.digest, mount_from, desc)
        return BlobWriter.create(self)

    def resume(self, upload_id: str) -> BlobWriter:
        """Reopen upload ``upload_id``; raises :class:`~ocistore.errors.BlobUploadUnknown`."""
        return BlobWriter.resume(self, upload_id)

    def upload_status(self, upload_id: str) -> UploadStatus:
        """Size and start time of upload ``upload_id`` without opening it (writes nothing)."""
        return upload_status(self, upload_id)

    # --- cache -------------------------------------------------------------------

    def _remember(self, digest: Digest, desc: Descriptor) -> None:
        """Fill the repository-scoped cache; a failing cache never fails the request."""
        if self.registry.cache is None:
            return
        try:
            self._access.set_descriptor(digest, desc)
        except (RegistryError, OSError, ValueError) as exc:
            log.warning("descriptor cache: could not remember %s: %s", digest, exc)
