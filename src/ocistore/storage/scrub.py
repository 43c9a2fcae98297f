"""Scrub: re-hash every blob and check every link file of a storage root, through its driver.

What is reported (each finding names its driver path):

- ``digest_mismatch``: a blob's bytes do not hash to the digest its path names;
- ``truncated``: the same, and the blob is shorter than a manifest of the root
  says it is (a cut-short write, a partial restore);
- ``missing_blob``: a link file (layer, manifest revision, tag, referrer)
  names a digest whose data is not in ``blobs/``;
- ``bad_link``: a link file that does not hold exactly one digest, or holds
  another digest than its path names (a sha256 link must name itself; a
  cross-digest link of another algorithm must name a sha256 blob);
- ``unparseable_manifest``: a manifest revision whose bytes ocistore cannot
  parse (garbage, Docker schema 1);
- ``stray_file``: a file in ``blobs/`` that is not ``<alg>/<xx>/<hex>/data``;
- ``unreadable``: a blob whose bytes cannot be read (an I/O error, with its reason).

Scrub never deletes. With ``quarantine=True`` each blob found corrupt
(``digest_mismatch`` or ``truncated``) is *moved* to
``/ocistore-quarantine/<alg>/<hex>/<UTC time>/data`` beside the registry tree
(``/docker/registry/v2``), with a ``reason.json`` next to it. Neither
registry looks outside ``/docker/registry/v2``, so the blob becomes unknown:
clients get "blob unknown" instead of wrong bytes, and the next push of the
real content stores it again. A blob that changed (size or time) between the
hash and the move is left in place and reported as found.

Blobs are hashed on a pool of threads. A blob the driver opens as a file is
hashed by the core's ``hash_file``: the native core hashes it without the
GIL and, when it is large, in place through a mapping of the file (no copy
from the page cache), so threads use every core without the cost of
processes (``benchmarks/scrub.py`` measures it). A blob cut short while it is
hashed is reported as ``truncated``; the native core turns the SIGBUS of a
mapped page cut away into that report instead of a crash.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ocistore import _core
from ocistore.digest import CANONICAL, Digest, digester
from ocistore.driver.base import FileInfo, StorageDriver
from ocistore.errors import (
    DigestError,
    DriverError,
    FileTruncated,
    ManifestInvalid,
    PathNotFound,
    RegistryError,
)
from ocistore.manifest import parse_manifest
from ocistore.storage import catalog, paths
from ocistore.storage.statter import read_link

__all__ = [
    "CORRUPT_KINDS",
    "KINDS",
    "QUARANTINE_ROOT",
    "Finding",
    "Progress",
    "ScrubReport",
    "quarantine_path",
    "scrub",
]

QUARANTINE_ROOT: Final = paths.QUARANTINE_ROOT
"""Where corrupt blobs are moved: beside the registry tree, which no registry reads outside of."""

KINDS: Final = (
    "digest_mismatch",
    "truncated",
    "missing_blob",
    "bad_link",
    "unparseable_manifest",
    "stray_file",
    "unreadable",
)
CORRUPT_KINDS: Final = frozenset({"digest_mismatch", "truncated"})
"""The findings that are a corrupt blob (what ``quarantine`` moves)."""

CHUNK: Final = 128 << 10
"""Bytes read per call while hashing a driver's stream: above the GIL threshold, small enough
to stay in cache."""

PIECE: Final = 64 << 20
"""Bytes of a file hashed per ``hash_file`` call: progress advances once per piece."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its kind (see :data:`KINDS`), the driver path and a sentence saying what."""

    kind: str
    path: str
    detail: str
    quarantined_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "path": self.path, "detail": self.detail}
        if self.quarantined_to is not None:
            out["quarantined_to"] = self.quarantined_to
        return out


