"""Issue 6, item 1: one storage tree, both implementations, both directions.

A tree written by the Go registry (distribution 2.8.2) is read by ocistore's
storage API and served by ``ocistore serve``; a tree written by ocistore (over
HTTP and through the storage API) is served by the Go registry; skopeo pulls
identical digests from each. Both servers also run side by side on one root,
as during a rolling switch behind a load balancer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ocistore.descriptor import Descriptor
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.errors import BlobUnknown, ManifestUnknown, TagUnknown
from ocistore.storage.registry import Registry

from . import _oci
from ._client import Client
from ._http import request
from ._peers import GoRegistry, OcistoreServer, push
from ._trees import UPPER_CASE_NAME, Tree, populate
from ._verify import check_pulled, check_served

pytestmark = [pytest.mark.peer, pytest.mark.usefixtures("skopeo_available")]


def open_registry(root: Path) -> Registry:
    return Registry(FilesystemDriver(root), delete_enabled=True)


def check_storage(registry: Registry, tree: Tree) -> None:
    """ocistore's storage API finds exactly what the tree describes."""
    catalog = registry.repositories(n=1000)
    assert catalog == sorted(catalog, key=lambda n: n.replace("/", "\0")), catalog
    assert set(tree.repos) <= set(catalog)
    for name, tags in tree.repos.items():
        repo = registry.repository(name)
        assert sorted(repo.tags.all()) == sorted(tags), name
        for tag, digest in tags.items():
            assert repo.tags.get(tag).digest == digest, (name, tag)
        for digest, payload in tree.manifests[name].items():
            assert repo.manifests.exists(digest), (name, digest)
            manifest = repo.manifests.get(digest)
            assert manifest.payload == payload
            assert manifest.digest == digest
            assert manifest.media_type == tree.media_types[digest]
        for digest in tree.deleted.get(name, ()):
            assert not repo.manifests.exists(digest)
            with pytest.raises(ManifestUnknown):
                repo.manifests.get(digest)
        for digest, data in tree.blobs[name].items():
            desc = repo.blobs.stat(digest)
            assert (desc.digest, desc.size) == (digest, len(data))
            assert repo.blobs.get(digest) == data
            with repo.blobs.open(digest) as f:
                assert f.read() == data


def test_go_tree_read_by_storage_api(
    go: GoRegistry, root: Path, tmp_path: Path, rng: random.Random
) -> None:
    tree = populate(go.url, tmp_path, rng)
    check_served(go.url, tree)  # the fixture describes what Go itself serves
    registry = open_registry(root)
    check_storage(registry, tree)
    assert registry.repositories(n=1000) == Client(go.url).catalog()

    repo = registry.repository("library/multi")
    with pytest.raises(TagUnknown):
        repo.tags.get("gone")  # Go untagged it when the manifest was deleted by digest
    with pytest.raises(BlobUnknown):
        repo.blobs.stat(_oci.sha256(b"never pushed"))


def test_go_tree_served_by_ocistore(
    go: GoRegistry,
    root: Path,
    tmp_path: Path,
    rng: random.Random,
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    tree = populate(go.url, tmp_path, rng)
    go.stop()
    server: OcistoreServer = start_ocistore(root)
    check_served(server.url, tree)
    check_pulled(server.url, tree, tmp_path)


def test_go_refuses_delete_by_tag(go: GoRegistry, tmp_path: Path, rng: random.Random) -> None:
    """Recorded as a known difference: distribution 2.8.2 deletes manifests by digest only."""
    image = _oci.make_image(rng, layers=1)
    assert Client(go.url).push_image("del/tag", image, "t").status == 201
    resp = request("DELETE", f"{go.url}/v2/del/tag/manifests/t")
    assert resp.status == 400
    assert resp.error_codes() == ["DIGEST_INVALID"]


@pytest.mark.parametrize("via", ["http", "storage-api"])
def test_ocistore_tree_served_by_go(
    via: str,
    root: Path,
    tmp_path: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    if via == "http":
        server = start_ocistore(root)
        tree = populate(server.url, tmp_path, rng)
        check_served(server.url, tree)
        server.stop()
    else:
        tree = write_with_storage_api(open_registry(root), rng)
    go = start_go(root)
    check_served(go.url, tree)
    check_pulled(go.url, tree, tmp_path)


def write_with_storage_api(registry: Registry, rng: random.Random) -> Tree:
    """The fixture content written through ``Registry`` directly (no server)."""
    tree = Tree()
    multi = _oci.make_multiarch(rng)
    single = _oci.make_image(rng, layers=3)
    gone = _oci.make_image(rng, layers=1)
    for name, tag, top in [
        ("library/multi", "v1", multi),
        ("library/multi", "latest", multi),
        ("library/multi", "gone", gone),
        ("other/app", "1.0", single),
        (UPPER_CASE_NAME, "v1", single),
    ]:
        repo = registry.repository(name)
        images = top.images if isinstance(top, _oci.Index) else [top]
        for image in images:
            for data in image.blobs.values():
                with repo.blobs.create() as writer:
                    writer.write(data)
                    writer.commit(_descriptor(data))
            repo.manifests.put(image.manifest, media_type=_oci.OCI_MANIFEST)
        if isinstance(top, _oci.Index):
            repo.manifests.put(top.index, media_type=_oci.OCI_INDEX, tag=tag)
        else:
            repo.manifests.put(top.manifest, media_type=_oci.OCI_MANIFEST, tag=tag)
        tree.add(name, tag, top)
    registry.repository("library/multi").manifests.delete(gone.digest)
    tree.forget("library/multi", gone.digest)
    return tree


def _descriptor(data: bytes) -> Descriptor:
    return Descriptor(digest=_oci.sha256(data), size=len(data))


def test_side_by_side_on_one_root(
    root: Path,
    tmp_path: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    """Both servers on one root at once: what either writes, the other serves at once."""
    go = start_go(root)
    oci = start_ocistore(root)
    layout = _oci.Layout(tmp_path / "layout")
    to_go = _oci.make_multiarch(rng)
    to_oci = _oci.make_image(rng, layers=3)
    layout.tag("a", to_go)
    layout.tag("b", to_oci)
    push(layout.root, "a", go.url, "rolling/app")
    push(layout.root, "b", oci.url, "rolling/app")
    tree = Tree()
    tree.add("rolling/app", "a", to_go)
    tree.add("rolling/app", "b", to_oci)
    for url in (go.url, oci.url):
        check_served(url, tree)
        check_pulled(url, tree, tmp_path)
