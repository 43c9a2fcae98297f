"""Side by side: the Redis client library under ocistore's Redis descriptor cache.

One ``redis-server`` (started here on 127.0.0.1, nothing saved) and one
``RedisDescriptorCache`` per variant, each in a database of its own, filled
with the same ``--blobs`` descriptors in one repository. Every variant runs
the same operations, in rounds interleaved in a shuffled order, ``--rounds``
times. Two tables, medians with the ratio to ``redis`` with its C parser:
the client's CPU time per operation (``time.thread_time``: what the library
costs, unaffected by other processes on a shared machine; the round trip
itself is the same for every variant) and the wall-clock rate.

Variants: ``redis`` (redis-py) and ``valkey`` (valkey-py), each with its C
reply parser (hiredis / libvalkey, the libraries' default when installed) and
with its pure-Python one; plus ``redis Pipeline``: redis-py's own high-level
``Redis.pipeline()`` doing what a repository stat does, to show what the
cache's raw pipelined connection saves.

Operations (what ``ocistore serve`` asks of the cache):

- ``repo stat hit``: SISMEMBER + HMGET + HGET in one round trip;
- ``global stat hit``: one HMGET;
- ``repo stat miss``: the same three commands for an absent digest;
- ``repo set``: SADD + HSET + HSETNX + HSET;
- ``stat_many 64``: 64 repository stats in one round trip (rate in digests/s).

Correctness is checked, not assumed: every answer is compared with the
descriptor that was set, and after the run every variant's database must hold
byte-identical keys and values. Usage::

    .venv/bin/python benchmarks/redis_clients.py
    .venv/bin/python benchmarks/redis_clients.py --rounds 21 --batch 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.connection
import valkey
import valkey.connection

from ocistore.cache import RedisDescriptorCache, RedisOptions
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import BlobUnknown

REPO = "bench/redis"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BASELINE = "redis (hiredis)"


@contextmanager
def redis_server(directory: str) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    proc = subprocess.Popen(
        [
            *(binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory),
            *("--save", "", "--appendonly", "no", "--logfile", os.path.join(directory, "log")),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.02)
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def make_caches(port: int) -> dict[str, RedisDescriptorCache]:
    opts = {i: RedisOptions(addr=f"127.0.0.1:{port}", db=i) for i in range(5)}
    assert redis.utils.HIREDIS_AVAILABLE, "hiredis is not installed"
    return {
        "redis (hiredis)": RedisDescriptorCache(opts[0], client="redis"),
        "redis (pure parser)": RedisDescriptorCache(
            opts[1], client="redis", parser=redis.connection._RESP2Parser
        ),
        "valkey (libvalkey)": RedisDescriptorCache(opts[2], client="valkey"),
        "valkey (pure parser)": RedisDescriptorCache(
            opts[3], client="valkey", parser=valkey.connection._RESP2Parser
        ),
    }


class PipelineScope:
    """A repository stat through redis-py's ``Redis.pipeline()`` (same commands, same parse)."""

    def __init__(self, port: int, db: int, cache: RedisDescriptorCache) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=port, db=db, protocol=2)
        self.cache = cache
        self.set_key = f"repository::{REPO}::blobs"

    def stat(self, key: str) -> Descriptor:
        pipe = self.client.pipeline(transaction=False)
        pipe.sismember(self.set_key, key)
        pipe.hmget(f"blobs::{key}", "digest", "size", "mediatype")
        pipe.hget(f"{self.set_key}::{key}", "mediatype")
        member, fields, local = pipe.execute()
        desc = self.cache._parse(Digest(key), fields) if member else None
        if desc is None:
            raise BlobUnknown(key)
        return desc if not local else Descriptor(desc.digest, desc.size, local.decode())


class Sample(tuple[float, float]):
    """(operations per wall-clock second, CPU microseconds per operation)."""


class Clock:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()

    def stop(self, n: int) -> Sample:
        cpu = time.thread_time() - self.cpu
        wall = time.perf_counter() - self.wall
        return Sample((n / wall, cpu / n * 1e6))