@dataclass(slots=True)
class ScrubReport:
    """What a scrub saw: counts, bytes hashed, findings, and seconds per phase."""

    blobs: int = 0
    bytes: int = 0
    links: int = 0
    manifests: int = 0
    repositories: int = 0
    vanished: int = 0
    findings: list[Finding] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """Processor time of this process (all threads) per phase, beside the wall ``seconds``."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        """Findings per kind (every kind listed, zeros included)."""
        out = dict.fromkeys(KINDS, 0)
        for f in self.findings:
            out[f.kind] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "blobs": self.blobs,
            "bytes": self.bytes,
            "links": self.links,
            "manifests": self.manifests,
            "repositories": self.repositories,
            "vanished": self.vanished,
            "quarantined": sum(1 for f in self.findings if f.quarantined_to),
            "counts": self.counts(),
            "findings": [f.as_dict() for f in sorted(self.findings, key=_order)],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
            "ok": self.ok,
        }


def _order(f: Finding) -> tuple[str, str]:
    return (f.path, f.kind)


Tick = Callable[[int], None]


def _nothing(_: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Blob:
    digest: Digest
    path: str
    size: int
    mod_time: float


def quarantine_path(digest: Digest, when: float) -> str:
    """The driver path a corrupt blob is moved to (``when``: seconds since the epoch)."""
    return paths.quarantine_path(digest, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)))


class Progress(Protocol):
    """What :func:`scrub` reports as it works (the shape ``ocistore gc``'s bars take)."""

    def phase(self, name: str, total: int | None) -> None: ...

    def advance(self, count: int = 1, nbytes: int = 0) -> None: ...


class _Quiet:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        pass


class _Locked:
    """Serialise a :class:`Progress` that the hashing threads all advance."""

    def __init__(self, inner: Progress) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def phase(self, name: str, total: int | None) -> None:
        with self._lock:
            self._inner.phase(name, total)

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self._inner.advance(count, nbytes)


def scrub(
    driver: StorageDriver,
    *,
    workers: int | None = None,
    quarantine: bool = False,
    progress: Progress | None = None,
) -> ScrubReport:
    """Check every link and re-hash every blob under ``driver``'s registry tree.

    ``workers`` threads hash and read links (default: the CPUs this process
    may use). ``progress`` hears of two phases: ``links`` (one step per
    repository) and ``hash`` (one step per blob, with the bytes as they are
    hashed). Nothing is deleted; see the module docstring for ``quarantine``.
    """
    n = workers if workers is not None else _cpus()
    if n < 1:
        raise ValueError(f"workers {n!r}: must be at least 1")
    report = ScrubReport()
    lock = threading.Lock()
    shown: Progress = _Locked(progress) if progress is not None else _Quiet()

    def blob_tick(nbytes: int) -> None:
        shown.advance(0, nbytes)

    def add(found: Iterable[Finding]) -> None:
        with lock:
            report.findings.extend(found)

    clock = _Clock(report)
    blobs = _list_blobs(driver, add)
    report.blobs = len(blobs)
    report.bytes = sum(b.size for b in blobs.values())
    clock.lap("list")

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="ocistore-scrub") as pool:
        declared: dict[Digest, int] = {}
        names = list(catalog.enumerate_repositories(driver))
        report.repositories = len(names)
        shown.phase("links", len(names))

        def check_repo(name: str) -> _RepoResult:
            result = _check_repository(driver, name, blobs)
            shown.advance(1, 0)
            return result

        for result in pool.map(check_repo, names):
            report.links += result.links
            report.manifests += result.manifests
            add(result.findings)
            for dgst, size in result.declared.items():
                declared[dgst] = max(size, declared.get(dgst, 0))
        clock.lap("links")

        # Largest first: the long hashes start early and the pool drains evenly.
        order = sorted(blobs.values(), key=lambda b: b.size, reverse=True)
        corrupt: list[tuple[_Blob, Finding]] = []
        shown.phase("hash", len(order))

        outcomes: list[Digest | FileTruncated | OSError | None] = [None] * len(order)
        queue = deque(enumerate(order))

        def hash_some() -> None:
            # Each worker takes the next blob until none is left: no future and no
            # wake-up of this thread per blob, which on small blobs cost more than hashing.
            while True:
                try:
                    i, b = queue.popleft()
                except IndexError:
                    return
                outcomes[i] = _hash_blob(driver, b, blob_tick)
                shown.advance(1, 0)

        for done in [pool.submit(hash_some) for _ in range(min(n, len(order)))]:
            done.result()
        for blob, outcome in zip(order, outcomes, strict=True):
            if outcome is None:
                report.vanished += 1
                continue
            if isinstance(outcome, FileTruncated):
                detail = (
                    f"cut short while hashed: {outcome.size} bytes now, {blob.size} when listed"
                )
                corrupt.append((blob, Finding("truncated", blob.path, detail)))
                continue
            if isinstance(outcome, OSError):
                add(
                    [
                        Finding(
                            "unreadable", blob.path, f"read failed: {outcome.strerror or outcome}"
                        )
                    ]
                )
                continue
            if outcome == blob.digest:
                continue
            expected = declared.get(blob.digest)
            if expected is not None and blob.size < expected:
                kind = "truncated"
                detail = (
                    f"{blob.size} bytes where a manifest says {expected}; "
                    f"they hash to {outcome}, not {blob.digest}"
                )
            else:
                kind = "digest_mismatch"
                detail = f"{blob.size} bytes hash to {outcome}, not {blob.digest}"
            corrupt.append((blob, Finding(kind, blob.path, detail)))
        clock.lap("hash")

    for blob, finding in corrupt:
        if quarantine:
            finding = _quarantine(driver, blob, finding)
        add([finding])
    if quarantine:
        clock.lap("quarantine")
    return report


