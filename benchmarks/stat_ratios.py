"""Side by side: BlobStore.stat from the in-process stat cache, from LMDB, and misses.

One storage root holds ``--blobs`` real blobs (linked in one repository, so the
descriptor cache holds them in both scopes). Every variant stats the same
digests in batches of ``--batch``; rounds are interleaved (every variant once
per round, in a shuffled order) and repeated ``--rounds`` times; the table
shows the median rate and the interquartile range, per core.

Variants (``reg`` has the stat cache, ``plain`` is the same registry with
``stat_cache_size=0``: what every stat cost before the fast path):

- ``hot str``: ``reg.blobs.stat(digest string)`` answered by the stat cache
  (the digest as it arrives in a URL: no ``Digest`` is built on a hit);
- ``hot Digest``: the same with ``Digest`` keys;
- ``hot repo``: ``repo.blobs.stat(str)`` through a repository (one link ``stat``
  per hit, as the cache must see a link deleted by Go's DELETE);
- ``hot repo, new view``: the same with a fresh ``registry.repository(name)``
  per stat, as an HTTP handler does per request;
- ``lmdb hit (validated)``: ``plain.blobs.stat``: LMDB hit plus the data stat;
- ``lmdb repo hit (validated)``: ``plain``'s repository stat: LMDB plus link and data stats;
- ``lmdb provider hit`` / ``lmdb provider miss``: the LMDB provider alone;
- ``fill (stat-cache miss)``: ``reg.blobs.stat`` after ``stat_cache.clear()``:
  LMDB hit, data stat, inotify watch, insert;
- ``manifest batch``: ``repo.blobs.stat_many`` of 10 digests, as manifest
  verification calls it (rate in digests per second).

Every answer is checked against the blob's size. Usage::

    .venv/bin/python benchmarks/stat_ratios.py
    .venv/bin/python benchmarks/stat_ratios.py --blobs 5000 --rounds 41 --cores native
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ocistore import _core
from ocistore.cache import LMDBDescriptorCache
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.errors import BlobUnknown
from ocistore.storage import Registry

REPO = "bench/stat"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class World:
    """One core's registries over one root, warmed."""

    def __init__(self, directory: str, core: str, blobs: int) -> None:
        _core.use(core)
        self.core = core
        self.cache = LMDBDescriptorCache(os.path.join(directory, f"cache-{core}"))
        root = os.path.join(directory, f"root-{core}")
        self.reg = Registry(FilesystemDriver(root), cache=self.cache)
        self.plain = Registry(FilesystemDriver(root), cache=self.cache, stat_cache_size=0)
        # ``fill`` clears its stat cache every batch: it gets its own, so the hot ones stay hot.
        self.cold = Registry(FilesystemDriver(root), cache=self.cache)
        assert self.reg.stat_cache is not None, "the stat cache did not start"
        repo = self.reg.repository(REPO)
        rng = random.Random(0)
        self.descs: list[Descriptor] = [
            repo.blobs.put(LAYER, rng.randbytes(16 + i % 64)) for i in range(blobs)
        ]
        self.keys = [str(d.digest) for d in self.descs]
        self.digests = [d.digest for d in self.descs]
        self.sizes = {d.digest: d.size for d in self.descs}
        self.missing = [str(Digest.from_bytes(f"absent {i}".encode())) for i in range(blobs)]
        self.warm()

    def warm(self) -> None:
        repo = self.reg.repository(REPO).blobs
        for k in self.keys:
            self.reg.blobs.stat(k)
            repo.stat(k)
            self.plain.blobs.stat(k)

    def close(self) -> None:
        self.cache.close()


Variant = Callable[[list[str]], tuple[int, float]]


def _timed(stat: Callable[[Any], Descriptor], world: World, keys: list[Any]) -> tuple[int, float]:
    """Stat every key; return (count, seconds); the answers are checked after the clock stops."""
    start = time.perf_counter()
    got = [stat(k) for k in keys]
    seconds = time.perf_counter() - start
    sizes = world.sizes
    for k, d in zip(keys, got, strict=True):
        if sizes[d.digest] != d.size or d.digest != k:
            raise AssertionError(f"wrong answer for {k}: {d}")
    return len(keys), seconds


