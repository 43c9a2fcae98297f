"""The referrers index: which manifests name a given ``subject`` (OCI distribution-spec v1.1).

distribution has no such index, so ocistore keeps one under the repository in an
``_``-prefixed directory that distribution's catalog and garbage collector never
enter::

    _referrers/<subject-alg>/<subject-hex>/<alg>/<hex>/descriptor   the referrer's descriptor, JSON
    _referrers/<subject-alg>/<subject-hex>/<alg>/<hex>/link         the referrer's digest

Both files are written with the driver's atomic ``put_content``, the descriptor first:
the link is the commit point, so an entry without a link (a crash in between) is
ignored. The manifests themselves stay the source of truth: an entry counts only while
its manifest revision is linked in ``_manifests/revisions`` (a manifest deleted by
another program drops out of the answers), a descriptor that is missing or damaged is
recomputed from the manifest, and :meth:`ReferrersIndex.rebuild` recreates the whole
index from ``_manifests/revisions``. Nothing is pickled; the JSON is parsed as strictly
as a manifest's descriptors are.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import (
    BlobError,
    DigestError,
    ManifestError,
    PathNotFound,
)
from ocistore.manifest import Manifest, parse_manifest, referrer_descriptor
from ocistore.manifest.document import load_object, parse_descriptor
from ocistore.storage import paths
from ocistore.storage.statter import read_link

if TYPE_CHECKING:
    from ocistore.storage.registry import Repository

__all__ = ["ReferrersIndex"]

log = logging.getLogger("ocistore.storage")


class ReferrersIndex:
    """The on-disk referrers index of one repository."""

    __slots__ = ("_driver", "name", "repository")

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.name = repository.name
        self._driver = repository.registry.driver

    # --- writing -----------------------------------------------------------------

    def add(self, m: Manifest) -> None:
        """Record ``m`` as a referrer of its subject (no-op for a manifest without one)."""
        if m.subject is None:
            return
        subject = m.subject.digest
        desc = referrer_descriptor(m)
        body = json.dumps(desc.to_json(), sort_keys=True, separators=(",", ":")).encode()
        self._driver.put_content(
            paths.path_for(paths.ReferrerDescriptor(self.name, subject, m.digest)), body
        )
        self.repository.registry.blobs.link(
            paths.path_for(paths.ReferrerLink(self.name, subject, m.digest)), m.digest
        )

    def remove(self, subject: Digest | str, referrer: Digest | str) -> None:
        """Forget one entry (the link first, so a half-removed entry is already ignored)."""
        s, r = as_digest(subject), as_digest(referrer)
        for spec in (paths.ReferrerLink(self.name, s, r), paths.ReferrerEntry(self.name, s, r)):
            with contextlib.suppress(PathNotFound):
                self._driver.delete(paths.path_for(spec))

    def rebuild(self) -> int:
        """Recreate the index from ``_manifests/revisions``; return the number of entries.

        Entries are added before stale ones are removed, so a concurrent query never
        sees a valid referrer disappear.
        """
        wanted: set[tuple[Digest, Digest]] = set()
        for dgst in self.repository.manifest_blobs.enumerate():
            m = self._load(dgst)
            if m is None or m.subject is None:
                continue
            self.add(m)
            wanted.add((m.subject.digest, m.digest))
        for entry in self._stored_entries():
            if entry not in wanted:
                self.remove(*entry)
        return len(wanted)

    # --- reading -----------------------------------------------------------------

    def referrers(
        self, subject: Digest | str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Descriptors of the manifests whose subject is ``subject``, sorted by digest.

        With ``artifact_type``, only those of that artifact type. A subject nobody
        refers to (or that does not exist) has none.
        """
        s = as_digest(subject)
        found = []
        for dgst in self._referrer_digests(s):
            desc = self._descriptor(s, dgst)
            if desc is None:
                continue
            if artifact_type is None or desc.artifact_type == artifact_type:
                found.append(desc)
        return found

    # --- helpers -------------------------------------------------------------------

    def _referrer_digests(self, subject: Digest) -> list[Digest]:
        base = paths.path_for(paths.Referrers(self.name, subject))
        out = []
        for alg_dir in self._list(base):
            for entry in self._list(alg_dir):
                _, algorithm, encoded = entry.rsplit("/", 2)
                try:
                    out.append(Digest.from_parts(algorithm, encoded))
                except DigestError:
                    log.warning("skipping stray referrers entry %s", entry)
        return out

    def _descriptor(self, subject: Digest, dgst: Digest) -> Descriptor | None:
        """The entry's descriptor if the entry is complete and the manifest still linked."""
        try:
            if (
                read_link(
                    self._driver, paths.path_for(paths.ReferrerLink(self.name, subject, dgst))
                )
                != dgst
            ):
                return None
        except (PathNotFound, DigestError):
            return None
        if not self.repository.manifest_blobs.exists(dgst):
            return None
        stored = self._stored_descriptor(subject, dgst)
        if stored is not None:
            return stored
        m = self._load(dgst)
        return referrer_descriptor(m) if m is not None else None

    def _stored_descriptor(self, subject: Digest, dgst: Digest) -> Descriptor | None:
        path = paths.path_for(paths.ReferrerDescriptor(self.name, subject, dgst))
        try:
            desc = parse_descriptor(load_object(self._driver.get_content(path)), "descriptor")
        except PathNotFound:
            return None
        except ManifestError as exc:
            log.warning("recomputing damaged referrer descriptor %s: %s", path, exc)
            return None
        if desc.digest != dgst:
            log.warning("recomputing referrer descriptor %s: it names %s", path, desc.digest)
            return None
        return desc

    def _load(self, dgst: Digest) -> Manifest | None:
        try:
            return parse_manifest(self.repository.manifest_blobs.get(dgst))
        except (BlobError, ManifestError) as exc:
            log.warning("referrers: skipping manifest %s: %s", dgst, exc)
            return None

    def _stored_entries(self) -> set[tuple[Digest, Digest]]:
        root = paths.path_for(paths.ReferrersRoot(self.name))
        entries: set[tuple[Digest, Digest]] = set()
        try:
            walk = list(self._driver.walk(root))
        except PathNotFound:
            return entries
        for info in walk:
            parts = info.path[len(root) + 1 :].split("/")
            if len(parts) != 4:
                continue
            try:
                subject = Digest.from_parts(parts[0], parts[1])
                referrer = Digest.from_parts(parts[2], parts[3])
            except DigestError:
                continue
            entries.add((subject, referrer))
        return entries

    def _list(self, path: str) -> list[str]:
        try:
            return self._driver.list(path)
        except PathNotFound:
            return []
