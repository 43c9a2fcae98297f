"""Builders shared by the manifest store, tag store, referrers and catalog tests.

Each pushes real blobs into a repository and returns manifest payloads as bytes, so
the tests exercise the same path a client does (blobs first, then the manifest).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Repository

__all__ = [
    "index_payload",
    "oci_image",
    "push_oci_image",
    "push_schema2_image",
    "schema2_image",
]


def _blob(repo: Repository, data: bytes, media_type: str) -> dict[str, Any]:
    desc = repo.blobs.put(media_type, data)
    return Descriptor(digest=desc.digest, size=desc.size, media_type=media_type).to_json()


def oci_image(
    repo: Repository,
    *,
    layers: int = 2,
    media_type: str | None = mt.OCI_MANIFEST,
    config: bytes = b'{"architecture":"amd64","os":"linux"}',
    config_type: str = mt.OCI_CONFIG,
    **extra: Any,
) -> bytes:
    """An OCI image manifest whose config and (random) layers are pushed into ``repo``."""
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    doc["config"] = _blob(repo, config, config_type)
    doc["layers"] = [_blob(repo, os.urandom(64), mt.OCI_LAYER_GZIP) for _ in range(layers)]
    doc.update(extra)
    return json.dumps(doc, indent=3).encode()


def push_oci_image(repo: Repository, **kwargs: Any) -> bytes:
    payload = oci_image(repo, **kwargs)
    repo.manifests.put(payload)
    return payload


def schema2_image(repo: Repository, *, layers: int = 2) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": _blob(repo, b'{"architecture":"amd64"}', mt.DOCKER_CONFIG),
        "layers": [_blob(repo, os.urandom(64), mt.DOCKER_LAYER) for _ in range(layers)],
    }
    return json.dumps(doc, indent=3).encode()


def push_schema2_image(repo: Repository) -> bytes:
    payload = schema2_image(repo)
    repo.manifests.put(payload)
    return payload


def index_payload(
    children: list[tuple[bytes, str, str]],
    *,
    media_type: str | None = mt.OCI_INDEX,
    child_type: str = mt.OCI_MANIFEST,
    **extra: Any,
) -> bytes:
    """An index over ``(payload, architecture, os)`` children."""
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    doc["manifests"] = [
        {
            "mediaType": child_type,
            "digest": str(Digest.from_bytes(payload)),
            "size": len(payload),
            "platform": {"architecture": arch, "os": os_},
        }
        for payload, arch, os_ in children
    ]
    doc.update(extra)
    return json.dumps(doc).encode()
