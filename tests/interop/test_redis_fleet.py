"""Issue 11, item 5: ocistore and the Go registry share one Redis and one storage root.

distribution 2.8.2 (``storage.cache.blobdescriptor: redis``) and ``ocistore
serve`` run side by side on the same root and the same redis-server, as a
mixed fleet behind a load balancer would:

- what either registry caches is written under exactly the same keys, with
  the same fields and values;
- a descriptor cached by one is read by the other: for the Go registry this
  is shown with Redis's MONITOR (its HEAD issues only the reads of a hit);
- a blob or manifest deleted through either is never answered by the other
  from a stale entry, and ocistore's cached manifests never turn into blobs
  for the Go registry (distribution caches no manifest membership);
- with Redis killed, ``ocistore serve`` answers every request from storage
  (never a 5xx) and logs one warning.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import valkey

from ocistore.cache import RedisDescriptorCache, RedisOptions
from ocistore.cache.redis import blob_key, repository_blob_key, repository_set_key
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from redis_peer import RedisServer

from . import _oci
from ._client import Client
from ._http import request
from ._peers import GoRegistry, OcistoreServer

pytestmark = [pytest.mark.peer]

READS = {"SISMEMBER", "HMGET", "HGET"}
WRITES = {"SADD", "HSET", "HMSET", "HSETNX", "SREM", "DEL", "HDEL", "INCR"}


def names(seen: list[list[str]]) -> list[str]:
    """The command names MONITOR recorded, without connection set-up (AUTH, SELECT, HELLO ...)."""
    out = [c[0].strip('"').upper() for c in seen if c]
    return [n for n in out if n in READS | WRITES]


@pytest.fixture
def fleet(
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
    start_redis: Callable[..., RedisServer],
    root: Path,
) -> Iterator[tuple[GoRegistry, OcistoreServer, RedisServer, valkey.Valkey]]:
    server = start_redis()
    go = start_go(root, cache="redis", redis_addr=server.addr)
    oci = start_ocistore(root, cache="redis", redis_addr=server.addr)
    client = valkey.Valkey(host="127.0.0.1", port=server.port)
    yield go, oci, server, client
    client.close()


def image(rng: random.Random) -> _oci.Image:
    return _oci.make_image(rng, layers=2, layer_size=2048)


def redis_entries(db: valkey.Valkey, repo: str, digest: str) -> dict[str, object]:
    return {
        "global": db.hgetall(blob_key(digest)),
        "member": bool(db.sismember(repository_set_key(repo), digest)),
        "local": db.hgetall(repository_blob_key(repo, digest)),
    }


@contextmanager
def monitored(db: valkey.Valkey, server: RedisServer) -> Iterator[list[list[str]]]:
    """Record the commands Redis executes inside the block (MONITOR, ended by a marker)."""
    seen: list[list[str]] = []
    marker = f"ocistore-test-marker-{random.random()}"
    ready = threading.Event()
    failure: list[BaseException] = []

    def watch() -> None:
        try:
            with db.monitor() as m:
                ready.set()
                while True:
                    command = m.next_command()["command"]
                    if marker in command:
                        return
                    seen.append(command.split())
        except BaseException as exc:  # reported in the test's thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(30)
    other = valkey.Valkey(host="127.0.0.1", port=server.port)
    try:
        yield seen
    finally:
        other.echo(marker)
        thread.join(30)
        other.close()
    assert not failure, failure
    assert not thread.is_alive()


def test_both_registries_write_the_same_entries(
    fleet: tuple[GoRegistry, OcistoreServer, RedisServer, valkey.Valkey], rng: random.Random
) -> None:
    go, oci, _, db = fleet
    img = image(rng)
    for base, repo in ((go.url, "fleet/by-go"), (oci.url, "fleet/by-ocistore")):
        assert Client(base).push_image(repo, img, "v1").status == 201
        for digest, data in img.blobs.items():
            resp = Client(base).head(f"/v2/{repo}/blobs/{digest}")
            assert resp.status == 200 and resp.header("Content-Length") == str(len(data))
    for digest, data in img.blobs.items():
        by_go = redis_entries(db, "fleet/by-go", digest)
        by_oci = redis_entries(db, "fleet/by-ocistore", digest)
        assert by_go == by_oci
        assert by_go["member"] is True
        assert by_go["global"] == {
            b"digest": digest.encode(),
            b"size": str(len(data)).encode(),
            b"mediatype": b"application/octet-stream",
        }
        assert by_go["local"] == {b"mediatype": b"application/octet-stream"}


def test_a_descriptor_cached_by_go_is_read_by_ocistore(
    fleet: tuple[GoRegistry, OcistoreServer, RedisServer, valkey.Valkey], rng: random.Random
) -> None:
    go, oci, server, db = fleet
    img = image(rng)
    repo = "fleet/go-first"
    assert Client(go.url).push_image(repo, img, "v1").status == 201
    for digest in img.blobs:
        assert Client(go.url).head(f"/v2/{repo}/blobs/{digest}").status == 200
    with RedisDescriptorCache(RedisOptions(addr=server.addr)) as cache:
        scope = cache.repository_scoped(repo)
        for digest, data in img.blobs.items():
            want = Descriptor(Digest(digest), len(data), "application/octet-stream")
            assert scope.stat(digest) == want
            assert cache.stat(digest) == want
    with monitored(db, server) as seen:
        for digest, data in img.blobs.items():
            resp = Client(oci.url).head(f"/v2/{repo}/blobs/{digest}")
            assert resp.status == 200 and resp.header("Content-Length") == str(len(data))
    assert set(names(seen)) == READS, seen  # hits only: every answer came from Go's entries


def test_a_descriptor_cached_by_ocistore_is_read_by_go(
    fleet: tuple[GoRegistry, OcistoreServer, RedisServer, valkey.Valkey], rng: random.Random
) -> None:
    go, oci, server, db = fleet
    img = image(rng)
    repo = "fleet/ocistore-first"
    assert Client(oci.url).push_image(repo, img, "v1").status == 201
    for digest in img.blobs:
        assert Client(oci.url).head(f"/v2/{repo}/blobs/{digest}").status == 200
        assert redis_entries(db, repo, digest)["member"] is True
    with monitored(db, server) as seen:
        for digest, data in img.blobs.items():
            resp = Client(go.url).head(f"/v2/{repo}/blobs/{digest}")
            assert resp.status == 200 and resp.header("Content-Length") == str(len(data))
    assert set(names(seen)) == READS, seen  # hits only: Go wrote nothing
    asked = {c[2].strip('"') for c in seen if c[0].strip('"').upper() == "SISMEMBER"}
    assert asked == set(img.blobs), seen


def test_a_delete_through_ocistore_is_not_answered_by_go(
    fleet: tuple[GoRegistry, OcistoreServer, RedisServer, valkey.Valkey], rng: random.Random
) -> None:
    go, oci, _, db = fleet
    img = image(rng)
    repo = "fleet/delete-by-ocistore"
    assert Client(go.url).push_image(repo, img, "v1").status == 201
    layer = _oci.sha256(img.layers[0])
    for base in (go.url, oci.url, go.url):
        assert Client(base).head(f"/v2/{repo}/blobs/{layer}").status == 200
    resp = Client(oci.url).get(f"/v2/{repo}/blobs/{layer}")
    assert resp.status == 200 and resp.body == img.layers[0]

    assert request("DELETE", oci.url + f"/v2/{repo}/blobs/{layer}").status == 202
    assert redis_entries(db, repo, layer)["member"] is False
    for base in (go.url, oci.url):
        assert Client(base).head(f"/v2/{repo}/blobs/{layer}").status == 404
        assert Client(base).get(f"/v2/{repo}/blobs/{layer}").status == 404

    manifest = img.digest
    assert Client(go.url).get_manifest(repo, manifest).status == 200
    assert request("DELETE", oci.url + f"/v2/{repo}/manifests/{manifest}").status == 202
    for base in (go.url, oci.url):
        assert Client(base).get_manifest(repo, manifest).status == 404
        assert Client(base).head(f"/v2/{repo}/blobs/{manifest}").status == 404


def test_a_delete_through_go_is_not_answered_by_ocistore(
    fleet: tuple[GoRegistry, OcistoreServer, RedisServer, valkey.Valkey], rng: random.Random
) -> None:
    go, oci, _, db = fleet
    img = image(rng)
    repo = "fleet/delete-by-go"
    assert Client(oci.url).push_image(repo, img, "v1").status == 201
    layer = _oci.sha256(img.layers[1])
    for base in (oci.url, go.url, oci.url):
        assert Client(base).head(f"/v2/{repo}/blobs/{layer}").status == 200
    assert Client(oci.url).get(f"/v2/{repo}/blobs/{layer}").body == img.layers[1]

    assert request("DELETE", go.url + f"/v2/{repo}/blobs/{layer}").status == 202
    assert redis_entries(db, repo, layer)["global"] == {}  # Go clears the global hash
    for base in (oci.url, go.url):
        assert Client(base).head(f"/v2/{repo}/blobs/{layer}").status == 404
        assert Client(base).get(f"/v2/{repo}/blobs/{layer}").status == 404

    manifest = img.digest
    assert Client(oci.url).get_manifest(repo, manifest).status == 200
    assert Client(go.url).head(f"/v2/{repo}/blobs/{manifest}").status == 404  # as Go alone
    assert request("DELETE", go.url + f"/v2/{repo}/manifests/{manifest}").status == 202
    for base in (oci.url, go.url):
        assert Client(base).get_manifest(repo, manifest).status == 404
        assert Client(base).head(f"/v2/{repo}/blobs/{manifest}").status == 404


def test_ocistore_serve_without_redis(
    start_ocistore: Callable[..., OcistoreServer],
    start_redis: Callable[..., RedisServer],
    root: Path,
    rng: random.Random,
) -> None:
    """Redis killed mid-test: every request is answered from storage, one warning logged."""
    server = start_redis()
    oci = start_ocistore(root, cache="redis", redis_addr=server.addr)
    client = Client(oci.url)
    first, second = image(rng), image(rng)
    repo = "fleet/no-redis"
    assert client.push_image(repo, first, "v1").status == 201
    for digest in first.blobs:
        assert client.head(f"/v2/{repo}/blobs/{digest}").status == 200

    server.kill()
    for _ in range(3):
        for digest, data in first.blobs.items():
            resp = client.head(f"/v2/{repo}/blobs/{digest}")
            assert resp.status == 200 and resp.header("Content-Length") == str(len(data))
            assert client.get(f"/v2/{repo}/blobs/{digest}").body == data
    assert client.push_image(repo, second, "v2").status == 201
    assert client.get_manifest(repo, "v2").body == second.manifest
    layer = _oci.sha256(first.layers[0])
    assert request("DELETE", oci.url + f"/v2/{repo}/blobs/{layer}").status == 202
    assert client.head(f"/v2/{repo}/blobs/{layer}").status == 404
    assert request("DELETE", oci.url + f"/v2/{repo}/manifests/{first.digest}").status == 202
    assert client.get_manifest(repo, first.digest).status == 404

    log = oci.log()
    assert log.count("unreachable") == 1, log
    assert server.addr in log and "Traceback" not in log, log
