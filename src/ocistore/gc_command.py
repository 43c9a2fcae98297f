"""``ocistore gc``: collect a storage root (filesystem or S3) while registries may serve it.

Kept apart from :mod:`ocistore.cli` so the command's options, output and
exit codes live in one place; ``cli`` only wires it in.
"""

from __future__ import annotations

import argparse
import gc as cyclic_gc
import sys

from ocistore.maintenance_report import print_json, progress

__all__ = ["configure", "run"]

HELP = """\
Delete what no manifest references (distribution's mark and sweep). With
--delete-untagged, manifests no tag reaches are deleted first (referrers of
kept manifests and children of kept indexes are kept). Safe while
ocistore serve runs on the same root, on any number of hosts: see
docs/gc.md. Blobs and links younger than --grace are spared. Exit status:
0 done, 1 done but something could not be read (reported, and its repository
kept whole), 2 bad arguments or storage, 3 another collection is running."""


def configure(name: str, gc: argparse.ArgumentParser) -> None:
    """Give the parser ``ocistore`` made for ``gc`` its description and options."""
    gc.description = HELP
    where = gc.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="YAML config of the registry (its storage: section)")
    where.add_argument("--root", help="filesystem storage root directory")
    gc.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted; delete nothing"
    )
    gc.add_argument(
        "--delete-untagged", action="store_true", help="also delete manifests no tag reaches"
    )
    gc.add_argument(
        "--workers", type=int, default=16, help="parallel storage requests (default 16)"
    )
    gc.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    gc.add_argument(
        "--grace",
        default="3600",
        help="spare blobs and links younger than this: seconds or 1h, 30m (default 1h; 0 when nothing serves)",
    )
    gc.add_argument(
        "--settle",
        default="5",
        help="seconds (or 5s) to wait after announcing the collection, for in-flight writes (default 5)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ocistore gc`` with parsed ``args``; the exit status."""
    from ocistore.driver.base import StorageDriver
    from ocistore.errors import RegistryError
    from ocistore.maintenance_cli import StorageUnusable, open_storage
    from ocistore.storage.gc import GcOptions, collect
    from ocistore.storage.gcfence import GcBusy

    try:
        store: StorageDriver = open_storage(args.root, args.config)
    except StorageUnusable as exc:
        print(f"ocistore gc: {exc}", file=sys.stderr)
        return 2
    try:
        options = GcOptions(
            delete_untagged=args.delete_untagged,
            dry_run=args.dry_run,
            workers=args.workers,
            grace=_duration(args.grace, "--grace"),
            settle=_duration(args.settle, "--settle"),
        )
    except ValueError as exc:
        print(f"ocistore gc: {exc}", file=sys.stderr)
        return 2
    bar = progress(not args.json)
    # The mark makes a great many small objects and no cycles: the interpreter's cycle
    # collector would traverse them all, again and again, for nothing (BENCHMARKS.md).
    # It is off for the collection, on again after.
    was_enabled = cyclic_gc.isenabled()
    cyclic_gc.disable()
    try:
        report = collect(store, options, progress=bar)
    except GcBusy as exc:
        print(f"ocistore gc: {exc}", file=sys.stderr)
        return 3
    except (RegistryError, OSError, RuntimeError) as exc:
        print(f"ocistore gc: {exc}", file=sys.stderr)
        return 2
    finally:
        if was_enabled:
            cyclic_gc.enable()
    assert report is not None  # no before_mark: never withdrawn
    for problem in report.problems:
        print(f"ocistore gc: {problem.path}: {problem.reason}", file=sys.stderr)
    if args.json:
        doc = report.as_json()
        doc["dry_run"] = options.dry_run
        if options.dry_run:
            doc["would_delete"] = report.deleted
        print_json(doc)
    else:
        if options.dry_run:
            for path in report.deleted:
                print(path)
        verb = "would delete" if options.dry_run else "deleted"
        print(
            f"{report.repositories} repositories, {report.manifests_marked} manifests and "
            f"{report.blobs_marked} blobs marked; {verb} {report.manifests_deleted} manifests, "
            f"{report.blobs_swept} blobs ({report.bytes_freed} bytes), "
            f"{report.links_removed} links",
            file=sys.stderr if options.dry_run else sys.stdout,
        )
    return 1 if report.problems else 0


def _duration(value: str, key: str) -> float:
    """Seconds from Go's duration syntax (``1h``, ``30s``) or a number; ValueError naming ``key``."""
    try:
        return float(value)  # plain seconds: no need to load the server's config module
    except ValueError:
        from ocistore.server.config import parse_duration

        return parse_duration(value, key)
