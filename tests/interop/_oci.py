"""Small OCI images built in Python as OCI image-layout directories, for skopeo to push.

Why build them here: the interop tests need images whose every digest the test
knows in advance (to compare what each registry stored and served) and that
cost nothing to make. Layers are real gzip-compressed tarballs holding a few
KiB of seeded random bytes, so any client that looks inside them (skopeo
does not, on a plain copy) sees valid content, and configs carry correct
``diff_ids``.

The layout (OCI image-spec ``image-layout.md``)::

    DIR/oci-layout          {"imageLayoutVersion": "1.0.0"}
    DIR/index.json          one descriptor per tag, named by org.opencontainers.image.ref.name
    DIR/blobs/sha256/<hex>  every blob, manifest and index
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact, key-ordered JSON: stable bytes, so a manifest's digest is reproducible."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    """One single-platform image: its manifest, config and layers, with their bytes."""

    manifest: bytes
    config: bytes
    layers: list[bytes]
    platform: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        """Every blob the manifest references (config and layers), by digest."""
        out = {sha256(self.config): self.config}
        out.update((sha256(layer), layer) for layer in self.layers)
        return out

    def descriptor(self) -> dict[str, Any]:
        return descriptor(OCI_MANIFEST, self.manifest, platform=dict(self.platform))


@dataclass
class Index:
    """A multi-platform image index over several images."""

    index: bytes
    images: list[Image]

    @property
    def digest(self) -> str:
        return sha256(self.index)

    @property
    def blobs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for image in self.images:
            out.update(image.blobs)
        return out

    @property
    def manifests(self) -> dict[str, bytes]:
        """The index itself and every image manifest, by digest."""
        out = {self.digest: self.index}
        out.update((image.digest, image.manifest) for image in self.images)
        return out


def make_layer(rng: random.Random, size: int) -> tuple[bytes, bytes]:
    """A gzip'd tarball with one file of ``size`` random bytes; returns (compressed, tar)."""
    payload = rng.randbytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data-{rng.getrandbits(32):08x}.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), tar_bytes


def make_image(
    rng: random.Random,
    *,
    os_name: str = "linux",
    architecture: str = "amd64",
    layers: int = 2,
    layer_size: int = 4096,
    annotations: dict[str, str] | None = None,
) -> Image:
    """An OCI image with ``layers`` random layers and a config with correct diff_ids."""
    compressed: list[bytes] = []
    diff_ids: list[str] = []
    for _ in range(layers):
        gz, tar = make_layer(rng, layer_size)
        compressed.append(gz)
        diff_ids.append(sha256(tar))
    config = canonical_json(
        {
            "architecture": architecture,
            "os": os_name,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {"Env": [f"SEED={rng.getrandbits(64)}"]},
        }
    )
    manifest_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER_GZIP, gz) for gz in compressed],
    }
    if annotations:
        manifest_obj["annotations"] = annotations
    return Image(
        manifest=canonical_json(manifest_obj),
        config=config,
        layers=compressed,
        platform={"architecture": architecture, "os": os_name},
    )


def make_index(images: list[Image]) -> Index:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.descriptor() for image in images],
    }
    return Index(index=canonical_json(body), images=images)


def make_multiarch(rng: random.Random, *, layers: int = 2, layer_size: int = 4096) -> Index:
    """The issue's fixture: an index over a linux/amd64 and a linux/arm64 image."""
    return make_index(
        [
            make_image(rng, architecture="amd64", layers=layers, layer_size=layer_size),
            make_image(rng, architecture="arm64", layers=layers, layer_size=layer_size),
        ]
    )


@dataclass
class Layout:
    """An OCI image-layout directory being filled; ``tag()`` names a top-level manifest."""

    root: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._write_index()

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    def add_image(self, image: Image) -> None:
        for data in (image.config, *image.layers, image.manifest):
            self.add_blob(data)

    def add_index(self, index: Index) -> None:
        for image in index.images:
            self.add_image(image)
        self.add_blob(index.index)

    def tag(self, tag: str, top: Image | Index) -> None:
        if isinstance(top, Index):
            self.add_index(top)
            desc = descriptor(OCI_INDEX, top.index)
        else:
            self.add_image(top)
            desc = descriptor(OCI_MANIFEST, top.manifest)
        desc["annotations"] = {REF_NAME: tag}
        self.refs = [r for r in self.refs if r["annotations"][REF_NAME] != tag] + [desc]
        self._write_index()

    def _write_index(self) -> None:
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.root / "index.json").write_bytes(canonical_json(body))

    def read_ref(self, tag: str) -> bytes:
        """The bytes of the manifest or index that ``tag`` names (after a pull into this layout)."""
        index = json.loads((self.root / "index.json").read_bytes())
        for desc in index["manifests"]:
            if desc.get("annotations", {}).get(REF_NAME) == tag:
                return self.read_blob(desc["digest"])
        raise KeyError(tag)

    def ref_digest(self, tag: str) -> str:
        return sha256(self.read_ref(tag))

    def read_blob(self, digest: str) -> bytes:
        alg, hexpart = digest.split(":", 1)
        return (self.root / "blobs" / alg / hexpart).read_bytes()

    def blob_digests(self) -> set[str]:
        return {f"sha256:{p.name}" for p in (self.root / "blobs" / "sha256").iterdir()}
