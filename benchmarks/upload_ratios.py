"""Side by side: a chunked upload through freshly resumed writers vs one straight pass.

An HTTP registry handles every PATCH of a chunked upload with a fresh writer:
resume, append, close. This script times exactly that on the filesystem
driver (``--size`` bytes in ``--chunk`` pieces, a new ``resume()`` per chunk,
then ``commit``) and compares it with the least any upload can cost: one pass
of ``hashlib.sha256`` plus ``os.write`` of the same bytes and one ``fsync``.

Variants (each run in its own process, so peak RSS is per variant; runs are
interleaved and repeated, medians reported):

- ``baseline``: hashlib + write + one fsync;
- ``baseline-fsync-per-chunk``: the same with an fsync after every chunk, the
  durability a resumable upload gives each PATCH (its state must never vouch
  for bytes that are not on disk), so the difference to ``native`` is the cost
  of resuming itself;
- ``native``: the native core with hash states (no re-read at commit);
- ``native-nostate``: the native core with ``resumable_digest=False``
  (distribution's behaviour without resumable digests: commit re-reads);
- ``pure``: the pure core (``hashlib`` cannot export a state: commit re-reads).

The data is produced chunk by chunk from one reused buffer, so memory stays
flat whatever ``--size`` is; the expected digest is computed once, untimed, and
every run checks that the committed blob has it.

Usage::

    .venv/bin/python benchmarks/upload_ratios.py --size 1GiB
    .venv/bin/python benchmarks/upload_ratios.py --size 256MiB --chunk 16MiB --repeat 5 --dir /var/tmp
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

VARIANTS = ("baseline", "baseline-fsync-per-chunk", "native", "native-nostate", "pure")
_UNITS = {
    "": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 256MiB, 4096)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def chunks(size: int, chunk: int) -> Iterator[memoryview]:
    """``size`` bytes in ``chunk``-sized views of one reused buffer (each chunk distinct)."""
    buffer = bytearray(random.Random(0).randbytes(chunk))
    view = memoryview(buffer)
    done, index = 0, 0
    while done < size:
        n = min(chunk, size - done)
        buffer[:8] = index.to_bytes(8, "big")
        yield view[:n]
        done += n
        index += 1


def expected_digest(size: int, chunk: int) -> str:
    h = hashlib.sha256()
    for piece in chunks(size, chunk):
        h.update(piece)
    return f"sha256:{h.hexdigest()}"


def run_baseline(
    directory: str, size: int, chunk: int, digest: str, *, fsync_each: bool = False
) -> dict[str, Any]:
    path = os.path.join(directory, "straight")
    start = time.perf_counter()
    h = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for piece in chunks(size, chunk):
            h.update(piece)
            written = 0
            while written < len(piece):
                written += os.write(fd, piece[written:])
            if fsync_each:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    assert f"sha256:{h.hexdigest()}" == digest
    assert os.path.getsize(path) == size
    return {"seconds": seconds, "reread_bytes": 0, "resumes": 0}


def run_upload(
    directory: str, size: int, chunk: int, digest: str, core: str, *, resumable: bool
) -> dict[str, Any]:
    from ocistore import _core

    _core.use(core)
    from ocistore.descriptor import Descriptor
    from ocistore.digest import Digest
    from ocistore.driver import FilesystemDriver
    from ocistore.storage import Registry

    registry = Registry(
        FilesystemDriver(os.path.join(directory, "root")), resumable_digest=resumable
    )
    blobs = registry.repository("bench/upload").blobs
    from_state = 0
    start = time.perf_counter()
    writer = blobs.create()  # POST
    writer.close()
    resumes = 0
    for piece in chunks(size, chunk):  # one PATCH each
        writer = blobs.resume(writer.id)
        resumes += 1
        from_state += writer.resumed_from_state
        writer.write(piece)
        writer.close()
    writer = blobs.resume(writer.id)  # PUT
    desc = writer.commit(Descriptor(digest=Digest(digest), size=size))
    seconds = time.perf_counter() - start
    assert desc.digest == digest and desc.size == size
    assert blobs.stat(digest).size == size
    return {
        "seconds": seconds,
        "reread_bytes": writer.reread_bytes,
        "resumes": resumes + 1,
        "resumed_from_state": from_state + writer.resumed_from_state,
        "core": _core.BACKEND,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(variant: str, size: int, chunk: int, digest: str, parent: str) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix=f"upload-{variant}-", dir=parent)
    if not variant.startswith("baseline"):  # import the storage layer before the clock starts
        import ocistore.storage  # noqa: F401
    cpu = _cpu_seconds()
    try:
        if variant == "baseline":
            result = run_baseline(directory, size, chunk, digest)
        elif variant == "baseline-fsync-per-chunk":
            result = run_baseline(directory, size, chunk, digest, fsync_each=True)
        elif variant == "native":
            result = run_upload(directory, size, chunk, digest, "native", resumable=True)
        elif variant == "native-nostate":
            result = run_upload(directory, size, chunk, digest, "native", resumable=False)
        elif variant == "pure":
            result = run_upload(directory, size, chunk, digest, "pure", resumable=True)
        else:
            raise ValueError(variant)
        # CPU time (user + sys, this process) is steadier than wall time on a
        # shared disk; it includes the hashing and, for the others, the re-read.
        result["cpu_seconds"] = _cpu_seconds() - cpu
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # ru_maxrss is KiB on Linux: the peak of this process, which ran one variant.
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["variant"] = variant
    return result


def spawn(variant: str, args: argparse.Namespace, digest: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--one",
        variant,
        "--size",
        str(args.size),
        "--chunk",
        str(args.chunk),
        "--digest",
        digest,
        "--dir",
        args.dir,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def cpu_model() -> str:
    """The CPU's model name and whether it has SHA extensions (Linux; else platform's guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or platform.machine()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", info, re.M)
    sha = flags is not None and any(f in flags.group(1).split() for f in ("sha_ni", "sha2"))
    name = model.group(1).strip() if model else platform.machine()
    return f"{name} (SHA extensions: {'yes' if sha else 'no'})"


