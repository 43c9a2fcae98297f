"""A multi-arch image with referrers, built through the library, for the OCI layout tests.

``build_image`` pushes into a repository: two OCI images under an OCI index
(tagged), a signature whose subject is the index, an SBOM whose subject is
one child, and a signature of that SBOM (a referrer of a referrer). It
returns every manifest digest and every blob digest the image reaches, so a
test can compare what an export wrote or an import stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifest_helpers import index_payload, oci_image
from ocistore.digest import Digest
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Repository

SIG = "application/vnd.example.signature"
SBOM = "application/vnd.example.sbom"


@dataclass
class Built:
    index: Digest
    children: list[Digest]
    referrers: dict[Digest, Digest]  # referrer -> subject
    manifests: dict[Digest, bytes]
    blobs: set[Digest]


def _subject(payload: bytes, media_type: str) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": str(Digest.from_bytes(payload)),
        "size": len(payload),
    }


def _referrer(repo: Repository, subject: bytes, subject_type: str, kind: str) -> bytes:
    payload = oci_image(
        repo,
        layers=1,
        config=b"{}",
        config_type=mt.OCI_EMPTY,
        artifactType=kind,
        subject=_subject(subject, subject_type),
    )
    repo.manifests.put(payload)
    return payload


def build_image(repo: Repository, tag: str) -> Built:
    children = []
    for arch in ("amd64", "arm64"):
        payload = oci_image(
            repo, layers=2, config=json.dumps({"architecture": arch, "os": "linux"}).encode()
        )
        repo.manifests.put(payload)
        children.append((payload, arch, "linux"))
    index = index_payload(children)
    repo.manifests.put(index, tag=tag)
    sig = _referrer(repo, index, mt.OCI_INDEX, SIG)
    sbom = _referrer(repo, children[0][0], mt.OCI_MANIFEST, SBOM)
    sbom_sig = _referrer(repo, sbom, mt.OCI_MANIFEST, SIG)
    manifests = {Digest.from_bytes(p): p for p in [index, sig, sbom, sbom_sig]}
    manifests.update({Digest.from_bytes(p): p for p, _, _ in children})
    blobs: set[Digest] = set()
    for payload in manifests.values():
        doc = json.loads(payload)
        for d in [doc.get("config"), *doc.get("layers", [])]:
            if d is not None:
                blobs.add(Digest(d["digest"]))
    return Built(
        index=Digest.from_bytes(index),
        children=[Digest.from_bytes(p) for p, _, _ in children],
        referrers={
            Digest.from_bytes(sig): Digest.from_bytes(index),
            Digest.from_bytes(sbom): Digest.from_bytes(children[0][0]),
            Digest.from_bytes(sbom_sig): Digest.from_bytes(sbom),
        },
        manifests=manifests,
        blobs=blobs,
    )


def layout_blobs(layout: Path) -> dict[str, bytes]:
    """Every file under ``layout/blobs`` by digest, checked to hash to its name."""
    out = {}
    for path in sorted((layout / "blobs").glob("*/*")):
        data = path.read_bytes()
        dgst = f"{path.parent.name}:{path.name}"
        assert dgst == "sha256:" + hashlib.sha256(data).hexdigest(), path
        out[dgst] = data
    return out


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to show that nothing was written."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
