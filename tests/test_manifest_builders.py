"""Manifest builders: what ``build()`` checks, writes and returns, on both drivers.

Pulling what the builders made with skopeo is in ``tests/server/test_builders_skopeo.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import ManifestBlobUnknown, ManifestInvalid
from ocistore.manifest import (
    ManifestList,
    ManifestListBuilder,
    OCIIndex,
    OCIIndexBuilder,
    OCIManifest,
    OCIManifestBuilder,
    Schema2Manifest,
    Schema2ManifestBuilder,
)
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, Repository
from storage_fixtures import upload

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
ABSENT = Digest.from_bytes(b"never pushed")


def _layers(repo: Repository, n: int = 2, media_type: str = mt.OCI_LAYER_GZIP) -> list[Descriptor]:
    """``n`` layers pushed through uploads (as a client would), with their media type."""
    return [
        upload(repo.blobs, f"layer {i} of {media_type}".encode()).with_(media_type=media_type)
        for i in range(n)
    ]


@pytest.fixture
def repo(plain_registry: Registry) -> Repository:
    return plain_registry.repository("built/app")


# -- image manifests -------------------------------------------------------------------


def test_oci_manifest_stores_its_config_and_is_put(repo: Repository) -> None:
    layers = _layers(repo)
    config_digest = Digest.from_bytes(CONFIG)
    b = OCIManifestBuilder(repo.blobs, CONFIG, annotations={"org.example.built": "yes"})
    for layer in layers:
        b.append_layer(layer)
    assert b.references() == layers
    assert not repo.blobs.exists(config_digest)

    m = b.build()
    assert type(m) is OCIManifest
    assert repo.blobs.get(config_digest) == CONFIG
    assert m.config == Descriptor(digest=config_digest, size=len(CONFIG), media_type=mt.OCI_CONFIG)
    assert list(m.layers) == layers
    assert dict(m.annotations) == {"org.example.built": "yes"}
    assert json.loads(m.payload)["mediaType"] == mt.OCI_MANIFEST
    assert m == b.build()  # the same bytes again, the config already there

    assert repo.manifests.put(m, tag="v1") == m.digest
    assert repo.tags.resolve("v1") == m.digest
    assert repo.manifests.get(m.digest).payload == m.payload


def test_missing_layers_are_named_and_nothing_is_written(repo: Repository) -> None:
    present = _layers(repo, 1)[0]
    other = Digest.from_bytes(b"also never pushed")
    b = OCIManifestBuilder(repo.blobs, CONFIG)
    for dgst in (ABSENT, other, ABSENT):
        b.append_layer(Descriptor(digest=dgst, size=12, media_type=mt.OCI_LAYER_GZIP))
    b.append_layer(present)
    with pytest.raises(ManifestBlobUnknown) as info:
        b.build()
    assert info.value.digests == [ABSENT, other]
    assert str(ABSENT) in str(info.value)
    assert not repo.blobs.exists(Digest.from_bytes(CONFIG))


def test_sizes_are_filled_in_or_checked(repo: Repository) -> None:
    first, second = _layers(repo)
    b = OCIManifestBuilder(repo.blobs, CONFIG)
    b.append_layer(Descriptor(digest=first.digest, media_type=first.media_type))  # size -1
    b.append_layer(second)
    assert list(b.build().layers) == [first, second]

    wrong = OCIManifestBuilder(repo.blobs, CONFIG)
    wrong.append_layer(first)
    wrong.append_layer(second.with_(size=second.size + 1))
    message = f"layers[1] ({second.digest}): size {second.size + 1}, but the repository's blob has {second.size} bytes"
    with pytest.raises(ManifestInvalid, match=re.escape(message)):
        wrong.build()


def test_foreign_layers_need_no_blob_but_put_applies_the_url_policy(driver: Any) -> None:
    """A non-distributable layer with URLs is not looked up; put then checks its URL."""
    foreign = Descriptor(
        digest=ABSENT,
        size=100,
        media_type=mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        urls=("https://layers.example.com/a",),
    )
    for allow, outcome in ((None, "refused"), (r"^https://layers\.example\.com/", "stored")):
        repo = Registry(driver, manifest_urls_allow=allow).repository(f"built/{outcome}")
        b = OCIManifestBuilder(repo.blobs, CONFIG)
        b.append_layer(foreign)
        m = b.build()
        if allow is None:
            with pytest.raises(ManifestInvalid, match="is not allowed"):
                repo.manifests.put(m)
            assert not repo.manifests.exists(m.digest)
        else:
            assert repo.manifests.put(m) == m.digest
    unsized = OCIManifestBuilder(repo.blobs, CONFIG)
    unsized.append_layer(foreign.with_(size=-1))
    with pytest.raises(ManifestInvalid, match=rf"layers\[0\] \({ABSENT}\): size unknown"):
        unsized.build()


def test_artifact_with_subject_is_listed_as_referrer(repo: Repository) -> None:
    image = OCIManifestBuilder(repo.blobs, CONFIG)
    for layer in _layers(repo):
        image.append_layer(layer)
    target = image.build()
    repo.manifests.put(target, tag="v1")

    sig = OCIManifestBuilder(repo.blobs, b"{}", config_media_type=mt.OCI_EMPTY)
    sig.append_layer(repo.blobs.put("application/vnd.example.signature", b"signed"))
    sig.subject(target)
    with pytest.raises(
        ManifestInvalid, match="artifactType: required when the config is the empty"
    ):
        sig.build()
    sig.artifact_type("application/vnd.example.signature")
    artifact = sig.build()
    assert artifact.subject == target.descriptor()
    assert artifact.artifact_type == "application/vnd.example.signature"
    repo.manifests.put(artifact)
    listed = repo.manifests.referrers(target.digest)
    assert [(d.digest, d.artifact_type) for d in listed] == [
        (artifact.digest, "application/vnd.example.signature")
    ]


def test_schema2_manifest(repo: Repository) -> None:
    b = Schema2ManifestBuilder(repo.blobs, CONFIG)
    layers = _layers(repo, 2, mt.DOCKER_LAYER)
    for layer in layers:
        b.append_layer(layer)
    m = b.build()
    assert type(m) is Schema2Manifest
    assert m.config is not None and m.config.media_type == mt.DOCKER_CONFIG
    assert list(m.layers) == layers
    repo.manifests.put(m, tag="docker")
    assert type(repo.manifests.get(repo.tags.resolve("docker"))) is Schema2Manifest

    missing = Schema2ManifestBuilder(repo.blobs, b"{}")
    missing.append_layer(Descriptor(digest=ABSENT, size=1, media_type=mt.DOCKER_LAYER))
    with pytest.raises(ManifestBlobUnknown, match=str(ABSENT)):
        missing.build()


# -- indexes ---------------------------------------------------------------------------


def _image(repo: Repository, arch: str) -> OCIManifest:
    b = OCIManifestBuilder(repo.blobs, CONFIG.replace(b"amd64", arch.encode()))
    for layer in _layers(repo, 1):
        b.append_layer(layer)
    m = b.build()
    repo.manifests.put(m)
    assert isinstance(m, OCIManifest)
    return m


def test_oci_index_children_by_manifest_descriptor_or_digest(repo: Repository) -> None:
    amd, arm, s390 = (_image(repo, a) for a in ("amd64", "arm64", "s390x"))
    b = OCIIndexBuilder(repo.manifests, annotations={"org.example.kind": "multi"})
    b.append_manifest(amd, platform={"architecture": "amd64", "os": "linux"})
    b.append_manifest(
        Descriptor(digest=arm.digest, platform={"architecture": "arm64", "os": "linux"})
    )
    b.append_manifest(str(s390.digest), annotations={"note": "no platform"})
    index = b.build()
    assert type(index) is OCIIndex
    assert [(c.digest, c.media_type, c.size) for c in index.manifests] == [
        (m.digest, mt.OCI_MANIFEST, m.size) for m in (amd, arm, s390)
    ]
    assert [c.platform and c.platform["architecture"] for c in index.manifests] == [
        "amd64",
        "arm64",
        None,
    ]
    assert index.manifests[2].annotations == {"note": "no platform"}
    repo.manifests.put(index, tag="multi")
    assert repo.manifests.get(repo.tags.resolve("multi")).payload == index.payload


def test_index_children_must_exist_and_match(repo: Repository) -> None:
    amd = _image(repo, "amd64")
    b = OCIIndexBuilder(repo.manifests)
    b.append_manifest(amd)
    b.append_manifest(ABSENT)
    with pytest.raises(ManifestBlobUnknown) as info:
        b.build()
    assert info.value.digests == [ABSENT]

    wrong_type = OCIIndexBuilder(repo.manifests)
    wrong_type.append_manifest(amd.descriptor().with_(media_type=mt.DOCKER_MANIFEST))
    with pytest.raises(ManifestInvalid, match=r"manifests\[0\] .*is 'application/vnd\.oci"):
        wrong_type.build()
    wrong_size = OCIIndexBuilder(repo.manifests)
    wrong_size.append_manifest(amd.descriptor().with_(size=amd.size - 1))
    with pytest.raises(ManifestInvalid, match=f"size {amd.size - 1}, but the stored manifest"):
        wrong_size.build()


def test_manifest_list_needs_platforms(repo: Repository) -> None:
    images = []
    for arch in ("amd64", "arm64"):
        b = Schema2ManifestBuilder(repo.blobs, CONFIG.replace(b"amd64", arch.encode()))
        for layer in _layers(repo, 1, mt.DOCKER_LAYER):
            b.append_layer(layer)
        m = b.build()
        repo.manifests.put(m)
        images.append(m)
    lb = ManifestListBuilder(repo.manifests)
    with pytest.raises(
        ValueError, match=f"{images[0].digest}: a manifest list entry needs a platform"
    ):
        lb.append_manifest(images[0])
    with pytest.raises(ValueError, match="needs a str 'os'"):
        lb.append_manifest(images[0], platform={"architecture": "amd64"})
    for m, arch in zip(images, ("amd64", "arm64"), strict=True):
        lb.append_manifest(m, platform={"architecture": arch, "os": "linux"})
    listing = lb.build()
    assert type(listing) is ManifestList
    assert [c.media_type for c in listing.manifests] == [mt.DOCKER_MANIFEST] * 2
    repo.manifests.put(listing, tag="list")
    assert type(repo.manifests.get(listing.digest)) is ManifestList


# -- arguments of the wrong kind ------------------------------------------------------------


def test_bad_arguments_are_refused_when_given(repo: Repository) -> None:
    with pytest.raises(TypeError, match=r"config must be bytes .*not str"):
        OCIManifestBuilder(repo.blobs, "{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="annotation 'k': 1: keys and values must be str"):
        OCIManifestBuilder(repo.blobs, CONFIG, annotations={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="config_media_type 'json'"):
        OCIManifestBuilder(repo.blobs, CONFIG, config_media_type="json")
    b = OCIManifestBuilder(repo.blobs, CONFIG)
    with pytest.raises(TypeError, match="layer must be a Descriptor, not str"):
        b.append_layer(str(ABSENT))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"layer {ABSENT}: a layer descriptor needs a media type"):
        b.append_layer(Descriptor(digest=ABSENT, size=1))
    with pytest.raises(ValueError, match=f"subject {ABSENT}: needs its media type and size"):
        b.subject(Descriptor(digest=ABSENT, media_type=mt.OCI_MANIFEST))
    with pytest.raises(ValueError, match="artifact_type 'signature'"):
        b.artifact_type("signature")
    ib = OCIIndexBuilder(repo.manifests)
    with pytest.raises(TypeError, match="platform must be a mapping, not list"):
        ib.append_manifest(ABSENT, platform=["amd64"])  # type: ignore[arg-type]
    assert b.references() == [] and ib.references() == []
