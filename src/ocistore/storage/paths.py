"""Every driver path the storage layer uses, built from small spec values by :func:`path_for`.

The tree is distribution's (``registry/storage/paths.go``), byte for byte, so a
root written here can be served by the Go registry and the other way round::

    /docker/registry/v2                                    ROOT
    ├─ blobs/                                              BlobsRoot()
    │  └─ <alg>/<hex[:2]>/<hex>/                           Blob(digest)
    │                          └─ data                     BlobData(digest)
    └─ repositories/                                       RepositoriesRoot()
       └─ <name>/                                          RepositoryRoot(name)   name may hold '/'
          ├─ _layers/                                      Layers(name)
          │  └─ <alg>/<hex>/link                           LayerLink(name, digest)
          ├─ _manifests/
          │  ├─ revisions/                                 ManifestRevisions(name)
          │  │  └─ <alg>/                                  ManifestRevisionsOf(name, algorithm)
          │  │     └─ <hex>/                               ManifestRevision(name, revision)
          │  │        ├─ link                              ManifestRevisionLink(name, revision)
          │  │        └─ signatures/                       ManifestSignatures(name, revision)   (schema1, legacy)
          │  │           └─ <alg>/<hex>/link               ManifestSignatureLink(name, revision, signature)
          │  └─ tags/                                      ManifestTags(name)
          │     └─ <tag>/                                  ManifestTag(name, tag)
          │        ├─ current/link                         ManifestTagCurrent(name, tag)
          │        └─ index/                               ManifestTagIndex(name, tag)
          │           └─ <alg>/<hex>/                      ManifestTagIndexEntry(name, tag, revision)
          │              └─ link                           ManifestTagIndexEntryLink(name, tag, revision)
          ├─ _uploads/                                     Uploads(name)
          │  └─ <id>/                                      Upload(name, upload_id)
          │     ├─ data                                    UploadData(name, upload_id)
          │     ├─ startedat                               UploadStartedAt(name, upload_id)
          │     └─ hashstates/<alg>/                       UploadHashStates(name, upload_id, algorithm)
          │                      └─ <offset>               UploadHashState(name, upload_id, algorithm, offset)
          ├─ _proxy/                                       ProxyHolds(name)   (ocistore's proxy mode; distribution ignores it)
          │  └─ <kind>/<alg>/<hex>                         ProxyHold(name, kind, digest)   expiry, RFC 3339
          └─ _referrers/                                   ReferrersRoot(name)   (ocistore only; distribution ignores it)
             ├─ _record                                    ReferrersRecord(name)   revisions already indexed
             └─ <alg>/<hex>/                               Referrers(name, subject)
                └─ <alg>/<hex>/                            ReferrerEntry(name, subject, referrer)
                   ├─ link                                 ReferrerLink(name, subject, referrer)
                   └─ descriptor                           ReferrerDescriptor(name, subject, referrer)   (JSON)

Link files hold the target digest string and nothing else (no newline).

Beside ``ROOT``, outside what either registry reads, ``ocistore scrub
--quarantine`` keeps corrupt blobs: ``/ocistore-quarantine/<alg>/<hex>/<stamp>/data``
(:func:`quarantine_path`).

Why specs and one function: every path is built in one place, from values that
were validated when the spec was made (names by
:func:`ocistore.reference.validate_name`, tags by
:func:`~ocistore.reference.validate_tag`, digests by :class:`~ocistore.digest.Digest`,
upload ids and offsets here), so no caller can smuggle ``..`` or an empty
component into a driver path.

This is the only module that spells the layout: the core (``ocistore._core``)
is handed the templates it needs (:data:`BLOB_DATA_TEMPLATE`,
:func:`link_template`) and knows nothing else of the tree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ocistore.digest import ALGORITHMS, Digest, as_digest
from ocistore.errors import BlobUploadUnknown, DigestInvalid
from ocistore.reference import validate_name, validate_tag

__all__ = [
    "BLOB_DATA_TEMPLATE",
    "GC_EPOCHS",
    "PROXY_HOLD_KINDS",
    "QUARANTINE_ROOT",
    "REPOSITORY_MARKERS",
    "ROOT",
    "UPLOADS_DIR",
    "Blob",
    "BlobData",
    "BlobsRoot",
    "LayerLink",
    "Layers",
    "ManifestRevision",
    "ManifestRevisionLink",
    "ManifestRevisions",
    "ManifestRevisionsOf",
    "ManifestSignatureLink",
    "ManifestSignatures",
    "ManifestTag",
    "ManifestTagCurrent",
    "ManifestTagIndex",
    "ManifestTagIndexEntry",
    "ManifestTagIndexEntryLink",
    "ManifestTags",
    "PathSpec",
    "ProxyHold",
    "ProxyHolds",
    "ReferrerDescriptor",
    "ReferrerEntry",
    "ReferrerLink",
    "Referrers",
    "ReferrersRecord",
    "ReferrersRoot",
    "RepositoriesRoot",
    "RepositoryRoot",
    "Upload",
    "UploadData",
    "UploadHashState",
    "UploadHashStates",
    "UploadStartedAt",
    "Uploads",
    "blob_data_key",
    "classify_repository_file",
    "digest_from_blob_data_path",
    "digest_from_link_path",
    "is_blob_data_path",
    "is_link_path",
    "link_template",
    "path_for",
    "quarantine_path",
    "started_at_of",
    "validate_upload_id",
]

ROOT: Final = "/docker/registry/v2"
REPOSITORIES: Final = f"{ROOT}/repositories"
BLOBS: Final = f"{ROOT}/blobs"
GC_EPOCHS: Final = f"{ROOT}/_ocistore/gc"
"""Where a running collection keeps its epoch (heartbeat, pins, condemned batches); see docs/gc.md."""

BLOB_DATA_TEMPLATE: Final = f"{BLOBS}/{{algorithm}}/{{encoded:.2}}/{{encoded}}/data"
""":class:`BlobData` as a template of the core's stat cache (``str.format`` syntax)."""

