"""Concurrent manifest PUTs to shared tags, deletes by tag and digest, against ``ocistore serve``.

Issue 13, part 5: a DELETE by digest racing a PUT on the same tag answered 500
(the untag's rmtree against the tag's writes). Here two worker processes get
rounds of requests released together by a barrier: mutations (PUT to a shared
tag, DELETE by tag, DELETE by digest) and reads plus blob pushes. Every answer
must be the documented one (201/202, 404 MANIFEST_UNKNOWN for a reference
already gone; 200 or 404 for reads), and after each round the
repository, read over HTTP, must be what some serial order of the round's
mutations gives (:mod:`tag_model`).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocistore
from interop._http import request
from interop._peers import OcistoreServer
from tag_model import Op, State, serial_order

from .conftest import sha256
from .helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST

pytestmark = pytest.mark.peer

REPO = "torture/app"
TAGS = ("latest", "stable")
MANIFESTS = 3
MUTATORS = 5
READERS = 3
ROUNDS = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    tmp: Path = tmp_path_factory.mktemp("tag-safety")
    srv = OcistoreServer(
        tmp / "root", tmp, core=ocistore.BACKEND, extra=["--delete-enabled", "--workers", "2"]
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def push_blob(url: str, data: bytes) -> str:
    dgst = sha256(data)
    r = request("POST", f"{url}/v2/{REPO}/blobs/uploads/?digest={dgst}", body=data)
    assert r.status == 201, (r.status, r.body)
    return dgst


def make_manifests(url: str) -> dict[str, bytes]:
    payloads = {}
    for i in range(MANIFESTS):
        config = b'{"n":%d}' % i
        layer = b"layer %d" % i
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": push_blob(url, config),
                "size": len(config),
            },
            "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(url, layer), "size": 7}],
        }
        payload = json.dumps(doc).encode()
        payloads[sha256(payload)] = payload
    return payloads


def error_code(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


def observe(url: str, digests: list[str]) -> State:
    r = request("GET", f"{url}/v2/{REPO}/tags/list")
    assert r.status in (200, 404), (r.status, r.body)
    listed = (json.loads(r.body).get("tags") or []) if r.status == 200 else []
    tags = {}
    for tag in listed:
        got = request("GET", f"{url}/v2/{REPO}/manifests/{tag}")
        assert got.status == 200, f"listed tag {tag}: {got.status} {got.body!r}"
        tags[tag] = got.headers["Docker-Content-Digest"]
    manifests = set()
    for dgst in digests:
        r = request("HEAD", f"{url}/v2/{REPO}/manifests/{dgst}")
        assert r.status in (200, 404), (dgst, r.status)
        if r.status == 200:
            manifests.add(dgst)
    return State.of(tags, manifests)


def mutate(url: str, op: Op, payload: bytes) -> bool:
    if op.kind == "put":
        r = request(
            "PUT",
            f"{url}/v2/{REPO}/manifests/{op.tag}",
            body=payload,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status == 201, (op, r.status, r.body)
        return True
    ref = op.tag if op.kind == "untag" else op.digest
    r = request("DELETE", f"{url}/v2/{REPO}/manifests/{ref}")
    if r.status == 202:
        return True
    assert r.status == 404, (op, r.status, r.body)
    assert error_code(r.body) == "MANIFEST_UNKNOWN", (op, r.body)
    return False


def read(url: str, rng: random.Random, digests: list[str]) -> None:
    push_blob(url, rng.randbytes(32))
    for _ in range(3):
        for ref in (rng.choice(TAGS), rng.choice(digests)):
            r = request("GET", f"{url}/v2/{REPO}/manifests/{ref}")
            assert r.status in (200, 404), (ref, r.status, r.body)
            if r.status == 404:
                assert error_code(r.body) == "MANIFEST_UNKNOWN", r.body
        r = request("GET", f"{url}/v2/{REPO}/tags/list")
        assert r.status in (200, 404), (r.status, r.body)


def run_round(
    url: str, payloads: dict[str, bytes], ops: list[Op], seeds: list[int]
) -> tuple[list[tuple[Op, bool]], list[BaseException]]:
    """Run ``ops`` and one reader per seed at once; the outcomes and any failure."""
    digests = sorted(payloads)
    results: list[tuple[Op, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(ops) + len(seeds))

    def run_mutation(op: Op) -> None:
        barrier.wait()
        try:
            ok = mutate(url, op, payloads[op.digest])
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append((op, ok))

    def run_reads(seed: int) -> None:
        barrier.wait()
        try:
            read(url, random.Random(seed), digests)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run_mutation, args=(op,)) for op in ops]
    threads += [threading.Thread(target=run_reads, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_tag_untag_delete_over_http(server: OcistoreServer) -> None:
    url = server.url
    payloads = make_manifests(url)
    digests = sorted(payloads)
    rng = random.Random(13)
    before = observe(url, digests)
    for n in range(ROUNDS):
        ops = [
            Op(rng.choice(["put", "put", "untag", "delete"]), rng.choice(TAGS), rng.choice(digests))
            for _ in range(MUTATORS)
        ]
        seeds = [rng.getrandbits(32) for _ in range(READERS)]
        results, errors = run_round(url, payloads, ops, seeds)
        assert not errors, f"round {n}: {errors!r}\n{server.log()[-4000:]}"
        after = observe(url, digests)
        assert serial_order(before, results, after) is not None, (
            f"round {n}: {before} --{results}--> {after} is no serial order"
        )
        before = after
