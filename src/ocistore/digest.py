"""Content digests: the :class:`Digest` value type and digester factories.

A :class:`Digest` is a ``str`` subclass holding ``algorithm:encoded``, already
validated, so it can be used wherever a digest string is expected and costs
nothing to format. Every blob is stored under its sha256 digest; sha512 and
blake3 digests are accepted as aliases of a sha256-addressed blob.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import blake3 as _blake3

from ocistore import _core
from ocistore.errors import BlobDigestUnsupported

CANONICAL: Final = "sha256"
ALGORITHMS: Final = ("sha256", "sha512", "blake3")


class Digester(Protocol):
    """What :func:`digester` returns: ``update`` with any buffer, then ``digest()``."""

    def update(self, data: Any, /) -> object: ...
    def hexdigest(self) -> str: ...


class Digest(str):
    """A validated ``algorithm:encoded`` digest string.

    ``Digest("sha256:…")`` and :meth:`parse` raise :class:`~ocistore.errors.DigestInvalid`
    (with the value and the reason) or :class:`~ocistore.errors.BlobDigestUnsupported`.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if type(value) is cls:
            return value
        _core.parse_digest(value)
        return str.__new__(cls, value)  # not super(), a measurable share of the cost

    @classmethod
    def parse(cls, value: str | Digest) -> Digest:
        return cls(value)

    @classmethod
    def from_parts(cls, algorithm: str, encoded: str) -> Digest:
        return cls(f"{algorithm}:{encoded}")

    @classmethod
    def from_bytes(cls, data: Any, algorithm: str = CANONICAL) -> Digest:
        """Digest of ``data`` (any buffer) under ``algorithm``."""
        d = digester(algorithm)
        d.update(data)
        return str.__new__(cls, f"{algorithm}:{d.hexdigest()}")

    @property
    def algorithm(self) -> str:
        return self[: self.index(":")]

    @property
    def encoded(self) -> str:
        return self[self.index(":") + 1 :]

    hex = encoded

    def __repr__(self) -> str:
        return f"Digest({str.__repr__(self)})"


def digester(algorithm: str = CANONICAL) -> Digester:
    """A fresh hasher for ``algorithm`` (sha256 and sha512 from the active core)."""
    if algorithm == "sha256":
        return _core.Sha256()
    if algorithm == "sha512":
        return _core.Sha512()
    if algorithm == "blake3":
        h: Digester = _blake3.blake3(max_threads=1)
        return h
    raise BlobDigestUnsupported(algorithm, algorithm)


def as_digest(value: str | Digest) -> Digest:
    """Accept a :class:`Digest` or its string form (the public API's rule)."""
    if type(value) is Digest:
        return value
    return Digest(value)