def variants(world: World) -> dict[str, Variant]:
    """Each takes a batch of digest strings and returns (stats made, seconds)."""
    reg, plain, cache = world.reg, world.plain, world.cache
    repo = reg.repository(REPO).blobs
    plain_repo = plain.repository(REPO).blobs
    cold = world.cold
    cold_cache = cold.stat_cache
    assert cold_cache is not None
    by_str = {str(d): d for d in world.digests}

    def new_view(key: str) -> Descriptor:
        return reg.repository(REPO).blobs.stat(key)

    def lmdb_provider_miss(keys: list[str]) -> tuple[int, float]:
        stat, n = cache.stat, 0
        missing = world.missing[: len(keys)]
        start = time.perf_counter()
        for k in missing:
            try:
                stat(k)
            except BlobUnknown:
                n += 1
        seconds = time.perf_counter() - start
        assert n == len(keys)
        return n, seconds

    def fill(keys: list[str]) -> tuple[int, float]:
        cold_cache.clear()
        return _timed(cold.blobs.stat, world, keys)

    def batch(keys: list[str]) -> tuple[int, float]:
        many = repo.stat_many
        parts = [keys[i : i + 10] for i in range(0, len(keys), 10)]
        start = time.perf_counter()
        got = [many(part) for part in parts]
        seconds = time.perf_counter() - start
        assert all(len(g) == len(p) for g, p in zip(got, parts, strict=True))
        return len(keys), seconds

    return {
        "hot str": lambda keys: _timed(reg.blobs.stat, world, keys),
        "hot Digest": lambda keys: _timed(reg.blobs.stat, world, [by_str[k] for k in keys]),
        "hot repo": lambda keys: _timed(repo.stat, world, keys),
        "hot repo, new view": lambda keys: _timed(new_view, world, keys),
        "lmdb hit (validated)": lambda keys: _timed(plain.blobs.stat, world, keys),
        "lmdb repo hit (validated)": lambda keys: _timed(plain_repo.stat, world, keys),
        "lmdb provider hit": lambda keys: _timed(cache.stat, world, keys),
        "lmdb provider miss": lmdb_provider_miss,
        "fill (stat-cache miss)": fill,
        "manifest batch (10)": batch,
    }


def measure(fn: Variant, keys: list[str]) -> float:
    """Stats per second of one batch."""
    n, seconds = fn(keys)
    return n / seconds


def run(args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    directory = tempfile.mkdtemp(prefix="stat-ratios-", dir=args.dir)
    worlds: list[World] = []
    try:
        for core in args.cores:
            worlds.append(World(directory, core, args.blobs))
        rng = random.Random(1)
        table = [(w, name, fn) for w in worlds for name, fn in variants(w).items()]
        rates: dict[tuple[str, str], list[float]] = {(w.core, n): [] for w, n, _ in table}
        for _ in range(args.rounds):
            rng.shuffle(table)
            for w, name, fn in table:
                _core.use(w.core)
                keys = rng.sample(w.keys, min(args.batch, len(w.keys)))
                rates[(w.core, name)].append(measure(fn, keys))
        for w in worlds:
            rates[(w.core, "_stats")] = [float(v) for v in w.reg.stat_cache.stats().values()]  # type: ignore[union-attr]
        return rates
    finally:
        for w in worlds:
            w.close()
        shutil.rmtree(directory, ignore_errors=True)
        _core.use(_core.DEFAULT)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--blobs", type=int, default=2000, help="blobs on disk (all hot)")
    ap.add_argument("--batch", type=int, default=1000, help="stats per timed batch")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--cores", default="native,pure")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the root and LMDB go")
    args = ap.parse_args(argv)
    args.cores = [c for c in args.cores.split(",") if c]
    load_before = os.getloadavg()
    rates = run(args)
    load_after = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"command: {' '.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])}")
    print(
        f"{args.blobs} blobs, batches of {args.batch}, {args.rounds} interleaved rounds, "
        f"median and interquartile range; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    names = [n for (c, n) in rates if c == args.cores[0] and n != "_stats"]
    header = f"{'variant':28}" + "".join(f"{c + ' stats/s':>26}" for c in args.cores)
    if "native" in args.cores and "pure" in args.cores:
        header += f"{'native/pure':>13}"
    print(header)
    for name in names:
        row = f"{name:28}"
        medians = {}
        for c in args.cores:
            values = rates[(c, name)]
            q = statistics.quantiles(values, n=4)
            medians[c] = statistics.median(values)
            row += f"{medians[c]:>12,.0f} [{q[0]:>,.0f}-{q[2]:>,.0f}]".rjust(26)
        if "native" in medians and "pure" in medians:
            row += f"{medians['native'] / medians['pure']:>13.1f}"
        print(row)
    for c in args.cores:
        keys = (
            "entries",
            "capacity",
            "hits",
            "misses",
            "fills",
            "invalidations",
            "evictions",
            "resets",
        )
        stats = dict(zip(keys, rates[(c, "_stats")], strict=False))
        print(f"{c} stat cache: " + ", ".join(f"{k} {int(v)}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
