"""Choosing the handler for a payload: explicit media type, declared type, or sniffing.

Rules (distribution's ``UnmarshalManifest`` for a PUT and ``manifestStore.Get`` for a
stored payload):

- The payload is at most 4 MiB (:class:`~ocistore.errors.ManifestTooLarge`) and one
  JSON object, in which no object names a key twice.
- Docker schema 1 (a schema 1 media type given or declared, signed or not, or
  ``schemaVersion`` 1 unless the type is a host's registered one) is refused with
  ManifestInvalid saying it is unsupported.
- An explicit media type (a Content-Type; parameters are dropped) selects the handler;
  the payload's own ``mediaType``, when present, must then agree (each handler states
  how: OCI types allow it to be absent, Docker types require it). An unknown explicit
  type is refused.
- Without one, the payload's ``mediaType`` selects the handler; without that, a
  ``manifests`` key means an OCI image index and anything else an OCI image manifest.
- Handlers are those registered in :mod:`ocistore.manifest.handlers`; an
  unregistered type is refused. A payload of a type other than the OCI ones must
  declare it in ``mediaType`` (how a stored payload's type is found again).
"""

from __future__ import annotations

from typing import Any, Final

from ocistore.digest import Digest
from ocistore.errors import ManifestTooLarge, RegistryError
from ocistore.manifest import mediatypes
from ocistore.manifest.base import MAX_MANIFEST_SIZE, Manifest
from ocistore.manifest.document import (
    get_schema_version,
    get_str,
    invalid,
    load_object,
    plain_digest,
)
from ocistore.manifest.handlers import BUILTIN_IDS, HANDLERS, SNIFFED_TYPES, ManifestHandler
from ocistore.manifest.versions import SCHEMA1_UNSUPPORTED


def parse_manifest(
    payload: bytes, media_type: str | None = None, *, unique_keys: bool = True
) -> Manifest:
    """Parse and check ``payload``; ``media_type`` is the client's Content-Type, if any.

    ``unique_keys=False`` accepts duplicate JSON keys (the last wins): for payloads
    already stored, never for one being pushed (see :func:`~ocistore.manifest.document.load_object`).

    Returns the handler's :class:`Manifest` (exact bytes kept, digest = sha256 of them).
    Raises :class:`~ocistore.errors.ManifestTooLarge` or
    :class:`~ocistore.errors.ManifestInvalid` with a reason naming the offending field.
    """
    data = bytes(payload)
    return _from_document(data, _load(data, unique_keys), media_type)


def _load(data: bytes, unique_keys: bool = True) -> dict[str, Any]:
    """The payload's JSON object, once its size is checked."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(len(data), MAX_MANIFEST_SIZE)
    return load_object(data, unique_keys=unique_keys)


def _from_document(data: bytes, doc: dict[str, Any], media_type: str | None) -> Manifest:
    """:func:`parse_manifest` once the payload is decoded: the handler chosen and run."""
    declared = get_str(doc, "mediaType", "")
    explicit = mediatypes.normalize(media_type) if media_type else ""
    if explicit in mediatypes.SCHEMA1_TYPES or declared in mediatypes.SCHEMA1_TYPES:
        invalid(SCHEMA1_UNSUPPORTED)
    if explicit:
        chosen, unknown = explicit, f"unsupported manifest media type {explicit!r}"
    elif declared:
        chosen, unknown = declared, f"unrecognized manifest content type {declared!r}"
    else:
        chosen = (
            mediatypes.OCI_INDEX if doc.get("manifests") is not None else mediatypes.OCI_MANIFEST
        )
        unknown = f"no mediaType in manifest and {chosen!r} has no handler"
    handler = HANDLERS.get(chosen)
    host_type = handler is not None and chosen not in mediatypes.MANIFEST_TYPES
    if not host_type and get_schema_version(doc) == 1:
        invalid(SCHEMA1_UNSUPPORTED)  # before any field error, whatever the type says
    if handler is None:
        invalid(unknown)
    if id(handler) in BUILTIN_IDS:
        return handler.from_document(doc, data)
    if declared != chosen and chosen not in SNIFFED_TYPES:
        if not declared:
            invalid(f"no mediaType in manifest ({chosen!r} manifests must declare it)")
        invalid(f"mediaType in manifest should be {chosen!r} not {declared!r}")
    return _from_registered(handler, chosen, doc, data)


_PLAIN_IMAGE_KEYS: Final = frozenset(("schemaVersion", "mediaType", "config", "layers"))


def stored_references(payload: bytes) -> tuple[tuple[Digest, ...], Digest | None]:
    """What a stored manifest references (config and layers, or an index's children) and its
    subject, refused exactly where :func:`parse_manifest` refuses it: the garbage collector's
    reading. The plain image manifest (what clients push) is checked field by field without
    building its :class:`Manifest`; any other shape is parsed in full."""
    data = bytes(payload)
    doc = _load(data)
    refs = _plain_image_references(doc)
    if refs is not None:
        return refs, None
    m = _from_document(data, doc, None)  # decoded once, whatever the shape
    return tuple(d.digest for d in m.references()), (m.subject.digest if m.subject else None)


def _plain_image_references(doc: dict[str, Any]) -> tuple[Digest, ...] | None:
    """Config and layer digests of an OCI or Docker schema 2 image manifest holding only
    ``schemaVersion`` 2, its own media type (OCI's may be absent), a plain config and a list
    of plain layers (:func:`~ocistore.manifest.document.plain_digest`), which its built-in
    handler would accept; None for anything else."""
    if not doc.keys() <= _PLAIN_IMAGE_KEYS or type(doc.get("schemaVersion")) is not int:
        return None
    declared = doc.get("mediaType")
    chosen = mediatypes.OCI_MANIFEST if declared is None else declared
    if doc["schemaVersion"] != 2 or chosen not in (
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST,
    ):
        return None
    if id(HANDLERS.get(chosen)) not in BUILTIN_IDS or type(doc.get("layers")) is not list:
        return None
    out: list[Digest] = []
    for item in (doc.get("config"), *doc["layers"]):
        dgst = plain_digest(item)
        if dgst is None:
            return None
        out.append(dgst)
    return tuple(out)


def _from_registered(
    handler: ManifestHandler, media_type: str, doc: dict[str, Any], data: bytes
) -> Manifest:
    """A host's handler at work: its input errors become ManifestInvalid, its output is checked."""
    try:
        m = handler.from_document(doc, data)
    except RegistryError:
        raise
    except (ValueError, TypeError, LookupError) as exc:
        invalid(f"{media_type}: {exc}")
    if not isinstance(m, Manifest):
        raise TypeError(
            f"manifest handler {handler!r} for {media_type!r} returned "
            f"{type(m).__name__}, not a Manifest"
        )
    if m.media_type != media_type:
        raise TypeError(
            f"manifest handler {handler!r} for {media_type!r} returned a manifest "
            f"of type {m.media_type!r}"
        )
    if m.payload != data or m.digest != Digest.from_bytes(data):
        raise TypeError(
            f"manifest handler {handler!r} for {media_type!r} returned a manifest "
            "whose payload or digest is not the payload's"
        )
    return m
