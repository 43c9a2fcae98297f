"""Small pushes through the in-process client, shared by the API tests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from .asgi_client import Client, Reply
from .conftest import sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def path_of(location: str) -> str:
    """The path and query of a Location (absolute or relative)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def push_blob(client: Client, repo: str, data: bytes) -> str:
    dgst = sha256(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/?digest={dgst}", body=data)
    assert r.status == 201, r.body
    return dgst


def start(client: Client, repo: str) -> Reply:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, r.body
    return r


def manifest_for(
    client: Client,
    repo: str,
    *,
    subject: dict[str, Any] | None = None,
    artifact_type: str = "",
    layers: int = 1,
    seed: bytes = b"x",
    annotations: dict[str, str] | None = None,
) -> bytes:
    """An OCI image manifest whose config and layers are pushed to ``repo``."""
    config = json.dumps({"seed": seed.decode(), "artifact": artifact_type}).encode()
    layer_blobs = [seed * (100 + i) for i in range(layers)]
    push_blob(client, repo, config)
    for b in layer_blobs:
        push_blob(client, repo, b)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layer_blobs
        ],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, separators=(",", ":")).encode()


def put_manifest(
    client: Client, repo: str, ref: str, payload: bytes, media_type: str = OCI_MANIFEST
) -> Reply:
    return client.put(
        f"/v2/{repo}/manifests/{ref}", body=payload, headers={"Content-Type": media_type}
    )
