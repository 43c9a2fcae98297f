"""Garbage collection: mark what manifests reference, sweep the rest, while registries serve.

distribution's semantics (``registry/storage/garbagecollect.go``), read for
behaviour: every manifest of every repository is marked (with
``delete_untagged`` only those reachable from a tag), with its config,
layers, index children and subject; blobs nobody marked are swept. Where
this collector differs, on purpose (docs/gc.md lists each):

- referrers of a kept manifest are kept (distribution deletes them: untagged);
- children of a kept index are kept with their blobs;
- the links that pointed at a swept blob (``_layers``, ``revisions``, tag
  index entries, referrer entries) go too, so no dangling link is left;
- it runs beside serving registries through the epoch protocol of
  :mod:`ocistore.storage.gcfence`, and spares whatever is younger than the
  grace period (a blob uploaded for a manifest that is not pushed yet);
- a repository that holds something unreadable (an unparseable manifest, a
  garbage link, a manifest whose data is missing) is reported with the path
  and keeps everything it links: what it references cannot be proven.

Deletions go link first, data last, so a collection killed at any point
leaves a tree both registries serve, and the next run finishes the work.
Everything goes through the :class:`~ocistore.driver.base.StorageDriver`
protocol: the filesystem and S3 drivers collect the same tree alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Protocol

from ocistore.digest import CANONICAL, Digest
from ocistore.driver.base import StorageDriver
from ocistore.errors import DigestError, PathNotFound, RegistryError
from ocistore.manifest.parse import stored_references
from ocistore.storage import bulk, catalog, paths
from ocistore.storage.gcfence import Epoch

__all__ = ["BATCH", "GcOptions", "GcReport", "Problem", "Progress", "collect"]

BATCH: Final = 1024
"""Digests per condemned batch (writers that need one wait for its whole batch, a fraction
of a second on a filesystem; fewer batches mean fewer steps that wait for their slowest
deletion, and fewer fsyncs of the same directory)."""


class Progress(Protocol):
    """What :func:`collect` reports while it works (a terminal bar, a log, nothing)."""

    def phase(self, name: str, total: int | None) -> None: ...

    def advance(self, count: int = 1, nbytes: int = 0) -> None: ...

    def finish(self) -> None: ...


class _Quiet:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class GcOptions:
    """``delete_untagged``/``dry_run`` as distribution; ``grace``: seconds a new blob or link is spared;
    ``settle``: seconds between publishing the epoch and marking (docs/gc.md); ``workers``: threads."""

    delete_untagged: bool = False
    dry_run: bool = False
    workers: int = 4
    grace: float = 3600.0
    settle: float = 5.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.grace < 0 or self.settle < 0:
            raise ValueError(f"grace and settle must be >= 0, got {self.grace}, {self.settle}")


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the collector could not read; ``path`` is the driver path."""

    path: str
    reason: str


@dataclass
class GcReport:
    """What a collection found and did (or, dry run, would do)."""

    repositories: int = 0
    manifests_marked: int = 0
    blobs_marked: int = 0
    manifests_deleted: int = 0
    blobs_swept: int = 0
    links_removed: int = 0
    bytes_freed: int = 0
    spared: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "repositories": self.repositories,
            "manifests_marked": self.manifests_marked,
            "blobs_marked": self.blobs_marked,
            "manifests_deleted": self.manifests_deleted,
            "blobs_swept": self.blobs_swept,
            "links_removed": self.links_removed,
            "bytes_freed": self.bytes_freed,
            "spared_by_writers": self.spared,
            "seconds": {k: round(v, 6) for k, v in self.seconds.items()},
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
        }


_Refs = tuple[tuple[Digest, ...], Digest | None]
"""What a manifest references: config and layers or its children, then its subject."""


@dataclass
class _Repo:
    """One repository as the mark phase saw it."""

    name: str
    revisions: dict[Digest, float] = field(default_factory=dict)  # digest -> link mtime
    layers: dict[Digest, float] = field(default_factory=dict)
    aliases: dict[Digest, Digest] = field(default_factory=dict)  # sha512/blake3 link -> blob
    dirs: dict[tuple[str, Digest], str] = field(default_factory=dict)  # (kind, digest) -> dir
    tags: dict[str, Digest] = field(default_factory=dict)
    tag_index: list[tuple[Digest, str]] = field(default_factory=list)  # (revision, entry dir)
    referrers: list[tuple[Digest, Digest, str]] = field(default_factory=list)  # subject, ref, dir
    manifests: dict[Digest, _Refs] = field(default_factory=dict)  # what each one references
    extra: set[Digest] = field(default_factory=set)  # digests a tainted repo keeps besides
    others: set[str] = field(default_factory=set)  # files that are no link the collector knows
    problems: list[Problem] = field(default_factory=list)
    kept: set[Digest] = field(default_factory=set)
    marked: set[Digest] = field(default_factory=set)
    doomed: set[Digest] = field(default_factory=set)  # revisions to delete

    @property
    def tainted(self) -> bool:
        return bool(self.problems)

    def bad(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))


