"""Issue 11, items 1-3 and 7: ocistore and the Go registry on one S3 bucket, both directions.

A moto server (``tests/s3_peer.py``) is the bucket; distribution 2.8.2
(``docker-registry`` with its ``s3`` driver) and ``ocistore serve`` with
``storage.s3`` are configured on it with the same keys and rootdirectory.
skopeo pushes to either and pulls from the other, getting identical digests;
layers larger than a part go through multipart uploads on both sides.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import core_env
from ocistore import _core
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

from . import _oci
from ._peers import GO_REGISTRY, Server, free_port, ocistore_argv, pull, push
from .conftest import need

pytestmark = [pytest.mark.peer, pytest.mark.usefixtures("skopeo_available")]

ROOTDIR = "/registry"
PART = 5 * 1024 * 1024


def s3_block(endpoint: S3Endpoint, bucket: str, indent: str = "    ") -> str:
    lines = [f"{k}: {v}" for k, v in endpoint.params(bucket, rootdirectory=ROOTDIR).items()]
    lines.append(f"chunksize: {PART}")
    return "".join(f"{indent}{line}\n" for line in lines)


def go_s3_config(endpoint: S3Endpoint, bucket: str, port: int) -> str:
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
{s3_block(endpoint, bucket)}  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: s3-interop-secret
"""


def ocistore_s3_config(
    endpoint: S3Endpoint,
    bucket: str,
    port: int,
    local: Path,
    cache: str = "inmemory",
    *,
    redirect: bool = True,
    redirect_expiry: str = "20m",
) -> str:
    """``redirect=False`` sets ``storage.redirect.disable: true`` (blob GETs served by ocistore)."""
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
{s3_block(endpoint, bucket)}  delete:
    enabled: true
  redirect:
    disable: {"false" if redirect else "true"}
  cache:
    blobdescriptor: {cache}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: s3-interop-secret
ocistore:
  cachedir: {local}/cache
  redirectexpiry: {redirect_expiry}
"""


@pytest.fixture
def servers(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> Iterator[Callable[..., Server]]:
    """Factory: ``servers("go")`` / ``servers("ocistore", cache=...)`` on this test's bucket."""
    bucket = new_bucket()
    started: list[Server] = []

    def start(kind: str, cache: str = "inmemory") -> Server:
        port = free_port()
        config = tmp_path / f"{kind}-{port}.yml"
        if kind == "go":
            need(GO_REGISTRY)
            config.write_text(go_s3_config(s3_endpoint, bucket, port))
            env = dict(os.environ)
            # distribution 2.8's S3 driver panics at start when this names a bundle.
            env.pop("AWS_CA_BUNDLE", None)
            argv = [str(shutil.which(GO_REGISTRY)), "serve", str(config)]
        else:
            local = tmp_path / f"local-{port}"
            config.write_text(ocistore_s3_config(s3_endpoint, bucket, port, local, cache))
            env = core_env(_core.BACKEND)
            argv = [*ocistore_argv(), "serve", "--config", str(config), "--root", str(local)]
        server = Server(kind, argv, port, tmp_path / f"{kind}-{port}.log", env=env)
        started.append(server)
        server.start()
        return server

    yield start
    for server in reversed(started):
        server.stop()


def get_blob(url: str) -> Any:
    """GET a blob URL, following ocistore's 307 to the presigned S3 URL (moto on loopback)."""
    from ._http import request

    got = request("GET", url)
    if got.status == 307:
        got = request("GET", got.location())
    return got


def image_layout(tmp_path: Path, rng: random.Random) -> tuple[_oci.Layout, Any]:
    """A multi-arch index plus an image whose layer is several parts long."""
    layout = _oci.Layout(tmp_path / "source")
    multi = _oci.make_multiarch(rng)
    big = _oci.make_image(rng, layers=2, layer_size=2 * PART + 12345)
    layout.tag("multi", multi)
    layout.tag("big", big)
    return layout, {"multi": multi, "big": big}


def check_pull(url: str, repo: str, tops: dict[str, Any], workdir: Path) -> None:
    for tag, top in tops.items():
        dest = _oci.Layout(workdir / f"pulled-{tag}-{abs(hash(url)):x}")
        pull(url, repo, tag, dest.root, tag)
        assert dest.ref_digest(tag) == top.digest, tag
        expected = set(top.blobs) | (
            set(top.manifests) if isinstance(top, _oci.Index) else {top.digest}
        )
        assert dest.blob_digests() == expected, tag
        for digest in expected:
            assert _oci.sha256(dest.read_blob(digest)) == digest


