"""Tag, untag and manifest delete against each other, at library level (issue 13, part 5).

Rounds of threads released together by a barrier: each mutator puts a manifest
under a shared tag, untags, or deletes a manifest by digest; the others push
blobs and read by tag and by digest. Every call must succeed or raise the
documented unknown error, and after each round the state must be what some
serial order of the round's mutations gives (:mod:`tag_model`), with no tag
directory lacking its current link and every current target in the tag's index.

Two Registry objects share each root, as two worker processes would: on a
filesystem they exclude each other through the lock files alone; on S3 (moto)
they share one in-process lock provider (instances on many hosts use Redis,
:class:`ocistore.server.locks.RedisTagLocks`).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from manifest_helpers import oci_image
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, StorageDriver
from ocistore.errors import ManifestUnknown, NameUnknown, PathNotFound, TagUnknown
from ocistore.storage import Registry, paths
from ocistore.storage.registry import Repository
from ocistore.storage.taglocks import ThreadTagLocks
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)
from tag_model import Op, State, serial_order

REPO = "torture/app"
TAGS = ("latest", "stable")
MANIFESTS = 3
MUTATORS = 5
READERS = 3
ROUNDS = 12
S3_ROUNDS = 4
"""Fewer on S3 (moto): every request is an HTTP round trip to a Python server."""


@pytest.fixture(params=["filesystem", "s3"])
def registries(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Registry, Registry]]:
    if request.param == "filesystem":
        yield (
            Registry(FilesystemDriver(tmp_path / "root"), delete_enabled=True),
            Registry(FilesystemDriver(tmp_path / "root"), delete_enabled=True),
        )
        return
    from ocistore.driver.s3 import S3Driver
    from ocistore.driver.s3_options import parse_s3_options

    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("new_bucket")()
    locks = ThreadTagLocks()

    def make() -> Registry:
        driver = S3Driver(parse_s3_options(endpoint.params(bucket, rootdirectory="/reg")))
        return Registry(driver, delete_enabled=True, tag_locks=locks)

    yield make(), make()


def observe(repo: Repository) -> State:
    """The tags and manifests of ``repo``, checking the layout invariants on the way."""
    driver: StorageDriver = repo.registry.driver
    try:
        listed = sorted(
            e.rsplit("/", 1)[1] for e in driver.list(paths.path_for(paths.ManifestTags(REPO)))
        )
    except PathNotFound:
        listed = []
    tags = {tag: str(repo.tags.resolve(tag)) for tag in repo.tags.list()} if listed else {}
    # distribution lists tag directories: none may lack its current link
    assert listed == sorted(tags), f"tag directories {listed} but tags {sorted(tags)}"
    for tag, dgst in tags.items():
        assert dgst in [str(d) for d in repo.tags.manifest_digests(tag)], (tag, dgst)
        assert repo.manifests.exists(dgst), f"tag {tag} names deleted manifest {dgst}"
    manifests = {str(d) for d in repo.manifests.enumerate()}
    return State.of(tags, manifests)


def run_round(
    registries: tuple[Registry, Registry],
    payloads: dict[str, bytes],
    rng: random.Random,
) -> tuple[list[tuple[Op, bool]], list[BaseException]]:
    digests = sorted(payloads)
    ops: list[Op] = []
    for _ in range(MUTATORS):
        kind = rng.choice(["put", "put", "untag", "delete"])
        ops.append(Op(kind, tag=rng.choice(TAGS), digest=rng.choice(digests)))
    results: list[tuple[Op, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(MUTATORS + READERS)

    def mutate(i: int, op: Op) -> None:
        repo = registries[i % 2].repository(REPO)
        barrier.wait()
        try:
            if op.kind == "put":
                repo.manifests.put(payloads[op.digest], tag=op.tag)
                ok = True
            elif op.kind == "untag":
                try:
                    repo.tags.untag(op.tag)
                    ok = True
                except TagUnknown:
                    ok = False
            else:
                try:
                    repo.manifests.delete(op.digest)
                    ok = True
                except ManifestUnknown:
                    ok = False
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append((op, ok))

    def read(i: int, seed: int) -> None:
        repo = registries[i % 2].repository(REPO)
        local = random.Random(seed)
        barrier.wait()
        try:
            repo.blobs.put("application/octet-stream", local.randbytes(64))
            for _ in range(4):
                try:
                    dgst = repo.tags.resolve(local.choice(TAGS))
                    repo.manifests.get(dgst)
                except (TagUnknown, ManifestUnknown):
                    pass
                with contextlib.suppress(ManifestUnknown):
                    repo.manifests.get(local.choice(digests))
                with contextlib.suppress(NameUnknown):  # no tag yet, or all gone
                    repo.tags.list()
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=mutate, args=(i, op)) for i, op in enumerate(ops)]
    threads += [
        threading.Thread(target=read, args=(i, rng.getrandbits(32))) for i in range(READERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def setup_manifests(repo: Repository) -> dict[str, bytes]:
    payloads = {}
    for i in range(MANIFESTS):
        payload = oci_image(repo, layers=1, config=b'{"n":%d}' % i)
        payloads[str(Digest.from_bytes(payload))] = payload
    return payloads


def check_rounds(registries: tuple[Registry, Registry], seed: int, rounds: int = ROUNDS) -> None:
    rng = random.Random(seed)
    repo = registries[0].repository(REPO)
    payloads = setup_manifests(repo)
    before = observe(repo)
    for n in range(rounds):
        results, errors = run_round(registries, payloads, rng)
        assert not errors, f"round {n}: {errors!r}"
        after = observe(repo)
        assert serial_order(before, results, after) is not None, (
            f"round {n}: {before} --{results}--> {after} is no serial order"
        )
        before = after


def test_tag_untag_delete_in_serial_order(registries: tuple[Registry, Registry]) -> None:
    on_s3 = not isinstance(registries[0].driver, FilesystemDriver)
    check_rounds(registries, seed=13, rounds=S3_ROUNDS if on_s3 else ROUNDS)


def test_serial_order_model_refuses_a_lost_untag() -> None:
    """The checker itself: an untag that succeeded cannot leave its tag in place."""
    d = "sha256:" + "a" * 64
    before = State.of({"latest": d}, {d})
    ops = [(Op("untag", tag="latest"), True)]
    assert serial_order(before, ops, before) is None
    assert serial_order(before, ops, State.of({}, {d})) == (ops[0][0],)
