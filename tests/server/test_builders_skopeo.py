"""Images and indexes made with the builders, through the library only, pulled by skopeo.

The test builds on a filesystem root: two OCI images (real gzip'd tar layers,
configs with their diff_ids) under an OCI index, one more OCI image on its own,
and two Docker schema 2 images under a manifest list. It then starts ``ocistore
serve`` on that root (on the session's core) and pulls each with ``skopeo copy
--all --preserve-digests``: the OCI ones into an OCI layout, the Docker list
into a ``dir:`` directory (an OCI layout cannot hold Docker types without
converting them, which would change the digests). Every manifest and blob
skopeo wrote must have the digest the library returned. A missing skopeo fails
the test under ``OCISTORE_REQUIRE_PEERS=1`` (CI) and skips it elsewhere.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

import ocistore
from conftest import require_peers
from interop._oci import Layout, canonical_json, make_layer, sha256
from interop._peers import OcistoreServer, pull, skopeo
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.manifest import (
    Manifest,
    ManifestListBuilder,
    OCIIndexBuilder,
    OCIManifestBuilder,
    Schema2ManifestBuilder,
)
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, Repository

pytestmark = pytest.mark.peer

REPO = "built/app"
ARCHES = ("amd64", "arm64")


def _need_skopeo() -> None:
    if shutil.which("skopeo") is None:
        if require_peers():
            pytest.fail("skopeo is required (OCISTORE_REQUIRE_PEERS=1) but not installed")
        pytest.skip("skopeo not installed")


def _image(
    repo: Repository, rng: random.Random, arch: str, *, docker: bool
) -> tuple[Manifest, dict[str, bytes]]:
    """One image built from its layers; returns the manifest and every blob it references."""
    layer_type = mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    blobs: dict[str, bytes] = {}
    layers, diff_ids = [], []
    for _ in range(2):
        gz, tar = make_layer(rng, 20_000)
        layers.append(repo.blobs.put(layer_type, gz))
        diff_ids.append(sha256(tar))
        blobs[sha256(gz)] = gz
    config = canonical_json(
        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    )
    blobs[sha256(config)] = config
    builder = (
        Schema2ManifestBuilder(repo.blobs, config)
        if docker
        else OCIManifestBuilder(repo.blobs, config, annotations={"org.example.arch": arch})
    )
    for layer in layers:
        builder.append_layer(layer)
    m = builder.build()
    repo.manifests.put(m)
    return m, blobs


def test_built_images_and_indexes_pull_with_skopeo(tmp_path: Path) -> None:
    _need_skopeo()
    root = tmp_path / "root"
    repo = Registry(FilesystemDriver(root)).repository(REPO)
    rng = random.Random(23)

    oci_images = [_image(repo, rng, arch, docker=False) for arch in ARCHES]
    index_builder = OCIIndexBuilder(repo.manifests, annotations={"org.example.kind": "multi"})
    for (m, _), arch in zip(oci_images, ARCHES, strict=True):
        index_builder.append_manifest(m, platform={"architecture": arch, "os": "linux"})
    index = index_builder.build()
    repo.manifests.put(index, tag="multi")
    single, single_blobs = _image(repo, rng, "amd64", docker=False)
    repo.manifests.put(single, tag="single")

    docker_images = [_image(repo, rng, arch, docker=True) for arch in ARCHES]
    list_builder = ManifestListBuilder(repo.manifests)
    for (m, _), arch in zip(docker_images, ARCHES, strict=True):
        list_builder.append_manifest(m, platform={"architecture": arch, "os": "linux"})
    listing = list_builder.build()
    repo.manifests.put(listing, tag="docker")

    server = OcistoreServer(root, tmp_path, core=ocistore.BACKEND)
    server.start()
    try:
        out = Layout(tmp_path / "out")
        pull(server.url, REPO, "multi", out.root, "multi")
        pull(server.url, REPO, "single", out.root, "single")
        host = server.url.removeprefix("http://")
        docker_dir = tmp_path / "docker"
        skopeo(
            "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{host}/{REPO}:docker", f"dir:{docker_dir}",
        )  # fmt: skip
    finally:
        server.stop()

    assert out.ref_digest("multi") == str(index.digest)
    assert out.read_ref("multi") == index.payload
    assert json.loads(out.read_ref("multi"))["annotations"] == {"org.example.kind": "multi"}
    assert out.ref_digest("single") == str(single.digest)
    expected: dict[str, bytes] = {str(index.digest): index.payload, **single_blobs}
    expected[str(single.digest)] = single.payload
    for m, blobs in oci_images:
        expected[str(m.digest)] = m.payload
        expected.update(blobs)
    assert out.blob_digests() == set(expected)
    for dgst, data in expected.items():
        assert out.read_blob(dgst) == data

    assert (docker_dir / "manifest.json").read_bytes() == listing.payload
    files = {"manifest.json", "version"}
    for m, blobs in docker_images:
        files.add(f"{m.digest.encoded}.manifest.json")
        files.update(Digest(d).encoded for d in blobs)
    assert {p.name for p in docker_dir.iterdir()} == files
    for m, blobs in docker_images:
        instance = docker_dir / f"{m.digest.encoded}.manifest.json"
        assert instance.read_bytes() == m.payload
        for dgst, data in blobs.items():
            assert (docker_dir / Digest(dgst).encoded).read_bytes() == data