LINK_FILE: Final = "link"
"""The one file of a link entry directory (``…/<alg>/<hex>/link``, ``…/current/link``)."""
DATA_FILE: Final = "data"
"""The one file of a blob directory (``…/<alg>/<xx>/<hex>/data``)."""

REPOSITORY_MARKERS: Final = frozenset({"_manifests", "_layers"})
"""Children that make a directory a repository (distribution 3's marker, then 2's)."""

UPLOADS_DIR: Final = "_uploads"
"""The name of a repository's uploads directory (what upload purging looks for)."""

# distribution's ids are uuid4 strings; anything that is a single safe path
# component is accepted so uploads begun by other registries resume too.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_upload_id(upload_id: str) -> str:
    """Return ``upload_id`` if it can name an upload; else raise :class:`BlobUploadUnknown`.

    An id that could not be a path component cannot name an upload that exists,
    so it is reported as unknown (what the HTTP API answers), never as a path error.
    """
    if not isinstance(upload_id, str) or _UPLOAD_ID.fullmatch(upload_id) is None:
        raise BlobUploadUnknown(str(upload_id))
    return upload_id


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise DigestInvalid(algorithm, f"unknown algorithm; expected one of {ALGORITHMS}")
    return algorithm


def _digest_components(digest: Digest) -> str:
    return f"{digest.algorithm}/{digest.encoded}"


@functools.lru_cache(maxsize=4096)
def _valid_name(name: str) -> str:
    # Names repeat on every request; validating each distinct one once keeps
    # the stat path cheap. Only valid names are cached (invalid ones raise).
    return validate_name(name)


@functools.lru_cache(maxsize=4096)
def _valid_tag(tag: str) -> str:
    return validate_tag(tag)


def _valid_digest(value: Digest | str) -> Digest:
    return value if type(value) is Digest else as_digest(value)


def _valid_offset(offset: int) -> int:
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"hash state offset must be an int >= 0, got {offset!r}")
    return offset


PROXY_HOLD_KINDS: Final = ("blob", "manifest")
"""What a proxy hold keeps: a layer link or a manifest revision (see ``ocistore.proxy.expiry``)."""


def _valid_kind(kind: str) -> str:
    if kind not in PROXY_HOLD_KINDS:
        raise ValueError(f"proxy hold kind must be one of {PROXY_HOLD_KINDS}, got {kind!r}")
    return kind


