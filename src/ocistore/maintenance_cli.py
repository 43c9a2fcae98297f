"""The maintenance subcommands of ``ocistore``: ``scrub``, ``export``, ``import`` and ``du``.

Each works on a storage root given as ``--root DIR`` (a filesystem root) or
``--config FILE`` (a distribution-style YAML file: its filesystem root or its
``storage.s3`` bucket), through the storage driver, so the same command
serves both. They may run beside a serving registry. ``--json`` prints one
JSON object on stdout instead of text; progress bars (``rich``, shared with
``ocistore gc`` in :mod:`ocistore.maintenance_report`) appear on a terminal
only.

Exit status: 0 done (scrub: nothing found), 1 scrub found problems, 2 an
error (bad arguments, bad input, unusable storage), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ocistore.maintenance_report import print_json, progress

if TYPE_CHECKING:
    from ocistore.driver.base import StorageDriver
    from ocistore.storage.registry import Registry

__all__ = ["COMMANDS", "configure", "open_storage", "run"]

COMMANDS = ("scrub", "export", "import", "du")

SCRUB_HELP = """\
Re-hash every blob and check every link file of the storage root. Reports
digest mismatches, truncated blobs, links to missing blobs, bad link files,
unparseable manifests and stray files, each with its path. Never deletes.
With --quarantine, corrupt blobs are moved to /ocistore-quarantine/ at the
top of the storage root, beside the registry tree (neither ocistore nor the
Go registry reads there), each with a reason.json. Exit status 1 when
anything was found."""

EXPORT_HELP = """\
Write an image of the store as an OCI image layout (oci-layout, index.json,
blobs/) in DIR: a manifest, or an index with all its children, plus every
referrer (signatures, SBOMs) of its manifests. DIR must not exist or be
empty; it appears complete or not at all. skopeo reads it as oci:DIR:TAG."""

IMPORT_HELP = """\
Copy every image of the OCI image layout DIR (children and referrers
included) into repository NAME. Tags come from the layout's
org.opencontainers.image.ref.name annotations, or NAME:TAG tags the layout's
one image. The layout is checked in full (every blob present, of the right
size and digest; every manifest parseable) before anything is written."""

DU_HELP = """\
Bytes used per repository, split into exclusive (no other repository uses the
blob) and shared, and the total a garbage collection would free now (blobs no
manifest of any repository references; distribution's mark: every manifest,
its children, config, layers and subject)."""


def _storage_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", help="filesystem storage root directory")
    where.add_argument("--config", help="YAML config file (its filesystem root or storage.s3)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Give the parser ``ocistore`` made for subcommand ``name`` its description and options."""
    p.description = {"scrub": SCRUB_HELP, "export": EXPORT_HELP, "import": IMPORT_HELP}.get(
        name, DU_HELP
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    _storage_args(p)
    if name == "scrub":
        p.add_argument("--workers", type=int, help="hashing threads (default: the CPUs usable)")
        p.add_argument(
            "--quarantine", action="store_true", help="move corrupt blobs out of the served tree"
        )
    elif name == "export":
        p.add_argument("ref", metavar="NAME:TAG|NAME@DIGEST", help="the image to export")
        p.add_argument("dir", metavar="DIR", help="the layout directory to create")
    elif name == "import":
        p.add_argument("dir", metavar="DIR", help="an OCI image layout directory")
        p.add_argument("ref", metavar="NAME[:TAG]", help="destination repository (and tag)")
    else:
        p.add_argument("names", nargs="*", metavar="NAME", help="repositories (default: all)")
        p.add_argument(
            "--workers", type=int, default=8, help="threads reading manifests (default 8)"
        )


class _Fail(Exception):
    pass


class StorageUnusable(_Fail):
    """``--root`` or ``--config`` names no storage a command can use; the message says why."""


def open_storage(root: str | None, config: str | None) -> StorageDriver:
    """The driver of ``--root DIR`` or of the storage section of ``--config FILE``.

    The one place ``ocistore gc`` and the maintenance commands turn those
    options into a driver; :class:`StorageUnusable` when the root is absent
    or the config cannot be read or used.
    """
    if root is not None:
        from ocistore.driver.filesystem import FilesystemDriver

        if not os.path.isdir(root):
            raise StorageUnusable(f"{root}: no such storage root")
        return FilesystemDriver(root)
    assert config is not None  # argparse: one of the two is required
    from ocistore.server.config import ConfigError, load_config

    try:
        cfg, _ = load_config(config)
    except (ConfigError, OSError) as exc:
        raise StorageUnusable(str(exc)) from None
    from ocistore.server.app import build_driver, check_storage

    unusable = check_storage(cfg)
    if unusable is not None:
        raise StorageUnusable(unusable)
    if cfg.s3_params is None and not os.path.isdir(cfg.root):
        raise StorageUnusable(
            f"{cfg.root}: no such storage root (storage.filesystem.rootdirectory)"
        )
    return build_driver(cfg)


def _registry(args: argparse.Namespace) -> Registry:
    from ocistore.storage.registry import Registry

    # No caches: a one-shot command asks the store, and a server beside it keeps its own.
    return Registry(open_storage(args.root, args.config), stat_cache_size=0)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand ``args.command`` (one of :data:`COMMANDS`)."""
    from ocistore.errors import RegistryError
    from ocistore.storage.ocilayout import LayoutError

    handlers = {"scrub": _scrub, "export": _export, "import": _import, "du": _du}
    try:
        return handlers[args.command](args)
    except (_Fail, LayoutError, RegistryError, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.filename:
            text = f"{exc.filename}: {text}"
        print(f"ocistore {args.command}: {text}", file=sys.stderr)
        return 2


def _scrub(args: argparse.Namespace) -> int:
    from ocistore.storage.scrub import scrub

    if args.workers is not None and args.workers < 1:
        raise _Fail(f"--workers {args.workers}: must be at least 1")
    driver = open_storage(args.root, args.config)
    bar = progress(not args.json)
    try:
        report = scrub(driver, workers=args.workers, quarantine=args.quarantine, progress=bar)
    finally:
        bar.finish()
    if args.json:
        print_json(report.as_dict())
    else:
        for f in sorted(report.findings, key=lambda f: (f.path, f.kind)):
            moved = f" -> quarantined to {f.quarantined_to}" if f.quarantined_to else ""
            print(f"{f.kind}: {f.path}: {f.detail}{moved}")
        secs = sum(report.seconds.values())
        print(
            f"scrubbed {report.blobs} blobs ({human_bytes(report.bytes)}), {report.links} links, "
            f"{report.manifests} manifests in {report.repositories} repositories "
            f"in {secs:.1f} s: {len(report.findings)} problem"
            f"{'' if len(report.findings) == 1 else 's'}"
        )
    return 0 if report.ok else 1


@contextlib.contextmanager
def _bytes_bar(name: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A one-phase bar counting bytes; yields the function that advances it."""
    bar = progress(enabled)
    bar.phase(name, None)
    try:
        yield lambda n: bar.advance(0, n)
    finally:
        bar.finish()


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units with one decimal (``1.5 MiB``); plain bytes below 1 KiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def _split_export_ref(ref: str) -> tuple[str, str]:
    from ocistore.digest import Digest
    from ocistore.errors import DigestError

    if "@" in ref:
        name, _, digest = ref.partition("@")
        try:
            return name, str(Digest(digest))
        except DigestError as exc:
            raise _Fail(f"{ref!r}: {digest!r} after '@' is not a digest ({exc})") from None
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or not name:
        raise _Fail(f"{ref!r}: expected NAME:TAG or NAME@DIGEST")
    return name, tag


def _export(args: argparse.Namespace) -> int:
    from ocistore.storage.ocilayout import export_layout

    name, reference = _split_export_ref(args.ref)
    registry = _registry(args)
    with _bytes_bar("export", not args.json) as tick:
        result = export_layout(registry, name, reference, args.dir, tick=tick)
    if args.json:
        print_json(result.as_dict())
    else:
        print(
            f"exported {args.ref} ({result.digest}) to {args.dir}: {result.manifests} manifests "
            f"({result.referrers} referrers), {result.blobs} blobs, {human_bytes(result.bytes)}"
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    from ocistore.storage.ocilayout import import_layout

    name, sep, tag = args.ref.rpartition(":")
    if not sep or "/" in tag:
        name, tag = args.ref, ""
    registry = _registry(args)
    with _bytes_bar("import", not args.json) as tick:
        result = import_layout(registry, args.dir, name, tag or None, tick=tick)
    if args.json:
        print_json({"name": name, **result.as_dict()})
    else:
        tags = ", ".join(f"{t} -> {d}" for t, d in sorted(result.tags.items())) or "no tags"
        print(
            f"imported {args.dir} into {name}: {len(result.manifests)} manifests, "
            f"{result.blobs} blobs written ({human_bytes(result.bytes)}); {tags}"
        )
    return 0


def _du(args: argparse.Namespace) -> int:
    from ocistore.storage.usage import usage

    if args.workers < 1:
        raise _Fail(f"--workers {args.workers}: must be at least 1")
    report = usage(open_storage(args.root, args.config), args.names or None, workers=args.workers)
    if args.json:
        print_json(report.as_dict())
        return 0
    width = max([len("REPOSITORY")] + [len(r.name) for r in report.repositories])
    print(f"{'REPOSITORY':<{width}}  {'TOTAL':>10}  {'EXCLUSIVE':>10}  {'SHARED':>10}  MANIFESTS")
    for r in report.repositories:
        print(
            f"{r.name:<{width}}  {human_bytes(r.total):>10}  {human_bytes(r.exclusive):>10}  "
            f"{human_bytes(r.shared):>10}  {r.manifests}"
        )
        for problem in r.problems:
            print(f"  warning: {problem}", file=sys.stderr)
    print(
        f"blobs: {report.blobs} ({human_bytes(report.bytes)}); a collection would free "
        f"{report.reclaimable_blobs} ({human_bytes(report.reclaimable_bytes)})"
    )
    return 0