def available(variant: str) -> bool:
    if variant.startswith("baseline") or variant == "pure":
        return True
    try:
        from ocistore import _core

        _core.load("native")
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    ap.add_argument("--chunk", type=parse_size, default=parse_size("16MiB"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (a real disk)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--digest", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.chunk, args.digest, args.dir)))
        return 0

    variants = [v for v in args.variants.split(",") if v]
    missing = [v for v in variants if not available(v)]
    if missing:
        print(f"skipping {missing}: the native core is not built", file=sys.stderr)
        variants = [v for v in variants if v not in missing]
    digest = expected_digest(args.size, args.chunk)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(args.repeat):  # interleaved: v1 v2 v3 v1 v2 v3 ...
        for variant in variants:
            runs[variant].append(spawn(variant, args, digest))

    median = {v: statistics.median(r["seconds"] for r in runs[v]) for v in variants}
    cpu = {v: statistics.median(r["cpu_seconds"] for r in runs[v]) for v in variants}
    base = median.get("baseline")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"command: {' '.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])}")
    print(
        f"upload: {args.size / (1 << 20):.0f} MiB in {args.chunk / (1 << 20):.0f} MiB chunks, "
        f"{args.repeat} interleaved runs per variant, medians; dir {args.dir}"
    )
    print(
        f"{'variant':<16}{'median s':>10}{'MiB/s':>9}{'x baseline':>12}{'cpu s':>8}{'cpu x':>7}{'re-read MiB':>13}{'from state':>12}{'peak RSS MiB':>14}"
    )
    for v in variants:
        last = runs[v][-1]
        ratio = f"{median[v] / base:.2f}" if base else "-"
        cpu_ratio = f"{cpu[v] / cpu['baseline']:.2f}" if "baseline" in cpu else "-"
        rate = args.size / (1 << 20) / median[v]
        from_state = (
            f"{last.get('resumed_from_state', 0)}/{last['resumes']}" if last["resumes"] else "-"
        )
        rss = max(r["peak_rss_mib"] for r in runs[v])
        print(
            f"{v:<16}{median[v]:>10.2f}{rate:>9.0f}{ratio:>12}{cpu[v]:>8.2f}{cpu_ratio:>7}{last['reread_bytes'] / (1 << 20):>13.0f}{from_state:>12}{rss:>14.0f}"
        )
    if args.json:
        print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
