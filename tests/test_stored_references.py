"""``stored_references`` (the collector's reading of a manifest) against ``parse_manifest``:
for every payload, the same references and subject or the same error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocistore.errors import ManifestInvalid, ManifestTooLarge
from ocistore.manifest import mediatypes as mt
from ocistore.manifest import parse
from ocistore.manifest.base import MAX_MANIFEST_SIZE
from ocistore.manifest.parse import parse_manifest, stored_references

A, B, C = ("sha256:" + c * 64 for c in "abc")


def desc(dgst: str = A, size: object = 7, media: object = "m", **more: object) -> dict[str, Any]:
    return {"mediaType": media, "digest": dgst, "size": size, **more}


def image(**fields: object) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(A),
        "layers": [desc(B), desc(C, size=0)],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not _ABSENT}


_ABSENT = object()

# Payloads read without building a Manifest (the fast path must take them).
PLAIN = {
    "oci": image(),
    "oci without mediaType": image(mediaType=_ABSENT),
    "oci with null mediaType": image(mediaType=None),
    "docker schema 2": image(mediaType=mt.DOCKER_MANIFEST),
    "no layers": image(layers=[]),
    "largest size": image(config=desc(A, size=(1 << 63) - 1)),
}

# Payloads the fast path hands to the full parse: valid ones and refused ones.
OTHER = {
    "subject": image(subject=desc(C)),
    "annotations": image(annotations={"a": "b"}),
    "layer with urls": image(layers=[desc(B, urls=["https://x"])]),
    "empty mediaType": image(mediaType=""),
    "index": {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [desc(B)]},
    "docker list": {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [desc(B)],
    },
    "oci with manifests": image(manifests=[desc(B)]),
    "layers missing": image(layers=_ABSENT),
    "layers null": image(layers=None),
    "layers an object": image(layers={"a": desc(B)}),
    "layer a string": image(layers=["x"]),
    "config missing": image(config=_ABSENT),
    "config null": image(config=None),
    "config extra key": image(config=desc(A, extra=1)),
    "bad layer digest": image(layers=[desc("sha256:" + "AB" * 32)]),
    "unknown algorithm": image(layers=[desc("md5:" + "ab" * 16)]),
    "digest a number": image(config=desc(12)),
    "size negative": image(layers=[desc(B, size=-1)]),
    "size too large": image(layers=[desc(B, size=1 << 63)]),
    "size a bool": image(layers=[desc(B, size=True)]),
    "size a float": image(layers=[desc(B, size=1.0)]),
    "mediaType of a layer null": image(layers=[desc(B, media=None)]),
    "mediaType of a layer a number": image(layers=[desc(B, media=3)]),
    "schemaVersion 1": image(schemaVersion=1),
    "schemaVersion 3": image(schemaVersion=3),
    "schemaVersion a bool": image(schemaVersion=True),
    "schemaVersion a string": image(schemaVersion="2"),
    "schemaVersion missing": image(schemaVersion=_ABSENT),
    "docker without mediaType but with its config": image(
        mediaType=_ABSENT, config=desc(A, media=mt.DOCKER_CONFIG)
    ),
    "mediaType unknown": image(mediaType="application/x-unknown"),
    "mediaType a list": image(mediaType=[mt.OCI_MANIFEST]),
    "schema 1 type": image(mediaType=mt.DOCKER_SCHEMA1),
}

RAW = {
    "duplicate key": b'{"schemaVersion": 2, "schemaVersion": 2, "config": {}, "layers": []}',
    "duplicate key in a layer": json.dumps(image())
    .replace('"size": 0}', '"size": 0, "size": 0}')
    .encode(),
    "not JSON": b"{nope",
    "not an object": b"[1, 2]",
    "not UTF-8": b'{"a": "\xff"}',
    "too large": b" " * (MAX_MANIFEST_SIZE + 1),
}


def _payloads() -> dict[str, bytes]:
    out = {name: json.dumps(doc).encode() for name, doc in {**PLAIN, **OTHER}.items()}
    return {**out, **RAW}


def outcome(read: Any, payload: bytes) -> object:
    try:
        return read(payload)
    except (ManifestInvalid, ManifestTooLarge) as exc:
        return (type(exc).__name__, str(exc))


def as_references(payload: bytes) -> object:
    m = parse_manifest(payload)
    return tuple(d.digest for d in m.references()), (m.subject.digest if m.subject else None)


@pytest.mark.parametrize("name", sorted(_payloads()))
def test_same_references_or_error_as_parse_manifest(name: str) -> None:
    payload = _payloads()[name]
    assert outcome(stored_references, payload) == outcome(as_references, payload)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_image_manifests_are_not_parsed_in_full(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The differential above would pass with no fast path at all: these take it."""
    expected = as_references(json.dumps(PLAIN[name]).encode())

    def refuse(*args: object) -> None:
        raise AssertionError("parsed in full")

    monkeypatch.setattr(parse, "_from_document", refuse)
    assert stored_references(json.dumps(PLAIN[name]).encode()) == expected
