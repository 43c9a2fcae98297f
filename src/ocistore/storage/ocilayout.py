"""OCI image layouts in and out of a registry (``ocistore export`` / ``ocistore import``).

An OCI image layout (image-spec ``image-layout.md``) is a directory::

    DIR/oci-layout     {"imageLayoutVersion": "1.0.0"}
    DIR/index.json     an OCI index: the entry points, tags as org.opencontainers.image.ref.name
    DIR/blobs/<alg>/<hex>   every manifest, index, config and layer, named by its digest

**Export** writes one image (a manifest, or an index with every child, as
``skopeo copy --all`` does) and every referrer of each of its manifests
(recursively: signatures of SBOMs too). ``index.json`` lists the image first,
with the tag as its ``ref.name`` when exported by tag, then each referrer
without a name (as oras does), so ``skopeo copy oci:DIR:TAG`` finds the
image. The layout is built in a temporary directory beside ``DIR`` and
renamed into place at the end: ``DIR`` either appears whole or not at all.
``DIR`` must not exist or be an empty directory. Every blob is hashed while
it is copied, so a corrupt store yields an error, never a wrong layout.

**Import** first reads and checks everything the layout's ``index.json``
reaches: each blob present under its digest, of the size its descriptor
says, hashing to its digest, each manifest parseable, every reference
resolvable within the layout. Only then is anything written: blobs, then
manifests (children before their index), then tags. Bad input
(:class:`LayoutInvalid`) therefore writes nothing. Tags come from the
``ref.name`` annotations; ``NAME:TAG`` instead tags the layout's one named
image (or its one image when nothing is named).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, digester
from ocistore.errors import (
    BlobUnknown,
    DigestError,
    ManifestInvalid,
    ManifestUnknown,
    RegistryError,
    TagInvalid,
    TagUnknown,
)
from ocistore.manifest import Manifest, parse_manifest
from ocistore.manifest import mediatypes as mt
from ocistore.manifest.document import parse_descriptor
from ocistore.reference import validate_tag
from ocistore.storage.registry import Registry, Repository

__all__ = [
    "LAYOUT_VERSION",
    "REF_NAME",
    "ExportResult",
    "ImportResult",
    "LayoutError",
    "LayoutInvalid",
    "export_layout",
    "import_layout",
    "read_layout",
]

REF_NAME: Final = "org.opencontainers.image.ref.name"
LAYOUT_VERSION: Final = "1.0.0"
CHUNK: Final = 1 << 20

Tick = Callable[[int], None]


def _nothing(_: int) -> None:
    return None


class LayoutError(Exception):
    """An export or import that cannot be done; the message names the value and the reason."""


class LayoutInvalid(LayoutError):
    """The layout directory is not a valid, complete OCI image layout."""


@dataclass(slots=True)
class ExportResult:
    digest: Digest
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    referrers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "manifests": self.manifests,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "referrers": self.referrers,
        }


@dataclass(slots=True)
class ImportResult:
    manifests: list[Digest] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    tags: dict[str, Digest] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifests": [str(d) for d in self.manifests],
            "blobs": self.blobs,
            "bytes": self.bytes,
            "tags": {t: str(d) for t, d in sorted(self.tags.items())},
        }


# --- export -----------------------------------------------------------------------


def export_layout(
    registry: Registry,
    name: str,
    reference: str,
    dest: str | os.PathLike[str],
    *,
    tick: Tick = _nothing,
) -> ExportResult:
    """Write ``name``'s image ``reference`` (a tag or a digest) as an OCI layout at ``dest``.

    Raises :class:`LayoutError` naming what is missing (tag, manifest, blob)
    or why ``dest`` cannot be used; nothing is left at ``dest`` then.
    """
    repo = registry.repository(name)
    tag: str | None = None
    try:
        if ":" in reference:  # a tag cannot hold ':'; a digest always does
            root = Digest(reference)
        else:
            validate_tag(reference)
            tag = reference
            root = repo.tags.resolve(reference)
    except (DigestError, TagInvalid) as exc:
        raise LayoutError(f"{reference!r}: not a tag or a digest ({exc})") from None
    except TagUnknown:
        raise LayoutError(f"{name}:{reference}: no such tag") from None

    target = Path(dest)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LayoutError(f"{target}: exists and is not an empty directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise LayoutError(f"{parent}: no such directory")

    manifests: dict[Digest, Manifest] = {}
    blobs: dict[Digest, int] = {}
    order: list[Digest] = []
    referrer_descs: list[Descriptor] = []
    _collect(repo, root, manifests, blobs, order, referrer_descs, path=f"{name}@{root}")

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=parent))
    try:
        result = ExportResult(root)
        (tmp / "blobs").mkdir()
        for dgst in order:
            payload = manifests[dgst].payload
            _write_file(tmp, dgst, [payload])
            result.manifests += 1
            result.bytes += len(payload)
        for dgst, size in blobs.items():
            _copy_blob(repo, tmp, dgst, size, tick)
            result.blobs += 1
            result.bytes += size
        top = manifests[root].descriptor()
        if tag is not None:
            top = top.with_(annotations={REF_NAME: tag})
        entries = [top.to_json()] + [d.to_json() for d in referrer_descs]
        result.referrers = len(referrer_descs)
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        _write_small(tmp / "oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}))
        _write_small(tmp / "index.json", json.dumps(index, indent=2))
        _fsync_dir(tmp)
        if target.exists():
            target.rmdir()  # empty (checked above); rename cannot replace it on every platform
        os.rename(tmp, target)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _collect(
    repo: Repository,
    root: Digest,
    manifests: dict[Digest, Manifest],
    blobs: dict[Digest, int],
    order: list[Digest],
    referrer_descs: list[Descriptor],
    *,
    path: str,
) -> None:
    """Every manifest reachable from ``root`` and their referrers, children first."""
    stack: list[tuple[Digest, str, bool]] = [(root, path, False)]
    while stack:
        dgst, where, expanded = stack.pop()
        if expanded:
            order.append(dgst)
            continue
        if dgst in manifests:
            continue
        try:
            m = repo.manifests.get(dgst)
        except ManifestUnknown:
            raise LayoutError(f"{where}: manifest {dgst} is not in {repo.name}") from None
        except ManifestInvalid as exc:
            raise LayoutError(f"{where}: manifest {dgst} cannot be parsed ({exc})") from None
        manifests[dgst] = m
        stack.append((dgst, where, True))
        if m.is_index:
            for i, child in enumerate(m.manifests):
                stack.append((child.digest, f"{where} manifests[{i}]", False))
        else:
            for i, desc in enumerate(m.references()):
                if desc.urls:
                    continue  # a foreign layer: fetched from its URLs, never stored
                try:
                    stored = repo.blobs.stat(desc.digest)
                except BlobUnknown:
                    raise LayoutError(
                        f"{where}: blob {desc.digest} (reference {i}) is not in {repo.name}"
                    ) from None
                blobs[desc.digest] = stored.size
        for ref in repo.manifests.referrers(dgst):
            if ref.digest not in manifests:
                referrer_descs.append(ref)
                stack.append((ref.digest, f"{where} referrer {ref.digest}", False))


def _blob_path(base: Path, dgst: Digest) -> Path:
    return base / "blobs" / dgst.algorithm / dgst.encoded


def _write_file(base: Path, dgst: Digest, chunks: list[bytes]) -> None:
    path = _blob_path(base, dgst)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def _copy_blob(repo: Repository, base: Path, dgst: Digest, size: int, tick: Tick) -> None:
    path = _blob_path(base, dgst)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = digester(dgst.algorithm)
    copied = 0
    try:
        src = repo.blobs.open(dgst)
    except BlobUnknown:
        raise LayoutError(f"blob {dgst} disappeared from {repo.name} during the export") from None
    with src, open(path, "wb") as out:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            out.write(chunk)
            copied += len(chunk)
            tick(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    got = f"{dgst.algorithm}:{h.hexdigest()}"
    if got != dgst or copied != size:
        raise LayoutError(
            f"blob {dgst} in {repo.name} is corrupt: {copied} bytes hashing to {got} "
            "(run `ocistore scrub`)"
        )


def _write_small(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- import -----------------------------------------------------------------------


@dataclass(slots=True)
class Layout:
    """A checked layout: what to write, in order. Built by :func:`read_layout`."""

    root: Path
    entries: list[Descriptor]
    manifests: dict[Digest, tuple[Manifest, Descriptor]]
    order: list[Digest]
    blobs: dict[Digest, int]

    def blob_path(self, dgst: Digest) -> Path:
        return _blob_path(self.root, dgst)


def _load_json(path: Path, what: str) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LayoutInvalid(f"{path}: missing (not an OCI image layout)") from None
    except OSError as exc:
        raise LayoutInvalid(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LayoutInvalid(f"{path}: {what} is not valid JSON ({exc})") from None


def read_layout(src: str | os.PathLike[str], *, tick: Tick = _nothing) -> Layout:
    """Read and check the whole layout at ``src``; raises :class:`LayoutInvalid` naming the fault."""
    root = Path(src)
    if not root.is_dir():
        raise LayoutInvalid(f"{root}: no such directory")
    marker = _load_json(root / "oci-layout", "oci-layout")
    version = marker.get("imageLayoutVersion") if isinstance(marker, dict) else None
    if version != LAYOUT_VERSION:
        raise LayoutInvalid(
            f"{root / 'oci-layout'}: imageLayoutVersion is {version!r}, expected {LAYOUT_VERSION!r}"
        )
    index_path = root / "index.json"
    doc = _load_json(index_path, "index.json")
    if not isinstance(doc, dict):
        raise LayoutInvalid(f"{index_path}: expected a JSON object")
    if doc.get("schemaVersion") != 2:
        raise LayoutInvalid(
            f"{index_path}: schemaVersion is {doc.get('schemaVersion')!r}, expected 2"
        )
    media_type = doc.get("mediaType")
    if media_type is not None and media_type != mt.OCI_INDEX:
        raise LayoutInvalid(f"{index_path}: mediaType is {media_type!r}, expected {mt.OCI_INDEX!r}")
    raw_entries = doc.get("manifests")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise LayoutInvalid(f"{index_path}: 'manifests' must be a non-empty array")
    entries: list[Descriptor] = []
    for i, raw in enumerate(raw_entries):
        try:
            entries.append(parse_descriptor(raw, f"manifests[{i}]"))
        except ManifestInvalid as exc:
            raise LayoutInvalid(f"{index_path}: {exc.reason}") from None

    layout = Layout(root, entries, {}, [], {})
    for i, entry in enumerate(entries):
        _check_manifest_tree(layout, entry, f"{index_path} manifests[{i}]", tick)
    return layout


def _check_manifest_tree(layout: Layout, top: Descriptor, where: str, tick: Tick) -> None:
    stack: list[tuple[Descriptor, str, bool]] = [(top, where, False)]
    while stack:
        desc, at, expanded = stack.pop()
        if expanded:
            if desc.digest not in layout.order:
                layout.order.append(desc.digest)
            continue
        if desc.digest in layout.manifests:
            continue
        payload = _read_verified(layout, desc, at, tick)
        try:
            m = parse_manifest(payload, desc.media_type or None)
        except RegistryError as exc:
            raise LayoutInvalid(f"{at}: manifest {desc.digest} cannot be parsed ({exc})") from None
        layout.manifests[desc.digest] = (m, desc)
        stack.append((desc, at, True))
        if m.is_index:
            for i, child in enumerate(m.manifests):
                stack.append((child, f"{at} -> manifests[{i}]", False))
        else:
            for i, ref in enumerate(m.references()):
                if ref.urls or ref.digest in layout.blobs:
                    continue
                _verify_blob(
                    layout, ref, f"{at} -> {'config' if i == 0 else 'layer'} {ref.digest}", tick
                )
                layout.blobs[ref.digest] = ref.size


def _open_blob(layout: Layout, desc: Descriptor, at: str) -> tuple[Path, int]:
    path = layout.blob_path(desc.digest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LayoutInvalid(f"{at}: blob {desc.digest} is missing ({path})") from None
    if desc.size >= 0 and size != desc.size:
        raise LayoutInvalid(
            f"{at}: blob {desc.digest} holds {size} bytes, its descriptor says {desc.size} ({path})"
        )
    return path, size


def _read_verified(layout: Layout, desc: Descriptor, at: str, tick: Tick) -> bytes:
    path, size = _open_blob(layout, desc, at)
    if size > 4 * 1024 * 1024:
        raise LayoutInvalid(f"{at}: manifest {desc.digest} is {size} bytes, above the 4 MiB limit")
    payload = path.read_bytes()
    h = digester(desc.digest.algorithm)
    h.update(payload)
    _check_digest(desc.digest, h.hexdigest(), at, path)
    tick(len(payload))
    return payload


def _verify_blob(layout: Layout, desc: Descriptor, at: str, tick: Tick) -> None:
    path, _ = _open_blob(layout, desc, at)
    h = digester(desc.digest.algorithm)
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            tick(len(chunk))
    _check_digest(desc.digest, h.hexdigest(), at, path)


def _check_digest(expected: Digest, hexdigest: str, at: str, path: Path) -> None:
    got = f"{expected.algorithm}:{hexdigest}"
    if got != expected:
        raise LayoutInvalid(f"{at}: blob {expected} hashes to {got} ({path})")


def _tags_for(layout: Layout, tag: str | None) -> dict[str, Digest]:
    named: dict[str, Digest] = {}
    for entry in layout.entries:
        ref = (entry.annotations or {}).get(REF_NAME)
        if ref is None:
            continue
        if ref in named and named[ref] != entry.digest:
            raise LayoutInvalid(
                f"{layout.root / 'index.json'}: ref.name {ref!r} names both "
                f"{named[ref]} and {entry.digest}"
            )
        named[ref] = entry.digest
    if tag is not None:
        candidates = set(named.values())
        if not candidates:
            candidates = {
                e.digest for e in layout.entries if layout.manifests[e.digest][0].subject is None
            }
        if len(candidates) != 1:
            listed = ", ".join(sorted(named)) or f"{len(candidates)} unnamed images"
            raise LayoutError(
                f"{layout.root}: holds several images ({listed}); import without a tag "
                "to use their ref.name tags"
            )
        return {tag: candidates.pop()}
    for ref in named:
        try:
            validate_tag(ref)
        except TagInvalid:
            raise LayoutError(
                f"{layout.root / 'index.json'}: ref.name {ref!r} is not a valid tag; "
                "give NAME:TAG to choose one"
            ) from None
    return named


def import_layout(
    registry: Registry,
    src: str | os.PathLike[str],
    name: str,
    tag: str | None = None,
    *,
    tick: Tick = _nothing,
) -> ImportResult:
    """Copy every image of the layout at ``src`` into ``name``, tagged; see the module docstring.

    Raises :class:`LayoutInvalid` (or :class:`LayoutError` for an ambiguous tag)
    before anything is written.
    """
    repo = registry.repository(name)
    if tag is not None:
        validate_tag(tag)
    layout = read_layout(src, tick=tick)
    tags = _tags_for(layout, tag)
    result = ImportResult()
    for dgst, size in layout.blobs.items():
        try:
            if repo.blobs.stat(dgst).size == size:
                continue
        except BlobUnknown:
            pass
        with repo.blobs.create() as w:
            for chunk in _iter_chunks(layout.blob_path(dgst)):
                w.write(chunk)
            w.commit(Descriptor(digest=dgst, size=size))
        result.blobs += 1
        result.bytes += size
    for dgst in layout.order:
        m, _ = layout.manifests[dgst]
        repo.manifests.put(m.payload, media_type=m.media_type)
        result.manifests.append(dgst)
    for t, dgst in tags.items():
        repo.tags.tag(t, dgst)
        result.tags[t] = dgst
    return result


def _iter_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            yield chunk
