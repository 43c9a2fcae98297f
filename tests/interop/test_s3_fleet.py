"""Issue 11, item 6: three ``ocistore serve`` instances on one S3 bucket and one Redis.

Each instance has its own port and local state directory; all share a moto
bucket (``tests/s3_peer.py``) and a redis-server (``tests/redis_peer.py``),
which holds the descriptor cache and the cross-instance upload locks
(:class:`ocistore.server.locks.RedisUploadLocks`). Clients send the requests
of each push round-robin over the instances, as a load balancer would.

Waits are polls of a condition with a deadline; simultaneous requests are
released together by a barrier.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import valkey

from conftest import core_env
from ocistore import _core
from ocistore.server.locks import redis_lock_key
from redis_peer import RedisServer
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

from . import _oci
from ._client import OCTET, Client, with_digest
from ._fleet import (
    PART,
    Instance,
    RoundRobin,
    check_pull,
    get_blob,
    multiarch_over,
    start_instance,
)
from ._http import Response, request, retarget

pytestmark = [pytest.mark.peer]

DEADLINE = 60.0
LOCK_TTL = "2s"  # how long a killed instance's upload lock outlives it


@dataclass
class Fleet:
    instances: list[Instance]
    redis: RedisServer
    db: valkey.Valkey
    bucket: str
    s3: Any

    @property
    def urls(self) -> list[str]:
        return [i.url for i in self.instances]


@pytest.fixture
def fleet(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
    start_redis: Callable[..., RedisServer],
) -> Iterator[Fleet]:
    bucket = new_bucket()
    redis = start_redis()
    env = core_env(_core.BACKEND)
    params = s3_endpoint.params(bucket)
    instances: list[Instance] = []
    db = valkey.Valkey(host="127.0.0.1", port=redis.port)
    try:
        for _ in range(3):
            instances.append(start_instance(tmp_path, params, redis.addr, env, lock_ttl=LOCK_TTL))
        yield Fleet(instances, redis, db, bucket, s3_endpoint.client())
    finally:
        db.close()
        for instance in reversed(instances):
            instance.server.stop()


def until(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something true, within the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return got


class HeldPatch:
    """A PATCH whose headers and first bytes are sent, the rest held back until :meth:`finish`."""

    def __init__(self, location: str, offset: int, body: bytes, sent: int) -> None:
        parts = urlsplit(location)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=DEADLINE)
        self.conn.putrequest("PATCH", f"{parts.path}?{parts.query}")
        self.conn.putheader("Content-Type", "application/octet-stream")
        self.conn.putheader("Content-Range", f"{offset}-{offset + len(body) - 1}")
        self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders()
        self.conn.send(body[:sent])
        self.rest = body[sent:]

    def finish(self) -> tuple[int, str | None]:
        self.conn.send(self.rest)
        resp = self.conn.getresponse()
        resp.read()
        self.conn.close()
        return resp.status, resp.getheader("Location")


def lock_held(db: valkey.Valkey, location: str) -> bool:
    upload_id = urlsplit(location).path.rstrip("/").rsplit("/", 1)[1]
    return bool(db.exists(redis_lock_key(upload_id)))


def test_round_robin_multiarch_pushes_from_many_clients(fleet: Fleet, rng: random.Random) -> None:
    """Four clients at once, each request of a push on the next instance; all pull everywhere."""
    base_big = _oci.make_layer(rng, PART + 4096)[0]  # one multipart layer in every image
    base_small = _oci.make_layer(rng, 2048)[0]
    clients = 4
    images = {f"fleet/app-{c}": multiarch_over(rng, [base_big, base_small]) for c in range(clients)}
    # Two clients also push the same index to one repository at the same time.
    images["fleet/shared"] = multiarch_over(rng, [base_big])
    jobs = [(repo, index, c) for c, (repo, index) in enumerate(images.items())]
    jobs.append(("fleet/shared", images["fleet/shared"], clients + 1))
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def push(repo: str, index: _oci.Index, start: int) -> None:
        try:
            barrier.wait(DEADLINE)
            RoundRobin(fleet.urls, start).push_index(repo, index, "multi")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=push, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * 4)
    assert not errors, errors
    for url in fleet.urls:
        for repo, index in images.items():
            check_pull(url, repo, "multi", index)
    # Every upload was committed: no lock left in Redis, no multipart upload left open.
    assert list(fleet.db.scan_iter(match=b"ocistore::upload::*")) == []
    assert fleet.s3.list_multipart_uploads(Bucket=fleet.bucket).get("Uploads", []) == []


def test_kill9_mid_upload_then_resume_on_another_instance(fleet: Fleet, rng: random.Random) -> None:
    """The instance receiving a PATCH dies; the client resumes from its last Location elsewhere."""
    a, b, c = fleet.instances
    repo = "fleet/crash"
    first = rng.randbytes(PART + 1000)
    doomed = rng.randbytes(2 * PART)
    post = request("POST", f"{a.url}/v2/{repo}/blobs/uploads/")
    assert post.status == 202
    patch = request(
        "PATCH",
        retarget(post.location(), b.url),
        headers={**OCTET, "Content-Range": f"0-{len(first) - 1}"},
        body=first,
    )
    assert patch.status == 202, (patch, patch.body)
    last_location = patch.location()
    # c receives the next PATCH and dies with more than a part of it received.
    held = HeldPatch(retarget(last_location, c.url), len(first), doomed, PART + 512 * 1024)
    until(lambda: lock_held(fleet.db, last_location), "c to hold the upload's lock")
    c.kill9()
    held.conn.close()

    # The client asks another instance where the upload stands (416 while c's lock lives).
    def status() -> Response | None:
        resp = request("GET", retarget(last_location, a.url))
        if resp.status == 416:
            assert "another request is writing" in resp.body.decode(), resp.body
            return None
        return resp

    got = until(status, "c's lock to expire")
    assert got.status == 204, (got, got.body)
    assert got.header("Range") == f"0-{len(first) - 1}"  # what c received was never acknowledged
    rest = rng.randbytes(PART // 2)
    patch = request(
        "PATCH",
        retarget(got.location(), a.url),
        headers={**OCTET, "Content-Range": f"{len(first)}-{len(first) + len(rest) - 1}"},
        body=rest,
    )
    assert patch.status == 202, (patch, patch.body)
    tail = rng.randbytes(777)
    data = first + rest + tail
    digest = _oci.sha256(data)
    put = request(
        "PUT", with_digest(retarget(patch.location(), b.url), digest), headers=OCTET, body=tail
    )
    assert put.status == 201, (put, put.body)
    assert put.header("Docker-Content-Digest") == digest
    for instance in (a, b):
        blob = get_blob(instance.url, repo, digest)
        assert blob.status == 200 and blob.body == data


def test_patch_while_another_instance_writes_is_refused(fleet: Fleet, rng: random.Random) -> None:
    """A PATCH arriving while another instance is inside one: 416, nothing appended."""
    a, b, _ = fleet.instances
    repo = "fleet/locked"
    post = request("POST", f"{a.url}/v2/{repo}/blobs/uploads/")
    assert post.status == 202
    first = rng.randbytes(64 * 1024)
    intruder = rng.randbytes(64 * 1024)
    held = HeldPatch(retarget(post.location(), a.url), 0, first, 1000)
    until(lambda: lock_held(fleet.db, post.location()), "a to hold the upload's lock")
    refused = request(
        "PATCH",
        retarget(post.location(), b.url),
        headers={**OCTET, "Content-Range": f"0-{len(intruder) - 1}"},
        body=intruder,
    )
    assert refused.status == 416, (refused, refused.body)
    assert refused.error_codes() == ["RANGE_INVALID"]
    assert "another request is writing to this upload" in refused.body.decode()
    assert refused.header("Range") == "0-0"
    status, location = held.finish()
    assert status == 202 and location is not None
    digest = _oci.sha256(first)
    put = request("PUT", with_digest(retarget(location, b.url), digest), headers=OCTET, body=b"")
    assert put.status == 201, (put, put.body)
    assert get_blob(b.url, repo, digest).body == first


def race(location: str, urls: list[str], bodies: list[bytes]) -> list[Response]:
    """PATCH ``bodies[i]`` at offset 0 to ``urls[i]``, all released at once by a barrier."""
    barrier = threading.Barrier(len(urls))
    answers: list[Response | None] = [None] * len(urls)

    def send(i: int) -> None:
        headers = {**OCTET, "Content-Range": f"0-{len(bodies[i]) - 1}"}
        barrier.wait(DEADLINE)
        answers[i] = request("PATCH", retarget(location, urls[i]), headers=headers, body=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    return [x for x in answers if x is not None]


def test_simultaneous_patches_from_two_instances(fleet: Fleet, rng: random.Random) -> None:
    """Two PATCHes at one offset released together: one 202, one 416, the blob is the winner's."""
    a, b, c = fleet.instances
    repo = "fleet/race"
    for round_ in range(6):
        post = request("POST", f"{c.url}/v2/{repo}/blobs/uploads/")
        assert post.status == 202
        bodies = [rng.randbytes(256 * 1024 + round_), rng.randbytes(256 * 1024 + round_)]
        got = race(post.location(), [a.url, b.url], bodies)
        assert len(got) == 2
        assert sorted(r.status for r in got) == [202, 416], [(r, r.body) for r in got]
        winner = next(i for i, r in enumerate(got) if r.status == 202)
        loser = got[1 - winner]
        assert loser.error_codes() == ["RANGE_INVALID"], loser.body
        assert loser.header("Range") in ("0-0", f"0-{len(bodies[winner]) - 1}")
        data = bodies[winner]
        digest = _oci.sha256(data)
        location = got[winner].location()
        put = request("PUT", with_digest(retarget(location, c.url), digest), headers=OCTET)
        assert put.status == 201, (put, put.body)
        assert get_blob(a.url, repo, digest).body == data


