"""Disk usage per repository, and what a garbage collection would free (``ocistore du``).

A repository *uses* a blob when the collector's mark phase would keep it for
that repository: the mark is :func:`ocistore.storage.gc.mark_repository`'s,
without ``--delete-untagged`` (every manifest revision, with the children of
an index, the config, the layers and the ``subject``; a repository with
anything unreadable keeps every blob it links). A marked digest under another
algorithm than sha256 counts as the sha256 blob the repository's cross-digest
link names.

Each used blob's bytes are counted once per repository that uses it:
*exclusive* when no other repository uses it, *shared* otherwise.
``reclaimable`` is every blob in ``blobs/`` that no repository uses: what a
collection without ``--delete-untagged`` would sweep. ``ocistore gc`` may
free less: it spares blobs younger than its grace period and whatever is
pushed while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ocistore.digest import CANONICAL, Digest
from ocistore.driver.base import StorageDriver
from ocistore.errors import (
    DigestError,
    NameUnknown,
    PathNotFound,
)
from ocistore.storage import catalog, paths
from ocistore.storage.gc import mark_repository
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

    The mark is the collector's (:func:`~ocistore.storage.gc.mark_repository`);
    problems are its findings as ``path: reason`` sentences, and any of them
    makes the repository keep every blob it links.
    """
    marked, revisions, problems = mark_repository(driver, name)
    aliases: dict[Digest, Digest | None] = {}
    blobs: set[Digest] = set()
    for dgst in marked:
        target = _canonical(driver, name, dgst, aliases, manifest=dgst in revisions)
        if target is not None:
            blobs.add(target)
    return blobs, len(revisions), [f"{p.path}: {p.reason}" for p in problems]


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
    target: Digest | None
    try:
        target = read_link(driver, paths.path_for(spec))
    except (PathNotFound, DigestError, ValueError):
        target = None  # no alias here, or a digest a link path cannot hold
    aliases[digest] = target
    return target


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