def _walk(driver: StorageDriver, path: str, leaf: str) -> list[tuple[str, float, int]]:
    """Every file below ``path``; a directory holding ``leaf`` is taken as an entry holding only
    it (on a filesystem, statted, not listed: what else is there goes with it, ``whole``)."""
    return bulk.list_files(driver, path, leaf)


class _Manifests:
    """Manifests parsed so far, by digest: one shared by several repositories is read once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[Digest, _Refs] = {}

    def get(self, dgst: Digest) -> _Refs | None:
        with self._lock:
            return self._parsed.get(dgst)

    def put(self, dgst: Digest, m: _Refs) -> None:
        with self._lock:
            self._parsed[dgst] = m


def _as_link(repo: _Repo, path: str, raw: bytes | None) -> Digest | None:
    """The digest a link file held (None: removed meanwhile, or garbage, reported)."""
    if raw is None:
        return None
    try:
        return Digest.parse(raw.decode("ascii"))
    except (UnicodeDecodeError, DigestError, ValueError):
        repo.bad(path, f"link holds {raw[:80]!r}, not a digest")
        return None


def _scan(driver: StorageDriver, name: str, cache: _Manifests) -> _Repo:
    """Read one repository: its links (one walk, one bulk read) and every manifest it has."""
    repo = _Repo(name)
    base = paths.path_for(paths.RepositoryRoot(name))
    cut = len(base) + 1
    to_read: list[tuple[str, str, Digest | str]] = []  # (kind, link path, digest or tag)
    for path, mtime, _ in _walk(driver, base, paths.LINK_FILE):
        found = paths.classify_repository_file(path[cut:])
        if found is None:
            repo.others.add(path)
            continue
        kind, fields = found
        entry_dir = path[: path.rfind("/")]
        try:
            if kind == "layer":
                dgst = Digest.from_parts(*fields)
                repo.layers[dgst] = mtime
                repo.dirs[kind, dgst] = entry_dir
                if fields[0] != CANONICAL:  # an alias: its link names the sha256 blob
                    to_read.append((kind, path, dgst))
            elif kind == "revision":
                dgst = Digest.from_parts(*fields)
                repo.dirs[kind, dgst] = entry_dir
                to_read.append((kind, path, dgst))
                repo.revisions[dgst] = mtime
            elif kind == "tag":
                to_read.append((kind, path, fields[0]))
            elif kind == "tag_index":
                repo.tag_index.append((Digest.from_parts(fields[1], fields[2]), entry_dir))
            elif kind == "referrer":
                subject = Digest.from_parts(fields[0], fields[1])
                ref = Digest.from_parts(fields[2], fields[3])
                repo.referrers.append((subject, ref, entry_dir))
        except (DigestError, ValueError) as exc:
            repo.bad(path, f"not a link path of a valid digest ({exc})")
            if kind == "layer":
                repo.extra.add(Digest(":".join(fields)))
    contents = bulk.read_contents(driver, [path for _, path, _ in to_read])
    for (kind, path, key), raw in zip(to_read, contents, strict=True):
        target = _as_link(repo, path, raw)
        if target is None:
            continue
        if kind == "layer":
            if target != key:
                repo.aliases[Digest(key)] = target
        elif kind == "revision":
            if target != key:
                repo.bad(path, f"revision link holds {target}, not {key}")
        else:
            repo.tags[key] = target
    wanted: list[Digest] = []
    for dgst in repo.revisions:
        known = cache.get(dgst)
        if known is not None:
            repo.manifests[dgst] = known
        else:
            wanted.append(dgst)
    datas = [paths.path_for(paths.BlobData(dgst)) for dgst in wanted]
    for dgst, data, payload in zip(wanted, datas, bulk.read_contents(driver, datas), strict=True):
        if payload is None:
            repo.bad(data, f"data of manifest {dgst} (linked by {name}) is missing")
            continue
        try:
            repo.manifests[dgst] = stored_references(payload)
            cache.put(dgst, repo.manifests[dgst])
        except (RegistryError, ValueError) as exc:
            repo.bad(data, f"manifest {dgst} of {name} cannot be parsed: {exc}")
    return repo


def _mark(repo: _Repo, delete_untagged: bool, cutoff: float) -> None:
    """Fill ``kept``, ``marked`` and ``doomed`` of one scanned repository."""
    if repo.tainted:
        repo.kept = set(repo.revisions)
        repo.marked = set(repo.revisions) | set(repo.layers) | set(repo.tags.values()) | repo.extra
        for m in repo.manifests.values():
            repo.marked.update(_refs(m))
        repo.marked.update(s for s, r, _ in repo.referrers)
        repo.marked.update(r for s, r, _ in repo.referrers)
        repo.marked.update(repo.aliases.values())
        return
    if delete_untagged:
        roots = {d for d in repo.tags.values() if d in repo.revisions}
        roots |= {d for d, mtime in repo.revisions.items() if mtime >= cutoff}
    else:
        roots = set(repo.revisions)
    by_subject: dict[Digest, list[Digest]] = {}
    for dgst, (_, subject) in repo.manifests.items():
        if subject is not None:
            by_subject.setdefault(subject, []).append(dgst)
    stack = list(roots)
    while stack:
        dgst = stack.pop()
        if dgst in repo.kept:
            continue
        repo.kept.add(dgst)
        kept = repo.manifests.get(dgst)
        if kept is not None:
            for ref in _refs(kept):
                repo.marked.add(ref)
                if ref in repo.manifests and ref not in repo.kept:
                    stack.append(ref)  # an index child or a subject: a manifest kept with it
        stack.extend(r for r in by_subject.get(dgst, ()) if r not in repo.kept)
    repo.marked |= repo.kept
    repo.marked.update(t for a, t in repo.aliases.items() if a in repo.marked)
    repo.doomed = set(repo.revisions) - repo.kept


def _refs(m: _Refs) -> Iterator[Digest]:
    yield from m[0]
    if m[1] is not None:
        yield m[1]


_Item = tuple[Digest, list[str], list[str], int]
"""What to delete for one digest: directories first, then the others, and the bytes freed."""


_CHUNK: Final = 1000
"""Files per bulk delete call (S3's DeleteObjects limit)."""


class _Sweeper:
    """Deletes in batches under the epoch's condemn/pin handshake (or lists them, dry run).

    Within a batch every item's ``first`` directories go before any ``then``
    directory (links before data, a revision link before its index entries),
    in bulk where the driver can (:mod:`ocistore.storage.bulk`).
    """

    def __init__(
        self,
        driver: StorageDriver,
        epoch: Epoch | None,
        pool: ThreadPoolExecutor,
        report: GcReport,
        progress: Progress,
        dry_run: bool,
        workers: int,
    ) -> None:
        self.dry_run = dry_run
        self.driver = driver
        self.epoch = epoch
        self.pool = pool
        self.report = report
        self.progress = progress
        self.bulk = bulk.bulk_deleter(driver)
        self.workers = workers
        self.crowded: set[str] = set()
        """Directories that hold more than the one file the bulk steps delete: deleted whole."""
        self._lock = threading.Lock()

    def run(self, items: list[_Item], on_done: Callable[[Digest], None]) -> set[Digest]:
        """Delete each item's paths in order, per digest; returns the digests spared (pinned)."""
        spared: set[Digest] = set()
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            allowed = batch
            name = ""
            if self.epoch is not None:
                name = self.epoch.condemn(sorted({str(item[0]) for item in batch}))
                pins = self.epoch.pinned()
                allowed = [item for item in batch if str(item[0]) not in pins]
                spared |= {item[0] for item in batch if str(item[0]) in pins}
                if not self.epoch.fresh():
                    raise RuntimeError("gc heartbeat lost; stopping before deleting anything more")
            if self.dry_run:
                done = [True] * len(allowed)
            elif self.bulk is not None:
                done = self._delete_bulk(allowed)
            else:
                done = list(self.pool.map(self._delete_one, allowed))
            for item, ok in zip(allowed, done, strict=True):
                if ok:
                    self.report.deleted.extend([*item[1], *item[2]])
                    on_done(item[0])
                self.progress.advance(1, item[3] if ok else 0)
            if self.epoch is not None:
                self.epoch.decided(
                    name, [str(item[0]) for item, ok in zip(allowed, done, strict=True) if ok]
                )
        return spared

    def _delete_bulk(self, items: list[_Item]) -> list[bool]:
        ok = [True] * len(items)
        for step in (1, 2):
            owner: dict[str, int] = {}
            for i, item in enumerate(items):
                if ok[i]:
                    for directory in item[1] if step == 1 else item[2]:
                        owner[paths.entry_file(directory)] = i
            # Sorted and cut into one run per worker (at most _CHUNK files): the
            # calls overlap their waits, and siblings share one call (one fsync).
            files = sorted(owner)
            size = min(_CHUNK, max(1, -(-len(files) // self.workers)))
            chunks = [files[k : k + size] for k in range(0, len(files), size)]
            assert self.bulk is not None
            # Only the first step is fsynced: links must be gone for good before data
            # goes. A second step lost in a power cut leaves unlinked data and dangling
            # index entries, which the next run removes (as after a kill between steps).
            call = self._bulk_call if step == 1 else self._bulk_call_unsynced
            for failed in self.pool.map(call, chunks):
                for path, reason in failed.items():
                    self.report.problems.append(Problem(path, f"could not delete: {reason}"))
                    if path in owner:
                        ok[owner[path]] = False
            for i, item in enumerate(items):
                for directory in item[1] if step == 1 else item[2]:
                    if ok[i] and directory in self.crowded:
                        ok[i] = self._delete_one((item[0], [directory], [], 0))
        return ok

    def _bulk_call(self, files: list[str], sync: bool = True) -> dict[str, str]:
        assert self.bulk is not None
        try:
            return self.bulk(files, sync=sync, whole=True)
        except (RegistryError, OSError) as exc:
            return {path: str(exc) for path in files}

    def _bulk_call_unsynced(self, files: list[str]) -> dict[str, str]:
        return self._bulk_call(files, sync=False)

    def _delete_one(self, item: _Item) -> bool:
        for path in [*item[1], *item[2]]:
            try:
                self.driver.delete(path)
            except PathNotFound:
                pass
            except (RegistryError, OSError) as exc:
                with self._lock:
                    self.report.problems.append(Problem(path, f"could not delete: {exc}"))
                return False
        return True


def collect(
    driver: StorageDriver,
    options: GcOptions | None = None,
    *,
    progress: Progress | None = None,
    now: Callable[[], float] = time.time,
    before_mark: Callable[[], bool] | None = None,
) -> GcReport | None:
    """Collect the tree of ``driver``; see the module docstring and docs/gc.md.

    Raises :class:`~ocistore.storage.gcfence.GcBusy` when another collection
    runs on the root. ``before_mark`` (the scheduler's) is asked once the
    epoch is published; ``False`` withdraws it and returns ``None``.
    """
    opts = options or GcOptions()
    prog = progress or _Quiet()
    report = GcReport()
    epoch: Epoch | None = None
    if not opts.dry_run:
        epoch = Epoch(driver)
        epoch.begin()
    try:
        with (
            ThreadPoolExecutor(opts.workers, thread_name_prefix="gc") as pool,
            ThreadPoolExecutor(
                bulk.listing_threads(driver, opts.workers), thread_name_prefix="gc-mark"
            ) as readers,
        ):
            if epoch is not None and opts.settle > 0:
                t0 = time.monotonic()
                time.sleep(opts.settle)  # writers that missed the epoch finish (docs/gc.md)
                report.seconds["settle"] = time.monotonic() - t0
            if before_mark is not None and not before_mark():
                return None
            _collect(driver, opts, epoch, (readers, pool), report, prog, now() - opts.grace)
    finally:
        prog.finish()
        if epoch is not None:
            epoch.end()
    return report


def _collect(
    driver: StorageDriver,
    opts: GcOptions,
    epoch: Epoch | None,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    report: GcReport,
    prog: Progress,
    cutoff: float,
) -> None:
    """Mark with the first pool's threads (listing and reading), sweep with the second's."""
    readers, pool = pools
    t0 = time.monotonic()
    names = catalog.all_repositories(driver, readers.map)
    report.repositories = len(names)
    prog.phase("mark", len(names))
    cache = _Manifests()

    def scan_and_mark(name: str) -> _Repo:
        repo = _scan(driver, name, cache)
        _mark(repo, opts.delete_untagged, cutoff)
        prog.advance(1)
        return repo

    repos = list(readers.map(scan_and_mark, names))
    marked: set[Digest] = set()
    for repo in repos:
        marked |= repo.marked
        report.problems.extend(repo.problems)
        report.manifests_marked += len(repo.kept)
    report.seconds["mark"] = time.monotonic() - t0
    # The blob store is listed beside the manifest sweep (a blob stored after its listing
    # is simply not a candidate; one stored since the start is young, not a candidate).
    listings = [readers.submit(_walk, driver, p, paths.DATA_FILE) for p in _blob_prefixes(driver)]

    t1 = time.monotonic()
    sweeper = _Sweeper(driver, epoch, pool, report, prog, opts.dry_run, opts.workers)
    holding = {d for repo in repos for path in repo.others for d in _ancestors(path)}
    # 1. untagged manifests (the revision link first: it is the commit point), while
    # another thread plans the blob sweep as if none of them were spared.
    owner, doomed = _doomed_manifests(repos, cutoff)
    sweeper.crowded = holding & {d for item in doomed for d in [*item[1], *item[2]]}
    # Its own thread: the sweep's deletions keep every one of the pool's.
    planner = ThreadPoolExecutor(1, thread_name_prefix="gc-plan")
    plan = planner.submit(_plan_blobs, driver, repos, listings, marked, cutoff)
    planner.shutdown(wait=False)
    prog.phase("sweep manifests", len(doomed))
    deleted_manifests: set[Digest] = set()
    pinned = sweeper.run(doomed, deleted_manifests.add)
    report.manifests_deleted = len(deleted_manifests & set(owner))
    # Pinned by a writer, or not deleted (an error, reported): kept, with its references.
    spared = pinned | (set(owner) - deleted_manifests)
    blobs, sweep, strays, problems = plan.result()
    report.problems.extend(problems)
    holding |= strays
    for repo in repos:
        for dgst in repo.doomed & spared:
            stack = [dgst]
            while stack:
                d = stack.pop()
                if d in marked:
                    continue
                marked.add(d)
                m = repo.manifests.get(d)
                if m is not None:
                    stack.extend(_refs(m))
                if d in repo.aliases:
                    stack.append(repo.aliases[d])
    if spared:
        sweep = [item for item in sweep if item[0] not in marked and item[0] not in spared]
    report.manifests_marked += len({d for d in spared if d in owner})
    report.blobs_marked = len(marked & blobs)

    # 2. blobs nobody marked, with every link that names them.
    sweeper.crowded = holding & {d for item in sweep for d in [*item[1], *item[2]]}
    prog.phase("sweep blobs", len(sweep))
    swept: set[Digest] = set()
    spared_blobs = sweeper.run(sweep, swept.add)
    sizes = {d: s for d, _, _, s in sweep}
    report.blobs_swept = len(swept)
    report.bytes_freed = sum(sizes[d] for d in swept)
    report.spared = len(pinned) + len(spared_blobs)
    # Every deleted path is a link (or an entry holding one) but each swept blob's own directory.
    report.links_removed = len(report.deleted) - report.blobs_swept
    report.seconds["sweep"] = time.monotonic() - t1


def _doomed_manifests(
    repos: list[_Repo], cutoff: float
) -> tuple[dict[Digest, list[_Repo]], list[_Item]]:
    """The untagged manifests to delete (one item per digest, with every repository's revision
    link and index entries), and the index and referrer entries an interrupted run left."""
    owner: dict[Digest, list[_Repo]] = {}
    for repo in repos:
        for dgst in sorted(repo.doomed):
            if repo.revisions[dgst] < cutoff:
                owner.setdefault(dgst, []).append(repo)
    entries_of: dict[tuple[str, Digest], list[str]] = {}
    for repo in repos:
        for rev, entry in repo.tag_index:
            entries_of.setdefault((repo.name, rev), []).append(entry)
        for s, r, entry in repo.referrers:
            entries_of.setdefault((repo.name, s), []).append(entry)
            if r != s:
                entries_of.setdefault((repo.name, r), []).append(entry)
    doomed: list[_Item] = []
    for dgst, holders in owner.items():
        revisions = [repo.dirs["revision", dgst] for repo in holders]
        entries = [e for repo in holders for e in entries_of.get((repo.name, dgst), ())]
        doomed.append((dgst, revisions, entries, 0))
    for repo in repos:
        if repo.tainted:
            continue
        for rev, entry in repo.tag_index:
            if rev not in repo.revisions and rev not in owner:
                doomed.append((rev, [entry], [], 0))
        for _s, r, entry in repo.referrers:
            if r not in repo.revisions and r not in owner:
                doomed.append((r, [entry], [], 0))
    doomed.sort(key=_by_directory)
    return owner, doomed


def _plan_blobs(
    driver: StorageDriver,
    repos: list[_Repo],
    listings: list[Future[list[tuple[str, float, int]]]],
    marked: set[Digest],
    cutoff: float,
) -> tuple[set[str], list[_Item], set[str], list[Problem]]:
    """The blob sweep as the mark left it (the caller drops what spared manifests reference):
    the keys of the blobs listed, the items to sweep in order, directories stray files crowd,
    problems. Only a blob nobody marked or links as young gets its digest checked."""
    listed: dict[str, tuple[str, float, int]] = {}
    strays: set[str] = set()
    problems: list[Problem] = []
    for listing in listings:
        for path, mtime, size in listing.result():
            if not paths.is_blob_data_path(path):
                strays.update(_ancestors(path))
                continue
            # A data file out of place is keyed by its path: checked, and reported, below.
            listed[paths.blob_data_key(path) or path] = (path, mtime, size)
    links: dict[Digest, list[str]] = {}
    young: set[Digest] = set()
    for repo in repos:
        for dgst, mtime in repo.layers.items():
            named = repo.aliases.get(dgst, dgst)  # an alias link goes with the blob it names
            if mtime >= cutoff:
                young.add(named)
            links.setdefault(named, []).append(repo.dirs["layer", dgst])
            if named not in listed and not repo.tainted and not _stored(driver, named):
                problems.append(
                    Problem(
                        paths.path_for(paths.LayerLink(repo.name, dgst)),
                        f"links {dgst}, whose data is missing (kept)",
                    )
                )
        young.update(d for d in repo.revisions if d not in repo.doomed)  # linked as a manifest
    sweep: list[_Item] = []
    for key, (path, mtime, size) in listed.items():
        if key in marked or key in young:  # only a valid digest can be either
            continue
        try:
            dgst = paths.digest_from_blob_data_path(path)
        except (DigestError, ValueError) as exc:
            problems.append(Problem(path, f"stray file in the blob store: {exc}"))
            continue
        if mtime >= cutoff:
            continue
        sweep.append((dgst, links.get(dgst, []), [path[: path.rfind("/")]], size))
    sweep.sort(key=_by_directory)
    return set(listed), sweep, strays, problems


def _stored(driver: StorageDriver, dgst: Digest) -> bool:
    """Whether blob ``dgst`` has data now: one missing from the listing may have been stored
    after it (the listing runs beside the mark), which is no problem to report."""
    try:
        driver.stat(paths.path_for(paths.BlobData(dgst)))
    except (PathNotFound, DigestError, ValueError):
        return False
    return True


def _by_directory(item: _Item) -> tuple[str, str]:
    """Order a sweep by the directory holding each item's first link: a batch then changes
    few directories in its fsynced first step (one repository's ``_layers``, not hundreds)."""
    first = item[1][0] if item[1] else ""
    return first[: first.rfind("/")], str(item[0])


def _blob_prefixes(driver: StorageDriver) -> list[str]:
    """What to list the blob store by: ``blobs/`` itself where one listing covers a subtree,
    else its two-character directories (listed in parallel)."""
    out: list[str] = []
    root = paths.path_for(paths.BlobsRoot())
    if bulk.flat_listing(driver):
        return [root]
    try:
        algorithms = driver.list(root)
    except PathNotFound:
        return out
    for algorithm in algorithms:
        try:
            out += driver.list(algorithm)
        except PathNotFound:
            continue
    return out


def _ancestors(path: str) -> Iterator[str]:
    """The directories above ``path`` that it crowds: all but the parent of a ``link`` (one of
    a nested repository, which is alone in its directory as far as this file goes)."""
    end = path.rfind("/")
    if paths.is_link_path(path):
        end = path.rfind("/", 0, end)
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)


def mark_repository(
    driver: StorageDriver, name: str
) -> tuple[set[Digest], set[Digest], list[Problem]]:
    """The mark of one repository as :func:`collect` makes it without ``delete_untagged``.

    ``(marked digests, manifest revisions, problems)``, for readers that must
    agree with the collector (``ocistore du``). A repository with problems
    keeps everything it links.
    """
    repo = _scan(driver, name, _Manifests())
    _mark(repo, False, 0.0)
    return repo.marked, set(repo.revisions), repo.problems
