"""Manifests of one repository (distribution ``registry/storage/manifeststore.go``).

A manifest is stored as a blob (its exact bytes under ``blobs/sha256/…/data``) and
belongs to the repository through ``_manifests/revisions/sha256/<hex>/link``, written
by the repository's manifest-linked blob store. ``put`` parses the payload with the
handler of its media type (:mod:`ocistore.manifest`), verifies its references with the
registry's options, and then writes, in this order: the blob data, the referrers index
entry (when it has a ``subject``), the revision link (the commit point: from then on
the manifest exists), and the tag. A crash at any point leaves the manifest absent or
present, never half there; an index entry whose revision link never came is ignored.

Whether the repository has a manifest (``exists``, which a GET manifest asks
every time) is answered from the registry's stat cache when it has one: the
revision link read through the link cache (:func:`~ocistore.storage.hotcache.front_links`,
kept true by inotify), then the blob it names from the global stat cache (its
data watched). Without it, through the linked store as any blob: one ``stat``
of the link per call.

``get`` parses the stored bytes again (the media type is sniffed as distribution
does; nothing else is stored). ``delete`` removes the tags that point at the
manifest, then its revision link, as distribution's manifest DELETE does (the blob
data stays until garbage collection). A referrers entry is left in place: it states
a fact about the manifest's bytes, is not listed while the revision is unlinked,
and must be there again if the same manifest is pushed again, by ocistore or by
another registry on the same root (see :mod:`ocistore.storage.referrers`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import (
    BlobUnknown,
    DigestError,
    ManifestUnknown,
    PathNotFound,
    TagUnknown,
    Unsupported,
)
from ocistore.manifest import Manifest, parse_manifest, verify_manifest
from ocistore.reference import validate_tag
from ocistore.storage import hotcache, paths
from ocistore.storage.referrers import ReferrersIndex

if TYPE_CHECKING:
    from ocistore.storage.registry import Registry, Repository

__all__ = ["ManifestStore"]

_PATHS_MAX = 1024
"""Revision link paths a ManifestStore remembers (building one costs more than a cached read)."""


class ManifestStore:
    """``exists``, ``get``, ``put``, ``delete``, ``enumerate`` and the referrers of a repository."""

    __slots__ = ("_blobs", "_global", "_index", "_links", "_revision_paths", "name", "repository")

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.name = repository.name
        self._blobs = repository.manifest_blobs
        self._index = ReferrersIndex(repository)
        registry = repository.registry
        self._links = hotcache.front_links(registry.stat_cache, registry.driver)
        self._global = registry.blob_statter
        self._revision_paths: dict[Digest, str] = {}

    # --- reading -----------------------------------------------------------------

    def exists(self, digest: Digest | str) -> bool:
        """Whether the manifest is linked in this repository (and its data present)."""
        dgst = as_digest(digest)
        self.repository.registry.gc_fence.protect((dgst,))  # before looking: docs/gc.md
        links = self._links
        if links is None:
            return self._blobs.exists(dgst)
        path = self._revision_paths.get(dgst)
        known = path is not None
        if path is None:
            path = paths.path_for(paths.ManifestRevisionLink(self.name, dgst))
        try:
            self._global.stat(links.read(path))
        except (PathNotFound, DigestError, BlobUnknown):
            # No link, a corrupt one (as the linked statter: unknown), or its blob is gone.
            return False
        if not known:  # only manifests that exist: made-up digests cannot fill it
            if len(self._revision_paths) >= _PATHS_MAX:
                self._revision_paths.clear()
            self._revision_paths[dgst] = path
        return True

    def stat(self, digest: Digest | str) -> Descriptor:
        """Digest and size of a manifest of this repository; raises :class:`ManifestUnknown`."""
        dgst = as_digest(digest)
        try:
            return self._blobs.stat(dgst)
        except BlobUnknown:
            raise ManifestUnknown(self.name, dgst) from None

    def get(self, digest: Digest | str) -> Manifest:
        """The stored manifest (exact payload, media type sniffed); :class:`ManifestUnknown`.

        A stored payload ocistore cannot read (Docker schema 1 left by an old
        registry) raises :class:`~ocistore.errors.ManifestInvalid`.
        """
        dgst = as_digest(digest)
        try:
            payload = self._blobs.get(dgst)
        except BlobUnknown:
            raise ManifestUnknown(self.name, dgst) from None
        return parse_manifest(payload, unique_keys=False)

    def enumerate(self) -> Iterator[Digest]:
        """Every manifest revision of the repository (whose data is present)."""
        return self._blobs.enumerate()

    def referrers(
        self, subject: Digest | str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests of this repository whose ``subject`` is ``subject`` (the referrers API).

        Manifests written since the last call, by ocistore or by another
        registry on the same root, are indexed first (only those: one listing
        of ``_manifests/revisions`` tells which).
        """
        return self._index.referrers(subject, artifact_type)

    def rebuild_referrers_index(self) -> int:
        """Check the whole referrers index against ``_manifests/revisions``; the referrers linked.

        Never needed for correctness (:meth:`referrers` indexes what is new);
        it repairs damage and drops entries that name the wrong subject.
        """
        return self._index.rebuild()

    # --- writing -----------------------------------------------------------------

    def put(
        self,
        payload: bytes | Manifest,
        media_type: str | None = None,
        tag: str | None = None,
        *,
        verify: bool = True,
    ) -> Digest:
        """Verify and store ``payload`` (exact bytes), tag it if asked, return its digest.

        ``payload`` is the manifest's bytes or a :class:`~ocistore.manifest.Manifest`
        (a builder's result: its payload is parsed again as its ``media_type``).
        ``media_type`` is the client's Content-Type (None: from the payload). Raises
        :class:`~ocistore.errors.ManifestInvalid` (or ``ManifestTooLarge``),
        :class:`~ocistore.errors.ManifestBlobUnknown` listing every missing reference,
        :class:`~ocistore.errors.TagInvalid` before anything is written.
        ``verify=False`` skips the reference checks (a pull-through cache stores a
        manifest before the blobs it names, as distribution's proxy does).
        """
        if tag is not None:
            validate_tag(tag)
        if isinstance(payload, Manifest):
            media_type = media_type or payload.media_type
            payload = payload.payload
        m = parse_manifest(payload, media_type)
        registry = self.repository.registry
        fence = registry.gc_fence
        relied = [m.digest, *(d.digest for d in m.references())]
        if m.subject is not None:
            relied.append(m.subject.digest)
        # Pin before verifying, and again if a collection began meanwhile (docs/gc.md).
        fence.protect(relied)
        epochs = fence.epochs()
        if verify:
            self._verify(m, registry)
        stored = self._blobs.blobstore.put(m.media_type, m.payload)
        self._index.add(m)
        if set(fence.epochs(fresh=fence.view_age() > 2 * fence.refresh)) - set(epochs):
            fence.protect(relied)
            if verify:
                self._verify(m, registry)
        if tag is None:
            self._blobs.link_blob(stored)
        else:  # a delete of this digest must not fall between the two links
            with registry.tag_locks.holding(self.name):
                self._blobs.link_blob(stored)
                self.repository.tags.tag_locked(tag, m.digest)
        return m.digest

    def _verify(self, m: Manifest, registry: Registry) -> None:
        verify_manifest(
            m,
            stat_blobs=self._stat_blobs,
            manifest_exists=self.exists,
            urls_allow=[registry.manifest_urls_allow] if registry.manifest_urls_allow else None,
            urls_deny=[registry.manifest_urls_deny] if registry.manifest_urls_deny else None,
            validate_index_children=registry.validate_index_children,
            index_platforms=registry.index_platforms,
        )

    def delete(self, digest: Digest | str) -> None:
        """Delete the manifest and every tag pointing at it (its referrers entry stays, unlisted).

        :class:`Unsupported` unless deletes are enabled; :class:`ManifestUnknown`.
        """
        if not self.repository.registry.delete_enabled:
            raise Unsupported("manifest delete (delete_enabled is off)")
        dgst = as_digest(digest)
        with self.repository.registry.tag_locks.holding(self.name):
            if not self.exists(dgst):
                raise ManifestUnknown(self.name, dgst)
            tags = self.repository.tags
            for tag in tags.lookup(dgst):
                with contextlib.suppress(TagUnknown):  # removed outside ocistore: as asked
                    tags.untag_locked(tag)
            try:
                self._blobs.delete(dgst)
            except BlobUnknown:
                raise ManifestUnknown(self.name, dgst) from None

    # --- helpers -------------------------------------------------------------------

    def _stat_blobs(self, digests: Sequence[Digest]) -> Mapping[Digest, Descriptor | None]:
        # One batch: stat-cache hits, then one descriptor-cache read for the rest.
        return self.repository.blobs.stat_many(digests)
