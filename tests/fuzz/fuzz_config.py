#!/usr/bin/env python3
"""Fuzz the configuration loader of ``ocistore serve``.

Whatever a config file holds, :func:`load_config` returns a config and the
unknown keys, or raises ConfigError naming the key (or the file) and why.

Inputs are raw text half the time and, otherwise, YAML assembled from the
keys ocistore reads (so the value checks are reached).

Run by ``tests/test_fuzz.py``; by hand::

    .venv/bin/python tests/fuzz/fuzz_config.py -max_total_time=60 tests/fuzz/corpus/config
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["ocistore.server.config"]):
    import yaml

    from ocistore.server.config import ConfigError, load_config

_KEYS = [
    "storage.filesystem.rootdirectory", "storage.s3.bucket", "storage.s3.region",
    "storage.s3.regionendpoint", "storage.s3.chunksize", "storage.delete.enabled",
    "storage.cache.blobdescriptor", "storage.redirect.disable", "storage.redirect.expiry",
    "storage.maintenance.uploadpurging.enabled", "storage.maintenance.uploadpurging.age",
    "storage.maintenance.uploadpurging.interval", "storage.maintenance.uploadpurging.dryrun",
    "http.addr", "http.secret", "http.relativeurls", "redis.addr", "redis.db",
    "redis.password", "redis.pool.maxidle", "redis.dialtimeout", "log.level",
    "log.accesslog.disabled", "version", "validation.manifests.urls.allow",
    "ocistore.workers", "ocistore.stack", "ocistore.uploadlocks", "ocistore.maxblobsize",
]  # fmt: skip
_VALUES = [
    None, True, False, 0, -1, 1, 65536, 1.5, "", "x", "127.0.0.1:0", ":5000", "[::1]:80",
    "10s", "1h", "-5m", "100", "100MB", "4GiB", "debug", "lmdb", "redis", "inmemory",
    [], {}, ["a"], {"a": 1}, "/tmp/x", "\x00", "0.1",
]  # fmt: skip
_PATH = os.path.join(tempfile.mkdtemp(prefix="fuzz-config-"), "config.yml")


def _document(fdp: atheris.FuzzedDataProvider) -> bytes:
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 1000))
    doc: dict[str, object] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        dotted = _KEYS[fdp.ConsumeIntInRange(0, len(_KEYS) - 1)].split(".")
        cut = fdp.ConsumeIntInRange(1, len(dotted))  # sometimes a value where a section goes
        node = doc
        for part in dotted[: cut - 1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[dotted[cut - 1]] = _VALUES[fdp.ConsumeIntInRange(0, len(_VALUES) - 1)]
    return yaml.safe_dump(doc).encode()


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    with open(_PATH, "wb") as f:
        f.write(_document(fdp))
    try:
        load_config(_PATH)
    except ConfigError as exc:
        if not exc.key or not str(exc):
            raise AssertionError(f"ConfigError without a key or reason: {exc!r}") from None


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
