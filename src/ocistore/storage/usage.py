"""Disk usage per repository, and what a garbage collection would free (``ocistore du``).

A repository *uses* a blob when the collector's mark phase would keep it for
that repository. The mark is distribution's (``registry/storage/garbagecollect.go``)
without ``--delete-untagged``: every manifest revision linked in
``_manifests/revisions`` is marked, and with it what the manifest references:
the children of an index or manifest list, the config, the layers and the
``subject``. A descriptor under another algorithm than sha256 is followed
through the repository's cross-digest link to the blob it names. A
repository with anything unreadable (a garbage link, a revision whose data
is missing or cannot be parsed) keeps every blob it links, since nothing
proves it does not reference them: the rule of ``ocistore gc``.

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
    NameInvalid,
    NameUnknown,
    PathNotFound,
    RegistryError,
    TagInvalid,
)
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

    Problems are sentences naming the path. Any problem (a link that holds no
    digest or another one than its path, a revision whose data is missing or
    cannot be parsed) taints the repository, as in ``ocistore gc``: it then
    keeps every blob it links (layers, revisions, tag targets, referrers)
    besides what its readable manifests reference.
    """
    problems: list[str] = []
    revisions: list[Digest] = []
    layers: set[Digest] = set()
    linked: set[Digest] = set()  # tag targets and referrers: kept only by a tainted repository
    _scan_links(driver, name, revisions, layers, linked, problems)
    aliases: dict[Digest, Digest | None] = {}
    marked: set[Digest] = set()

    def keep(digest: Digest, *, manifest: bool) -> None:
        target = _canonical(driver, name, digest, aliases, manifest=manifest)
        if target is not None:
            marked.add(target)

    for dgst in revisions:
        keep(dgst, manifest=True)
        canonical = aliases.get(dgst, dgst)
        if canonical is None:
            continue
        data = paths.path_for(paths.BlobData(canonical))
        try:
            payload = driver.get_content(data)
        except PathNotFound:
            problems.append(f"{data}: data of manifest {dgst} is missing")
            continue
        try:
            m = parse_manifest(payload)
        except RegistryError as exc:
            problems.append(f"{data}: manifest {dgst} cannot be parsed ({exc})")
            continue
        for desc in m.references():
            keep(desc.digest, manifest=m.is_index)
        if m.subject is not None:
            keep(m.subject.digest, manifest=True)
    if problems:
        for dgst in layers:
            keep(dgst, manifest=False)
        for dgst in linked:
            keep(dgst, manifest=True)
    return marked, len(revisions), problems


def _scan_links(
    driver: StorageDriver,
    name: str,
    revisions: list[Digest],
    layers: set[Digest],
    linked: set[Digest],
    problems: list[str],
) -> None:
    """One walk of the repository: revision and layer digests, tag and referrer targets."""
    layers_dir = paths.path_for(paths.Layers(name)) + "/"
    revisions_dir = paths.path_for(paths.ManifestRevisions(name)) + "/"
    tags_dir = paths.path_for(paths.ManifestTags(name)) + "/"
    referrers_dir = paths.path_for(paths.ReferrersRoot(name)) + "/"
    try:
        entries = list(driver.walk(paths.path_for(paths.RepositoryRoot(name))))
    except PathNotFound:
        return
    for info in entries:
        path = info.path
        if info.is_dir or not paths.is_link_path(path):
            continue
        try:
            if path.startswith(layers_dir):
                layers.add(paths.digest_from_link_path(path))
            elif path.startswith(revisions_dir) and "/signatures/" not in path:
                dgst = paths.digest_from_link_path(path)
                target = _link(driver, path, problems)
                if target is not None and target != dgst and dgst.algorithm == CANONICAL:
                    problems.append(f"{path}: holds {target}, its path names {dgst}")
                revisions.append(dgst)
            elif path.startswith(tags_dir):
                tag = path[len(tags_dir) :].split("/", 1)[0]
                if path == paths.path_for(paths.ManifestTagCurrent(name, tag)):
                    target = _link(driver, path, problems)
                    if target is not None:
                        linked.add(target)
            elif path.startswith(referrers_dir):
                linked.add(paths.digest_from_link_path(path))
        except (DigestError, NameInvalid, TagInvalid) as exc:
            problems.append(f"{path}: not the link of a valid digest ({exc})")


def _link(driver: StorageDriver, path: str, problems: list[str]) -> Digest | None:
    try:
        return read_link(driver, path)
    except PathNotFound:
        return None  # removed while we read
    except DigestError as exc:
        problems.append(f"{path}: {exc}")
        return None


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