def run(args: argparse.Namespace, port: int) -> dict[tuple[str, str], list[Sample]]:
    caches = make_caches(port)
    rng = random.Random(0)
    descs = [
        Descriptor(Digest.from_bytes(b"blob %d" % i), rng.randrange(1, 1 << 30), LAYER)
        for i in range(args.blobs)
    ]
    by_key = {str(d.digest): d for d in descs}
    keys = list(by_key)
    absent = [str(Digest.from_bytes(b"absent %d" % i)) for i in range(args.blobs)]
    for cache in caches.values():
        scope = cache.repository_scoped(REPO)
        for i in range(0, len(descs), 500):
            scope.set_many([(d.digest, d) for d in descs[i : i + 500]])
    pipeline = PipelineScope(port, 0, caches[BASELINE])

    def timed(stat: Callable[[str], Descriptor], batch: list[str]) -> Sample:
        clock = Clock()
        got = [stat(k) for k in batch]
        sample = clock.stop(len(batch))
        for k, d in zip(batch, got, strict=True):
            if d != by_key[k]:
                raise AssertionError(f"wrong answer for {k}: {d}")
        return sample

    def misses(scope: Any, batch: list[str]) -> Sample:
        n = 0
        clock = Clock()
        for k in batch:
            try:
                scope.stat(k)
            except BlobUnknown:
                n += 1
        sample = clock.stop(len(batch))
        assert n == len(batch)
        return sample

    def sets(scope: Any, batch: list[str]) -> Sample:
        clock = Clock()
        for k in batch:
            scope.set_descriptor(k, by_key[k])
        return clock.stop(len(batch))

    def many(scope: Any, batch: list[str]) -> Sample:
        parts = [batch[i : i + 64] for i in range(0, len(batch), 64)]
        clock = Clock()
        got = [scope.stat_many(p) for p in parts]
        sample = clock.stop(len(batch))
        for part, found in zip(parts, got, strict=True):
            assert found == {Digest(k): by_key[k] for k in part}
        return sample

    table: list[tuple[str, str, Callable[[list[str]], Sample]]] = []
    for name, cache in caches.items():
        scope = cache.repository_scoped(REPO)
        table += [
            (name, "repo stat hit", lambda b, s=scope: timed(s.stat, b)),
            (name, "global stat hit", lambda b, c=cache: timed(c.stat, b)),
            (
                name,
                "repo stat miss",
                lambda b, s=scope: misses(s, [absent[keys.index(k)] for k in b]),
            ),
            (name, "repo set", lambda b, s=scope: sets(s, b)),
            (name, "stat_many 64", lambda b, s=scope: many(s, b)),
        ]
    table.append(("redis Pipeline", "repo stat hit", lambda b: timed(pipeline.stat, b)))
    rates: dict[tuple[str, str], list[Sample]] = {(v, op): [] for v, op, _ in table}
    for _ in range(args.rounds):
        rng.shuffle(table)
        for variant, op, fn in table:
            batch = rng.sample(keys, min(args.batch, len(keys)))
            rates[(variant, op)].append(fn(batch))
    check_same_contents(port, len(caches))
    for cache in caches.values():
        cache.close()
    pipeline.client.close()
    return rates


def check_same_contents(port: int, databases: int) -> None:
    """Every variant wrote byte-identical keys and values (its own database each)."""
    dumps = []
    for db in range(databases):
        client = redis.Redis(host="127.0.0.1", port=port, db=db)
        dump = {}
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            if kind == b"hash":
                dump[key] = ("hash", client.hgetall(key))
            elif kind == b"set":
                dump[key] = ("set", client.smembers(key))
            else:
                dump[key] = (kind.decode(), client.dump(key))
        dumps.append(dump)
        client.close()
    for db, dump in enumerate(dumps[1:], 1):
        assert dump == dumps[0], f"database {db} differs from database 0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="redis-clients-")
    try:
        with redis_server(directory) as port:
            rates = run(args, port)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ops = ["repo stat hit", "global stat hit", "repo stat miss", "repo set", "stat_many 64"]
    variants = list(dict.fromkeys(v for v, _ in rates))
    print(
        f"# redis {redis.__version__}, valkey {valkey.__version__}, "
        f"redis-server {server_version()}, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.batch}, medians"
    )
    for title, index, fmt in (
        ("client CPU µs per operation", 1, "{:,.1f}"),
        ("operations per second (wall)", 0, "{:,.0f}"),
    ):
        print()
        print(f"| {title} (ratio to {BASELINE}) | " + " | ".join(ops) + " |")
        print("|---" * (len(ops) + 1) + "|")
        for variant in variants:
            cells = []
            for op in ops:
                got = rates.get((variant, op))
                if not got:
                    cells.append("-")
                    continue
                med = statistics.median(g[index] for g in got)
                base = statistics.median(g[index] for g in rates[(BASELINE, op)])
                cells.append(fmt.format(med) + f" ({med / base:.2f}x)")
            print(f"| {variant} | " + " | ".join(cells) + " |")


def server_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return next((p.split("=")[1] for p in out.split() if p.startswith("v=")), "?")


if __name__ == "__main__":
    main()
