"""Two uploads in two threads against the same two one after the other.

Each upload streams ``--size`` bytes (default 512 MiB) in ``--piece`` writes
(default 4 MiB, the size an HTTP handler hands over) through one blob writer
of the filesystem driver and commits it; the two uploads carry different
bytes. ``sequential`` runs upload A then upload B in one thread;
``concurrent`` starts both at once in two threads. The native core hashes
with the GIL released and writes on a C thread of each upload's own (its
``WriteBehind``), so two uploads can use two CPUs; the pure core holds the
GIL more (hashlib releases it while hashing, not while Python moves pieces).

Every run is its own process (fresh root, peak RSS per run); runs are
interleaved in a shuffled order and repeated, medians reported, with the
ratio concurrent / sequential (the target is <= 0.6 on the native core) and
the CPU time, which shows whether both CPUs were busy. Each commit is checked
against the digest computed beforehand.

Usage::

    .venv/bin/python benchmarks/concurrent_uploads.py
    .venv/bin/python benchmarks/concurrent_uploads.py --size 256MiB --repeat 7 --cores native
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from upload_ratios import cpu_model, parse_size

MODES = ("sequential", "concurrent")


def pieces(size: int, piece: int, seed: int) -> Iterator[memoryview]:
    """``size`` bytes of upload ``seed`` in views of one reused buffer (one buffer per upload)."""
    buffer = bytearray(random.Random(seed).randbytes(piece))
    view = memoryview(buffer)
    done, index = 0, 0
    while done < size:
        n = min(piece, size - done)
        buffer[:16] = seed.to_bytes(8, "big") + index.to_bytes(8, "big")
        yield view[:n]
        done += n
        index += 1


def expected(size: int, piece: int, seed: int) -> str:
    h = hashlib.sha256()
    for p in pieces(size, piece, seed):
        h.update(p)
    return f"sha256:{h.hexdigest()}"


def run(
    mode: str, core: str, size: int, piece: int, digests: list[str], parent: str
) -> dict[str, Any]:
    from ocistore import _core

    _core.use(core)
    from ocistore.descriptor import Descriptor
    from ocistore.digest import Digest
    from ocistore.driver import FilesystemDriver
    from ocistore.storage import Registry

    directory = tempfile.mkdtemp(prefix=f"concurrent-{mode}-", dir=parent)
    try:
        registry = Registry(FilesystemDriver(os.path.join(directory, "root")))
        errors: list[BaseException] = []

        def upload(seed: int) -> None:
            try:
                blobs = registry.repository(f"bench/upload{seed}").blobs
                with blobs.create() as writer:
                    for p in pieces(size, piece, seed):
                        writer.write(p)
                    desc = writer.commit(Descriptor(Digest(digests[seed]), size))
                assert desc.digest == digests[seed] and desc.size == size
            except BaseException as exc:
                errors.append(exc)

        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        start = time.perf_counter()
        if mode == "sequential":
            upload(0)
            upload(1)
        else:
            threads = [threading.Thread(target=upload, args=(seed,)) for seed in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        seconds = time.perf_counter() - start
        if errors:
            raise errors[0]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "seconds": seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu,
            "peak_rss_mib": usage.ru_maxrss / 1024,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def spawn(mode: str, core: str, args: argparse.Namespace, digests: list[str]) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--one",
        f"{mode},{core}",
        "--size",
        str(args.size),
        "--piece",
        str(args.piece),
        "--digests",
        ",".join(digests),
        "--dir",
        args.dir,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=parse_size, default=parse_size("512MiB"), help="per upload")
    ap.add_argument("--piece", type=parse_size, default=parse_size("4MiB"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cores", default="native,pure")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (a real disk)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--digests", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:
        mode, core = args.one.split(",")
        digests = args.digests.split(",")
        print(json.dumps(run(mode, core, args.size, args.piece, digests, args.dir)))
        return 0

    cores = [c for c in args.cores.split(",") if c]
    digests = [expected(args.size, args.piece, seed) for seed in (0, 1)]
    plan = [(m, c) for c in cores for m in MODES]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {p: [] for p in plan}
    rng = random.Random(2)
    load_before = os.getloadavg()[0]
    for _ in range(args.repeat):
        rng.shuffle(plan)
        for mode, core in plan:
            runs[(mode, core)].append(spawn(mode, core, args, digests))
    load_after = os.getloadavg()[0]

    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(f"command: {' '.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])}")
    print(
        f"two uploads of {args.size >> 20} MiB in {args.piece >> 20} MiB writes, "
        f"{args.repeat} shuffled interleaved runs each, medians; dir {args.dir}; "
        f"load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(
        f"{'core':8}{'mode':12}{'median s':>10}{'MiB/s':>8}{'cpu s':>8}{'ratio':>8}{'peak RSS MiB':>14}"
    )
    for core in cores:
        seq = statistics.median(r["seconds"] for r in runs[("sequential", core)])
        for mode in MODES:
            rs = runs[(mode, core)]
            med = statistics.median(r["seconds"] for r in rs)
            cpu = statistics.median(r["cpu_seconds"] for r in rs)
            rss = max(r["peak_rss_mib"] for r in rs)
            rate = 2 * args.size / (1 << 20) / med
            print(
                f"{core:8}{mode:12}{med:>10.2f}{rate:>8.0f}{cpu:>8.2f}{med / seq:>8.2f}{rss:>14.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
