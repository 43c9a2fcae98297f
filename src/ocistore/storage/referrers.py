"""The referrers index: which manifests name a given ``subject`` (OCI distribution-spec v1.1).

distribution has no such index, so ocistore keeps one under the repository in an
``_``-prefixed directory that distribution's catalog and garbage collector never
enter::

    _referrers/<subject-alg>/<subject-hex>/<alg>/<hex>/descriptor   the referrer's descriptor, JSON
    _referrers/<subject-alg>/<subject-hex>/<alg>/<hex>/link         the referrer's digest
    _referrers/_record                                              what has been indexed

An entry records a fact about immutable content ("manifest R names subject S"), so
it stays true whatever happens to the repository; whether R is listed is decided
when asked: an entry counts only while R's revision is linked in
``_manifests/revisions`` and its data is present (a manifest deleted or collected by
another program drops out of the answers, and comes back if it is pushed again).
Entries are written with the driver's atomic ``put_content``, the descriptor first:
the link is the commit point, so an entry without a link (a crash in between) is
ignored. A descriptor that is missing or damaged is recomputed from the manifest.

Manifests pushed by another program on the same root (the Go registry during a
rolling switch) have a revision but no entry. Every query therefore first
:meth:`~ReferrersIndex.refresh`\\ es the index: one listing of
``_manifests/revisions/sha256``, compared with the listing last indexed
(:mod:`ocistore.storage.referrers_record`); only revisions not seen before are
read, once each, and their entries are written before the record that says they
were seen. Several processes may refresh at once: every write is idempotent, a
lost update of the record only costs reading a revision again, and nothing but
:meth:`~ReferrersIndex.rebuild` removes an entry (and only one that is false), so
a revision recorded as seen always has its entry. Nothing is pickled; the JSON is
parsed as strictly as a manifest's descriptors are.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Literal

from ocistore.descriptor import Descriptor
from ocistore.digest import CANONICAL, Digest, as_digest
from ocistore.errors import (
    BlobError,
    DigestError,
    ManifestError,
    PathNotFound,
    RegistryError,
)
from ocistore.manifest import MAX_MANIFEST_SIZE, Manifest, parse_manifest, referrer_descriptor
from ocistore.manifest.document import load_object, parse_descriptor
from ocistore.storage import paths
from ocistore.storage.referrers_record import Record, fingerprint, format_record, parse_record
from ocistore.storage.statter import read_link

if TYPE_CHECKING:
    from ocistore.storage.registry import Repository

__all__ = ["ReferrersIndex"]

log = logging.getLogger("ocistore.storage")


class _Absent(enum.Enum):
    """A revision's data is not on disk (deleted and collected): look again when it is back."""

    ABSENT = enum.auto()