_VALIDATORS: Final[dict[str, Callable[[Any], Any]]] = {
    "kind": _valid_kind,
    "name": _valid_name,
    "tag": _valid_tag,
    "digest": _valid_digest,
    "revision": _valid_digest,
    "signature": _valid_digest,
    "subject": _valid_digest,
    "referrer": _valid_digest,
    "upload_id": validate_upload_id,
    "algorithm": _check_algorithm,
    "offset": _valid_offset,
}


class _Spec:
    """Mixin: every field is validated (digests normalised to :class:`Digest`) at construction."""

    __slots__ = ()

    def __post_init__(self) -> None:
        fields: tuple[str, ...] = self.__slots__
        for field in fields:
            value = getattr(self, field)
            checked = _VALIDATORS[field](value)
            if checked is not value:
                object.__setattr__(self, field, checked)


# --- roots -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositoriesRoot(_Spec):
    """``repositories/``: the catalog walks this."""


@dataclass(frozen=True, slots=True)
class RepositoryRoot(_Spec):
    """``repositories/<name>``: everything one repository owns."""

    name: str


@dataclass(frozen=True, slots=True)
class BlobsRoot(_Spec):
    """``blobs/``: the global content-addressed store."""


@dataclass(frozen=True, slots=True)
class Blob(_Spec):
    """``blobs/<alg>/<xx>/<hex>``: the directory of one blob."""

    digest: Digest


@dataclass(frozen=True, slots=True)
class BlobData(_Spec):
    """``blobs/<alg>/<xx>/<hex>/data``: a blob's bytes."""

    digest: Digest


# --- layers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layers(_Spec):
    """``<name>/_layers``: the blobs a repository may see."""

    name: str


@dataclass(frozen=True, slots=True)
class LayerLink(_Spec):
    """``<name>/_layers/<alg>/<hex>/link``: holds the canonical (sha256) digest."""

    name: str
    digest: Digest


# --- manifests -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestRevisions(_Spec):
    name: str


@dataclass(frozen=True, slots=True)
class ManifestRevisionsOf(_Spec):
    """``revisions/<alg>``: listed to find the revisions written since the referrers index looked."""

    name: str
    algorithm: str


@dataclass(frozen=True, slots=True)
class ManifestRevision(_Spec):
    name: str
    revision: Digest


@dataclass(frozen=True, slots=True)
class ManifestRevisionLink(_Spec):
    """Present iff the manifest revision belongs to the repository."""

    name: str
    revision: Digest


@dataclass(frozen=True, slots=True)
class ManifestSignatures(_Spec):
    """Schema1 signatures (legacy trees only; ocistore never writes them)."""

    name: str
    revision: Digest


@dataclass(frozen=True, slots=True)
class ManifestSignatureLink(_Spec):
    name: str
    revision: Digest
    signature: Digest


@dataclass(frozen=True, slots=True)
class ManifestTags(_Spec):
    name: str


@dataclass(frozen=True, slots=True)
class ManifestTag(_Spec):
    name: str
    tag: str


@dataclass(frozen=True, slots=True)
class ManifestTagCurrent(_Spec):
    """``tags/<tag>/current/link``: the revision the tag points at now."""

    name: str
    tag: str


@dataclass(frozen=True, slots=True)
class ManifestTagIndex(_Spec):
    name: str
    tag: str


@dataclass(frozen=True, slots=True)
class ManifestTagIndexEntry(_Spec):
    name: str
    tag: str
    revision: Digest


@dataclass(frozen=True, slots=True)
class ManifestTagIndexEntryLink(_Spec):
    """Every revision the tag ever pointed at (lets deletes find them)."""

    name: str
    tag: str
    revision: Digest


# --- uploads -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Uploads(_Spec):
    """``<name>/_uploads``: what upload purging walks."""

    name: str


@dataclass(frozen=True, slots=True)
class Upload(_Spec):
    """``_uploads/<id>``: removed whole on commit and cancel."""

    name: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class UploadData(_Spec):
    name: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class UploadStartedAt(_Spec):
    """RFC 3339 UTC start time; without it the upload is unknown."""

    name: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class UploadHashStates(_Spec):
    """``hashstates/<alg>``: the directory listed to find states."""

    name: str
    upload_id: str
    algorithm: str


@dataclass(frozen=True, slots=True)
class UploadHashState(_Spec):
    """``hashstates/<alg>/<offset>``: the hasher's state after ``offset`` bytes."""

    name: str
    upload_id: str
    algorithm: str
    offset: int


