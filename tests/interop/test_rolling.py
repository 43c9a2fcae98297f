"""A rolling switch: both servers on one root, a client's requests landing on either.

Beyond reading each other's trees (``test_same_tree.py``), content one server
wrote must be usable by the other's operations: mounts across repositories,
retagging, deletes (which must find tags the other wrote), and referrers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from . import _oci
from ._client import Client
from ._http import request
from ._peers import GoRegistry, OcistoreServer
from ._trees import push_referrer

pytestmark = pytest.mark.peer


@pytest.fixture
def both(
    root: Path,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> tuple[Client, Client]:
    return Client(start_go(root).url), Client(start_ocistore(root).url)


@pytest.mark.parametrize("direction", ["go-to-ocistore", "ocistore-to-go"])
def test_mount_across(direction: str, both: tuple[Client, Client], rng: random.Random) -> None:
    go, oci = both
    source, target = (go, oci) if direction == "go-to-ocistore" else (oci, go)
    data = rng.randbytes(3000)
    digest = _oci.sha256(data)
    assert source.push_blob("mount/source", data).status == 201
    resp = target.start_upload("mount/target", f"?mount={digest}&from=mount/source")
    assert resp.status == 201, resp
    assert resp.header("Docker-Content-Digest") == digest
    for client in both:
        got = client.get(f"/v2/mount/target/blobs/{digest}")
        assert got.status == 200 and got.body == data


def test_tags_and_deletes_across(both: tuple[Client, Client], rng: random.Random) -> None:
    go, oci = both
    first, second = _oci.make_image(rng, layers=1), _oci.make_image(rng, layers=1)
    assert go.push_image("mixed/tags", first, "v1").status == 201
    assert go.put_manifest("mixed/tags", "keep", first.manifest, _oci.OCI_MANIFEST).status == 201
    # ocistore moves v1 to another manifest: Go serves the move at once.
    assert oci.push_image("mixed/tags", second, "v1").status == 201
    for client in both:
        assert client.get_manifest("mixed/tags", "v1").body == second.manifest
        assert client.tags("mixed/tags") == ["keep", "v1"]
    # Go deletes the first manifest by digest: the tag pointing at it goes with it.
    assert request("DELETE", f"{go.base}/v2/mixed/tags/manifests/{first.digest}").status == 202
    for client in both:
        assert client.tags("mixed/tags") == ["v1"]
        assert client.get_manifest("mixed/tags", first.digest).status == 404
    # ocistore deletes by tag (Go 2.8.2 cannot): the manifest stays, the tag goes.
    assert request("DELETE", f"{oci.base}/v2/mixed/tags/manifests/v1").status == 202
    for client in both:
        assert client.tags("mixed/tags") == []
        assert client.get_manifest("mixed/tags", "v1").status == 404
        assert client.get_manifest("mixed/tags", second.digest).body == second.manifest
    # ocistore deletes by digest a manifest Go tagged.
    assert go.put_manifest("mixed/tags", "again", second.manifest, _oci.OCI_MANIFEST).status == 201
    assert request("DELETE", f"{oci.base}/v2/mixed/tags/manifests/{second.digest}").status == 202
    for client in both:
        assert client.tags("mixed/tags") == []
        assert client.get_manifest("mixed/tags", "again").status == 404


def _listed(client: Client, repo: str, subject: str, query: str = "") -> list[str]:
    resp = client.get(f"/v2/{repo}/referrers/{subject}{query}")
    assert resp.status == 200, resp
    return [d["digest"] for d in resp.json()["manifests"]]


@pytest.mark.parametrize("asked_before", [False, True])
def test_referrers_pushed_through_go_are_listed(
    both: tuple[Client, Client], rng: random.Random, asked_before: bool
) -> None:
    """Go writes no referrers index: ocistore indexes what Go pushed when it is asked.

    No rebuild and no restart: each referrers request reads the manifests
    written since the previous one (whoever wrote them) and nothing else.
    """
    go, oci = both
    repo = "mixed/referrers"
    image = _oci.make_image(rng, layers=1)
    assert go.push_image(repo, image, "v1").status == 201
    if asked_before:  # ocistore has indexed the repository before Go adds the referrer
        assert _listed(oci, repo, image.digest) == []
    artifact = push_referrer(go, repo, image, rng)
    resp = oci.get(f"/v2/{repo}/referrers/{image.digest}")
    assert resp.status == 200, resp
    listed = resp.json()["manifests"]
    assert [d["digest"] for d in listed] == [artifact]
    assert listed[0]["artifactType"] == "application/vnd.example.signature"
    query = "?artifactType=application/vnd.example.signature"
    assert _listed(oci, repo, image.digest, query) == [artifact]
    # A referrer pushed through ocistore is an ordinary manifest to Go; both are listed.
    other = push_referrer(oci, repo, image, rng)
    assert go.get_manifest(repo, other).status == 200
    assert _listed(oci, repo, image.digest) == sorted([artifact, other])
    # Go deletes its referrer: ocistore stops listing it; pushed again, it is back.
    payload = go.get_manifest(repo, artifact).body
    assert request("DELETE", f"{go.base}/v2/{repo}/manifests/{artifact}").status == 202
    assert _listed(oci, repo, image.digest) == [other]
    assert go.put_manifest(repo, artifact, payload, _oci.OCI_MANIFEST).status == 201
    assert _listed(oci, repo, image.digest) == sorted([artifact, other])
