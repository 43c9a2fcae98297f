"""Side by side: what refusing duplicate JSON keys costs a manifest PUT.

``parse_manifest`` with ``unique_keys=True`` (a PUT: an ``object_pairs_hook``
that compares each object's pairs with its dict) against ``unique_keys=False``
(the plain C decoder, as stored payloads are read), on an OCI image manifest
of ``--layers`` layers; and a whole ``ManifestStore.put(tag=...)`` on the
filesystem driver for scale. Variants alternate, the minimum of ``--repeat``
timings is shown. Each parse is checked to give the same digest. Usage::

    .venv/bin/python benchmarks/duplicate_keys.py
    .venv/bin/python benchmarks/duplicate_keys.py --layers 5 1000 --repeat 7
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import timeit

from ocistore.driver import FilesystemDriver
from ocistore.manifest import mediatypes, parse_manifest
from ocistore.storage import Registry
from ocistore.storage.registry import Repository


def manifest(repo: Repository, layers: int) -> bytes:
    cfg = repo.blobs.put(mediatypes.OCI_CONFIG, b'{"architecture":"amd64","os":"linux"}')
    blobs = [repo.blobs.put(mediatypes.OCI_LAYER_GZIP, os.urandom(32)) for _ in range(layers)]
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": cfg.media_type, "digest": str(cfg.digest), "size": cfg.size},
        "layers": [
            {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": str(b.digest), "size": b.size}
            for b in blobs
        ],
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }
    return json.dumps(doc, indent=3).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[5, 1000])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        repo = Registry(FilesystemDriver(root), delete_enabled=True).repository("bench/app")
        print("| layers | bytes | parse, keys unchecked | parse, unique keys | put(tag=) |")
        print("|---|---|---|---|---|")
        for layers in args.layers:
            payload = manifest(repo, layers)
            lax_m = parse_manifest(payload, unique_keys=False)
            assert parse_manifest(payload).digest == lax_m.digest
            n = max(3, 20_000 // (layers + 5))
            lax = strict = float("inf")
            for _ in range(args.repeat):
                lax = min(
                    lax,
                    timeit.timeit(lambda p=payload: parse_manifest(p, unique_keys=False), number=n)
                    / n,
                )
                strict = min(
                    strict, timeit.timeit(lambda p=payload: parse_manifest(p), number=n) / n
                )
            puts = max(2, n // 50)
            put = (
                min(
                    timeit.repeat(
                        lambda p=payload: repo.manifests.put(p, tag="t"), number=puts, repeat=3
                    )
                )
                / puts
            )
            print(
                f"| {layers} | {len(payload)} | {lax * 1e6:.0f} µs | {strict * 1e6:.0f} µs "
                f"| {put * 1e3:.1f} ms |"
            )


if __name__ == "__main__":
    main()
