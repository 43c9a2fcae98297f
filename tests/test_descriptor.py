"""Descriptor value type and the error hierarchy's fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ocistore import errors
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import DigestInvalid, ManifestInvalid
from ocistore.manifest.document import parse_descriptor

D = "sha256:" + "ab" * 32


def test_descriptor_is_frozen_and_slotted() -> None:
    desc = Descriptor(digest=D, size=3, media_type="application/octet-stream")
    assert isinstance(desc.digest, Digest)
    assert not hasattr(desc, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        desc.size = 4  # type: ignore[misc]


def test_descriptor_json_round_trip() -> None:
    obj = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": D,
        "size": 42,
        "urls": ["https://example.com/layer"],
        "annotations": {"org.opencontainers.image.title": "x"},
        "platform": {"architecture": "amd64", "os": "linux"},
        "artifactType": "application/vnd.example+type",
    }
    desc = Descriptor.from_json(obj)
    assert desc.urls == ("https://example.com/layer",)
    assert desc.to_json() == obj
    assert Descriptor.from_json(desc.to_json()) == desc


@pytest.mark.parametrize(
    ("size", "error"),
    [(-2, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError)],
)
def test_descriptor_rejects_bad_sizes(size: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"descriptor size must be .*got {size!r}$"):
        Descriptor(digest=D, size=size)  # type: ignore[arg-type]


def test_descriptor_rejects_bad_digest() -> None:
    with pytest.raises(DigestInvalid):
        Descriptor(digest="sha256:xyz", size=1)


def test_with_replaces_fields() -> None:
    desc = Descriptor(digest=D, size=1)
    assert desc.with_(media_type="x").media_type == "x"
    assert desc.media_type == ""


def test_errors_carry_fields() -> None:
    e = errors.BlobInvalidDigest(D, "digest mismatch", computed="sha256:" + "0" * 64)
    assert e.digest == D and e.computed.endswith("0" * 64) and "mismatch" in str(e)
    e2 = errors.BlobInvalidLength("size mismatch", expected=3, actual=4)
    assert (e2.expected, e2.actual) == (3, 4)
    e3 = errors.ManifestBlobUnknown([D, "sha256:" + "cd" * 32])
    assert len(e3.digests) == 2 and "cd" * 32 in str(e3)
    e4 = errors.InvalidOffset("/a", -1, "filesystem")
    assert e4.offset == -1 and e4.path == "/a" and "-1" in str(e4)
    assert isinstance(errors.PathNotFound("/a", "inmemory"), FileNotFoundError)
    for name in dir(errors):
        obj = getattr(errors, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, Exception)
            and obj.__module__ == errors.__name__
        ):
            assert issubclass(obj, errors.RegistryError), name


_SHAPES = [
    {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": "sha256:" + "ab" * 32,
        "size": 811,
    },
    {"mediaType": "", "digest": "sha256:" + "ab" * 32, "size": 0},
    {"mediaType": "m", "digest": "sha256:" + "ab" * 32, "size": (1 << 63) - 1},
    {"mediaType": "m", "digest": "sha256:" + "ab" * 32, "size": 1 << 63},
    {"mediaType": "m", "digest": "sha256:" + "ab" * 32, "size": -1},
    {"mediaType": "m", "digest": "sha256:" + "ab" * 32, "size": True},
    {"mediaType": "m", "digest": "sha256:" + "ab" * 32, "size": 1.0},
    {"mediaType": "m", "digest": "sha256:" + "ab" * 32, "size": None},
    {"mediaType": None, "digest": "sha256:" + "ab" * 32, "size": 1},
    {"mediaType": 7, "digest": "sha256:" + "ab" * 32, "size": 1},
    {"mediaType": "m", "digest": "sha256:" + "AB" * 32, "size": 1},
    {"mediaType": "m", "digest": "md5:" + "ab" * 16, "size": 1},
    {"mediaType": "m", "digest": None, "size": 1},
    {"mediaType": "m", "digest": 12, "size": 1},
]


def _outcome(obj: dict[str, Any]) -> object:
    try:
        return parse_descriptor(obj, "layers[3]")
    except ManifestInvalid as exc:
        return ("ManifestInvalid", str(exc))


@pytest.mark.parametrize("obj", _SHAPES, ids=range(len(_SHAPES)))
def test_plain_descriptor_short_cut_matches_the_general_path(obj: dict[str, Any]) -> None:
    """A descriptor of exactly mediaType, digest and size takes a short cut in
    parse_descriptor; with one more (null) key it takes the general path: same outcome."""
    assert _outcome(obj) == _outcome({**obj, "urls": None})
