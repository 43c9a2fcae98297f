"""How many S3 requests each registry request costs: pinned, so that none creeps back.

Three apps (three "instances": own driver, own client, own local state) on one
moto bucket and one redis-server serve a push with every request on the next
instance, as ``benchmarks/fleet.py --counts-only --steps`` does; each driver's
botocore client counts the operations it sends. The bounds are what the
storage layer needs (docs/scale.md explains each), Go's count beside it in
the comments (distribution 2.8.2 on the same bucket, measured by that script).
The pure core keeps no hash states, so its PATCHes store none and its commits
read the upload back once. The gc fence's listing of the collection epochs
(``ocistore.storage.gcfence``, at most once a second per instance, whatever
the request rate) is counted apart: here every step finds a view older than
that second, under load it is a vanishing share of the requests.
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
from ocistore.server import RegistryApp, create_app
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

    def __init__(self, apps: list[RegistryApp]) -> None:
        self.apps = apps
        self.clients = [Client(app) for app in apps]
        self.ops: Counter[str] = Counter()
        self.fence_lists = 0
        for app in apps:
            driver: Any = app.services.registry.driver
            driver.client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        query = params.get("query_string") or {}
        prefix = str(query.get("prefix", "")) if isinstance(query, dict) else ""
        if model.name == "ListObjectsV2" and FENCE_PREFIX in prefix:
            self.fence_lists += 1  # the gc fence's epochs, listed once a second per instance
        else:
            self.ops[model.name] += 1

    def count(self, step: Callable[[], None]) -> Counter[str]:
        self.ops.clear()
        step()
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
    flush = valkey.Valkey(host="127.0.0.1", port=redis_server.port, db=3)
    flush.flushdb()  # no descriptor of an earlier test's bucket
    flush.close()
    apps = [
        create_app(root=tmp_path / f"i{i}", secret="s", s3=params, cache="redis", redis=redis)
        for i in range(3)
    ]
    yield Fleet(apps)
    for app in apps:
        app.executor.shutdown(wait=True)


def push_steps(fleet: Fleet, repo: str, layer: bytes) -> dict[str, int]:
    """One blob pushed in two pieces and its image's manifest, each request on the next app."""
    c = fleet.clients
    digest = sha256(layer)
    half = len(layer) // 2
    counts: dict[str, int] = {}
    got: dict[str, Any] = {}

    def step(
        name: str, status: int, run: Callable[[], Any], then: Callable[[], None] = lambda: None
    ):
        def go() -> None:
            got["reply"] = run()
            then()

        counts[name] = sum(fleet.count(go).values())
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


@pytest.mark.parametrize("layer_mib", [1, 12])
def test_requests_per_step_of_a_push(fleet: Fleet, layer_mib: int) -> None:
    layer = random.Random(layer_mib).randbytes(layer_mib * MiB)
    counts = push_steps(fleet, "count/steps", layer)
    bounds = {**COMMON, **BOUNDS[bool(_core.HASH_STATES), layer_mib]}
    over = {name: (n, bounds[name]) for name, n in counts.items() if n > bounds[name]}
    assert not over, f"S3 requests (counted, bound) above the bounds: {over}"
    # Each step runs on one instance, whose fence lists the epochs at most once a
    # second (REFRESH): amortized over every request an instance serves in that second.
    assert fleet.fence_lists <= len(counts) + 1  # + the config's upload
