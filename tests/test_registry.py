"""Registry and Repository: names, options, the global statter and blob enumerator, remove."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import InMemoryDriver, StorageDriver
from ocistore.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    NameInvalid,
    NameUnknown,
    TagInvalid,
)
from ocistore.storage import LinkedBlobStore, Registry, Repository
from ocistore.storage import paths as p
from storage_fixtures import blob_files, upload

pytestmark = pytest.mark.aio_facade  # also through ocistore.aio (aio_adapter.py)


def test_repository_validates_names() -> None:
    reg = Registry(InMemoryDriver())
    for good in ["a", "library/alpine", "a/b/c-d_e.f", "localhost/x", "Host.Example/x"]:
        repo = reg.repository(good)
        assert isinstance(repo, Repository)
        assert repo.name == good and repo.registry is reg
    for bad in ["", "A", "a//b", "/a", "a/", "../a", "a/../b", "_layers", "a/_uploads", "a:b"]:
        with pytest.raises(NameInvalid) as info:
            reg.repository(bad)
        assert info.value.name == bad


def test_name_with_port_cannot_be_stored() -> None:
    with pytest.raises(NameInvalid) as info:
        Registry(InMemoryDriver()).repository("localhost:5000/x")
    assert "':'" in info.value.reason


def test_repository_views_are_cheap_and_lazy(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("a")  # the sync classes themselves
    assert isinstance(repo.blobs, LinkedBlobStore)
    assert repo.blobs is repo.blobs
    assert repo.manifest_blobs.layout.kind == "manifests"
    assert repo.blobs.layout.kind == "layers"
    assert repr(repo) == "Repository('a')"


def test_layers_and_manifest_links_are_separate(plain_registry: Registry) -> None:
    repo = plain_registry.repository("a")
    desc = repo.manifest_blobs.put("application/vnd.oci.image.manifest.v1+json", b"{}")
    assert (
        plain_registry.driver.get_content(p.path_for(p.ManifestRevisionLink("a", desc.digest)))
        == str(desc.digest).encode()
    )
    with pytest.raises(BlobUnknown):
        repo.blobs.stat(desc.digest)
    assert repo.manifest_blobs.stat(desc.digest).size == 2
    assert list(repo.manifest_blobs.enumerate()) == [desc.digest]


def test_options_are_kept() -> None:
    reg = Registry(
        InMemoryDriver(),
        delete_enabled=True,
        resumable_digest=False,
        redirect=True,
        manifest_urls_allow=r"^https://allowed\.example/",
        manifest_urls_deny=re.compile("evil"),
        validate_index_children=False,
        index_platforms=[{"os": "linux", "architecture": "amd64"}],
    )
    assert reg.delete_enabled and not reg.resumable_digest and reg.redirect
    assert reg.manifest_urls_allow is not None
    assert reg.manifest_urls_allow.pattern == r"^https://allowed\.example/"
    assert reg.manifest_urls_deny is not None and reg.manifest_urls_deny.pattern == "evil"
    assert not reg.validate_index_children
    assert reg.index_platforms == ({"os": "linux", "architecture": "amd64"},)
    default = Registry(InMemoryDriver())
    assert not default.delete_enabled and default.resumable_digest and not default.redirect
    assert default.manifest_urls_allow is None and default.manifest_urls_deny is None
    assert default.validate_index_children and default.index_platforms is None
    with pytest.raises(TypeError):
        Registry(InMemoryDriver(), None)  # type: ignore[misc]


def test_global_statter_and_enumerator(registry: Registry) -> None:
    digests = {upload(registry.repository(f"r{i}").blobs, bytes([i]) * 3).digest for i in range(4)}
    assert set(registry.blobs.enumerate()) == digests
    for d in digests:
        assert registry.blob_statter.stat(d).size == 3
        assert registry.blobs.stat(d).size == 3
    with pytest.raises(BlobUnknown):
        registry.blob_statter.stat(Digest.from_bytes(b"absent"))


def test_catalog_through_the_registry(plain_registry: Registry) -> None:
    for name in ["foo-bar/a", "foo/d/in", "foo", "a"]:
        upload(plain_registry.repository(name).blobs, name.encode())
    assert plain_registry.repositories(10) == ["a", "foo", "foo/d/in", "foo-bar/a"]
    assert plain_registry.repositories(2, last="foo") == ["foo/d/in", "foo-bar/a"]
    assert list(plain_registry.enumerate()) == ["a", "foo", "foo/d/in", "foo-bar/a"]


def test_remove(plain_registry: Registry) -> None:
    desc = upload(plain_registry.repository("x/y").blobs, b"data")
    writer = plain_registry.repository("x/y").blobs.create()
    writer.close()
    plain_registry.remove("x/y")
    with pytest.raises(BlobUnknown):
        plain_registry.repository("x/y").blobs.stat(desc.digest)
    with pytest.raises(BlobUploadUnknown):
        plain_registry.repository("x/y").blobs.resume(writer.id)
    assert blob_files(plain_registry.driver) == [p.path_for(p.BlobData(desc.digest))]
    with pytest.raises(NameUnknown):
        plain_registry.remove("x/y")
    with pytest.raises(NameInvalid):
        plain_registry.remove("X")


def test_remove_is_seen_through_caches(registry: Registry) -> None:
    desc = upload(registry.repository("gone").blobs, b"cached")
    assert registry.repository("gone").blobs.exists(desc.digest)
    registry.remove("gone")
    assert not registry.repository("gone").blobs.exists(desc.digest)


# --- paths: every spec validates before a path is built ---------------------------------


D = Digest("sha256:" + "ab" * 32)
D512 = Digest("sha512:" + "cd" * 64)


def test_every_spec_maps_to_distributions_tree() -> None:
    r = "/docker/registry/v2/repositories/n/s"
    h, h5 = D.hex, D512.hex
    expected = {
        p.RepositoriesRoot(): "/docker/registry/v2/repositories",
        p.RepositoryRoot("n/s"): r,
        p.BlobsRoot(): "/docker/registry/v2/blobs",
        p.Blob(D): f"/docker/registry/v2/blobs/sha256/ab/{h}",
        p.BlobData(D): f"/docker/registry/v2/blobs/sha256/ab/{h}/data",
        p.Layers("n/s"): f"{r}/_layers",
        p.LayerLink("n/s", D512): f"{r}/_layers/sha512/{h5}/link",
        p.ManifestRevisions("n/s"): f"{r}/_manifests/revisions",
        p.ManifestRevision("n/s", D): f"{r}/_manifests/revisions/sha256/{h}",
        p.ManifestRevisionLink("n/s", D): f"{r}/_manifests/revisions/sha256/{h}/link",
        p.ManifestSignatures("n/s", D): f"{r}/_manifests/revisions/sha256/{h}/signatures",
        p.ManifestSignatureLink(
            "n/s", D, D512
        ): f"{r}/_manifests/revisions/sha256/{h}/signatures/sha512/{h5}/link",
        p.ManifestTags("n/s"): f"{r}/_manifests/tags",
        p.ManifestTag("n/s", "v1.0"): f"{r}/_manifests/tags/v1.0",
        p.ManifestTagCurrent("n/s", "v1.0"): f"{r}/_manifests/tags/v1.0/current/link",
        p.ManifestTagIndex("n/s", "v1.0"): f"{r}/_manifests/tags/v1.0/index",
        p.ManifestTagIndexEntry("n/s", "v1.0", D): f"{r}/_manifests/tags/v1.0/index/sha256/{h}",
        p.ManifestTagIndexEntryLink(
            "n/s", "v1.0", D
        ): f"{r}/_manifests/tags/v1.0/index/sha256/{h}/link",
        p.Uploads("n/s"): f"{r}/_uploads",
        p.Upload("n/s", "u-1"): f"{r}/_uploads/u-1",
        p.UploadData("n/s", "u-1"): f"{r}/_uploads/u-1/data",
        p.UploadStartedAt("n/s", "u-1"): f"{r}/_uploads/u-1/startedat",
        p.UploadHashStates("n/s", "u-1", "sha256"): f"{r}/_uploads/u-1/hashstates/sha256",
        p.UploadHashState("n/s", "u-1", "sha256", 42): f"{r}/_uploads/u-1/hashstates/sha256/42",
        p.ReferrersRoot("n/s"): f"{r}/_referrers",
        p.Referrers("n/s", D): f"{r}/_referrers/sha256/{h}",
        p.ReferrerEntry("n/s", D, D512): f"{r}/_referrers/sha256/{h}/sha512/{h5}",
        p.ReferrerLink("n/s", D, D512): f"{r}/_referrers/sha256/{h}/sha512/{h5}/link",
    }
    for spec, path in expected.items():
        assert p.path_for(spec) == path, spec  # type: ignore[arg-type]


def test_specs_accept_digest_strings_and_normalise() -> None:
    spec = p.LayerLink("a", str(D))  # type: ignore[arg-type]
    assert type(spec.digest) is Digest
    assert spec == p.LayerLink("a", D)
    assert hash(spec) == hash(p.LayerLink("a", D))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: p.RepositoryRoot("../x"), NameInvalid),
        (lambda: p.LayerLink("a", "sha256:xyz"), DigestInvalid),
        (lambda: p.ManifestTag("a", "../t"), TagInvalid),
        (lambda: p.Upload("a", "../u"), BlobUploadUnknown),
        (lambda: p.UploadHashState("a", "u", "md5", 1), DigestInvalid),
        (lambda: p.UploadHashState("a", "u", "sha256", -1), ValueError),
        (lambda: p.UploadHashState("a", "u", "sha256", True), ValueError),
    ],
)
def test_specs_refuse_bad_values(make: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()  # type: ignore[operator]


def test_digest_from_blob_data_path() -> None:
    assert p.digest_from_blob_data_path(p.path_for(p.BlobData(D512))) == D512
    for bad in ["/x/data", "/b/sha256/zz/" + D.hex + "/data", "/b/sha256/ab/" + D.hex + "/link"]:
        with pytest.raises(DigestInvalid):
            p.digest_from_blob_data_path(bad)


@given(st.binary(max_size=64), st.sampled_from(["sha256", "sha512", "blake3"]))
def test_blob_paths_round_trip(data: bytes, algorithm: str) -> None:
    d = Digest.from_bytes(data, algorithm)
    assert p.digest_from_blob_data_path(p.path_for(p.BlobData(d))) == d


def test_zero_registry_state(driver: StorageDriver) -> None:
    reg = Registry(driver)
    assert list(reg.blobs.enumerate()) == []
    assert reg.repositories() == []
    assert list(reg.repository("a").blobs.enumerate()) == []
    with pytest.raises(BlobUnknown):
        reg.repository("a").blobs.get(Digest.from_bytes(b""))
    assert reg.repository("a").blobs.put("", b"").size == 0
    writer = reg.repository("a").blobs.create()
    assert writer.commit(Descriptor(digest=Digest.from_bytes(b""))).size == 0
