"""Blob stat throughput through CachedBlobStatter: no cache, memory LRU, LMDB; hot and cold.

Run: ``.venv/bin/pytest benchmarks/test_bench_cache.py`` (``make bench`` runs every suite).
``OCISTORE_BENCH_CACHE_ENTRIES`` sets how many entries the caches hold (default
1 000 000; populated once per session), e.g. ``=20000`` for a quick run.

The backend is distribution's global blob statter on the filesystem driver: the
digest's data path (``blobs/sha256/xx/<hex>/data``) is stat'ed. ``SAMPLE`` blobs
exist on disk; the other entries exist only in the caches.

- *hot*: every key is cached (keys drawn at random from all the entries);
- *hot+validate*: hot, plus the storage layer's existence check per hit;
- *cold*: the keys were cleared from the cache before the round (setup, not
  timed), so every stat misses, asks the backend and fills the cache;
- *mixed*: 90 % cached keys, 10 % cleared ones;
- *provider*: the LMDB provider alone, a hit and a miss (BlobUnknown).

Each benchmark times one batch of ``BATCH`` stats, checks every answer, and
stores ``stats_per_s`` and the statter's hit and miss counts in ``extra_info``;
a summary table is printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocistore import _core
from ocistore.cache import CachedBlobStatter, LMDBDescriptorCache, MemoryDescriptorCache
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.driver import FilesystemDriver
from ocistore.errors import BlobUnknown, PathNotFound
from ocistore.storage import paths

ENTRIES = int(os.environ.get("OCISTORE_BENCH_CACHE_ENTRIES", "1000000"))
SAMPLE = min(2_000, ENTRIES)
BATCH = 1_000
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPES = (LAYER, "application/vnd.oci.image.config.v1+json", "application/octet-stream")

RESULTS: list[tuple[str, str, float, dict[str, int]]] = []


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
def core(request: pytest.FixtureRequest) -> Iterator[str]:
    _core.use(request.param)
    yield request.param
    _core.use(_core.DEFAULT)


class DriverBlobStatter:
    """distribution's global ``blobStatter``: stat the data path of the digest."""

    def __init__(self, driver: FilesystemDriver) -> None:
        self.driver = driver

    def path(self, dgst: Digest) -> str:
        return paths.path_for(paths.BlobData(dgst))

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = as_digest(digest)
        try:
            info = self.driver.stat(self.path(dgst))
        except PathNotFound:
            raise BlobUnknown(dgst) from None
        return Descriptor(dgst, info.size, LAYER)

    def exists(self, dgst: Digest, desc: Descriptor) -> bool:
        return os.path.exists(self.driver.full_path(self.path(desc.digest)))


def _entry(i: int) -> Descriptor:
    raw = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
    return Descriptor(str.__new__(Digest, f"sha256:{raw}"), i, MEDIA_TYPES[i % 3])


class World:
    """Everything the benchmarks share, built once per session."""

    def __init__(self, root: Path) -> None:
        self.entries = [_entry(i) for i in range(ENTRIES)]
        # The sample exists on disk with the size the caches record, and a layer media type.
        self.sample = [d.with_(media_type=LAYER) for d in self.entries[:SAMPLE]]
        self.entries[:SAMPLE] = self.sample
        self.driver = FilesystemDriver(root / "storage")
        self.backend = DriverBlobStatter(self.driver)
        for d in self.sample:
            self.driver.put_content(self.backend.path(d.digest), b"\0" * d.size)
        self.memory = MemoryDescriptorCache(size=ENTRIES + 1)
        self.lmdb = LMDBDescriptorCache(root / "lmdb")
        self.fill_all()

    def fill_all(self) -> None:
        for start in range(0, ENTRIES, 100_000):
            chunk = [(d.digest, d) for d in self.entries[start : start + 100_000]]
            self.memory.set_many(chunk)
            self.lmdb.set_many(chunk)

    def cache(self, name: str) -> Any:
        return {"memory": self.memory, "lmdb": self.lmdb}[name]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("bench-cache"))
    yield w
    w.lmdb.close()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        _print_summary()


def _record(benchmark: Any, group: str, name: str, statter: CachedBlobStatter | None) -> None:
    median = benchmark.stats.stats.median
    rate = BATCH / median
    counts = statter.metrics.snapshot() if statter is not None else {}
    benchmark.extra_info["stats_per_s"] = round(rate)
    benchmark.extra_info.update(counts)
    RESULTS.append((group, name, rate, counts))


def _print_summary() -> None:
    if not RESULTS:
        return
    lines = [
        "",
        f"stat throughput, {ENTRIES} cached entries, batches of {BATCH} (median)",
        f"{'benchmark':44} {'stats/s':>12} {'hits':>9} {'misses':>9} {'hit rate':>9}",
    ]
    for group, name, rate, counts in RESULTS:
        hits, misses = counts.get("hits", 0), counts.get("misses", 0)
        ratio = f"{hits / (hits + misses):.0%}" if hits + misses else "-"
        lines.append(f"{group + ' ' + name:44} {rate:12,.0f} {hits:9} {misses:9} {ratio:>9}")
    print("\n".join(lines))


def _stat_all(statter: Any, keys: list[Digest]) -> list[Descriptor]:
    stat = statter.stat
    return [stat(k) for k in keys]


# --- no cache -----------------------------------------------------------------------------


def test_no_cache(benchmark: Any, world: World, core: str) -> None:
    keys = random.Random(1).sample([d.digest for d in world.sample], BATCH)
    benchmark.group = f"stat {core}"
    got = benchmark(_stat_all, world.backend, keys)
    by_digest = {d.digest: d for d in world.sample}
    assert got == [by_digest[k] for k in keys]
    _record(benchmark, f"{core}", "no cache (driver stat)", None)


