"""Several ``ocistore serve`` instances on one S3 bucket and one Redis (issue 11, item 6).

Each instance has its own port and its own local state directory (``--root``:
locks of its workers, purge stamp); blobs, manifests and uploads live in the
bucket, descriptors and cross-instance upload locks in the Redis. Used by
``test_s3_fleet.py``.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _oci
from ._client import OCTET, Client, with_digest
from ._http import Response, request, retarget
from ._peers import Server, free_port, ocistore_argv

PART = 5 * 1024 * 1024
ROOTDIR = "/registry"
SECRET = "fleet-shared-secret"


def s3_lines(params: dict[str, Any], indent: str = "    ") -> str:
    return "".join(f"{indent}{k}: {v}\n" for k, v in params.items())


def fleet_config(
    s3_params: dict[str, Any],
    port: int,
    local: Path,
    redis_addr: str,
    *,
    lock_ttl: str = "30s",
) -> str:
    """An ocistore config: ``storage.s3`` + the Redis descriptor cache and upload locks."""
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
{s3_lines({**s3_params, "rootdirectory": ROOTDIR, "chunksize": PART})}  delete:
    enabled: true
  cache:
    blobdescriptor: redis
  maintenance:
    uploadpurging:
      enabled: false
redis:
  addr: {redis_addr}
http:
  addr: 127.0.0.1:{port}
  secret: {SECRET}
ocistore:
  cachedir: {local}/cache
  uploadlockttl: {lock_ttl}
"""


@dataclass
class Instance:
    server: Server
    local: Path

    @property
    def url(self) -> str:
        return self.server.url

    def kill9(self) -> None:
        """SIGKILL the whole process group (its workers too) and reap it: a crashed host."""
        proc = self.server.proc
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.server.proc = None


def start_instance(
    workdir: Path,
    s3_params: dict[str, Any],
    redis_addr: str,
    env: dict[str, str],
    *,
    lock_ttl: str = "30s",
    extra: Sequence[str] = (),
) -> Instance:
    port = free_port()
    local = workdir / f"instance-{port}"
    local.mkdir(parents=True)
    config = workdir / f"ocistore-{port}.yml"
    config.write_text(fleet_config(s3_params, port, local, redis_addr, lock_ttl=lock_ttl))
    argv = [*ocistore_argv(), "serve", "--config", str(config), "--root", str(local), *extra]
    server = Server(f"ocistore-{port}", argv, port, workdir / f"ocistore-{port}.log", env=env)
    server.start()
    return Instance(server, local)


# --- images with overlapping layers ----------------------------------------------------


@dataclass
class Layers:
    """Layer blobs shared by several images: ``base`` by every client, ``team`` by one."""

    base: list[bytes]
    team: list[bytes] = field(default_factory=list)


def image_over(rng: random.Random, shared: Sequence[bytes], architecture: str) -> _oci.Image:
    """An OCI image whose layers are ``shared`` plus one small layer of its own."""
    own, _ = _oci.make_layer(rng, 1500 + rng.randrange(1000))
    layers = [*shared, own]
    config = _oci.canonical_json(
        {
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_oci.sha256(x) for x in layers]},
            "config": {"Env": [f"SEED={rng.getrandbits(64)}"]},
        }
    )
    manifest = _oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": _oci.OCI_MANIFEST,
            "config": _oci.descriptor(_oci.OCI_CONFIG, config),
            "layers": [_oci.descriptor(_oci.OCI_LAYER_GZIP, x) for x in layers],
        }
    )
    return _oci.Image(manifest, config, layers, {"architecture": architecture, "os": "linux"})


def multiarch_over(
    rng: random.Random, base: Sequence[bytes], arches: Sequence[str] = ("amd64", "arm64", "s390x")
) -> _oci.Index:
    """An index over one image per architecture; all share ``base`` and one team layer."""
    team, _ = _oci.make_layer(rng, 3000)
    return _oci.make_index([image_over(rng, [*base, team], arch) for arch in arches])


# --- a client that spreads every push over the instances ------------------------------


class RoundRobin:
    """Sends the requests of each push round-robin: POST on one, PATCH on the next, PUT on the third.

    ``on`` counts requests so that successive pushes start on successive
    instances; ``log`` (if given) receives ``(method, status, seconds)``.
    """

    def __init__(self, urls: Sequence[str], start: int = 0) -> None:
        self.urls = list(urls)
        self.turn = start

    def next_url(self) -> str:
        url = self.urls[self.turn % len(self.urls)]
        self.turn += 1
        return url

    def push_blob(self, repo: str, data: bytes) -> Response:
        """POST, one PATCH with the first half (Content-Range), PUT with the rest."""
        post = request("POST", f"{self.next_url()}/v2/{repo}/blobs/uploads/")
        if post.status == 201:  # never for a plain POST; kept explicit
            return post
        assert post.status == 202, (post, post.body)
        half = len(data) // 2
        headers = {**OCTET, "Content-Range": f"0-{half - 1}"} if half else OCTET
        patch = request(
            "PATCH", retarget(post.location(), self.next_url()), headers=headers, body=data[:half]
        )
        assert patch.status == 202, (patch, patch.body)
        put = request(
            "PUT",
            with_digest(retarget(patch.location(), self.next_url()), _oci.sha256(data)),
            headers=OCTET,
            body=data[half:],
        )
        return put

    def push_index(self, repo: str, index: _oci.Index, tag: str) -> None:
        for digest, data in index.blobs.items():
            head = request("HEAD", f"{self.next_url()}/v2/{repo}/blobs/{digest}")
            if head.status == 200:  # as clients do: skip what the registry has
                continue
            resp = self.push_blob(repo, data)
            assert resp.status == 201, (resp, resp.body)
            assert resp.header("Docker-Content-Digest") == digest
        for image in index.images:
            resp = Client(self.next_url()).put_manifest(
                repo, image.digest, image.manifest, _oci.OCI_MANIFEST
            )
            assert resp.status == 201, (resp, resp.body)
        resp = Client(self.next_url()).put_manifest(repo, tag, index.index, _oci.OCI_INDEX)
        assert resp.status == 201, (resp, resp.body)
        assert resp.header("Docker-Content-Digest") == index.digest


def get_blob(url: str, repo: str, digest: str) -> Response:
    """GET a blob, following the registry's redirect (presigned URL on the S3 endpoint)."""
    resp = request("GET", f"{url}/v2/{repo}/blobs/{digest}")
    if resp.status in (302, 307):
        resp = request("GET", resp.location())
    return resp


def check_pull(url: str, repo: str, tag: str, index: _oci.Index) -> None:
    """Pull ``repo:tag`` from ``url`` as a client would and check every digest."""
    client = Client(url)
    top = client.get_manifest(repo, tag)
    assert top.status == 200, (url, top)
    assert top.header("Docker-Content-Digest") == index.digest
    assert _oci.sha256(top.body) == index.digest
    for image in index.images:
        got = client.get_manifest(repo, image.digest)
        assert got.status == 200 and _oci.sha256(got.body) == image.digest, (url, got)
        for digest in image.blobs:
            blob = get_blob(url, repo, digest)
            assert blob.status == 200, (url, digest, blob)
            assert _oci.sha256(blob.body) == digest, (url, digest)


Start = Callable[..., Instance]
