"""BlobStore.stat from the in-process stat cache, beside LMDB hits and misses (pytest-benchmark).

Run: ``.venv/bin/pytest benchmarks/test_bench_statcache.py`` (``make bench`` runs every
suite); ``OCISTORE_BENCH_STAT_BLOBS`` sets how many real blobs the root holds
(default 2000). The variants are those of ``benchmarks/stat_ratios.py`` (read its
docstring), which also prints them side by side with interleaved rounds; here
each is one pytest-benchmark test per core (group ``stat cache <core>``), timing
one batch of ``BATCH`` stats and checking every answer. ``extra_info`` holds the
rate; a summary table is printed at the end of the session.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from ocistore import _core
from stat_ratios import World, variants

BLOBS = int(os.environ.get("OCISTORE_BENCH_STAT_BLOBS", "2000"))
BATCH = 1000
RESULTS: list[tuple[str, str, float]] = []
VARIANTS = [
    "hot str",
    "hot Digest",
    "hot repo",
    "hot repo, new view",
    "lmdb hit (validated)",
    "lmdb repo hit (validated)",
    "lmdb provider hit",
    "lmdb provider miss",
    "fill (stat-cache miss)",
    "manifest batch (10)",
]


def _available_cores() -> list[str]:
    cores = []
    for name in ("native", "pure"):
        try:
            _core.load(name)
        except ImportError:
            continue
        cores.append(name)
    return cores


@pytest.fixture(scope="module", params=_available_cores())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = World(str(tmp_path_factory.mktemp(f"stat-{request.param}")), request.param, BLOBS)
    yield w
    w.close()
    _core.use(_core.DEFAULT)


@pytest.fixture(scope="session", autouse=True)
def _summary(pytestconfig: pytest.Config) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nBlobStore.stat, {BLOBS} blobs, batches of {BATCH} (median)")
        for core, name, rate in RESULTS:
            print(f"  {core:7} {name:28} {rate:>12,.0f} /s")


@pytest.mark.parametrize("variant", VARIANTS)
def test_stat(benchmark: Any, world: World, variant: str) -> None:
    _core.use(world.core)
    fn = variants(world)[variant]
    rng = random.Random(variant)
    keys = rng.sample(world.keys, min(BATCH, len(world.keys)))
    counted: list[int] = []

    def batch() -> None:
        n, _seconds = fn(keys)
        counted.append(n)

    benchmark.group = f"stat cache {world.core}"
    benchmark.pedantic(batch, rounds=15, iterations=1, warmup_rounds=1)
    assert counted and all(n == len(keys) for n in counted)
    rate = len(keys) / benchmark.stats.stats.median
    benchmark.extra_info["stats_per_s"] = round(rate)
    stat_cache = world.reg.stat_cache
    assert stat_cache is not None
    benchmark.extra_info.update({f"stat_cache_{k}": v for k, v in stat_cache.stats().items()})
    RESULTS.append((world.core, variant, rate))
