"""What ``ocistore gc --delete-untagged`` must spend on a filesystem tree, part by part.

On a tree built by ``benchmarks/gc.py --tree DIR``, each round takes fresh
copies (``cp -a``, then ``sync``) and times, in one process:

- **mark**: a dry-run collection (every repository read and marked, the
  blob store listed, the sweep planned; nothing deleted);
- **deletions**: exactly the files and directories the collection deletes
  (from that dry run), removed through the core's ``remove_paths`` (files,
  then their directories) by ``--threads`` threads, once in the collector's
  order and once sorted by path;
- **gc**: a real collection of another copy, as ``ocistore gc`` runs it
  (sixteen workers, its default, the cycle collector off), and
  ``docker-registry garbage-collect`` on a third.

The collector cannot start deleting blobs before its mark ends, so mark +
deletions is what the parts cost back to back; the printed ratios compare
it with Go's whole run.

    .venv/bin/python benchmarks/gc_floor.py --tree DIR [--rounds 3] [--threads 16]
"""

from __future__ import annotations

import argparse
import gc as cyclic_gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ocistore import _core
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.storage.gc import GcOptions, collect

GO = shutil.which("docker-registry")


def fresh_copy(tree: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["cp", "-a", str(tree), str(dest)], check=True)
    os.sync()
    return dest


def options(dry_run: bool) -> GcOptions:
    return GcOptions(delete_untagged=True, dry_run=dry_run, grace=0, settle=0, workers=16)


def files_of(root: Path, entries: list[str]) -> list[str]:
    """The one file of each entry directory the collection deletes (blob data or a link)."""
    return [f"{root}{d}/{'data' if '/blobs/' in d else 'link'}" for d in entries]


def remove(files: list[str], threads: int) -> float:
    per = -(-len(files) // threads)
    chunks = [files[k : k + per] for k in range(0, len(files), per)]

    def one(chunk: list[str]) -> None:
        _core.remove_paths(chunk)
        _core.remove_paths([os.path.dirname(f) for f in chunk], directories=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, chunks))
    return time.perf_counter() - t0


def go_run(root: Path, work: Path) -> float:
    assert GO is not None
    cfg = work / "go.yml"
    cfg.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n"
    )
    t0 = time.perf_counter()
    subprocess.run(
        [GO, "garbage-collect", "--delete-untagged", str(cfg)], check=True, capture_output=True
    )
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True, help="a tree of benchmarks/gc.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    cyclic_gc.disable()  # as ocistore gc runs a collection
    if GO is None:
        print("docker-registry is not installed", file=sys.stderr)
        return 2
    parts: dict[str, list[float]] = {
        k: [] for k in ("mark", "deletions", "deletions sorted", "gc", "go")
    }
    with tempfile.TemporaryDirectory(prefix="gc-floor-", dir=args.tree.parent) as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            root = fresh_copy(args.tree, work / "copy")
            t0 = time.perf_counter()
            dry = collect(FilesystemDriver(str(root)), options(True))
            parts["mark"].append(time.perf_counter() - t0)
            assert dry is not None
            files = files_of(root, dry.deleted)
            parts["deletions"].append(remove(files, args.threads))
            root = fresh_copy(args.tree, work / "copy")
            parts["deletions sorted"].append(remove(sorted(files), args.threads))
            root = fresh_copy(args.tree, work / "copy")
            t0 = time.perf_counter()
            collect(FilesystemDriver(str(root)), options(False))
            parts["gc"].append(time.perf_counter() - t0)
            root = fresh_copy(args.tree, work / "copy")
            parts["go"].append(go_run(root, work))
            print(
                f"round {r}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in parts.items())
                + f"; {len(files)} entries; load {os.getloadavg()[0]:.1f}"
            )
    med = {k: statistics.median(v) for k, v in parts.items()}
    print("medians: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()))
    go = med["go"]
    print(
        f"Go / ocistore gc (in-process): {go / med['gc']:.2f}; "
        f"Go / (mark + deletions sorted): {go / (med['mark'] + med['deletions sorted']):.2f}; "
        f"3 x Go leaves {go / 3:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
