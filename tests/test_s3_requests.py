"""How many S3 requests each registry request costs: pinned, so that none creeps back.

Three apps (three "instances": own driver, own client, own local state) on one
moto bucket and one redis-server serve a push with every request on the next
instance, as ``benchmarks/fleet.py --counts-only --steps`` does; each driver's
clients (botocore, obstore) count the operations they send, and the redis-server's
``INFO commandstats`` the Redis commands of every instance. The bounds are what the
storage layer needs (docs/scale.md explains each), Go's count beside it in
the comments (distribution 2.8.2 on the same bucket, measured by that script).
The pure core keeps no hash states, so its PATCHes store none and its commits
read the upload back once. The gc fence's listing of the collection epochs
(``ocistore.storage.gcfence``, at most once a second per instance, whatever
the request rate) is left out: the fixture's fences never refresh, since how
many listings fall in a step depends on time; the count checks that none did.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from ocistore import _core
from ocistore.cache import RedisOptions
from ocistore.server import RegistryApp, create_app, locks
from ocistore.storage.paths import GC_EPOCHS
from redis_peer import RedisServer
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)
from server.asgi_client import Client
from server.helpers import path_of

MiB = 1024 * 1024
FENCE_PREFIX = GC_EPOCHS.lstrip("/") + "/"
OCTET = {"Content-Type": "application/octet-stream"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Fleet:
    """Three apps on one bucket and one Redis; ``count(step)`` runs a step and counts its S3 calls."""

    def __init__(self, apps: list[RegistryApp], redis: valkey.Valkey) -> None:
        self.apps = apps
        self.clients = [Client(app) for app in apps]
        self.redis = redis
        self.redis_ops: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()
        self.fence_lists = 0
        for app in apps:
            driver: Any = app.services.registry.driver
            driver.client.meta.events.register("before-call.s3", self._record)
            if driver.fast is not None:  # the calls the driver sends through obstore
                driver.fast.observers.append(self._saw)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        query = params.get("query_string") or {}
        prefix = str(query.get("prefix", "")) if isinstance(query, dict) else ""
        if model.name == "ListObjectsV2" and FENCE_PREFIX in prefix:
            self.fence_lists += 1  # the gc fence's epochs, listed once a second per instance
        else:
            self.ops[model.name] += 1

    def _saw(self, operation: str, key: str) -> None:
        self.ops[operation] += 1

    def count(self, step: Callable[[], None]) -> Counter[str]:
        """The step's S3 calls; its Redis commands (scripts' inner ones too) in redis_ops."""
        self.ops.clear()
        self.redis.config_resetstat()
        step()
        stats = self.redis.info("commandstats")
        self.redis_ops = Counter(
            {
                name.removeprefix("cmdstat_"): int(v["calls"])
                for name, v in stats.items()
                # not the counting's own, nor a new connection's SELECT of the db
                if not name.startswith(("cmdstat_config", "cmdstat_info", "cmdstat_select"))
            }
        )
        return Counter(self.ops)


@pytest.fixture
def fleet(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[Fleet]:
    params = s3_endpoint.params(new_bucket(), rootdirectory="/fleet", chunksize=5 * MiB)
    redis = RedisOptions(addr=redis_server.addr, db=3)
    db = valkey.Valkey(host="127.0.0.1", port=redis_server.port, db=3)
    db.flushdb()  # no descriptor of an earlier test's bucket
    apps = [
        create_app(root=tmp_path / f"i{i}", secret="s", s3=params, cache="redis", redis=redis)
        for i in range(3)
    ]
    for app in apps:
        # The fence's view never expires here: how many once-a-second listings of
        # the gc epochs fall in a step depends on time (tests/test_gc.py covers it).
        app.services.registry.gc_fence.refresh = float("inf")
    yield Fleet(apps, db)
    for app in apps:
        app.executor.shutdown(wait=True)
    db.close()


def push_steps(
    fleet: Fleet, repo: str, layer: bytes, redis_counts: dict[str, int] | None = None
) -> dict[str, int]:
    """One blob pushed in two pieces and its image's manifest, each request on the next app.

    Returns each step's S3 requests; ``redis_counts`` receives its Redis commands.
    """
    c = fleet.clients
    digest = sha256(layer)
    half = len(layer) // 2
    counts: dict[str, int] = {}
    redis_counts = {} if redis_counts is None else redis_counts
    got: dict[str, Any] = {}

    def step(
        name: str, status: int, run: Callable[[], Any], then: Callable[[], None] = lambda: None
    ):
        def go() -> None:
            got["reply"] = run()
            then()

        counts[name] = sum(fleet.count(go).values())
        redis_counts[name] = sum(fleet.redis_ops.values())
        assert got["reply"].status == status, (name, got["reply"].status, got["reply"].body)
        return got["reply"]

    step("HEAD blob, absent", 404, lambda: c[0].head(f"/v2/{repo}/blobs/{digest}"))
    reply = step("POST", 202, lambda: c[1].post(f"/v2/{repo}/blobs/uploads/"))
    upload = reply.header("docker-upload-uuid")
    reply = step(
        "PATCH",
        202,
        lambda: c[2].patch(
            path_of(reply.header("location")),
            body=layer[:half],
            headers={**OCTET, "Content-Range": f"0-{half - 1}"},
        ),
        # the hash state is stored after the answer: count it with the PATCH
        then=lambda: fleet.apps[2].services.locks.wait_for_state(upload),
    )
    location = path_of(reply.header("location"))
    step(
        "PUT",
        201,
        lambda: c[0].put(f"{location}&digest={digest}", body=layer[half:], headers=OCTET),
    )
    step("HEAD blob, present", 200, lambda: c[1].head(f"/v2/{repo}/blobs/{digest}"))
    step("GET blob", 307, lambda: c[2].get(f"/v2/{repo}/blobs/{digest}"))
    # (a config of its own: no manifest served from an earlier test's payload cache)
    config = json.dumps({"architecture": "amd64", "os": "linux", "id": str(uuid.uuid4())}).encode()
    reply = c[0].post(f"/v2/{repo}/blobs/uploads/?digest={sha256(config)}", body=config)
    assert reply.status == 201
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    step(
        "PUT manifest",
        201,
        lambda: c[1].put(
            f"/v2/{repo}/manifests/v1", body=manifest, headers={"Content-Type": OCI_MANIFEST}
        ),
    )
    step(
        "GET manifest",
        200,
        lambda: c[2].get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}),
    )
    return counts


# S3 requests per step, at most, for a 1 MiB and a 12 MiB layer (two parts and a
# tail), with the native core (hash states) and the pure one (none). Go 2.8.2 on
# the same bucket, for comparison (1 MiB): HEAD absent 1, POST 3, PATCH 6, PUT 21,
# HEAD present 0 and GET 1 (it trusts its descriptor cache), PUT manifest 5, GET
# manifest 4. A cache hit here is checked with a HEAD of the link and of the data.
COMMON: dict[str, int] = {
    "HEAD blob, absent": 1,  # the link: one GET
    "POST": 2,  # the write check and startedat; the data object waits for the first byte
    "HEAD blob, present": 2,
    "GET blob": 2,
    "PUT manifest": 13,  # 2 references x 2, the data (HEAD, check, PUT), 3 links x 2
    "GET manifest": 4,  # the tag's link, the revision (link and data), the payload
}
BOUNDS: dict[tuple[bool, int], dict[str, int]] = {
    (True, 1): {"PATCH": 6, "PUT": 16},
    (True, 12): {"PATCH": 8, "PUT": 23},
    (False, 1): {"PATCH": 3, "PUT": 16},
    (False, 12): {"PATCH": 5, "PUT": 24},
}


# Redis commands per step, at most (INFO commandstats: a script's inner commands
# count too). A lookup is SISMEMBER, HGET and HMGET in one pipeline; a PATCH takes
# and releases the upload lock (SET NX, a script: GET, DEL) and, with hash states,
# the state lock (a script: SET NX, DEL of its release list; a script: GET, DEL,
# RPUSH, PEXPIRE); a reopening upload checks the state lock (EXISTS; BLPOP only
# while it is held). Go 2.8.2 (1 MiB): HEAD absent 2, PATCH 0, PUT 5, HEAD present
# and GET 14 each, PUT manifest 10, GET manifest 5 (with its SELECTs).
REDIS_BOUNDS: dict[str, int] = {
    "HEAD blob, absent": 3,
    "POST": 0,
    "PATCH": 16,  # with the test's own wait for the state (EXISTS, BLPOP, EXISTS)
    "PUT": 9,
    "HEAD blob, present": 3,
    "GET blob": 3,
    "PUT manifest": 14,  # 10, plus the repository's tag lock in Redis (take, release)
    "GET manifest": 3,
}


@pytest.mark.parametrize("layer_mib", [1, 12])
def test_requests_per_step_of_a_push(
    fleet: Fleet, layer_mib: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One BLPOP slice covers any wait for a state lock, however slow the machine.
    monkeypatch.setattr(locks, "_WAIT_SLICE", 60.0)
    layer = random.Random(layer_mib).randbytes(layer_mib * MiB)
    redis_counts: dict[str, int] = {}
    counts = push_steps(fleet, "count/steps", layer, redis_counts)
    bounds = {**COMMON, **BOUNDS[bool(_core.HASH_STATES), layer_mib]}
    over = {name: (n, bounds[name]) for name, n in counts.items() if n > bounds[name]}
    assert not over, f"S3 requests (counted, bound) above the bounds: {over}"
    assert fleet.fence_lists == 0  # the fixture's fences never refresh (see above)
    over = {n: (k, REDIS_BOUNDS[n]) for n, k in redis_counts.items() if k > REDIS_BOUNDS[n]}
    assert not over, f"Redis commands (counted, bound) above the bounds: {over}"
