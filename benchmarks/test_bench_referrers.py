"""What a referrers query costs when manifests may have been written by another registry.

Run: ``.venv/bin/pytest benchmarks/test_bench_referrers.py``.
``OCISTORE_BENCH_REFERRERS_REVISIONS`` sets how many manifest revisions the
repository holds (default 10 000; 10 of them refer to one subject). The tree is
written directly on disk as the Go registry leaves it (blob data and the
revision link, no referrers index), on the filesystem driver.

- *listing*: the floor: one driver listing of ``_manifests/revisions/sha256``;
- *refresh-unchanged*: :meth:`ReferrersIndex.refresh` when nothing is new (the
  listing, its fingerprint, and one small read);
- *query-unchanged*: a whole referrers query (refresh plus the 10 entries);
- *refresh-one-new*: one revision added before each round (setup, not timed);
- *first-pass*: no record yet (entries present): every revision read once;
- *rebuild*: :meth:`ReferrersIndex.rebuild`, what each query would cost without the record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ocistore.driver import FilesystemDriver
from ocistore.storage import Registry, Repository
from ocistore.storage.referrers import ReferrersIndex

REVISIONS = int(os.environ.get("OCISTORE_BENCH_REFERRERS_REVISIONS", "10000"))
REFERRERS = 10
V2 = "docker/registry/v2"
NAME = "bench/app"
SUBJECT = "sha256:" + "ab" * 32
_serial = itertools.count()


def _write_revision(root: Path, doc: dict[str, Any]) -> str:
    data = json.dumps(doc).encode()
    hex_ = hashlib.sha256(data).hexdigest()
    blob = root / V2 / "blobs" / "sha256" / hex_[:2] / hex_
    blob.mkdir(parents=True, exist_ok=True)
    (blob / "data").write_bytes(data)
    revision = root / V2 / "repositories" / NAME / "_manifests" / "revisions" / "sha256" / hex_
    revision.mkdir(parents=True, exist_ok=True)
    (revision / "link").write_text(f"sha256:{hex_}")
    return hex_


def _manifest(i: int, *, subject: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        },
        "layers": [
            {"mediaType": "application/octet-stream", "digest": f"sha256:{i:064x}", "size": 1}
        ],
    }
    if subject:
        doc["subject"] = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": SUBJECT,
            "size": 10,
        }
    return doc


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Repository]:
    root = tmp_path_factory.mktemp("referrers")
    for i in range(REVISIONS):
        _write_revision(root, _manifest(next(_serial), subject=i < REFERRERS))
    repo = Registry(FilesystemDriver(root)).repository(NAME)
    ReferrersIndex(repo).refresh()
    return root, repo


def test_listing(benchmark: Any, tree: tuple[Path, Repository]) -> None:
    benchmark.group = f"referrers-{REVISIONS}"
    _, repo = tree
    path = f"/{V2}/repositories/{NAME}/_manifests/revisions/sha256"
    driver = repo.registry.driver
    assert len(benchmark(driver.list, path)) >= REVISIONS


def test_refresh_unchanged(benchmark: Any, tree: tuple[Path, Repository]) -> None:
    benchmark.group = f"referrers-{REVISIONS}"
    index = ReferrersIndex(tree[1])
    index.refresh()
    assert benchmark(index.refresh) == 0


def test_query_unchanged(benchmark: Any, tree: tuple[Path, Repository]) -> None:
    benchmark.group = f"referrers-{REVISIONS}"
    repo = tree[1]
    assert len(benchmark(repo.manifests.referrers, SUBJECT)) == REFERRERS


def test_refresh_one_new(benchmark: Any, tree: tuple[Path, Repository]) -> None:
    benchmark.group = f"referrers-{REVISIONS}"
    root, repo = tree
    index = ReferrersIndex(repo)
    index.refresh()

    def add_one() -> None:
        _write_revision(root, _manifest(next(_serial), subject=False))

    result = benchmark.pedantic(index.refresh, setup=add_one, rounds=20, warmup_rounds=1)
    assert result == 1


def test_first_pass(benchmark: Any, tree: tuple[Path, Repository]) -> None:
    benchmark.group = f"referrers-{REVISIONS}"
    root, repo = tree
    index = ReferrersIndex(repo)
    record = root / V2 / "repositories" / NAME / "_referrers" / "_record"

    def forget() -> None:
        record.unlink(missing_ok=True)

    result = benchmark.pedantic(index.refresh, setup=forget, rounds=3)
    assert result >= REVISIONS


def test_rebuild(benchmark: Any, tree: tuple[Path, Repository]) -> None:
    benchmark.group = f"referrers-{REVISIONS}"
    index = ReferrersIndex(tree[1])
    assert benchmark.pedantic(index.rebuild, rounds=3) == REFERRERS
