"""Manifest store: distribution's manifeststore_test.go on both drivers, with and without caches."""

from __future__ import annotations

import json

import pytest

from manifest_helpers import index_payload, oci_image, push_schema2_image, schema2_image
from ocistore.cache import MemoryDescriptorCache
from ocistore.digest import Digest
from ocistore.driver import StorageDriver
from ocistore.errors import (
    BlobUnknown,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    TagInvalid,
    TagUnknown,
    Unsupported,
)
from ocistore.manifest import ManifestList, OCIIndex, OCIManifest, Schema2Manifest
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, Repository
from storage_fixtures import blob_files, link_files

pytestmark = pytest.mark.aio_facade  # also through ocistore.aio (aio_adapter.py)

V2 = "/docker/registry/v2"


def test_manifest_storage(registry: Registry) -> None:
    """testManifestStorage: schema 2 put, get, exists, delete, re-put; delete disabled."""
    repo = registry.repository("foo/bar")
    ms = repo.manifests
    payload = schema2_image(repo)
    dgst = Digest.from_bytes(payload)
    assert not ms.exists(dgst)
    with pytest.raises(ManifestUnknown) as info:
        ms.get(dgst)
    assert (info.value.name, info.value.reference) == ("foo/bar", dgst)

    assert ms.put(payload) == dgst
    assert ms.exists(dgst)
    assert ms.exists(str(dgst))
    fetched = ms.get(dgst)
    assert isinstance(fetched, Schema2Manifest)
    assert fetched.payload == payload
    assert fetched.media_type == mt.DOCKER_MANIFEST
    assert fetched.digest == dgst
    assert ms.stat(dgst).size == len(payload)

    ms.delete(dgst)
    assert not ms.exists(dgst)
    with pytest.raises(ManifestUnknown):
        ms.get(dgst)
    with pytest.raises(ManifestUnknown):
        ms.delete(dgst)

    assert ms.put(payload) == dgst  # re-upload restores it
    assert ms.get(dgst).payload == payload

    no_delete = Registry(registry.driver, cache=registry.cache)
    with pytest.raises(Unsupported):
        no_delete.repository("foo/bar").manifests.delete(dgst)
    assert ms.exists(dgst)


def test_missing_layers_are_all_listed(plain_registry: Registry) -> None:
    repo = plain_registry.repository("foo/bar")
    payload = schema2_image(repo)
    doc = json.loads(payload)
    other = plain_registry.repository("other")
    missing = [other.blobs.put(mt.DOCKER_LAYER, bytes([i]) * 10).digest for i in range(2)]
    doc["layers"] = [{"mediaType": mt.DOCKER_LAYER, "digest": d, "size": 10} for d in missing]
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.manifests.put(json.dumps(doc).encode())
    assert info.value.digests == missing
    assert list(repo.manifests.enumerate()) == []


def test_payload_stored_exactly(plain_registry: Registry) -> None:
    repo = plain_registry.repository("foo/bar")
    drv = plain_registry.driver
    payload = b"\n\n" + oci_image(repo, layers=1).replace(b"   ", b"\t") + b"  \n"
    dgst = repo.manifests.put(payload)
    assert dgst == Digest.from_bytes(payload)
    hexd = dgst.encoded
    assert drv.get_content(f"{V2}/blobs/sha256/{hexd[:2]}/{hexd}/data") == payload
    link = f"{V2}/repositories/foo/bar/_manifests/revisions/sha256/{hexd}/link"
    assert drv.get_content(link) == str(dgst).encode()
    # the same document re-serialised is another manifest
    again = json.dumps(json.loads(payload)).encode()
    assert repo.manifests.put(again) != dgst
    assert set(repo.manifests.enumerate()) == {dgst, Digest.from_bytes(again)}


