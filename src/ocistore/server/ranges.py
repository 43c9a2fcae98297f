"""Parsing the ``Range`` (blob GET) and ``Content-Range`` (chunk PATCH) headers.

Blob GETs accept one ``bytes=first-last``, ``bytes=first-`` or ``bytes=-suffix``
range (RFC 9110 §14.1.2); several ranges would need a multipart answer no
registry client asks for, so they are served whole (a server may ignore Range).
Chunk PATCHes carry ``Content-Range: <first>-<last>`` (the OCI spec's form,
no unit), also accepted with a ``bytes `` prefix and a ``/total`` suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ByteRange",
    "RangeNotSatisfiable",
    "parse_content_range",
    "parse_range",
    "upload_range",
]

_RANGE: Final = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.ASCII)
_CONTENT_RANGE: Final = re.compile(r"\s*(?:bytes\s+)?(\d+)-(\d+)(?:/(\d+|\*))?\s*", re.ASCII)

_BEYOND: Final = 1 << 63
"""What a position of more than 18 digits reads as: past any blob (and past ``int()``'s
4300-digit limit, which made such a header raise instead of being answered)."""


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _BEYOND


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``first..last`` of a representation of ``size`` bytes."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


class RangeNotSatisfiable(ValueError):
    """The Range asks for nothing inside the blob (416 with ``Content-Range: bytes */size``)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a GET asked for, or None to send the whole blob.

    Returns None for an absent, malformed or multi-range header (RFC 9110:
    a server ignores a Range it cannot parse); raises
    :class:`RangeNotSatisfiable` when the range starts past the end.
    """
    if not header or "," in header:
        return None
    m = _RANGE.fullmatch(header)
    if m is None:
        return None
    first_s, last_s = m.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # suffix: the last N bytes
        n = _position(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(0, size - n), size - 1)
    first = _position(first_s)
    if last_s and _position(last_s) < first:
        return None  # syntactically invalid: ignore, per RFC 9110
    if first >= size:
        raise RangeNotSatisfiable(header)
    last = _position(last_s) if last_s else size - 1
    return ByteRange(first, min(last, size - 1))


def parse_content_range(header: str) -> ByteRange:
    """A chunk's ``Content-Range``; ValueError when malformed or backwards."""
    m = _CONTENT_RANGE.fullmatch(header)
    if m is None:
        raise ValueError(f"Content-Range {header!r} is not <first>-<last>")
    first, last = _position(m.group(1)), _position(m.group(2))
    if last >= _BEYOND:
        raise ValueError(f"Content-Range {header[:64]!r}... is beyond any blob size")
    if last < first:
        raise ValueError(f"Content-Range {header!r} ends before it starts")
    return ByteRange(first, last)


def upload_range(size: int) -> str:
    """The ``Range`` header of an upload holding ``size`` bytes (distribution: ``0-<size-1>``).

    distribution sends ``0-0`` for an empty upload too; clients read the
    end as "next offset = end + 1" only when something was written, so this
    follows distribution rather than inventing ``0--1``.
    """
    return f"0-{size - 1 if size > 0 else 0}"