# --- referrers (ocistore's own index; distribution skips '_' directories) -------------


@dataclass(frozen=True, slots=True)
class ReferrersRoot(_Spec):
    name: str


@dataclass(frozen=True, slots=True)
class ReferrersRecord(_Spec):
    """``_referrers/_record``: the revisions already indexed and the listing they came from."""

    name: str


@dataclass(frozen=True, slots=True)
class Referrers(_Spec):
    """``_referrers/<alg>/<hex>``: the manifests whose ``subject`` is ``subject``."""

    name: str
    subject: Digest


@dataclass(frozen=True, slots=True)
class ReferrerEntry(_Spec):
    name: str
    subject: Digest
    referrer: Digest


@dataclass(frozen=True, slots=True)
class ReferrerLink(_Spec):
    """``_referrers/<alg>/<hex>/<alg>/<hex>/link``: holds the referrer's digest."""

    name: str
    subject: Digest
    referrer: Digest


@dataclass(frozen=True, slots=True)
class ReferrerDescriptor(_Spec):
    """``…/<alg>/<hex>/descriptor``: the referrer's descriptor as JSON (written before the link)."""

    name: str
    subject: Digest
    referrer: Digest


# --- proxy holds (ocistore's pull-through cache; distribution skips '_' directories) --


@dataclass(frozen=True, slots=True)
class ProxyHolds(_Spec):
    """``<name>/_proxy``: what the proxy fetched into this repository, with its expiry."""

    name: str


@dataclass(frozen=True, slots=True)
class ProxyHold(_Spec):
    """``_proxy/<kind>/<alg>/<hex>``: holds the RFC 3339 time the hold expires."""

    name: str
    kind: str
    digest: Digest


PathSpec = (
    RepositoriesRoot
    | RepositoryRoot
    | BlobsRoot
    | Blob
    | BlobData
    | Layers
    | LayerLink
    | ManifestRevisions
    | ManifestRevisionsOf
    | ManifestRevision
    | ManifestRevisionLink
    | ManifestSignatures
    | ManifestSignatureLink
    | ManifestTags
    | ManifestTag
    | ManifestTagCurrent
    | ManifestTagIndex
    | ManifestTagIndexEntry
    | ManifestTagIndexEntryLink
    | Uploads
    | Upload
    | UploadData
    | UploadStartedAt
    | UploadHashStates
    | UploadHashState
    | ReferrersRoot
    | ReferrersRecord
    | Referrers
    | ReferrerEntry
    | ReferrerLink
    | ReferrerDescriptor
    | ProxyHolds
    | ProxyHold
)


