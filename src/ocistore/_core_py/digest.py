"""Digest strings: validation (pure core).

Grammar (OCI image-spec, descriptor.md)::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+

Registered algorithms ocistore implements: sha256 and blake3 (64 lowercase hex
characters) and sha512 (128).
"""

from __future__ import annotations

import re

from ocistore._core_py.errors import BlobDigestUnsupported, DigestInvalid

ENCODED_LENGTH: dict[str, int] = {"sha256": 64, "sha512": 128, "blake3": 64}

_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+")
_LOWER_HEX = re.compile(r"[0-9a-f]+")


def parse_digest(value: str) -> tuple[str, str]:
    """Split and validate ``algorithm:encoded``; return ``(algorithm, encoded)``.

    Raises :class:`DigestInvalid` (value, reason) for anything malformed and
    :class:`BlobDigestUnsupported` for a well-formed digest of another algorithm.
    """
    if not isinstance(value, str):
        raise DigestInvalid(value, f"expected a string, got {type(value).__name__}")
    if not value:
        raise DigestInvalid(value, "empty digest")
    algorithm, sep, encoded = value.partition(":")
    if not sep:
        raise DigestInvalid(value, "missing ':' between algorithm and encoded part")
    if not algorithm:
        raise DigestInvalid(value, "empty algorithm")
    if not encoded:
        raise DigestInvalid(value, "empty encoded part")
    if _ALGORITHM.fullmatch(algorithm) is None:
        raise DigestInvalid(
            value, f"algorithm {algorithm!r} does not match [a-z0-9]+([+._-][a-z0-9]+)*"
        )
    if _ENCODED.fullmatch(encoded) is None:
        raise DigestInvalid(value, "encoded part has characters outside [a-zA-Z0-9=_-]")
    length = ENCODED_LENGTH.get(algorithm)
    if length is None:
        raise BlobDigestUnsupported(value, algorithm)
    if len(encoded) != length:
        raise DigestInvalid(value, f"{algorithm} needs {length} hex characters, got {len(encoded)}")
    if _LOWER_HEX.fullmatch(encoded) is None:
        raise DigestInvalid(value, "encoded part must be lowercase hex")
    return algorithm, encoded
