"""Choosing the handler for a payload: explicit media type, declared type, or sniffing.

Rules (distribution's ``UnmarshalManifest`` for a PUT and ``manifestStore.Get`` for a
stored payload):

- The payload is at most 4 MiB (:class:`~ocistore.errors.ManifestTooLarge`) and one
  JSON object.
- Docker schema 1 (``schemaVersion`` 1, or a schema 1 media type given or declared,
  signed or not) is refused with ManifestInvalid saying it is unsupported.
- An explicit media type (a Content-Type; parameters are dropped) selects the handler;
  the payload's own ``mediaType``, when present, must then agree (each handler states
  how: OCI types allow it to be absent, Docker types require it). An unknown explicit
  type is refused.
- Without one, the payload's ``mediaType`` selects the handler; without that, a
  ``manifests`` key means an OCI image index and anything else an OCI image manifest.
"""

from __future__ import annotations

from typing import Final

from ocistore.errors import ManifestTooLarge
from ocistore.manifest import mediatypes
from ocistore.manifest.base import MAX_MANIFEST_SIZE, Manifest
from ocistore.manifest.document import get_schema_version, get_str, invalid, load_object
from ocistore.manifest.index import ManifestList, OCIIndex
from ocistore.manifest.oci import OCIManifest
from ocistore.manifest.schema2 import Schema2Manifest
from ocistore.manifest.versions import SCHEMA1_UNSUPPORTED

HANDLERS: Final[dict[str, type[Manifest]]] = {
    mediatypes.OCI_MANIFEST: OCIManifest,
    mediatypes.OCI_INDEX: OCIIndex,
    mediatypes.DOCKER_MANIFEST: Schema2Manifest,
    mediatypes.DOCKER_MANIFEST_LIST: ManifestList,
}


def parse_manifest(payload: bytes, media_type: str | None = None) -> Manifest:
    """Parse and check ``payload``; ``media_type`` is the client's Content-Type, if any.

    Returns the handler's :class:`Manifest` (exact bytes kept, digest = sha256 of them).
    Raises :class:`~ocistore.errors.ManifestTooLarge` or
    :class:`~ocistore.errors.ManifestInvalid` with a reason naming the offending field.
    """
    data = bytes(payload)
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(len(data), MAX_MANIFEST_SIZE)
    doc = load_object(data)
    declared = get_str(doc, "mediaType", "")
    explicit = mediatypes.normalize(media_type) if media_type else ""
    if (
        explicit in mediatypes.SCHEMA1_TYPES
        or declared in mediatypes.SCHEMA1_TYPES
        or get_schema_version(doc) == 1
    ):
        invalid(SCHEMA1_UNSUPPORTED)
    if explicit:
        handler = HANDLERS.get(explicit)
        if handler is None:
            invalid(f"unsupported manifest media type {explicit!r}")
    elif declared:
        handler = HANDLERS.get(declared)
        if handler is None:
            invalid(f"unrecognized manifest content type {declared!r}")
    elif doc.get("manifests") is not None:
        handler = OCIIndex
    else:
        handler = OCIManifest
    return handler.from_document(doc, data)
