"""Scrub rate on a tree in the page cache against cores x single-core SHA-256 speed, one run.

Issue 12's target: ``ocistore scrub`` hashes at >= 0.9 x (cores x the native
core's single-core SHA-256 speed) on a tree that is in the page cache, so
that scrubbing is bound by hashing, not by Python.

The script writes a filesystem root (``--blobs`` blobs of ``--size`` random
bytes, linked from manifests in a few repositories), reads it once so it is
cached, and then runs rounds. Each round measures, back to back:

- ``single``: one thread hashing an in-memory buffer with the native
  ``Sha256`` in 128 KiB updates (CHUNK) of a buffer hot in the cache: the bare
  hash (bytes per CPU-second, and per wall second);
- ``threads``: ``scrub()`` with one worker thread per usable CPU, the way
  ``ocistore scrub`` runs (bytes hashed / wall seconds of the hash phase, and
  of the whole scrub with listing and link checks);
- ``processes``: the same files hashed by a process pool of as many workers
  (the alternative to threads, to show which to use);
- ``read``: ``scrub()`` again with the core's ``hash_file`` swapped for the
  pure core's read loop (``preadv`` into a 128 KiB buffer, then the native
  ``update``): what scrub cost per byte before it hashed through a mapping.

Ratios are taken within a round and the medians over ``--repeat`` rounds are
reported, since the machine is shared and its load drifts. Every round checks
that scrub found nothing and that the processes' digests match the names.

Usage::

    .venv/bin/python benchmarks/scrub.py
    .venv/bin/python benchmarks/scrub.py --blobs 64 --size 4MiB --repeat 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ocistore import _core
from ocistore._core_py.filehash import hash_file as hash_file_reading
from ocistore.driver import FilesystemDriver
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, paths
from ocistore.storage.scrub import CHUNK, scrub

_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "": 1}


def parse_size(text: str) -> int:
    for unit in ("KiB", "MiB", "GiB", ""):
        if text.endswith(unit) and text[: len(text) - len(unit)].isdigit():
            return int(text[: len(text) - len(unit)]) * _UNITS[unit]
    raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4MiB)")


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def build_tree(root: Path, blobs: int, size: int, repos: int) -> int:
    """Blobs of random bytes, each a layer of one image in one of ``repos`` repositories."""
    reg = Registry(FilesystemDriver(root), stat_cache_size=0)
    total = 0
    for i in range(blobs):
        repo = reg.repository(f"bench/r{i % repos}")
        layer = repo.blobs.put(mt.OCI_LAYER_GZIP, os.urandom(size))
        config = repo.blobs.put(mt.OCI_CONFIG, json.dumps({"i": i}).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer.digest, "size": size}],
        }
        repo.manifests.put(json.dumps(manifest).encode(), tag=f"t{i}")
        total += size
    return total


def warm(root: Path) -> int:
    """Read every blob once (the page cache holds the tree afterwards); bytes read."""
    n = 0
    for path in (root / "docker/registry/v2/blobs").rglob("data"):
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
    return n


def single_core(volume: int) -> tuple[float, float]:
    """One thread hashing ``volume`` bytes in CHUNK updates (native Sha256).

    Returns bytes per second of the thread's CPU time (the core's speed, which
    other processes on the machine do not change) and per wall second.
    """
    buf = memoryview(os.urandom(CHUNK))
    h = _core.Sha256()
    rounds = max(1, volume // CHUNK)
    c0, t0 = time.thread_time(), time.perf_counter()
    for _ in range(rounds):
        h.update(buf)
    h.hexdigest()
    cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
    return rounds * CHUNK / cpu, rounds * CHUNK / wall


def _hash_file(path: str) -> tuple[str, int]:
    h = _core.Sha256()
    with open(path, "rb", buffering=0) as f:
        n = os.fstat(f.fileno()).st_size
        _core.hash_file(h, f.fileno(), 0, n)
    return h.hexdigest(), n


def scrub_reading(driver: FilesystemDriver, workers: int) -> tuple[float, float]:
    """``scrub()`` hashing through the pure core's read loop; bytes per CPU-second of the hash phase.

    Returns (bytes per CPU-second, the hash phase's CPU-seconds).
    """
    mapped = _core.hash_file
    _core.hash_file = hash_file_reading
    try:
        report = scrub(driver, workers=workers)
    finally:
        _core.hash_file = mapped
    assert report.ok, report.as_dict()["findings"]
    return report.bytes / report.cpu_seconds["hash"], report.cpu_seconds["hash"]


def processes(root: Path, workers: int, pool: ProcessPoolExecutor) -> float:
    files = sorted(
        (root / "docker/registry/v2/blobs").rglob("data"), key=lambda p: -p.stat().st_size
    )
    t0 = time.perf_counter()
    results = list(pool.map(_hash_file, [str(p) for p in files], chunksize=1))
    seconds = time.perf_counter() - t0
    for path, (hexdigest, _) in zip(files, results, strict=True):
        assert path.parent.name == hexdigest, f"{path}: hashes to {hexdigest}"
    return sum(n for _, n in results) / seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--blobs", type=int, default=48, help="layers in the tree (default 48)")
    ap.add_argument("--size", type=parse_size, default=parse_size("4MiB"), help="bytes per layer")
    ap.add_argument("--repos", type=int, default=8, help="repositories (default 8)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if _core.BACKEND != "native":
        print(
            "scrub.py: the native core is required (OCISTORE_NO_EXTENSIONS is set?)",
            file=sys.stderr,
        )
        return 2
    cores = cpus()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ocistore-scrub-bench-") as tmp:
        root = Path(tmp) / "root"
        data_bytes = build_tree(root, args.blobs, args.size, args.repos)
        warm(root)
        driver = FilesystemDriver(root)
        with ProcessPoolExecutor(max_workers=cores) as pool:
            list(pool.map(int, range(cores)))  # start the workers outside the timing
            for _ in range(args.repeat):
                single, single_wall = single_core(data_bytes // cores)
                cpu0 = time.process_time()
                report = scrub(driver, workers=cores)
                cpu = time.process_time() - cpu0
                assert report.ok, report.as_dict()["findings"]
                one = scrub(driver, workers=1)
                assert one.ok
                hashed = report.bytes / report.seconds["hash"]
                whole = report.bytes / sum(report.seconds.values())
                procs = processes(root, cores, pool)
                reading, _ = scrub_reading(driver, cores)
                ideal = cores * single
                rows.append(
                    {
                        "single_MBps": single / 1e6,
                        "single_wall_MBps": single_wall / 1e6,
                        "threads_parallelism": cpu / sum(report.seconds.values()),
                        "threads_hash_MBps": hashed / 1e6,
                        "threads_scrub_MBps": whole / 1e6,
                        "processes_MBps": procs / 1e6,
                        "one_thread_hash_MBps": one.bytes / one.seconds["hash"] / 1e6,
                        "ratio_one_thread": one.bytes / one.seconds["hash"] / single,
                        "threads_MB_per_cpu_s": report.bytes / cpu / 1e6,
                        "ratio_cpu_efficiency": report.bytes / cpu / single,
                        "hash_MB_per_cpu_s": report.bytes / report.cpu_seconds["hash"] / 1e6,
                        "ratio_hash_cpu_efficiency": report.bytes
                        / report.cpu_seconds["hash"]
                        / single,
                        "read_hash_MB_per_cpu_s": reading / 1e6,
                        "ratio_read_hash_cpu_efficiency": reading / single,
                        "ratio_threads_hash": hashed / ideal,
                        "ratio_threads_scrub": whole / ideal,
                        "ratio_processes": procs / ideal,
                    }
                )
        tree_bytes = sum(
            i.size for i in driver.walk(paths.path_for(paths.BlobsRoot())) if not i.is_dir
        )
    medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    load = os.getloadavg()
    result: dict[str, Any] = {
        "cores": cores,
        "sha256_implementation": _core.implementation("sha256")
        if hasattr(_core, "implementation")
        else "",
        "tree": {"blobs": args.blobs * 3, "bytes": tree_bytes, "layer_size": args.size},
        "rounds": rows,
        "median": medians,
        "loadavg_after": load,
    }
    print(
        f"tree: {args.blobs} layers of {args.size >> 10} KiB (+ configs, manifests), "
        f"{tree_bytes / 1e6:.0f} MB in the page cache; {cores} usable CPUs; {args.repeat} rounds"
    )
    print(f"{'':28}{'MB/s':>10}{'x ideal':>10}")
    print(f"load average after the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(
        f"{'single core (native sha256)':28}{medians['single_MBps']:>10.0f}{'':>10}"
        f"  per CPU-second; {medians['single_wall_MBps']:.0f} per wall second"
    )
    print(f"{'ideal: cores x single':28}{medians['single_MBps'] * cores:>10.0f}{1.0:>10.2f}")
    for label, rate, ratio in (
        ("scrub, hash phase (threads)", "threads_hash_MBps", "ratio_threads_hash"),
        ("scrub, whole run (threads)", "threads_scrub_MBps", "ratio_threads_scrub"),
        ("process pool, hashing only", "processes_MBps", "ratio_processes"),
    ):
        print(f"{label:28}{medians[rate]:>10.0f}{medians[ratio]:>10.2f}")
    print(f"{'':28}{'MB/s':>10}{'x single':>10}")
    for label, rate, ratio in (
        ("scrub, 1 thread, hash phase", "one_thread_hash_MBps", "ratio_one_thread"),
        ("scrub per CPU-second used", "threads_MB_per_cpu_s", "ratio_cpu_efficiency"),
        ("hash phase per CPU-second", "hash_MB_per_cpu_s", "ratio_hash_cpu_efficiency"),
        ("  the same, read loop", "read_hash_MB_per_cpu_s", "ratio_read_hash_cpu_efficiency"),
    ):
        print(f"{label:28}{medians[rate]:>10.0f}{medians[ratio]:>10.2f}")
    print(f"scrub's CPUs busy on average (CPU s / wall s): {medians['threads_parallelism']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
