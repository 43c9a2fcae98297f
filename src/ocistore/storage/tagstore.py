"""Tags of one repository (distribution ``registry/storage/tagstore.go``).

On disk, as distribution writes them::

    _manifests/tags/<tag>/current/link                   the revision the tag points at now
    _manifests/tags/<tag>/index/<alg>/<hex>/link         every revision it ever pointed at

Tagging writes the index entry first and then replaces ``current/link`` atomically
(the driver's ``put_content``), so a crash leaves the tag as it was or as asked,
never half written; a tag directory without ``current/link`` (a crash between the
two writes) is not listed.

Resolving a tag reads ``current/link`` through the registry's stat cache when it
has one (:func:`~ocistore.storage.hotcache.front_links`): the digest is kept until
inotify reports that the link or a directory above it changed, whoever changed it
(this process, another worker, the Go registry, ``rm``). Reading the link was
more than half of a GET manifest by tag. Tag writes and untags hold the repository's tag lock (:mod:`ocistore.storage.taglocks`),
so they are safe against each other and against manifest deletes, in any number of
threads and processes. Like distribution, tagging does not check that the digest
names a manifest of the repository: :meth:`ManifestStore.put(tag=...)
<ocistore.storage.manifeststore.ManifestStore.put>` is the checked path.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import (
    BlobUnknown,
    DigestError,
    NameUnknown,
    PathNotFound,
    TagInvalid,
    TagUnknown,
    Unsupported,
)
from ocistore.reference import validate_tag
from ocistore.storage import hotcache, paths
from ocistore.storage.statter import read_link

if TYPE_CHECKING:
    from ocistore.storage.registry import Repository

__all__ = ["TagStore"]

log = logging.getLogger("ocistore.storage")

_PATHS_MAX = 1024
"""Tags whose ``current/link`` path a TagStore remembers (validating and building it again
cost as much as a cached read). Only tags that resolved are remembered: requests for
made-up tags cannot fill it."""


class TagStore:
    """``get``, ``tag``, ``untag``, ``all``, ``lookup``, ``list`` and the per-tag index."""

    __slots__ = ("_current_paths", "_driver", "_links", "name", "repository")

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.name = repository.name
        self._driver = repository.registry.driver
        self._links = hotcache.front_links(repository.registry.stat_cache, self._driver)
        self._current_paths: dict[str, str] = {}

    # --- one tag -----------------------------------------------------------------

    def get(self, tag: str) -> Descriptor:
        """The descriptor (digest only, as distribution) the tag points at; :class:`TagUnknown`."""
        return Descriptor(digest=self._current(tag))

    def resolve(self, tag: str) -> Digest:
        """The digest the tag points at (:meth:`get` without building a descriptor).

        Raises :class:`TagInvalid` or :class:`TagUnknown`.
        """
        return self._current(tag)

    def tag(self, tag: str, desc: Descriptor | Digest | str) -> None:
        """Point ``tag`` at ``desc`` (a descriptor or a digest), keeping the old target indexed."""
        validate_tag(tag)
        dgst = desc.digest if isinstance(desc, Descriptor) else as_digest(desc)
        with self.repository.registry.tag_locks.holding(self.name):
            self.tag_locked(tag, dgst)

    def tag_locked(self, tag: str, dgst: Digest) -> None:
        """:meth:`tag` for a caller that holds the repository's tag lock."""
        blobs = self.repository.registry.blobs
        blobs.link(self._path(paths.ManifestTagIndexEntryLink(self.name, tag, dgst)), dgst)
        current = self._current_path(tag)
        blobs.link(current, dgst)
        self._forget(current)

    def untag(self, tag: str) -> None:
        """Remove the tag with its index; :class:`Unsupported` unless deletes are enabled."""
        if not self.repository.registry.delete_enabled:
            raise Unsupported("tag delete (delete_enabled is off)")
        validate_tag(tag)
        with self.repository.registry.tag_locks.holding(self.name):
            self.untag_locked(tag)

    def untag_locked(self, tag: str) -> None:
        """:meth:`untag` for a caller that holds the repository's tag lock."""
        try:
            self._driver.delete(self._path(paths.ManifestTag(self.name, tag)))
        except PathNotFound:
            raise TagUnknown(tag) from None
        finally:
            self._forget(self._current_path(tag))

    # --- every tag ---------------------------------------------------------------

    def all(self) -> builtins.list[str]:
        """Every tag, sorted; :class:`NameUnknown` when the repository has no tags directory."""
        try:
            entries = self._driver.list(self._path(paths.ManifestTags(self.name)))
        except PathNotFound:
            raise NameUnknown(self.name) from None
        tags = []
        for entry in entries:
            tag = entry.rsplit("/", 1)[1]
            if self._is_tag(tag):
                tags.append(tag)
        return sorted(tags)

    def list(self, n: int | None = None, last: str | None = None) -> builtins.list[str]:
        """Tags sorted, those after ``last`` only, at most ``n`` (the tags/list pagination)."""
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        tags = self.all()
        if last is not None:
            tags = [t for t in tags if t > last]
        return tags if n is None else tags[:n]

    def lookup(self, desc: Descriptor | Digest | str) -> builtins.list[str]:
        """The tags whose current target is ``desc``'s digest, sorted."""
        dgst = desc.digest if isinstance(desc, Descriptor) else as_digest(desc)
        try:
            tags = self.all()
        except NameUnknown:
            return []
        found = []
        for tag in tags:
            try:
                current = self._current(tag)
            except TagUnknown:
                continue
            if current == dgst:
                found.append(tag)
        return found

    def manifest_digests(self, tag: str) -> builtins.list[Digest]:
        """Every revision ``tag`` ever pointed at that is still a manifest of the repository.

        distribution's ``TagStore.ManifestDigests``: the index entries, walked, each
        checked against ``_manifests/revisions``. Raises :class:`TagUnknown`.
        """
        return list(self._indexed(tag))

    # --- helpers -------------------------------------------------------------------

    def _indexed(self, tag: str) -> Iterator[Digest]:
        validate_tag(tag)
        root = self._path(paths.ManifestTagIndex(self.name, tag))
        try:
            entries = list(self._driver.walk(root))
        except PathNotFound:
            raise TagUnknown(tag) from None
        manifests = self.repository.manifest_blobs
        for info in entries:
            if info.is_dir or not paths.is_link_path(info.path):
                continue
            try:
                dgst = paths.digest_from_link_path(info.path)
                manifests.stat(dgst)
            except (DigestError, BlobUnknown):
                continue
            yield dgst

    def _current_path(self, tag: str) -> str:
        """The driver path of ``tag``'s ``current/link`` (validates the tag)."""
        path = self._current_paths.get(tag)
        if path is None:
            validate_tag(tag)
            path = self._path(paths.ManifestTagCurrent(self.name, tag))
        return path

    def _remember(self, tag: str, path: str) -> None:
        if tag not in self._current_paths:
            if len(self._current_paths) >= _PATHS_MAX:
                self._current_paths.clear()
            self._current_paths[tag] = path

    def _forget(self, current: str) -> None:
        """Drop a link this process just wrote from the cache (inotify would tell it too)."""
        if self._links is not None:
            self._links.forget(current)

    def _current(self, tag: str) -> Digest:
        path = self._current_path(tag)
        try:
            dgst: Digest = (
                read_link(self._driver, path) if self._links is None else self._links.read(path)
            )
        except PathNotFound:
            raise TagUnknown(tag) from None
        except DigestError as exc:
            # A damaged link reads as no tag (a later tag() rewrites it), never as a 500.
            log.warning("ignoring corrupt tag link %s: %s", path, exc)
            raise TagUnknown(tag) from None
        self._remember(tag, path)
        return dgst

    def _is_tag(self, tag: str) -> bool:
        """A listed entry counts when it is a valid tag name with a current link."""
        try:
            validate_tag(tag)
        except TagInvalid:
            return False
        try:
            info = self._driver.stat(self._path(paths.ManifestTagCurrent(self.name, tag)))
        except PathNotFound:
            return False
        return not info.is_dir

    @staticmethod
    def _path(spec: paths.PathSpec) -> str:
        return paths.path_for(spec)