@pytest.mark.parametrize("direction", ["go-to-ocistore", "ocistore-to-go"])
def test_one_bucket_both_ways(
    direction: str,
    servers: Callable[..., Server],
    tmp_path: Path,
    rng: random.Random,
    s3_endpoint: S3Endpoint,  # noqa: F811
) -> None:
    first, second = direction.split("-to-")
    layout, tops = image_layout(tmp_path, rng)
    writer = servers(first)
    for tag in tops:
        push(layout.root, tag, writer.url, "shared/app")
    check_pull(writer.url, "shared/app", tops, tmp_path / "same")
    reader = servers(second)
    check_pull(reader.url, "shared/app", tops, tmp_path / "other")


def test_ocistore_push_pull_on_s3(
    servers: Callable[..., Server], tmp_path: Path, rng: random.Random
) -> None:
    """``ocistore serve`` with ``storage.s3`` alone: push and pull with skopeo."""
    layout, tops = image_layout(tmp_path, rng)
    server = servers("ocistore")
    for tag in tops:
        push(layout.root, tag, server.url, "solo/app")
    check_pull(server.url, "solo/app", tops, tmp_path)


def test_chunked_upload_across_instances(
    servers: Callable[..., Server], rng: random.Random
) -> None:
    """Each PATCH of one upload goes to the other ocistore instance: the upload lives in the bucket."""
    from ._client import Client

    a, b = servers("ocistore"), servers("ocistore")
    data = rng.randbytes(2 * PART + 3 * 1024 * 1024 + 17)
    urls = [a.url, b.url]
    resp = Client(a.url).push_chunks(
        "round/robin", data, chunk=3 * 1024 * 1024, route=lambda i: urls[i % 2]
    )
    assert resp.status == 201, (resp, resp.body)
    digest = _oci.sha256(data)
    assert resp.header("Docker-Content-Digest") == digest
    for url in urls:
        got = get_blob(f"{url}/v2/round/robin/blobs/{digest}")
        assert got.status == 200
        assert _oci.sha256(got.body) == digest


@pytest.mark.parametrize("cache", ["lmdb", "inmemory"])
def test_delete_on_one_instance_is_seen_by_another(
    servers: Callable[..., Server], rng: random.Random, cache: str
) -> None:
    """Each instance's local cache is validated against the bucket (DESIGN.md section 9)."""
    from ._client import Client
    from ._http import request

    a, b = servers("ocistore", cache=cache), servers("ocistore", cache=cache)
    data = rng.randbytes(1000)
    digest = _oci.sha256(data)
    assert Client(a.url).push_blob("del/app", data).status == 201
    blob = f"/v2/del/app/blobs/{digest}"
    for _ in range(2):  # the second answer may come from b's cache
        assert request("HEAD", b.url + blob).status == 200
        assert get_blob(b.url + blob).body == data
    assert request("DELETE", a.url + blob).status == 202
    assert request("HEAD", b.url + blob).status == 404
    assert request("GET", b.url + blob).status == 404


def test_upload_begun_by_go_is_refused_not_garbled_by_ocistore(
    servers: Callable[..., Server], rng: random.Random
) -> None:
    """Mid-upload hand-over between the two on S3 is refused (docs/interop.md), never misplaced."""
    from ._client import OCTET
    from ._http import request, retarget

    go, oci = servers("go"), servers("ocistore")
    first = rng.randbytes(PART + 1000)
    post = request("POST", f"{go.url}/v2/hand/over/blobs/uploads/")
    assert post.status == 202
    headers = {**OCTET, "Content-Range": f"0-{len(first) - 1}"}
    patch = request("PATCH", post.location(), headers=headers, body=first)
    assert patch.status == 202
    headers = {**OCTET, "Content-Range": f"{len(first)}-{len(first) + 9}"}
    moved = request("PATCH", retarget(patch.location(), oci.url), headers=headers, body=b"x" * 10)
    assert moved.status == 416, (moved, moved.body)
    # Go still has its upload intact and finishes it
    rest = rng.randbytes(100)
    done = request(
        "PUT",
        patch.location() + f"&digest={_oci.sha256(first + rest)}",
        headers=OCTET,
        body=rest,
    )
    assert done.status == 201, (done, done.body)
    got = get_blob(f"{oci.url}/v2/hand/over/blobs/{_oci.sha256(first + rest)}")
    assert got.status == 200 and got.body == first + rest
