"""Issue 11, item 4: blob GETs redirected to presigned S3 URLs (distribution's EnableRedirect).

``ocistore serve`` with ``storage.s3`` on a moto server answers a blob GET
with ``307`` and a presigned URL, Range included; HEAD is answered by ocistore.
skopeo, oras and python-dxf pull through the redirects with identical digests.
What ocistore sends is counted on the wire by a reverse proxy in front of it
(``_counting_proxy.py``): the body bytes of every blob GET answer. On a
redirected pull that count is 0; with ``storage.redirect.disable: true`` it
is every blob's size, which shows the counter sees blob data when it flows.
"""

from __future__ import annotations

import calendar
import importlib
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import core_env, require_peers
from ocistore import _core
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

from . import _oci
from ._counting_proxy import CountingProxy
from ._http import request
from ._peers import Server, free_port, ocistore_argv, pull, push
from .test_s3_shared import ocistore_s3_config

pytestmark = [pytest.mark.peer]


@pytest.fixture
def bucket(new_bucket: Callable[[], str]) -> str:  # noqa: F811
    return new_bucket()


@pytest.fixture
def serve(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
    bucket: str,
) -> Iterator[Callable[..., tuple[Server, CountingProxy]]]:
    """Factory: ``ocistore serve`` on this test's bucket and a counting proxy in front of it."""
    started: list[tuple[Server, CountingProxy]] = []

    def start(*, redirect: bool = True, expiry: str = "20m") -> tuple[Server, CountingProxy]:
        port = free_port()
        local = tmp_path / f"local-{port}"
        config = tmp_path / f"ocistore-{port}.yml"
        config.write_text(
            ocistore_s3_config(
                s3_endpoint, bucket, port, local, redirect=redirect, redirect_expiry=expiry
            )
        )
        argv = [*ocistore_argv(), "serve", "--config", str(config), "--root", str(local)]
        server = Server(
            "ocistore", argv, port, tmp_path / f"ocistore-{port}.log", env=core_env(_core.BACKEND)
        )
        server.start()
        proxy = CountingProxy(port).__enter__()
        started.append((server, proxy))
        return server, proxy

    yield start
    for server, proxy in reversed(started):
        proxy.__exit__(None, None, None)
        server.stop()


