"""Handler for the OCI image manifest (``application/vnd.oci.image.manifest.v1+json``).

distribution's ``manifest/ocischema/manifest.go``: ``mediaType`` may be absent but, if
present, must be the OCI manifest type; a document with a ``manifests`` key is an
index, not a manifest; ``schemaVersion`` must be 2. ``config``, ``layers``,
``subject``, ``artifactType`` and ``annotations`` are read (image-spec v1.1).
"""

from __future__ import annotations

from typing import Any

from ocistore.digest import Digest
from ocistore.manifest import mediatypes
from ocistore.manifest.base import Manifest, manifest_fields
from ocistore.manifest.document import get_schema_version, get_str, invalid
from ocistore.manifest.verify import VerifyContext, verify_image
from ocistore.manifest.versions import check_schema_version


class OCIManifest(Manifest):
    """An OCI image manifest (also the shape of OCI 1.1 artifacts)."""

    __slots__ = ()

    @classmethod
    def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
        if doc.get("manifests") is not None:
            invalid("ocimanifest: expected manifest but found index (it has a 'manifests' field)")
        declared = get_str(doc, "mediaType", "")
        if declared and declared != mediatypes.OCI_MANIFEST:
            invalid(
                f"if present, mediaType in manifest should be '{mediatypes.OCI_MANIFEST}' "
                f"not '{declared}'"
            )
        version = get_schema_version(doc)
        fields = manifest_fields(doc, image=True)
        check_schema_version(version)
        return cls(
            media_type=mediatypes.OCI_MANIFEST,
            payload=payload,
            digest=Digest.from_bytes(payload),
            declared_media_type=declared,
            schema_version=version,
            **fields,
        )

    @classmethod
    def verify(cls, manifest: Manifest, ctx: VerifyContext) -> None:
        verify_image(manifest, ctx, oci=True)
