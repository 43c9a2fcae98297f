"""Handlers for the OCI image index and the Docker manifest list.

OCI image index (``manifest/ocischema/index.go``): ``mediaType`` may be absent but, if
present, must be the index type; a document with ``config`` or ``layers`` is an image
manifest, not an index. Docker manifest list (``manifest/manifestlist``): ``mediaType``
is required and must be the list type. Both need ``schemaVersion`` 2; their children
are in ``manifests`` and must exist as manifests of the repository (checked by
:func:`ocistore.manifest.verify.verify_children`, switchable and per platform).
"""

from __future__ import annotations

from typing import Any

from ocistore.digest import Digest
from ocistore.manifest import mediatypes
from ocistore.manifest.base import Manifest, manifest_fields
from ocistore.manifest.document import get_descriptors, get_schema_version, get_str, invalid
from ocistore.manifest.verify import VerifyContext, verify_children
from ocistore.manifest.versions import check_schema_version


class OCIIndex(Manifest):
    """An OCI image index."""

    __slots__ = ()
    is_index = True

    @classmethod
    def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
        if doc.get("config") is not None or doc.get("layers") is not None:
            invalid("index: expected index but found manifest (it has 'config' or 'layers')")
        declared = get_str(doc, "mediaType", "")
        if declared and declared != mediatypes.OCI_INDEX:
            invalid(
                f"if present, mediaType in image index should be '{mediatypes.OCI_INDEX}' "
                f"not '{declared}'"
            )
        version = get_schema_version(doc)
        fields = manifest_fields(doc, image=False)
        check_schema_version(version)
        return cls(
            media_type=mediatypes.OCI_INDEX,
            payload=payload,
            digest=Digest.from_bytes(payload),
            declared_media_type=declared,
            schema_version=version,
            **fields,
        )

    @classmethod
    def verify(cls, manifest: Manifest, ctx: VerifyContext) -> None:
        verify_children(manifest, ctx)


class ManifestList(Manifest):
    """A Docker manifest list (multi-platform image, schema 2)."""

    __slots__ = ()
    is_index = True

    @classmethod
    def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
        declared = get_str(doc, "mediaType", "")
        if declared != mediatypes.DOCKER_MANIFEST_LIST:
            if not declared:
                invalid("no mediaType in manifest list (manifest lists must declare it)")
            invalid(
                f"mediaType in manifest list should be '{mediatypes.DOCKER_MANIFEST_LIST}' "
                f"not '{declared}'"
            )
        version = get_schema_version(doc)
        children = get_descriptors(doc, "manifests")
        check_schema_version(version)
        return cls(
            media_type=mediatypes.DOCKER_MANIFEST_LIST,
            payload=payload,
            digest=Digest.from_bytes(payload),
            manifests=children,
            declared_media_type=declared,
            schema_version=version,
        )

    @classmethod
    def verify(cls, manifest: Manifest, ctx: VerifyContext) -> None:
        verify_children(manifest, ctx)
