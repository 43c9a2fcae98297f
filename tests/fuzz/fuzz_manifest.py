#!/usr/bin/env python3
"""Fuzz manifest parsing and verification.

Payloads come from clients (PUT) and from storage (GET, referrers). For any
bytes and Content-Type, :func:`parse_manifest` returns a manifest whose
digest is the payload's sha256, or raises ManifestInvalid (or ManifestTooLarge);
the lenient reading of stored payloads accepts whatever the strict one does,
as the same manifest; verification against a made-up repository raises
only ManifestBlobUnknown (naming only digests the manifest references) or
ManifestInvalid; and the server's error answer for it stays small.

Inputs are raw bytes half the time and, otherwise, a JSON document assembled
from the fuzzer's choices (so the parser's deeper checks are reached).

Run by ``tests/test_fuzz.py``; by hand::

    .venv/bin/python tests/fuzz/fuzz_manifest.py -max_total_time=60 tests/fuzz/corpus/manifest
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from typing import Any

import atheris

with atheris.instrument_imports(
    include=["ocistore.manifest", "ocistore.descriptor", "ocistore.server.errors"]
):
    from ocistore.descriptor import Descriptor
    from ocistore.digest import Digest
    from ocistore.errors import ManifestBlobUnknown, ManifestInvalid
    from ocistore.manifest import mediatypes, parse_manifest, verify_manifest
    from ocistore.server.errors import MAX_LISTED_BLOBS, api_errors

_TYPES = [
    None,
    mediatypes.OCI_MANIFEST,
    mediatypes.OCI_INDEX,
    mediatypes.DOCKER_MANIFEST,
    mediatypes.DOCKER_MANIFEST_LIST,
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/json",
    "text/plain",
]
_KEYS = [
    "schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "artifactType",
    "annotations", "digest", "size", "urls", "platform", "architecture", "os", "data", "x",
]  # fmt: skip
_STRINGS = [
    mediatypes.OCI_MANIFEST,
    mediatypes.OCI_INDEX,
    mediatypes.OCI_CONFIG,
    mediatypes.OCI_LAYER_GZIP,
    mediatypes.DOCKER_MANIFEST,
    mediatypes.DOCKER_FOREIGN_LAYER,
    "sha256:" + "a" * 64,
    "sha256:" + "b" * 64,
    "sha512:" + "c" * 128,
    "sha256:short",
    "http://example.com/x",
    "amd64",
    "linux",
    "",
]


def _value(fdp: atheris.FuzzedDataProvider, depth: int) -> Any:
    kind = fdp.ConsumeIntInRange(0, 7 if depth < 5 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-2, 1 << 64) if fdp.ConsumeBool() else fdp.ConsumeInt(2)
    if kind == 3:
        return _STRINGS[fdp.ConsumeIntInRange(0, len(_STRINGS) - 1)]
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 20))
    if kind == 5:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return _object(fdp, depth + 1)


def _object(fdp: atheris.FuzzedDataProvider, depth: int) -> dict[str, Any]:
    return {
        _KEYS[fdp.ConsumeIntInRange(0, len(_KEYS) - 1)]: _value(fdp, depth)
        for _ in range(fdp.ConsumeIntInRange(0, 6))
    }


def _payload(fdp: atheris.FuzzedDataProvider) -> bytes:
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000))
    text = json.dumps(_object(fdp, 0))
    if fdp.ConsumeIntInRange(0, 7) == 0 and text.endswith("}") and len(text) > 2:
        text = text[:-1] + ', "layers": []}'  # sometimes a duplicate key, at the top
    return text.encode()


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    media_type = _TYPES[fdp.ConsumeIntInRange(0, len(_TYPES) - 1)]
    present = fdp.ConsumeIntInRange(0, 255)
    payload = _payload(fdp)
    try:
        m = parse_manifest(payload, media_type)
    except ManifestInvalid as exc:
        if not str(exc):
            raise AssertionError("ManifestInvalid without a reason") from None
        with contextlib.suppress(ManifestInvalid):
            parse_manifest(payload, media_type, unique_keys=False)
        return
    lenient = parse_manifest(payload, media_type, unique_keys=False)
    if (lenient.digest, lenient.media_type) != (m.digest, m.media_type):
        raise AssertionError("strict and lenient readings differ")
    if m.payload != payload or m.digest != "sha256:" + hashlib.sha256(payload).hexdigest():
        raise AssertionError("payload or digest is not the input's")
    referenced = {r.digest for r in m.references()}

    def stat_blobs(digests: Any) -> dict[Digest, Descriptor | None]:
        return {d: (Descriptor(digest=d, size=1) if hash(d) & present else None) for d in digests}

    def manifest_exists(d: Digest) -> bool:
        return bool(hash(d) & present & 1)

    try:
        verify_manifest(m, stat_blobs=stat_blobs, manifest_exists=manifest_exists)
    except ManifestBlobUnknown as exc:
        if not exc.digests or not set(exc.digests) <= referenced:
            raise AssertionError(f"unknown blobs {exc.digests} not among {referenced}") from None
        if len(api_errors(exc)) > MAX_LISTED_BLOBS + 1:
            raise AssertionError("error answer not capped") from None
    except ManifestInvalid:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
