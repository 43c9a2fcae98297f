"""Handler for Docker image manifest schema 2 (``...distribution.manifest.v2+json``).

distribution's ``manifest/schema2/manifest.go``: the payload's ``mediaType`` is
required and must be the schema2 type; ``schemaVersion`` must be 2; ``config`` and
``layers`` are read. Schema 2 has no ``subject``, ``artifactType`` or top-level
``annotations`` (such keys are ignored, as Go ignores unknown fields).
"""

from __future__ import annotations

from typing import Any

from ocistore.digest import Digest
from ocistore.manifest import mediatypes
from ocistore.manifest.base import Manifest
from ocistore.manifest.document import (
    get_descriptors,
    get_schema_version,
    get_str,
    invalid,
    parse_descriptor,
)
from ocistore.manifest.verify import VerifyContext, verify_image
from ocistore.manifest.versions import check_schema_version


class Schema2Manifest(Manifest):
    """A Docker schema 2 image manifest."""

    __slots__ = ()

    @classmethod
    def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
        declared = get_str(doc, "mediaType", "")
        if declared != mediatypes.DOCKER_MANIFEST:
            if not declared:
                invalid("no mediaType in manifest (schema 2 manifests must declare it)")
            invalid(
                f"mediaType in manifest should be '{mediatypes.DOCKER_MANIFEST}' not '{declared}'"
            )
        version = get_schema_version(doc)
        config = doc.get("config")
        config_desc = parse_descriptor(config if config is not None else {}, "config")
        layers = get_descriptors(doc, "layers")
        check_schema_version(version)
        return cls(
            media_type=mediatypes.DOCKER_MANIFEST,
            payload=payload,
            digest=Digest.from_bytes(payload),
            config=config_desc,
            layers=layers,
            declared_media_type=declared,
            schema_version=version,
        )

    @classmethod
    def verify(cls, manifest: Manifest, ctx: VerifyContext) -> None:
        verify_image(manifest, ctx, oci=False)