@pytest.mark.parametrize("include_media_types", [True, False])
def test_oci_manifest_storage(plain_registry: Registry, include_media_types: bool) -> None:
    """testOCIManifestStorage: index needs its child; schemaVersion; media types on get."""
    repo = plain_registry.repository("foo/bar")
    ms = repo.manifests
    image_type = mt.OCI_MANIFEST if include_media_types else None
    index_type = mt.OCI_INDEX if include_media_types else None
    image = oci_image(repo, media_type=image_type)
    index = index_payload([(image, "atari2600", "CP/M")], media_type=index_type)

    with pytest.raises(ManifestBlobUnknown):
        ms.put(index)

    doc = json.loads(image)
    doc["schemaVersion"] = 0
    with pytest.raises(ManifestInvalid, match="unrecognized manifest schema version 0"):
        ms.put(json.dumps(doc).encode())

    image_digest = ms.put(image)
    index_digest = ms.put(index)

    fetched = ms.get(image_digest)
    assert isinstance(fetched, OCIManifest)
    assert fetched.media_type == mt.OCI_MANIFEST
    assert fetched.declared_media_type == (image_type or "")
    assert fetched.schema_version == 2
    fetched_index = ms.get(index_digest)
    assert isinstance(fetched_index, OCIIndex)
    assert fetched_index.media_type == mt.OCI_INDEX
    assert fetched_index.declared_media_type == (index_type or "")


def test_index_manifest_storage_without_image_check(driver: StorageDriver) -> None:
    reg = Registry(driver, delete_enabled=True, validate_index_children=False)
    repo = reg.repository("foo/bar")
    image = oci_image(repo)
    index = index_payload([(image, "atari2600", "CP/M")])
    assert isinstance(repo.manifests.get(repo.manifests.put(index)), OCIIndex)
    listing = index_payload(
        [(image, "atari2600", "CP/M")],
        media_type=mt.DOCKER_MANIFEST_LIST,
        child_type=mt.DOCKER_MANIFEST,
    )
    assert isinstance(repo.manifests.get(repo.manifests.put(listing)), ManifestList)


def test_index_manifest_storage_with_selective_platforms(driver: StorageDriver) -> None:
    reg = Registry(
        driver, delete_enabled=True, index_platforms=[{"architecture": "amd64", "os": "linux"}]
    )
    repo = reg.repository("foo/bar")
    amd, arm, atari = (oci_image(repo) for _ in range(3))
    index = index_payload(
        [(amd, "amd64", "linux"), (arm, "arm", "plan9"), (atari, "atari2600", "CP/M")]
    )
    with pytest.raises(ManifestBlobUnknown):
        repo.manifests.put(index)
    repo.manifests.put(atari)
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.manifests.put(index)
    assert info.value.digests == [Digest.from_bytes(amd)]
    repo.manifests.put(amd)
    repo.manifests.put(index)  # arm never pushed: its platform is not checked


def test_manifest_list_needs_children(plain_registry: Registry) -> None:
    repo = plain_registry.repository("foo/bar")
    image = schema2_image(repo)
    listing = index_payload(
        [(image, "amd64", "linux")],
        media_type=mt.DOCKER_MANIFEST_LIST,
        child_type=mt.DOCKER_MANIFEST,
    )
    with pytest.raises(ManifestBlobUnknown):
        repo.manifests.put(listing)
    repo.manifests.put(image)
    repo.manifests.put(listing, mt.DOCKER_MANIFEST_LIST)


def test_child_must_be_a_manifest_of_this_repository(plain_registry: Registry) -> None:
    one, two = plain_registry.repository("one"), plain_registry.repository("two")
    image = push_schema2_image(one)
    listing = index_payload(
        [(image, "amd64", "linux")],
        media_type=mt.DOCKER_MANIFEST_LIST,
        child_type=mt.DOCKER_MANIFEST,
    )
    with pytest.raises(ManifestBlobUnknown):
        two.manifests.put(listing)
    # a blob with the same bytes is not a manifest either
    two.blobs.put("application/octet-stream", image)
    with pytest.raises(ManifestBlobUnknown):
        two.manifests.put(listing)


def test_manifest_storage_cache() -> None:
    """TestManifestStorageCache: put fills the repository-scoped cache, delete clears it."""
    from ocistore.driver import InMemoryDriver

    cache = MemoryDescriptorCache()
    reg = Registry(InMemoryDriver(), cache=cache, delete_enabled=True)
    repo = reg.repository("foo/bar")
    scoped = cache.repository_scoped("foo/bar")
    dgst = repo.manifests.put(schema2_image(repo))
    assert scoped.stat(dgst).digest == dgst
    assert repo.manifests.exists(dgst)
    repo.manifests.delete(dgst)
    assert not repo.manifests.exists(dgst)
    with pytest.raises(ManifestUnknown):
        repo.manifests.get(dgst)
    with pytest.raises(BlobUnknown):
        scoped.stat(dgst)


