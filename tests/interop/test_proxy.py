"""Proxy mode against the real Go registry 2.8.2 as the upstream (issue 14).

One anonymous Go registry per module behind :class:`FaultyUpstream` (which
counts the GETs it relays and breaks the ones a test asks it to), and one
``ocistore serve`` in proxy mode per core in front of it. Every test pushes
its own content to the upstream, so each starts on a cold cache.
"""

from __future__ import annotations

import importlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocistore.storage import paths

from . import _oci
from ._client import Client
from ._http import Response
from ._http import request as http_request
from ._peers import SKOPEO, GoRegistry, OcistoreServer, pull
from ._proxy import (
    BIG,
    FaultyUpstream,
    many_clients_one_get,
    push_blob,
    repo_name,
    start_proxy,
    stored,
    wait_stored,
)
from .conftest import need, require_peers

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy")


@pytest.fixture(scope="module")
def proxy(workdir: Path, relay: FaultyUpstream) -> Iterator[OcistoreServer]:
    server = start_proxy(workdir, "proxy", relay.url, timeout="3s")
    yield server
    server.stop()


def need_module(module: str) -> Any:
    """Import a client package: skip on a laptop without it, fail under OCISTORE_REQUIRE_PEERS=1."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if require_peers():
            pytest.fail(f"python package {module} is required (OCISTORE_REQUIRE_PEERS=1): {exc}")
        pytest.skip(f"python package {module} not installed")


def test_cold_then_warm_pull(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
) -> None:
    repo = repo_name(request, "app")
    image = _oci.make_image(random.Random(repo), layers=2, layer_size=BIG)
    assert Client(upstream.url).push_image(repo, image, "v1").status == 201
    c = Client(proxy.url)
    for _ in range(2):  # cold, then warm
        m = c.get_manifest(repo, "v1")
        assert m.status == 200, m
        assert m.body == image.manifest
        assert m.header("Docker-Content-Digest") == image.digest
        for digest, data in image.blobs.items():
            resp = c.get(f"/v2/{repo}/blobs/{digest}")
            assert (resp.status, resp.body) == (200, data)
            ranged = c.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=5-99"})
            assert (ranged.status, ranged.body) == (206, data[5:100])
    for digest in image.blobs:
        assert relay.blob_gets(repo, digest) == 1
        wait_stored(proxy.root, digest)
    by_digest = c.get_manifest(repo, image.digest)
    assert (by_digest.status, by_digest.body) == (200, image.manifest)
    assert c.tags(repo) == ["v1"]


def test_tag_moves_upstream(
    request: pytest.FixtureRequest, upstream: GoRegistry, proxy: OcistoreServer
) -> None:
    repo = repo_name(request, "app")
    rng = random.Random(repo)
    first, second = _oci.make_image(rng, layers=1), _oci.make_image(rng, layers=1)
    up, c = Client(upstream.url), Client(proxy.url)
    assert up.push_image(repo, first, "latest").status == 201
    assert c.get_manifest(repo, "latest").body == first.manifest
    assert up.push_image(repo, second, "latest").status == 201
    m = c.get_manifest(repo, "latest")
    assert (m.header("Docker-Content-Digest"), m.body) == (second.digest, second.manifest)


def test_write_routes_are_unsupported(
    request: pytest.FixtureRequest, proxy: OcistoreServer
) -> None:
    repo = repo_name(request, "app")
    c = Client(proxy.url)
    digest = _oci.sha256(b"x")
    answers = [
        c.start_upload(repo),
        request_("PATCH", f"{proxy.url}/v2/{repo}/blobs/uploads/some-id"),
        request_("PUT", f"{proxy.url}/v2/{repo}/manifests/v1"),
        request_("DELETE", f"{proxy.url}/v2/{repo}/manifests/{digest}"),
        request_("DELETE", f"{proxy.url}/v2/{repo}/blobs/{digest}"),
    ]
    for resp in answers:
        assert resp.status == 405, resp
        assert resp.error_codes() == ["UNSUPPORTED"]


def request_(method: str, url: str) -> Response:
    return http_request(method, url, body=b"", headers={"Content-Type": "application/octet-stream"})


@pytest.mark.parametrize("size", [4096, BIG], ids=["verified-first", "streamed"])
def test_32_clients_one_upstream_get(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
    size: int,
) -> None:
    many_clients_one_get(upstream, relay, proxy, repo_name(request, f"blob-{size}"), size)


def test_disconnecting_client_does_not_stop_the_fill(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
) -> None:
    import http.client

    repo = repo_name(request, "blob")
    data, _ = push_blob(upstream, repo, BIG)
    digest = _oci.sha256(data)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    conn.request("GET", f"/v2/{repo}/blobs/{digest}")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read(1000) == data[:1000]
    conn.close()  # gone mid-body
    whole = http_request("GET", f"{proxy.url}/v2/{repo}/blobs/{digest}", timeout=60)
    assert (whole.status, whole.body) == (200, data)
    assert relay.blob_gets(repo, digest) == 1


def test_head_fills_a_cold_blob(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
) -> None:
    repo = repo_name(request, "blob")
    data, _ = push_blob(upstream, repo, BIG)
    digest = _oci.sha256(data)
    head = http_request("HEAD", f"{proxy.url}/v2/{repo}/blobs/{digest}")
    assert head.status == 200
    assert head.header("Content-Length") == str(BIG)
    assert head.header("Docker-Content-Digest") == digest
    got = http_request("GET", f"{proxy.url}/v2/{repo}/blobs/{digest}", timeout=60)
    assert got.body == data
    assert relay.blob_gets(repo, digest) == 1


def test_unknown_upstream_content(request: pytest.FixtureRequest, proxy: OcistoreServer) -> None:
    repo = repo_name(request, "nothing")
    c = Client(proxy.url)
    assert c.get_manifest(repo, "v1").error_codes() == ["MANIFEST_UNKNOWN"]
    blob = c.get(f"/v2/{repo}/blobs/{_oci.sha256(b'none')}")
    assert (blob.status, blob.error_codes()) == (404, ["BLOB_UNKNOWN"])


def test_upstream_down_serves_the_last_known_manifest(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
) -> None:
    repo = repo_name(request, "app")
    image = _oci.make_image(random.Random(repo), layers=1)
    assert Client(upstream.url).push_image(repo, image, "v1").status == 201
    c = Client(proxy.url)
    assert c.get_manifest(repo, "v1").status == 200
    relay.down = True
    try:
        m = c.get_manifest(repo, "v1")
        assert (m.status, m.body) == (200, image.manifest)
        assert c.tags(repo) == ["v1"]
        cold = c.get_manifest(repo, "other")
        assert cold.status == 404
    finally:
        relay.down = False
    assert "serving the last known manifest" in proxy.log()


FAULTS = ["mismatch", "short", "length", "5xx", "stall", "loop"]


@pytest.mark.parametrize("fault", FAULTS)
def test_blob_fault_is_a_clear_error_and_nothing_is_stored(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
    fault: str,
) -> None:
    data, path = push_blob(upstream, repo_name(request, f"blob-{fault}"), 4096)
    with relay.broken(path, fault):
        resp = http_request("GET", proxy.url + path, timeout=60)
        assert resp.status in (502, 503), resp
        assert resp.error_codes() == ["UNAVAILABLE"]
        assert not stored(proxy.root, _oci.sha256(data))
    again = http_request("GET", proxy.url + path, timeout=60)
    assert (again.status, again.body) == (200, data)


@pytest.mark.parametrize("fault", ["mismatch", "short"])
def test_streamed_blob_fault_is_never_served_whole(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
    fault: str,
) -> None:
    data, path = push_blob(upstream, repo_name(request, f"blob-{fault}"), BIG)
    with relay.broken(path, fault):
        resp = http_request("GET", proxy.url + path, timeout=60)
        assert resp.status == 200
        assert resp.truncated  # cut before its end: the client never takes it for the blob
        assert len(resp.body) < BIG
        assert not stored(proxy.root, _oci.sha256(data))
    again = http_request("GET", proxy.url + path, timeout=60)
    assert (again.status, again.body) == (200, data)


@pytest.mark.parametrize("fault", ["huge", "5xx", "mismatch"])
def test_manifest_fault_is_a_clear_error(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
    fault: str,
) -> None:
    repo = repo_name(request, f"app-{fault}")
    image = _oci.make_image(random.Random(repo), layers=1)
    assert Client(upstream.url).push_image(repo, image, "v1").status == 201
    path = f"/v2/{repo}/manifests/{image.digest}"
    c = Client(proxy.url)
    with relay.broken(path, fault):
        resp = c.get_manifest(repo, image.digest)
        assert resp.status in (502, 503), resp
        assert resp.error_codes() == ["UNAVAILABLE"]
        assert not stored(proxy.root, image.digest)
    again = c.get_manifest(repo, "v1")
    assert (again.status, again.body) == (200, image.manifest)


def test_catalog_lists_what_was_pulled(
    request: pytest.FixtureRequest, upstream: GoRegistry, proxy: OcistoreServer
) -> None:
    repo = repo_name(request, "app")
    image = _oci.make_image(random.Random(repo), layers=1)
    assert Client(upstream.url).push_image(repo, image, "v1").status == 201
    c = Client(proxy.url)
    assert c.get_manifest(repo, "v1").status == 200
    assert repo in c.catalog()
    hold = proxy.root / paths.ROOT.lstrip("/") / "repositories" / repo / "_proxy/manifest/sha256"
    assert (hold / image.digest.split(":")[1]).is_file()
    assert json.loads(c.get(f"/v2/{repo}/tags/list").body)["name"] == repo


@pytest.fixture(scope="module")
def chained(workdir: Path, proxy: OcistoreServer) -> Iterator[OcistoreServer]:
    """A second ocistore proxy whose upstream is the first: ocistore -> ocistore -> Go."""
    server = start_proxy(workdir, "chained", proxy.url, timeout="3s")
    yield server
    server.stop()


def test_chain_on_a_cold_cache(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
    chained: OcistoreServer,
) -> None:
    repo = repo_name(request, "app")
    image = _oci.make_image(random.Random(repo), layers=2, layer_size=BIG)
    assert Client(upstream.url).push_image(repo, image, "v1").status == 201
    c = Client(chained.url)
    assert c.get_manifest(repo, "v1").body == image.manifest
    for digest, data in image.blobs.items():
        # What a client pulling through a chain does first: HEAD, on caches cold at both hops.
        head = c.head(f"/v2/{repo}/blobs/{digest}")
        assert (head.status, head.header("Content-Length")) == (200, str(len(data)))
        assert c.get(f"/v2/{repo}/blobs/{digest}").body == data
        assert relay.blob_gets(repo, digest) == 1
        wait_stored(proxy.root, digest)
        wait_stored(chained.root, digest)


def test_skopeo_pulls_a_multiarch_image_cold_and_warm(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
) -> None:
    need(SKOPEO)
    repo = repo_name(request, "multi")
    index = _oci.make_multiarch(random.Random(repo))
    assert Client(upstream.url).push_index(repo, index, "v1").status == 201
    for round_ in ("cold", "warm"):
        layout = tmp_path / round_
        pull(proxy.url, repo, "v1", layout, "v1")
        got = _oci.Layout.__new__(_oci.Layout)
        got.root = layout
        assert got.read_ref("v1") == index.index
        for digest, data in index.blobs.items():
            assert got.read_blob(digest) == data
    for digest in index.blobs:
        assert relay.blob_gets(repo, digest) == 1


def test_oras_pulls_an_artifact_with_referrers(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    upstream: GoRegistry,
    proxy: OcistoreServer,
) -> None:
    oras_client = need_module("oras.client")
    repo = repo_name(request, "art")
    files = {"artifact.txt": b"the artifact\n", "signature.sig": b"a signature over it\n"}
    for file, data in files.items():
        (tmp_path / file).write_bytes(data)
    up_host = upstream.url.removeprefix("http://")
    direct = oras_client.OrasClient(hostname=up_host, insecure=True)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # oras names layers after the paths it was given
    try:
        direct.push(target=f"{up_host}/{repo}:v1", files=["artifact.txt"])
        head = Client(upstream.url).get_manifest(repo, "v1")
        subject = head.header("Docker-Content-Digest")
        assert subject is not None
        ref = need_module("oras.oci").Subject(
            mediaType=head.header("Content-Type"), digest=subject, size=len(head.body)
        )
        direct.push(target=f"{up_host}/{repo}:sig", files=["signature.sig"], subject=ref)
    finally:
        os.chdir(cwd)
    via = proxy.url.removeprefix("http://")
    client = oras_client.OrasClient(hostname=via, insecure=True)
    for tag, file in (("v1", "artifact.txt"), ("sig", "signature.sig")):
        out = tmp_path / f"out-{tag}"
        pulled = client.pull(target=f"{via}/{repo}:{tag}", outdir=str(out))
        assert [Path(p).name for p in pulled] == [file]
        assert (out / file).read_bytes() == files[file]
    referrer = json.loads(Client(proxy.url).get_manifest(repo, "sig").body)
    assert referrer["subject"]["digest"] == subject
    # The Go registry 2.8 has no referrers API: its 404 is relayed, so clients use the tag schema.
    api = Client(proxy.url).get(f"/v2/{repo}/referrers/{subject}")
    assert api.status == 404