def test_delete_on_one_instance_is_seen_by_every_other(fleet: Fleet, rng: random.Random) -> None:
    """With the Redis cache warm on all three, deletes through one are seen by the others at once."""
    a, b, c = fleet.instances
    repo = "fleet/deleted"
    index = multiarch_over(rng, [_oci.make_layer(rng, 2048)[0]], arches=("amd64", "arm64"))
    RoundRobin(fleet.urls).push_index(repo, index, "multi")
    image = index.images[0]
    layer = _oci.sha256(image.layers[-1])  # the image's own layer: in no other image
    for url in fleet.urls:  # warm every instance (and the Redis) twice
        for _ in range(2):
            check_pull(url, repo, "multi", index)
            assert request("HEAD", f"{url}/v2/{repo}/blobs/{layer}").status == 200
    assert fleet.db.exists(f"repository::{repo}::blobs::{layer}".encode())

    gone = request("DELETE", f"{b.url}/v2/{repo}/manifests/{image.digest}")
    assert gone.status == 202, (gone, gone.body)
    for url in (a.url, c.url):
        resp = Client(url).get_manifest(repo, image.digest)
        assert resp.status == 404 and resp.error_codes() == ["MANIFEST_UNKNOWN"], (url, resp)
        assert request("HEAD", f"{url}/v2/{repo}/manifests/{image.digest}").status == 404

    gone = request("DELETE", f"{c.url}/v2/{repo}/blobs/{layer}")
    assert gone.status == 202, (gone, gone.body)
    for url in (a.url, b.url):
        assert request("HEAD", f"{url}/v2/{repo}/blobs/{layer}").status == 404, url
        resp = request("GET", f"{url}/v2/{repo}/blobs/{layer}")
        assert resp.status == 404 and resp.error_codes() == ["BLOB_UNKNOWN"], (url, resp)

    gone = request("DELETE", f"{a.url}/v2/{repo}/manifests/{index.digest}")
    assert gone.status == 202
    for url in (b.url, c.url):
        assert Client(url).get_manifest(repo, "multi").status == 404, url
        assert Client(url).get_manifest(repo, index.digest).status == 404, url