def need_module(name: str) -> Any:
    """Import a client package: skip on a laptop without it, fail under OCISTORE_REQUIRE_PEERS=1."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if require_peers():
            pytest.fail(f"python package {name} is required (OCISTORE_REQUIRE_PEERS=1): {exc}")
        pytest.skip(f"python package {name} not installed")


def push_blob(url: str, repo: str, data: bytes) -> str:
    """One monolithic upload (POST with the digest); returns the digest."""
    digest = _oci.sha256(data)
    resp = request(
        "POST",
        f"{url}/v2/{repo}/blobs/uploads/?digest={digest}",
        headers={"Content-Type": "application/octet-stream"},
        body=data,
    )
    assert resp.status == 201, resp
    return digest


def s3_layout(tmp_path: Path, rng: random.Random) -> tuple[_oci.Layout, dict[str, Any]]:
    layout = _oci.Layout(tmp_path / "source")
    tops: dict[str, Any] = {
        "multi": _oci.make_multiarch(rng),
        "single": _oci.make_image(rng, layers=2, layer_size=1_500_000),
    }
    for tag, top in tops.items():
        layout.tag(tag, top)
    return layout, tops


def pull_and_check(url: str, repo: str, tops: dict[str, Any], workdir: Path) -> dict[str, int]:
    """skopeo pulls every tag from ``url``; digests must be identical. Returns blob sizes."""
    sizes: dict[str, int] = {}
    for tag, top in tops.items():
        dest = _oci.Layout(workdir / f"pulled-{tag}")
        pull(url, repo, tag, dest.root, tag)
        assert dest.ref_digest(tag) == top.digest, tag
        for digest in top.blobs:
            data = dest.read_blob(digest)
            assert _oci.sha256(data) == digest
            sizes[digest] = len(data)
    return sizes


@pytest.mark.usefixtures("skopeo_available")
def test_skopeo_pulls_through_redirects(
    serve: Callable[..., tuple[Server, CountingProxy]],
    tmp_path: Path,
    rng: random.Random,
    s3_endpoint: S3Endpoint,  # noqa: F811
) -> None:
    layout, tops = s3_layout(tmp_path, rng)
    server, proxy = serve()
    for tag in tops:
        push(layout.root, tag, server.url, "redir/app")
    sizes = pull_and_check(proxy.url, "redir/app", tops, tmp_path / "redirected")
    gets = proxy.blob_gets()
    assert {e.blob_digest for e in gets} == set(sizes)
    assert {e.status for e in gets} == {307}
    assert all(str(e.location).startswith(s3_endpoint.url + "/") for e in gets)
    assert proxy.blob_bytes() == 0  # no blob data went through ocistore

    # The same bucket served by ocistore itself: the counter sees every blob byte.
    _, plain_proxy = serve(redirect=False)
    assert pull_and_check(plain_proxy.url, "redir/app", tops, tmp_path / "served") == sizes
    served = plain_proxy.blob_gets()
    assert {e.status for e in served} == {200}
    assert all(e.body_bytes == sizes[str(e.blob_digest)] for e in served)
    assert plain_proxy.blob_bytes() >= sum(sizes.values())


def test_oras_and_dxf_pull_through_redirects(
    serve: Callable[..., tuple[Server, CountingProxy]], tmp_path: Path, rng: random.Random
) -> None:
    oras_client = need_module("oras.client")
    dxf = need_module("dxf")
    server, proxy = serve()
    files = {"small.txt": b"hello redirect\n", "big.bin": rng.randbytes(3_000_000)}
    work = tmp_path / "work"
    work.mkdir()
    for name, data in files.items():
        (work / name).write_bytes(data)
    direct = oras_client.OrasClient(hostname=server.url.removeprefix("http://"), insecure=True)
    cwd = os.getcwd()
    os.chdir(work)  # oras names layers after the paths it was given
    try:
        direct.push(target=f"{server.url.removeprefix('http://')}/oras/art:v1", files=list(files))
    finally:
        os.chdir(cwd)
    via = proxy.url.removeprefix("http://")
    client = oras_client.OrasClient(hostname=via, insecure=True)
    pulled = client.pull(target=f"{via}/oras/art:v1", outdir=str(tmp_path / "out"))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data

    big = _oci.sha256(files["big.bin"])
    pulled_blob = b"".join(dxf.DXF(via, "oras/art", insecure=True).pull_blob(big))
    assert _oci.sha256(pulled_blob) == big
    gets = proxy.blob_gets()
    assert {e.blob_digest for e in gets} == {_oci.sha256(d) for d in files.values()}
    assert {e.status for e in gets} == {307}
    assert proxy.blob_bytes() == 0


def test_range_get_is_redirected_and_s3_answers_the_range(
    serve: Callable[..., tuple[Server, CountingProxy]], rng: random.Random
) -> None:
    server, _ = serve()
    data = rng.randbytes(200_000)
    digest = push_blob(server.url, "range/app", data)
    rng_header = {"Range": "bytes=1000-1999"}
    resp = request("GET", f"{server.url}/v2/range/app/blobs/{digest}", headers=rng_header)
    assert resp.status == 307
    assert resp.body == b""
    assert resp.header("Docker-Content-Digest") == digest
    answer = request("GET", resp.location(), headers=rng_header)
    assert answer.status == 206
    assert answer.body == data[1000:2000]
    assert answer.header("Content-Range") == f"bytes 1000-1999/{len(data)}"


def test_head_is_answered_by_ocistore(
    serve: Callable[..., tuple[Server, CountingProxy]], rng: random.Random
) -> None:
    server, _ = serve()
    data = rng.randbytes(5000)
    digest = push_blob(server.url, "head/app", data)
    resp = request("HEAD", f"{server.url}/v2/head/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.header("Location") is None
    assert resp.header("Content-Length") == str(len(data))
    assert resp.header("Docker-Content-Digest") == digest
    missing = request("GET", f"{server.url}/v2/head/app/blobs/{_oci.sha256(b'none')}")
    assert missing.status == 404  # the registry checks the blob before it redirects


def test_redirect_disable_serves_the_bytes(
    serve: Callable[..., tuple[Server, CountingProxy]], rng: random.Random
) -> None:
    server, proxy = serve(redirect=False)
    data = rng.randbytes(300_000)
    digest = push_blob(server.url, "plain/app", data)
    whole = request("GET", f"{proxy.url}/v2/plain/app/blobs/{digest}")
    assert (whole.status, whole.header("Location")) == (200, None)
    assert whole.body == data
    part = request(
        "GET", f"{proxy.url}/v2/plain/app/blobs/{digest}", headers={"Range": "bytes=10-19"}
    )
    assert (part.status, part.body) == (206, data[10:20])
    assert proxy.blob_bytes() == len(data) + 10


@pytest.mark.parametrize(("expiry", "seconds"), [("1s", "1"), ("20m", "1200"), ("2h", "7200")])
def test_presigned_url_lifetime_is_configured(
    serve: Callable[..., tuple[Server, CountingProxy]],
    rng: random.Random,
    expiry: str,
    seconds: str,
) -> None:
    """moto does not refuse expired presigned URLs, so the signed X-Amz-Expires is checked."""
    server, _ = serve(expiry=expiry)
    data = rng.randbytes(100)
    digest = push_blob(server.url, "exp/app", data)
    before = int(time.time())
    resp = request("GET", f"{server.url}/v2/exp/app/blobs/{digest}")
    after = time.time()
    assert resp.status == 307
    query = parse_qs(urlsplit(resp.location()).query)
    assert query["X-Amz-Expires"] == [seconds]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    signed = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    assert before <= signed <= after  # signed for this request, not cached from before
    assert request("GET", resp.location()).body == data