def test_put_with_tag(plain_registry: Registry) -> None:
    repo = plain_registry.repository("foo/bar")
    payload = schema2_image(repo)
    dgst = repo.manifests.put(payload, tag="v1")
    assert repo.tags.get("v1").digest == dgst
    with pytest.raises(TagInvalid):
        repo.manifests.put(oci_image(repo), tag="-bad")
    assert set(repo.manifests.enumerate()) == {dgst}  # nothing stored for the refused put


def test_delete_removes_the_tags_pointing_at_it(plain_registry: Registry) -> None:
    repo = plain_registry.repository("foo/bar")
    first = repo.manifests.put(schema2_image(repo), tag="a")
    repo.tags.tag("b", first)
    second = repo.manifests.put(schema2_image(repo), tag="c")
    repo.tags.tag("d", first)
    repo.tags.tag("d", second)  # d pointed at first once, points at second now
    repo.manifests.delete(first)
    assert repo.tags.all() == ["c", "d"]
    assert repo.tags.lookup(first) == []
    for tag in ("a", "b"):
        with pytest.raises(TagUnknown):
            repo.tags.get(tag)
    assert repo.tags.get("d").digest == second
    # the blob data stays for garbage collection; only links went
    assert any(first.encoded in p for p in blob_files(plain_registry.driver))
    assert not any(
        first.encoded in p and "revisions" in p for p in link_files(plain_registry.driver)
    )


def test_schema1_and_limits_refused(plain_registry: Registry) -> None:
    repo = plain_registry.repository("foo/bar")
    schema1 = json.dumps({"schemaVersion": 1, "name": "foo/bar", "tag": "x", "fsLayers": []})
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        repo.manifests.put(schema1.encode(), mt.DOCKER_SCHEMA1_SIGNED)
    big = oci_image(repo, layers=0)
    with pytest.raises(ManifestTooLarge):
        repo.manifests.put(big + b" " * (4 * 1024 * 1024))
    with pytest.raises(ManifestInvalid, match="should be"):
        repo.manifests.put(oci_image(repo), mt.DOCKER_MANIFEST)
    assert list(repo.manifests.enumerate()) == []


def test_foreign_layer_urls_follow_registry_options(driver: StorageDriver) -> None:
    def put(reg: Registry, url: str) -> None:
        repo = reg.repository("foo/bar")
        doc = json.loads(schema2_image(repo, layers=0))
        doc["layers"] = [
            {
                "mediaType": mt.DOCKER_FOREIGN_LAYER,
                "digest": "sha256:" + "4" * 64,
                "size": 6323,
                "urls": [url],
            }
        ]
        repo.manifests.put(json.dumps(doc).encode())

    with pytest.raises(ManifestInvalid, match="invalid URL"):
        put(Registry(driver), "https://foo/bar")  # default: nothing allowed
    allowing = Registry(
        driver, manifest_urls_allow=r"^https?://foo", manifest_urls_deny=r"^https?://foo/nope"
    )
    put(allowing, "https://foo/bar")
    with pytest.raises(ManifestInvalid, match="denied"):
        put(allowing, "https://foo/nope")
    with pytest.raises(ManifestInvalid, match="not allowed"):
        put(allowing, "https://elsewhere/x")


def test_get_refuses_a_stored_schema1(plain_registry: Registry) -> None:
    repo = plain_registry.repository("old/tree")
    legacy = json.dumps({"schemaVersion": 1, "name": "old/tree", "fsLayers": []}).encode()
    desc = repo.manifest_blobs.put(mt.DOCKER_SCHEMA1_SIGNED, legacy)  # as distribution 2 wrote it
    assert repo.manifests.exists(desc.digest)
    with pytest.raises(ManifestInvalid, match="schema 1"):
        repo.manifests.get(desc.digest)


def test_manifests_are_per_repository(plain_registry: Registry) -> None:
    one: Repository = plain_registry.repository("one")
    two: Repository = plain_registry.repository("two")
    dgst = one.manifests.put(schema2_image(one))
    assert not two.manifests.exists(dgst)
    with pytest.raises(ManifestUnknown):
        two.manifests.get(dgst)
    with pytest.raises(ManifestUnknown):
        two.manifests.delete(dgst)
