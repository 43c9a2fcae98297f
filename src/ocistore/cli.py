"""ocistore: an OCI Distribution registry on disk or S3, and its maintenance commands.

ocistore serve runs the registry: with no options it serves ./data on
127.0.0.1:5000 with the LMDB descriptor cache; --config FILE reads a
distribution-style YAML file, and flags given on the command line win.

ocistore scrub, export, import, du and gc work on a storage root; ocistore
referrers rebuild repairs the referrers index. ocistore COMMAND --help says more.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

# The commands besides serve: (module with configure(name, parser) and run(args), one line).
# A command's module is imported, and its options added, only when that command is run.
_COMMANDS = {
    "scrub": ("ocistore.maintenance_cli", "verify every blob and link"),
    "export": ("ocistore.maintenance_cli", "write an image as an OCI layout"),
    "import": ("ocistore.maintenance_cli", "copy an OCI layout into the store"),
    "du": ("ocistore.maintenance_cli", "bytes per repository and what gc would free"),
    "referrers": ("ocistore.cli", "maintain the referrers index"),
    "gc": (
        "ocistore.gc_command",
        "garbage-collect unreferenced blobs and (optionally) untagged manifests",
    ),
}

SERVE_HELP = """\
Serve the OCI Distribution API over a storage root. Options given here
override the config file's keys; SIGHUP reloads the file with the same
options on top."""

REFERRERS_HELP = """\
rebuild checks the referrers index of the named repositories (default: all)
against their manifests and repairs it. It is never needed for correctness:
every referrers query indexes the manifests written since the last one, by
ocistore or by a Go registry on the same root."""


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``serve`` and of ``command`` (the others: names only)."""
    parser = argparse.ArgumentParser(
        prog="ocistore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the OCI Distribution registry", description=SERVE_HELP
    )
    serve.add_argument("config_file", nargs="?", help=argparse.SUPPRESS)  # distribution's form
    serve.add_argument("--config", help="YAML config file (distribution's keys)")
    serve.add_argument("--addr", help="host:port to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--root", help="storage root directory (default ./data)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument(
        "--stack", help="HTTP server: ocistore (default; zero-copy blob GETs) or granian"
    )
    serve.add_argument(
        "--delete-enabled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow deleting blobs, manifests and tags",
    )
    serve.add_argument("--secret", help="HMAC secret for upload state tokens (http.secret)")
    serve.add_argument("--log-level", help="debug, info, warn, error")
    serve.add_argument(
        "--cache",
        help="descriptor cache: lmdb (default), inmemory, redis (the config's redis:) or none",
    )
    serve.add_argument("--cache-dir", help="LMDB cache directory (default <root>/ocistore-cache)")
    serve.add_argument("--idle-timeout", help="seconds (or 30s, 2m) a request body may stall")
    serve.add_argument("--max-blob-size", help="largest blob accepted (bytes, or 512M, 2GiB)")
    serve.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=None, help="log requests"
    )
    for name, (module, line) in _COMMANDS.items():
        p = sub.add_parser(name, help=line)
        if name == command:
            importlib.import_module(module).configure(name, p)
    return parser


def configure(name: str, referrers: argparse.ArgumentParser) -> None:
    """The options of ``ocistore referrers``."""
    referrers.description = REFERRERS_HELP
    action = referrers.add_subparsers(dest="action", required=True)
    rebuild = action.add_parser(
        "rebuild", help="check every manifest's referrers entry; repair and drop false ones"
    )
    rebuild.add_argument("--root", required=True, help="storage root directory")
    rebuild.add_argument("names", nargs="*", metavar="NAME", help="repositories (default: all)")


def run(args: argparse.Namespace) -> int:
    """Run ``ocistore referrers rebuild``."""
    return _rebuild_referrers(args)


def _rebuild_referrers(args: argparse.Namespace) -> int:
    from ocistore.driver.filesystem import FilesystemDriver
    from ocistore.errors import RegistryError
    from ocistore.storage.registry import Registry

    if not os.path.isdir(args.root):
        print(f"ocistore: {args.root}: no such storage root", file=sys.stderr)
        return 2
    registry = Registry(FilesystemDriver(args.root))
    try:
        for name in args.names or list(registry.enumerate()):
            count = registry.repository(name).manifests.rebuild_referrers_index()
            print(f"{name}: {count} referrer{'' if count == 1 else 's'}")
    except (RegistryError, OSError) as exc:
        print(f"ocistore: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ocistore.server.config import ConfigError, ServerConfig, apply_overrides, load_config

    try:
        path = args.config or args.config_file
        if path:
            cfg, unknown = load_config(path)
            if unknown:
                print(
                    f"ocistore: warning: {path}: unknown configuration keys, ignored: "
                    + ", ".join(unknown),
                    file=sys.stderr,
                )
        else:
            cfg = ServerConfig()
        flags = dict(
            addr=args.addr,
            root=args.root,
            workers=args.workers,
            stack=args.stack,
            delete_enabled=args.delete_enabled,
            secret=args.secret,
            log_level=args.log_level,
            cache=args.cache,
            cache_dir=args.cache_dir,
            idle_timeout=args.idle_timeout,
            max_blob_size=args.max_blob_size,
            access_log=args.access_log,
        )
        cfg = apply_overrides(cfg, **flags)
    except (ConfigError, OSError) as exc:
        print(f"ocistore: {exc}", file=sys.stderr)
        return 2
    from ocistore.server.app import check_storage
    from ocistore.server.run import serve

    unusable = check_storage(cfg)
    if unusable is not None:
        print(f"ocistore: {unusable}", file=sys.stderr)
        return 2

    def reload() -> ServerConfig:  # SIGHUP: the file again, the same flags on top
        return apply_overrides(load_config(path)[0] if path else ServerConfig(), **flags)

    try:
        return serve(cfg, reload)
    except OSError as exc:
        print(f"ocistore: {exc.strerror or exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    args = _parser(command).parse_args(words)
    if args.command == "serve":
        return _serve(args)
    status: int = importlib.import_module(_COMMANDS[args.command][0]).run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
