"""Disk usage per repository, and what a garbage collection would free (``ocistore du``).

A repository *uses* a blob when the collector's mark phase would keep it for
that repository. The mark is distribution's (``registry/storage/garbagecollect.go``)
without ``--delete-untagged``: every manifest revision linked in
``_manifests/revisions`` is marked, and with it what the manifest references:
the children of an index or manifest list, the config, the layers and the
``subject``. A descriptor under another algorithm than sha256 is followed
through the repository's cross-digest link to the blob it names. A revision
whose bytes cannot be parsed keeps every blob the repository links
(``_layers``), since nothing proves it does not reference them.

Each used blob's bytes are counted once per repository that uses it:
*exclusive* when no other repository uses it, *shared* otherwise.
``reclaimable`` is every blob in ``blobs/`` that no repository uses: what a
collection started now would sweep (a collection run while clients push may
free less, since it keeps what was pushed after it began).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ocistore.digest import CANONICAL, Digest
from ocistore.driver.base import StorageDriver
from ocistore.errors import DigestError, NameUnknown, PathNotFound, RegistryError
from ocistore.manifest import parse_manifest
from ocistore.storage import catalog, paths
from ocistore.storage.statter import read_link

__all__ = ["RepositoryUsage", "UsageReport", "marked_blobs", "usage"]


@dataclass(slots=True)
class RepositoryUsage:
    """Bytes a repository uses, split by whether another repository uses the same blobs."""

    name: str
    manifests: int = 0
    blobs: int = 0
    exclusive: int = 0
    shared: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.exclusive + self.shared

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "bytes": self.total,
            "exclusive": self.exclusive,
            "shared": self.shared,
            "problems": list(self.problems),
        }


@dataclass(slots=True)
class UsageReport:
    """Per-repository usage, the whole ``blobs/`` tree, and what a collection would free."""

    repositories: list[RepositoryUsage]
    blobs: int
    bytes: int
    reclaimable_blobs: int
    reclaimable_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "repositories": [r.as_dict() for r in self.repositories],
            "blobs": self.blobs,
            "bytes": self.bytes,
            "reclaimable": {"blobs": self.reclaimable_blobs, "bytes": self.reclaimable_bytes},
        }


@dataclass(slots=True)
class _Marked:
    name: str
    blobs: set[Digest]
    manifests: int
    problems: list[str]


def marked_blobs(driver: StorageDriver, name: str) -> tuple[set[Digest], int, list[str]]:
    """The sha256 blobs the mark phase keeps for repository ``name``; manifests; problems.

    Problems are sentences naming the path (an unparseable revision, a bad link).
    """
    marked: set[Digest] = set()
    problems: list[str] = []
    revisions = paths.path_for(paths.ManifestRevisions(name))
    digests: list[Digest] = []
    try:
        for info in driver.walk(revisions):
            if info.is_dir or not paths.is_link_path(info.path) or "/signatures/" in info.path:
                continue
            try:
                digests.append(paths.digest_from_link_path(info.path))
            except DigestError as exc:
                problems.append(f"{info.path}: {exc}")
    except PathNotFound:
        pass
    keep_all_layers = False
    aliases: dict[Digest, Digest | None] = {}
    for dgst in digests:
        canonical = _canonical(driver, name, dgst, aliases, manifest=True)
        if canonical is None:
            continue
        marked.add(canonical)
        try:
            payload = driver.get_content(paths.path_for(paths.BlobData(canonical)))
        except PathNotFound:
            continue  # linked, data gone: nothing to keep
        try:
            m = parse_manifest(payload)
        except RegistryError as exc:
            problems.append(
                f"{paths.path_for(paths.ManifestRevisionLink(name, dgst))}: "
                f"unparseable manifest ({exc}); every linked layer is kept"
            )
            keep_all_layers = True
            continue
        refs = list(m.references())
        if m.subject is not None:
            refs.append(m.subject)
        for desc in refs:
            target = _canonical(driver, name, desc.digest, aliases, manifest=m.is_index)
            if target is not None:
                marked.add(target)
    if keep_all_layers:
        marked.update(_linked_layers(driver, name, problems))
    return marked, len(digests), problems


def _canonical(
    driver: StorageDriver,
    name: str,
    digest: Digest,
    aliases: dict[Digest, Digest | None],
    *,
    manifest: bool,
) -> Digest | None:
    """The sha256 blob ``digest`` stands for in ``name`` (itself when it is sha256)."""
    if digest.algorithm == CANONICAL:
        return digest
    if digest in aliases:
        return aliases[digest]
    spec: paths.PathSpec = (
        paths.ManifestRevisionLink(name, digest) if manifest else paths.LayerLink(name, digest)
    )
    try:
        target: Digest | None = read_link(driver, paths.path_for(spec))
    except (PathNotFound, DigestError):
        target = None
    aliases[digest] = target
    return target


def _linked_layers(driver: StorageDriver, name: str, problems: list[str]) -> set[Digest]:
    out: set[Digest] = set()
    try:
        entries = list(driver.walk(paths.path_for(paths.Layers(name))))
    except PathNotFound:
        return out
    for info in entries:
        if info.is_dir or not paths.is_link_path(info.path):
            continue
        try:
            out.add(read_link(driver, info.path))
        except PathNotFound:
            continue
        except DigestError as exc:
            problems.append(f"{info.path}: {exc}")
    return out


def usage(
    driver: StorageDriver, names: Iterable[str] | None = None, *, workers: int = 8
) -> UsageReport:
    """Usage of the named repositories (default: all) and the root's reclaimable bytes.

    Every repository is marked whatever ``names`` says, since "shared" and
    "reclaimable" depend on all of them. A named repository that does not
    exist raises :class:`~ocistore.errors.NameUnknown`.
    """
    everyone = list(catalog.enumerate_repositories(driver))
    wanted = list(names) if names is not None else everyone
    known = set(everyone)
    for name in wanted:
        if name not in known:
            raise NameUnknown(name)

    sizes: dict[Digest, int] = {}
    try:
        for info in driver.walk(paths.path_for(paths.BlobsRoot())):
            if info.is_dir:
                continue
            try:
                sizes[paths.digest_from_blob_data_path(info.path)] = info.size
            except DigestError:
                continue
    except PathNotFound:
        pass

    def mark(name: str) -> _Marked:
        blobs, manifests, problems = marked_blobs(driver, name)
        return _Marked(name, blobs & sizes.keys(), manifests, problems)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        marks = list(pool.map(mark, everyone))
    users: dict[Digest, int] = {}
    for m in marks:
        for dgst in m.blobs:
            users[dgst] = users.get(dgst, 0) + 1
    by_name = {m.name: m for m in marks}
    out: list[RepositoryUsage] = []
    for name in wanted:
        m = by_name[name]
        ru = RepositoryUsage(name, manifests=m.manifests, blobs=len(m.blobs), problems=m.problems)
        for dgst in m.blobs:
            if users[dgst] > 1:
                ru.shared += sizes[dgst]
            else:
                ru.exclusive += sizes[dgst]
        out.append(ru)
    unused = [d for d in sizes if d not in users]
    return UsageReport(
        repositories=out,
        blobs=len(sizes),
        bytes=sum(sizes.values()),
        reclaimable_blobs=len(unused),
        reclaimable_bytes=sum(sizes[d] for d in unused),
    )