class _Clock:
    """Wall and processor time per phase, written into the report."""

    def __init__(self, report: ScrubReport) -> None:
        self.report = report
        self.wall = time.monotonic()
        self.cpu = time.process_time()

    def lap(self, phase: str) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        self.report.seconds[phase] = wall - self.wall
        self.report.cpu_seconds[phase] = cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _list_blobs(
    driver: StorageDriver, add: Callable[[Iterable[Finding]], None]
) -> dict[Digest, _Blob]:
    root = paths.path_for(paths.BlobsRoot())
    out: dict[Digest, _Blob] = {}
    try:
        entries: Iterator[FileInfo] = driver.walk(root)
    except PathNotFound:
        return out
    strays: list[Finding] = []
    for info in entries:
        if info.is_dir:
            continue
        try:
            dgst = paths.digest_from_blob_data_path(info.path)
        except DigestError as exc:
            strays.append(Finding("stray_file", info.path, f"not a blob's data file ({exc})"))
            continue
        out[dgst] = _Blob(dgst, info.path, info.size, info.mod_time)
    add(strays)
    return out


def _hash_blob(
    driver: StorageDriver, blob: _Blob, tick: Tick
) -> Digest | FileTruncated | OSError | None:
    """The digest of the blob's bytes under its own algorithm; None if it vanished.

    A read error is returned (reported as ``unreadable``), and so is a file
    cut short while it was hashed (``truncated``), not raised: one bad sector
    must not end the scrub of everything else.
    """
    try:
        return _hash_file(driver, blob, tick)
    except PathNotFound:
        return None
    except DriverError as exc:
        return OSError(str(exc))
    except OSError as exc:  # FileTruncated included
        return exc


def _hash_file(driver: StorageDriver, blob: _Blob, tick: Tick) -> Digest:
    h = digester(blob.digest.algorithm)
    f = driver.reader(blob.path)
    with f:
        fd = _fileno(f)
        readinto = getattr(f, "readinto", None)
        if fd is not None:
            _hash_fd(h, fd, tick)
        elif readinto is not None:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                got = readinto(view)
                if not got:
                    break
                h.update(view[:got])
                tick(got)
        else:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                tick(len(chunk))
    return Digest.from_parts(blob.digest.algorithm, h.hexdigest())


def _fileno(f: Any) -> int | None:
    """The descriptor of a driver's reader when it reads a regular file (None for a stream).

    A stream that has a descriptor (a socket, a pipe) is read as a stream: its
    size says nothing about its bytes.
    """
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    if not isinstance(fd, int):
        return None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return None
    return fd if regular else None


def _hash_fd(h: Any, fd: int, tick: Tick) -> None:
    """Hash the whole file, to its end when hashing finishes (as reading it to EOF would)."""
    done = 0
    while (size := os.fstat(fd).st_size) > done:
        while done < size:
            n = min(PIECE, size - done)
            _core.hash_file(h, fd, done, n)
            tick(n)
            done += n


@dataclass(slots=True)
class _RepoResult:
    links: int = 0
    manifests: int = 0
    findings: list[Finding] = field(default_factory=list)
    declared: dict[Digest, int] = field(default_factory=dict)


