"""Issue 6, item 3: distribution's ``garbage-collect`` and ocistore agree on one tree.

- run on a tree ocistore wrote, the Go collector deletes nothing still referenced;
- ocistore reads a Go-collected tree intact, and with its descriptor cache
  (LMDB) warm from before the collection answers "unknown" for every blob the
  collection swept (a stale hit would make clients skip pushes); the swept
  blobs keep their ``_layers`` links, which must read as unknown, never as a 500;
- ``--delete-untagged`` deletes referrers (they are untagged) and, in 2.8.2,
  the images of a tagged multi-arch index: documented in docs/interop.md and
  pinned here so the documentation stays true.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ocistore.cache import LMDBDescriptorCache
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.errors import BlobUnknown
from ocistore.storage.registry import Registry

from . import _oci
from ._client import Client
from ._peers import GoRegistry, OcistoreServer
from ._trees import Tree, populate, push_referrer
from ._verify import check_served

pytestmark = [pytest.mark.peer, pytest.mark.usefixtures("skopeo_available")]


def blob_files(root: Path) -> set[str]:
    """Every blob whose data is on disk, by digest."""
    base = root / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{p.parent.name}" for p in base.glob("*/*/data")}


def check_swept_unknown_http(url: str, swept: dict[str, set[str]]) -> None:
    client = Client(url)
    for repo, digests in swept.items():
        for digest in digests:
            for method in ("HEAD", "GET"):
                resp = (client.head if method == "HEAD" else client.get)(
                    f"/v2/{repo}/blobs/{digest}"
                )
                assert resp.status == 404, (url, method, repo, digest, resp)
                if method == "GET":
                    assert resp.error_codes() == ["BLOB_UNKNOWN"], resp


def warm(registry: Registry, tree: Tree) -> None:
    """Stat every linked blob so the descriptor cache holds all of them."""
    for repo, blobs in tree.blobs.items():
        store = registry.repository(repo).blobs
        for digest in blobs:
            store.stat(digest)


def test_go_gc_on_ocistore_tree_keeps_everything_referenced(
    root: Path,
    tmp_path: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    oci = start_ocistore(root)
    tree = populate(oci.url, tmp_path, rng)
    subject = tree.tops["other/app:1.0"]
    assert isinstance(subject, _oci.Image)
    push_referrer(Client(oci.url), "other/app", subject, rng, tree)  # untagged, yet referenced
    check_served(oci.url, tree)  # also warms ocistore's cache with every blob
    before = blob_files(root)

    go = start_go(root)
    go.stop()  # distribution's collector wants no registry writing; ocistore only reads
    go.garbage_collect()
    after = blob_files(root)

    left, swept = tree.after_gc()
    assert not (before - after) & tree.referenced(), "the collector deleted referenced blobs"
    assert before - after == set().union(*swept.values()) | set().union(*tree.deleted.values())
    go.start()
    for url in (go.url, oci.url):
        check_served(url, left)
        check_swept_unknown_http(url, swept)


def test_ocistore_reads_go_collected_tree_with_warm_cache(
    go: GoRegistry,
    root: Path,
    tmp_path: Path,
    rng: random.Random,
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    tree = populate(go.url, tmp_path, rng)
    oci = start_ocistore(root)
    check_served(oci.url, tree)  # the server's cache (LMDB by default) is warm now
    registry = Registry(
        FilesystemDriver(root), cache=LMDBDescriptorCache(tmp_path / "cache"), delete_enabled=True
    )
    warm(registry, tree)

    go.stop()
    go.garbage_collect()
    left, swept = tree.after_gc()
    assert any(swept.values())

    check_served(oci.url, left)
    check_swept_unknown_http(oci.url, swept)
    for repo, digests in swept.items():
        store = registry.repository(repo).blobs
        for digest in digests:
            assert not store.exists(digest)
            with pytest.raises(BlobUnknown):
                store.stat(digest)
            with pytest.raises(BlobUnknown):
                store.open(digest)
        for digest, data in left.blobs[repo].items():
            assert store.get(digest) == data

    # A client that pushes a swept blob again repairs it (the stale link is rewritten).
    repo, digests = next((r, d) for r, d in swept.items() if d)
    digest = sorted(digests)[0]
    data = tree.blobs[repo][digest]
    assert Client(oci.url).push_blob(repo, data).status == 201
    assert Client(oci.url).get(f"/v2/{repo}/blobs/{digest}").body == data
    assert registry.repository(repo).blobs.get(digest) == data


def test_delete_untagged_deletes_referrers_and_index_children(
    go: GoRegistry,
    root: Path,
    rng: random.Random,
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    """What docs/interop.md warns about, and ocistore answering sanely afterwards."""
    oci = start_ocistore(root)
    client = Client(oci.url)
    index = _oci.make_multiarch(rng)
    assert client.push_index("gc/untagged", index, "v1").status == 201
    image = _oci.make_image(rng, layers=1)
    assert client.push_image("gc/untagged", image, "img").status == 201
    artifact = push_referrer(client, "gc/untagged", image, rng)

    go.stop()
    go.garbage_collect(delete_untagged=True)
    go.start()

    for url in (go.url, oci.url):
        c = Client(url)
        assert c.get_manifest("gc/untagged", "v1").status == 200  # the tagged index stays
        assert c.get_manifest("gc/untagged", "img").status == 200
        for child in index.images:  # ... but its untagged images are gone (2.8.2)
            resp = c.get_manifest("gc/untagged", child.digest)
            assert resp.status == 404 and resp.error_codes() == ["MANIFEST_UNKNOWN"], (url, resp)
        resp = c.get_manifest("gc/untagged", artifact)
        assert resp.status == 404, (url, resp)

    referrers = client.get(f"/v2/gc/untagged/referrers/{image.digest}")
    assert referrers.status == 200, referrers
    assert referrers.json()["manifests"] == [], "a collected referrer is still listed"