def path_for(spec: PathSpec) -> str:
    """The driver path of ``spec`` (see the module docstring for the tree)."""
    match spec:
        case BlobData(digest=d):
            algorithm, _, encoded = d.partition(":")
            return f"{BLOBS}/{algorithm}/{encoded[:2]}/{encoded}/data"
        case LayerLink(name=n, digest=d):
            return f"{REPOSITORIES}/{n}/_layers/{_digest_components(d)}/link"
        case ManifestRevisionLink(name=n, revision=r):
            return f"{REPOSITORIES}/{n}/_manifests/revisions/{_digest_components(r)}/link"
        case UploadData(name=n, upload_id=i):
            return f"{REPOSITORIES}/{n}/_uploads/{i}/data"
        case UploadStartedAt(name=n, upload_id=i):
            return f"{REPOSITORIES}/{n}/_uploads/{i}/startedat"
        case UploadHashState(name=n, upload_id=i, algorithm=a, offset=o):
            return f"{REPOSITORIES}/{n}/_uploads/{i}/hashstates/{a}/{o}"
        case UploadHashStates(name=n, upload_id=i, algorithm=a):
            return f"{REPOSITORIES}/{n}/_uploads/{i}/hashstates/{a}"
        case Upload(name=n, upload_id=i):
            return f"{REPOSITORIES}/{n}/_uploads/{i}"
        case Uploads(name=n):
            return f"{REPOSITORIES}/{n}/_uploads"
        case Blob(digest=d):
            return f"{BLOBS}/{d.algorithm}/{d.encoded[:2]}/{d.encoded}"
        case BlobsRoot():
            return BLOBS
        case RepositoriesRoot():
            return REPOSITORIES
        case RepositoryRoot(name=n):
            return f"{REPOSITORIES}/{n}"
        case Layers(name=n):
            return f"{REPOSITORIES}/{n}/_layers"
        case ManifestRevisions(name=n):
            return f"{REPOSITORIES}/{n}/_manifests/revisions"
        case ManifestRevisionsOf(name=n, algorithm=a):
            return f"{REPOSITORIES}/{n}/_manifests/revisions/{a}"
        case ManifestRevision(name=n, revision=r):
            return f"{REPOSITORIES}/{n}/_manifests/revisions/{_digest_components(r)}"
        case ManifestSignatures(name=n, revision=r):
            return f"{REPOSITORIES}/{n}/_manifests/revisions/{_digest_components(r)}/signatures"
        case ManifestSignatureLink(name=n, revision=r, signature=s):
            return (
                f"{REPOSITORIES}/{n}/_manifests/revisions/{_digest_components(r)}"
                f"/signatures/{_digest_components(s)}/link"
            )
        case ManifestTags(name=n):
            return f"{REPOSITORIES}/{n}/_manifests/tags"
        case ManifestTag(name=n, tag=t):
            return f"{REPOSITORIES}/{n}/_manifests/tags/{t}"
        case ManifestTagCurrent(name=n, tag=t):
            return f"{REPOSITORIES}/{n}/_manifests/tags/{t}/current/link"
        case ManifestTagIndex(name=n, tag=t):
            return f"{REPOSITORIES}/{n}/_manifests/tags/{t}/index"
        case ManifestTagIndexEntry(name=n, tag=t, revision=r):
            return f"{REPOSITORIES}/{n}/_manifests/tags/{t}/index/{_digest_components(r)}"
        case ManifestTagIndexEntryLink(name=n, tag=t, revision=r):
            return f"{REPOSITORIES}/{n}/_manifests/tags/{t}/index/{_digest_components(r)}/link"
        case ReferrersRoot(name=n):
            return f"{REPOSITORIES}/{n}/_referrers"
        case ReferrersRecord(name=n):
            return f"{REPOSITORIES}/{n}/_referrers/_record"
        case Referrers(name=n, subject=s):
            return f"{REPOSITORIES}/{n}/_referrers/{_digest_components(s)}"
        case ReferrerEntry(name=n, subject=s, referrer=r):
            return f"{REPOSITORIES}/{n}/_referrers/{_digest_components(s)}/{_digest_components(r)}"
        case ReferrerLink(name=n, subject=s, referrer=r):
            return (
                f"{REPOSITORIES}/{n}/_referrers/{_digest_components(s)}"
                f"/{_digest_components(r)}/link"
            )
        case ReferrerDescriptor(name=n, subject=s, referrer=r):
            return (
                f"{REPOSITORIES}/{n}/_referrers/{_digest_components(s)}"
                f"/{_digest_components(r)}/descriptor"
            )
        case ProxyHolds(name=n):
            return f"{REPOSITORIES}/{n}/_proxy"
        case ProxyHold(name=n, kind=k, digest=d):
            return f"{REPOSITORIES}/{n}/_proxy/{k}/{_digest_components(d)}"
    raise TypeError(f"unknown path spec {spec!r}")


QUARANTINE_ROOT: Final = "/ocistore-quarantine"
"""Where ``ocistore scrub --quarantine`` moves corrupt blobs: beside ``ROOT``, which no registry reads."""


def quarantine_path(digest: Digest, stamp: str) -> str:
    """``/ocistore-quarantine/<alg>/<hex>/<stamp>/data``: a corrupt blob moved out of ``blobs/``.

    ``stamp`` is the UTC time of the move (``20261205T093000Z``), so a blob
    quarantined twice keeps both copies. A ``reason.json`` sits beside ``data``.
    """
    if not re.fullmatch(r"[0-9]{8}T[0-9]{6}Z", stamp):
        raise ValueError(f"quarantine stamp {stamp!r}: expected YYYYMMDDTHHMMSSZ")
    return f"{QUARANTINE_ROOT}/{_digest_components(digest)}/{stamp}/data"


