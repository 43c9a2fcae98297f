"""A host's own manifest type, as an embedder would write it: a "bundle" of blobs.

A bundle lists its parts (blob descriptors, all of which must be in the
repository) and may name a subject. It is a :class:`~ocistore.manifest.Manifest`
subclass, so the class is its own handler (``from_document`` here, the default
``verify``: every part must exist). The HTTP test imports this module both in the
test process and in the app process it starts.
"""

from __future__ import annotations

import json
from typing import Any

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.manifest import Manifest
from ocistore.manifest.document import (
    get_annotations,
    get_descriptor,
    get_descriptors,
    get_schema_version,
    get_str,
    invalid,
)

BUNDLE = "application/vnd.example.bundle.manifest.v1+json"


class Bundle(Manifest):
    """``{"schemaVersion": 2, "mediaType": BUNDLE, "parts": [...], "subject"?, "annotations"?}``"""

    __slots__ = ()

    @classmethod
    def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
        version = get_schema_version(doc)
        if version != 2:
            invalid(f"schemaVersion: a bundle has schemaVersion 2, not {version}")
        parts = get_descriptors(doc, "parts")
        if not parts:
            invalid("parts: a bundle needs at least one part")
        return cls(
            media_type=BUNDLE,
            payload=payload,
            digest=Digest.from_bytes(payload),
            layers=parts,
            subject=get_descriptor(doc, "subject"),
            annotations=get_annotations(doc, "annotations", ""),
            declared_media_type=get_str(doc, "mediaType", ""),
        )


def bundle_payload(
    parts: list[Descriptor], *, subject: Descriptor | None = None, media_type: str | None = BUNDLE
) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    doc["parts"] = [p.to_json() for p in parts]
    if subject is not None:
        doc["subject"] = subject.to_json()
    return json.dumps(doc).encode()