# --- hot ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_name", ["memory", "lmdb"])
def test_hot(benchmark: Any, world: World, core: str, cache_name: str) -> None:
    picks = random.Random(2).sample(range(ENTRIES), BATCH)
    keys = [world.entries[i].digest for i in picks]
    expected = [world.entries[i] for i in picks]
    statter = CachedBlobStatter(world.cache(cache_name), world.backend)
    benchmark.group = f"stat {core}"
    got = benchmark(_stat_all, statter, keys)
    assert got == expected
    assert statter.metrics.misses == 0
    _record(benchmark, core, f"{cache_name} hot", statter)


@pytest.mark.parametrize("cache_name", ["memory", "lmdb"])
def test_hot_from_strings(benchmark: Any, world: World, core: str, cache_name: str) -> None:
    """Hot, with digests arriving as strings (as from a URL): parsing is on the path."""
    picks = random.Random(3).sample(range(ENTRIES), BATCH)
    keys = [str(world.entries[i].digest) for i in picks]
    statter = CachedBlobStatter(world.cache(cache_name), world.backend)
    benchmark.group = f"stat {core}"
    got = benchmark(_stat_all, statter, keys)
    assert got == [world.entries[i] for i in picks]
    _record(benchmark, core, f"{cache_name} hot, str keys", statter)


@pytest.mark.parametrize("cache_name", ["memory", "lmdb"])
def test_hot_validated(benchmark: Any, world: World, core: str, cache_name: str) -> None:
    keys = random.Random(4).sample([d.digest for d in world.sample], BATCH)
    statter = CachedBlobStatter(
        world.cache(cache_name), world.backend, validate=world.backend.exists
    )
    benchmark.group = f"stat {core}"
    got = benchmark(_stat_all, statter, keys)
    by_digest = {d.digest: d for d in world.sample}
    assert got == [by_digest[k] for k in keys]
    assert statter.metrics.invalidations == 0
    _record(benchmark, core, f"{cache_name} hot+validate", statter)


# --- cold and mixed ------------------------------------------------------------------------------


def _evict(cache: Any, keys: list[Digest]) -> None:
    for k in keys:
        with contextlib.suppress(BlobUnknown):
            cache.clear(k)


@pytest.mark.parametrize("cache_name", ["memory", "lmdb"])
def test_cold(benchmark: Any, world: World, core: str, cache_name: str) -> None:
    cache = world.cache(cache_name)
    keys = random.Random(5).sample([d.digest for d in world.sample], BATCH)
    statter = CachedBlobStatter(cache, world.backend)
    benchmark.group = f"stat {core}"
    got = benchmark.pedantic(
        _stat_all,
        args=(statter, keys),
        setup=lambda: _evict(cache, keys),
        rounds=15,
        iterations=1,
    )
    by_digest = {d.digest: d for d in world.sample}
    assert got == [by_digest[k] for k in keys]
    assert statter.metrics.hits == 0
    assert [cache.stat(k) for k in keys] == got  # filled
    _record(benchmark, core, f"{cache_name} cold (miss+fill)", statter)


@pytest.mark.parametrize("cache_name", ["memory", "lmdb"])
def test_mixed(benchmark: Any, world: World, core: str, cache_name: str) -> None:
    """90 % hits over the whole population, 10 % misses that go to the backend."""
    cache = world.cache(cache_name)
    rng = random.Random(6)
    cold = rng.sample([d.digest for d in world.sample], BATCH // 10)
    hot = [world.entries[i].digest for i in rng.sample(range(SAMPLE, ENTRIES), BATCH - len(cold))]
    keys = hot + cold
    rng.shuffle(keys)
    statter = CachedBlobStatter(cache, world.backend)
    benchmark.group = f"stat {core}"
    benchmark.pedantic(
        _stat_all, args=(statter, keys), setup=lambda: _evict(cache, cold), rounds=15, iterations=1
    )
    assert statter.metrics.misses == 15 * len(cold)
    _record(benchmark, core, f"{cache_name} mixed 90/10", statter)


# --- the LMDB provider alone ---------------------------------------------------------------------


def test_lmdb_provider_hit(benchmark: Any, world: World, core: str) -> None:
    picks = random.Random(7).sample(range(ENTRIES), BATCH)
    keys = [world.entries[i].digest for i in picks]
    benchmark.group = f"stat {core}"
    got = benchmark(_stat_all, world.lmdb, keys)
    assert got == [world.entries[i] for i in picks]
    _record(benchmark, core, "lmdb provider hit", None)


def test_lmdb_provider_miss(benchmark: Any, world: World, core: str) -> None:
    keys = [_entry(ENTRIES + i).digest for i in range(BATCH)]

    def misses() -> int:
        n = 0
        stat = world.lmdb.stat
        for k in keys:
            try:
                stat(k)
            except BlobUnknown:
                n += 1
        return n

    benchmark.group = f"stat {core}"
    assert benchmark(misses) == BATCH
    _record(benchmark, core, "lmdb provider miss (BlobUnknown)", None)


def test_lmdb_stat_many(benchmark: Any, world: World, core: str) -> None:
    """The batch stat (one read transaction) that manifest verification uses."""
    picks = random.Random(8).sample(range(ENTRIES), BATCH)
    keys = [world.entries[i].digest for i in picks]
    benchmark.group = f"stat {core}"
    got = benchmark(world.lmdb.stat_many, keys)
    assert got == {world.entries[i].digest: world.entries[i] for i in picks}
    _record(benchmark, core, "lmdb stat_many (one txn)", None)