def link_template(directory: str) -> str:
    """The template of ``<directory>/<alg>/<hex>/link`` (any path; braces in it are escaped).

    ``directory`` holds one link per digest (:class:`Layers`,
    :class:`ManifestRevisions`); the core's stat cache expands the template
    with a digest's ``algorithm`` and ``encoded`` parts.
    """
    escaped = directory.rstrip("/").replace("{", "{{").replace("}", "}}")
    return f"{escaped}/{{algorithm}}/{{encoded}}/link"


def is_link_path(path: str) -> bool:
    """Whether ``path`` names a link file (``…/link``)."""
    return path.endswith("/link")


def digest_from_link_path(path: str) -> Digest:
    """The digest a link file's path spells: ``…/<alg>/<hex>/link`` -> ``<alg>:<hex>``.

    Raises :class:`~ocistore.errors.DigestError` when the two components
    above the link are not a supported digest.
    """
    _, algorithm, encoded, _ = path.rsplit("/", 3)
    return Digest.from_parts(algorithm, encoded)


def is_blob_data_path(path: str) -> bool:
    """Whether ``path`` names a blob's bytes (``…/data``; see :func:`digest_from_blob_data_path`)."""
    return path.endswith("/data")


def entry_file(directory: str) -> str:
    """The one file of a blob directory (``data``) or of any other entry directory (``link``)."""
    return f"{directory}/data" if directory.startswith(f"{BLOBS}/") else f"{directory}/link"


def started_at_of(upload_dir: str) -> str:
    """The ``startedat`` file of the upload directory ``upload_dir`` (a driver path)."""
    return f"{upload_dir}/startedat"


def digest_from_blob_data_path(path: str) -> Digest:
    """Invert :class:`BlobData`: ``…/blobs/<alg>/<xx>/<hex>/data`` -> ``<alg>:<hex>``.

    Raises :class:`~ocistore.errors.DigestInvalid` for a path that is not a
    well-formed blob data path (a stray file in the tree), naming the path.
    """
    parts = path.rsplit("/", 4)
    if len(parts) != 5 or parts[4] != "data":
        raise DigestInvalid(path, "not a blob data path (…/<alg>/<xx>/<hex>/data)")
    _, algorithm, fanout, encoded, _ = parts
    digest = Digest.from_parts(algorithm, encoded)
    if encoded[:2] != fanout:
        raise DigestInvalid(path, f"fan-out directory {fanout!r} does not match {encoded[:2]!r}")
    return digest


def blob_data_key(path: str) -> str | None:
    """``<alg>:<hex>`` of a path shaped like a blob's data (``…/<alg>/<xx>/<hex>/data``, the
    fan-out matching), without checking the digest: a key to look a listed blob up by
    (equal to a :class:`Digest` only if it is a valid one). None for any other path."""
    parts = path.rsplit("/", 4)
    if len(parts) != 5 or parts[4] != "data" or parts[3][:2] != parts[2]:
        return None
    return f"{parts[1]}:{parts[3]}"


def classify_repository_file(relative: str) -> tuple[str, tuple[str, ...]] | None:
    """What a file below a repository's root is, for the garbage collector; else None.

    ``relative`` is the path below :class:`RepositoryRoot` (no leading ``/``).
    Returns ``(kind, fields)``, the fields being unchecked path components:
    ``("layer", (alg, hex))``, ``("revision", (alg, hex))``, ``("tag", (tag,))``
    for a tag's current link, ``("tag_index", (tag, alg, hex))`` and
    ``("referrer", (subject alg, subject hex, alg, hex))``. Uploads, signatures,
    the referrers record and a nested repository's files are None.
    """
    parts = relative.split("/")
    if parts[-1] != "link":
        return None
    head, rest = parts[0], parts[1:-1]
    if head == "_layers" and len(rest) == 2:
        return "layer", (rest[0], rest[1])
    if head == "_manifests" and len(rest) == 3 and rest[0] == "revisions":
        return "revision", (rest[1], rest[2])
    if head == "_manifests" and len(rest) == 3 and rest[0] == "tags" and rest[2] == "current":
        return "tag", (rest[1],)
    if head == "_manifests" and len(rest) == 5 and rest[0] == "tags" and rest[2] == "index":
        return "tag_index", (rest[1], rest[3], rest[4])
    if head == "_referrers" and len(rest) == 4:
        return "referrer", (rest[0], rest[1], rest[2], rest[3])
    return None