ABSENT: Final = _Absent.ABSENT


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

    def refresh(self) -> int:
        """Index the revisions written since the last refresh; return how many were read.

        Costs one listing and one small read when nothing is new (plus a stat per
        revision still *pending*: listed, but its data gone). Writes nothing for a
        repository without manifests.
        """
        listing = self._revision_listing()
        if not listing:
            return 0
        fp = fingerprint(listing)
        data = self._record_data()
        record = self._parse_record(data, with_seen=False)
        if (
            record is not None
            and record.fingerprint == fp
            and record.count == len(listing)
            and not any(self._data_present(h) for h in record.pending)
        ):
            return 0
        if record is not None:
            record = self._parse_record(data, with_seen=True)
        seen = record.seen if record is not None and record.seen is not None else frozenset()
        names = _names(listing)
        done, pending = self._index_revisions(n for n in names if n not in seen)
        indexed = seen.union(d.encoded for d in done) if done else seen
        kept = [n for n in names if n in indexed]  # the listing's order: sorted
        updated = Record(len(listing), fp, frozenset(pending), frozenset(kept))
        if updated != record:
            self._write_record(updated, kept)
        return len(done)

    def rebuild(self) -> int:
        """Check every revision's entry, drop false entries; return the number of referrers.

        Reads every manifest of ``_manifests/revisions`` once, writes the entries
        that are missing or damaged, removes entries whose manifest does not name
        their subject, and records every revision as seen. Entries are added
        before false ones are removed, so a concurrent query never sees a valid
        referrer disappear. The count is of referrers whose revision is linked.
        """
        listing = self._revision_listing()
        names = _names(listing)
        subjects, pending = self._index_revisions(names)
        if listing:  # everything listed is now indexed: record it, as refresh would
            indexed = {d.encoded for d in subjects}
            kept = [n for n in names if n in indexed]
            self._write_record(Record(len(listing), fingerprint(listing), frozenset(pending)), kept)
        for dgst in self._other_algorithm_revisions():
            m = self._load(dgst)
            if m is not None:
                self._ensure(m)
                subjects[dgst] = m.subject.digest if m.subject is not None else None
        for subject, referrer in self._stored_entries():
            if self._is_false(subject, referrer, subjects):
                self.remove(subject, referrer)
        manifests = self.repository.manifest_blobs
        return sum(1 for r, s in subjects.items() if s is not None and manifests.exists(r))

    # --- reading -----------------------------------------------------------------

    def referrers(
        self, subject: Digest | str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Descriptors of the manifests whose subject is ``subject``, sorted by digest.

        With ``artifact_type``, only those of that artifact type. A subject nobody
        refers to (or that does not exist) has none. Revisions written since the
        last query are indexed first; if that fails (a read-only or full disk),
        the answer comes from the index as it is, with a warning.
        """
        s = as_digest(subject)
        try:
            self.refresh()
        except (RegistryError, OSError) as exc:
            log.warning("referrers of %s: could not index new manifests: %s", self.name, exc)
        found = []
        for dgst in self._referrer_digests(s):
            desc = self._descriptor(s, dgst)
            if desc is None:
                continue
            if artifact_type is None or desc.artifact_type == artifact_type:
                found.append(desc)
        return found

    # --- indexing ------------------------------------------------------------------

    def _index_revisions(
        self, names: Iterable[str]
    ) -> tuple[dict[Digest, Digest | None], list[str]]:
        """Index each named sha256 revision: ({revision: its subject}, names pending)."""
        done: dict[Digest, Digest | None] = {}
        pending: list[str] = []
        for name in names:
            dgst = _sha256(name)
            if dgst is None:
                continue  # a stray directory: never a revision, never recorded
            found = self._index_revision(dgst)
            if found is ABSENT:
                pending.append(name)
            else:
                done[dgst] = found
        return done, pending

    def _index_revision(self, dgst: Digest) -> Digest | Literal[_Absent.ABSENT] | None:
        """Ensure the entry of revision ``dgst``; its subject, None, or :data:`ABSENT`.

        The content is read from the blob store directly, not through the
        revision link: whether a manifest names a subject is a fact about its
        bytes, true even while the revision is unlinked (deleted through the Go
        registry, whose DELETE keeps the revision directory), so when it is
        linked again it is listed again.
        """
        m = self._content(dgst)
        if m is ABSENT:
            return ABSENT
        if m is None or m.subject is None:
            return None
        self._ensure(m)
        return m.subject.digest

    def _ensure(self, m: Manifest) -> None:
        """Write ``m``'s entry unless it is already there, complete and right."""
        assert m.subject is not None
        subject = m.subject.digest
        link = paths.path_for(paths.ReferrerLink(self.name, subject, m.digest))
        with contextlib.suppress(PathNotFound, DigestError):
            if read_link(self._driver, link) == m.digest and self._stored_descriptor(
                subject, m.digest
            ) == referrer_descriptor(m):
                return
        self.add(m)

    def _is_false(
        self, subject: Digest, referrer: Digest, subjects: dict[Digest, Digest | None]
    ) -> bool:
        """Whether the entry claims a subject its manifest does not name (unknown: keep)."""
        if referrer in subjects:
            return subjects[referrer] != subject
        m = self._content(referrer)
        if m is ABSENT:
            return False
        return m is None or m.subject is None or m.subject.digest != subject

    def _content(self, dgst: Digest) -> Manifest | Literal[_Absent.ABSENT] | None:
        """The manifest stored under ``dgst``; None if the data is no manifest; ABSENT.

        Data that is too large, does not hash to ``dgst`` or does not parse is
        logged and answers None: such bytes never name a subject.
        """
        path = paths.path_for(paths.BlobData(dgst))
        try:
            size = self._driver.stat(path).size
            if size > MAX_MANIFEST_SIZE:
                log.info("referrers: revision %s is too large to be a manifest", dgst)
                return None
            data = self._driver.get_content(path)
        except PathNotFound:
            return ABSENT
        if Digest.from_bytes(data, dgst.algorithm) != dgst:
            log.warning("referrers: the data of manifest %s does not match its digest", dgst)
            return None
        try:
            return parse_manifest(data, unique_keys=False)
        except ManifestError as exc:
            log.info("referrers: revision %s is not a manifest ocistore reads: %s", dgst, exc)
            return None

    def _data_present(self, hex_: str) -> bool:
        dgst = _sha256(hex_)
        if dgst is None:
            return False
        try:
            self._driver.stat(paths.path_for(paths.BlobData(dgst)))
        except PathNotFound:
            return False
        return True

    # --- the record --------------------------------------------------------------

    def _revision_listing(self) -> list[str]:
        return self._list(paths.path_for(paths.ManifestRevisionsOf(self.name, CANONICAL)))

    def _other_algorithm_revisions(self) -> list[Digest]:
        """Revisions under algorithms other than sha256 (neither registry writes them)."""
        out = []
        for alg_dir in self._list(paths.path_for(paths.ManifestRevisions(self.name))):
            algorithm = alg_dir.rsplit("/", 1)[1]
            if algorithm == CANONICAL:
                continue
            for entry in self._list(alg_dir):
                try:
                    out.append(Digest.from_parts(algorithm, entry.rsplit("/", 1)[1]))
                except DigestError:
                    continue
        return out

    def _record_data(self) -> bytes | None:
        try:
            return self._driver.get_content(paths.path_for(paths.ReferrersRecord(self.name)))
        except PathNotFound:
            return None

    def _parse_record(self, data: bytes | None, *, with_seen: bool) -> Record | None:
        if data is None:
            return None
        try:
            return parse_record(data, with_seen=with_seen)
        except ValueError as exc:
            path = paths.path_for(paths.ReferrersRecord(self.name))
            log.warning("referrers: ignoring damaged %s: %s", path, exc)
            return None

    def _write_record(self, record: Record, seen: list[str]) -> None:
        """Write the record atomically (after every entry it vouches for)."""
        self._driver.put_content(
            paths.path_for(paths.ReferrersRecord(self.name)),
            format_record(record.count, record.fingerprint, record.pending, seen),
        )

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
            return parse_manifest(self.repository.manifest_blobs.get(dgst), unique_keys=False)
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


def _names(listing: list[str]) -> list[str]:
    """The last component of each path of one directory's listing."""
    if not listing:
        return []
    cut = listing[0].rfind("/") + 1
    return [p[cut:] for p in listing]


def _sha256(hex_: str) -> Digest | None:
    """The sha256 digest a revision directory is named after, or None for a stray name."""
    try:
        return Digest.from_parts(CANONICAL, hex_)
    except DigestError:
        return None