def _check_repository(driver: StorageDriver, name: str, blobs: dict[Digest, _Blob]) -> _RepoResult:
    result = _RepoResult()
    root = paths.path_for(paths.RepositoryRoot(name))
    revisions = paths.path_for(paths.ManifestRevisions(name)) + "/"
    # This repository's own link directories: a walk of "a" also enters "a/b",
    # which is scrubbed as a repository of its own. Uploads hold no links.
    own = tuple(
        paths.path_for(spec) + "/"
        for spec in (
            paths.Layers(name),
            paths.ManifestRevisions(name),
            paths.ManifestTags(name),
            paths.ReferrersRoot(name),
        )
    )
    try:
        entries = list(driver.walk(root))
    except PathNotFound:  # removed while we scrub
        return result
    for info in entries:
        if info.is_dir or not paths.is_link_path(info.path) or not info.path.startswith(own):
            continue
        result.links += 1
        target = _check_link(driver, info.path, blobs, result.findings)
        if target is None or not _is_revision_link(revisions, info.path):
            continue
        result.manifests += 1
        _check_manifest(driver, blobs[target], result)
    return result


def _is_revision_link(revisions: str, path: str) -> bool:
    return path.startswith(revisions) and "/signatures/" not in path


def _check_link(
    driver: StorageDriver, path: str, blobs: dict[Digest, _Blob], findings: list[Finding]
) -> Digest | None:
    """The canonical blob a link names when the link is sound and its blob is there."""
    try:
        target = read_link(driver, path)
    except PathNotFound:  # removed while we scrub
        return None
    except DigestError as exc:
        findings.append(Finding("bad_link", path, str(exc)))
        return None
    named = _named_digest(path)
    if named is not None:
        if named.algorithm == CANONICAL and named != target:
            findings.append(Finding("bad_link", path, f"holds {target}, its path names {named}"))
            return None
        if named.algorithm != CANONICAL and target.algorithm != CANONICAL:
            findings.append(
                Finding("bad_link", path, f"cross-digest link holds {target}, not a sha256 digest")
            )
            return None
    if target not in blobs:
        if _absent(driver, target):
            findings.append(Finding("missing_blob", path, f"links {target}, whose data is absent"))
            return None
        return None  # written after we listed blobs/: fine, and not ours to check
    return target


def _named_digest(path: str) -> Digest | None:
    """The digest a link's path spells (None for a tag's current link, which spells none)."""
    try:
        return paths.digest_from_link_path(path)
    except DigestError:
        return None


def _absent(driver: StorageDriver, digest: Digest) -> bool:
    try:
        driver.stat(paths.path_for(paths.BlobData(digest)))
    except PathNotFound:
        return True
    return False


def _check_manifest(driver: StorageDriver, blob: _Blob, result: _RepoResult) -> None:
    try:
        payload = driver.get_content(blob.path)
    except PathNotFound:
        return
    try:
        m = parse_manifest(payload)
    except (ManifestInvalid, RegistryError) as exc:
        result.findings.append(
            Finding("unparseable_manifest", blob.path, f"manifest {blob.digest}: {exc}")
        )
        return
    refs = list(m.references())
    if m.subject is not None:
        refs.append(m.subject)
    for desc in refs:
        if desc.digest.algorithm == CANONICAL:
            prior = result.declared.get(desc.digest, 0)
            result.declared[desc.digest] = max(prior, desc.size)


def _quarantine(driver: StorageDriver, blob: _Blob, finding: Finding) -> Finding:
    # Hash once more right before the move: a blob rewritten since (a push that
    # replaced it) must stay. Times cannot tell, since drivers round them differently.
    now = _hash_blob(driver, blob, _nothing)
    if now is None or isinstance(now, OSError):
        return finding
    if now == blob.digest:
        return Finding(
            finding.kind, finding.path, finding.detail + " (rewritten since hashed; not moved)"
        )
    when = time.time()
    dest = quarantine_path(blob.digest, when)
    reason = {
        "digest": str(blob.digest),
        "from": blob.path,
        "kind": finding.kind,
        "detail": finding.detail,
        "size": blob.size,
        "quarantined_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
    }
    try:
        driver.put_content(
            dest.rsplit("/", 1)[0] + "/reason.json",
            json.dumps(reason, indent=2, sort_keys=True).encode(),
        )
        driver.move(blob.path, dest)
    except (PathNotFound, DriverError) as exc:
        return Finding(finding.kind, finding.path, finding.detail + f" (not moved: {exc})")
    return Finding(finding.kind, finding.path, finding.detail, quarantined_to=dest)
