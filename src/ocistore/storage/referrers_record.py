"""What the referrers index has already looked at: one small file, ``_referrers/_record``.

Manifests with a ``subject`` pushed by another program on the same root (the Go
registry during a rolling switch) get a revision under ``_manifests/revisions``
but no referrers entry. To find them without reading every manifest on every
referrers request, the index records which revisions it has looked at::

    ocistore-referrers-record 1
    sha256 <count> <fingerprint> <pending>
    <hex>            one line per pending revision
    <hex>            then one line per seen revision, sorted

``count`` and ``fingerprint`` describe the listing of
``_manifests/revisions/sha256`` the record was made from. *Seen* revisions have
their subject (or the lack of one) recorded in the index: a revision is recorded
as seen only after its referrers entry is written. *Pending* revisions were
listed but their data could not be read (deleted and collected); they are looked
at again once their data is back.

A request lists ``_manifests/revisions/sha256`` once; when its fingerprint equals
the recorded one, only the pending revisions need a look. The fingerprint is
xxHash (XXH3, 128 bits) of the listing: it only detects change and never names
content. The file is plain text, written atomically, parsed strictly: a damaged
record reads as absent, which costs one more pass over the manifests and never
loses a referrer. Nothing is pickled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import xxhash

__all__ = [
    "HEADER",
    "Record",
    "fingerprint",
    "format_record",
    "parse_record",
]

HEADER: Final = b"ocistore-referrers-record 1\n"
_LINE: Final = 65  # 64 hex digits and a newline
_HEX: Final = b"0123456789abcdef"
_NUMBER: Final = rb"(0|[1-9][0-9]{0,17})"
_SUMMARY: Final = re.compile(rb"sha256 " + _NUMBER + rb" ([0-9a-f]{32}) " + _NUMBER + rb"\n")


@dataclass(frozen=True, slots=True)
class Record:
    """The listing last indexed (size, fingerprint), the revisions pending and those seen.

    ``seen`` is None when the record was parsed without it (the cheap check).
    """

    count: int
    fingerprint: str
    pending: frozenset[str]
    seen: frozenset[str] | None = None


def fingerprint(listing: Sequence[str]) -> str:
    """Change detector over a sorted listing (paths as the driver returns them)."""
    return xxhash.xxh3_128_hexdigest("\n".join(listing).encode())


def format_record(count: int, fp: str, pending: Iterable[str], seen: Iterable[str]) -> bytes:
    """The record; ``seen`` is written in the order given (the listing's, already sorted)."""
    waiting = sorted(pending)
    lines = "\n".join([*waiting, *seen])
    summary = f"sha256 {count} {fp} {len(waiting)}\n"
    return HEADER + (summary + lines + ("\n" if lines else "")).encode("ascii")


def parse_record(data: bytes, *, with_seen: bool = True) -> Record:
    """The record in ``data``; :class:`ValueError` naming what is wrong.

    Without ``with_seen`` only the summary and the pending lines are read (and
    checked): what a request needs when the listing has not changed.
    """
    if not data.startswith(HEADER):
        raise ValueError("no 'ocistore-referrers-record 1' header")
    summary = _SUMMARY.match(data, len(HEADER))
    if summary is None:
        raise ValueError("no 'sha256 <count> <fingerprint> <pending>' line")
    start = summary.end()
    end = start + _LINE * int(summary.group(3))
    if end > len(data):
        raise ValueError("fewer pending lines than announced")
    return Record(
        count=int(summary.group(1)),
        fingerprint=summary.group(2).decode("ascii"),
        pending=frozenset(_hex_lines(data[start:end])),
        seen=frozenset(_hex_lines(data[end:])) if with_seen else None,
    )


def _hex_lines(body: bytes) -> list[str]:
    """``body`` as lines of 64 lower-case hex digits each, or :class:`ValueError`.

    Checked with whole-buffer operations (a record holds one line per revision:
    a per-line regular expression cost more than the rest of a refresh).
    """
    lines, rest = divmod(len(body), _LINE)
    newlines = b"\n" * lines
    if rest or body[_LINE - 1 :: _LINE] != newlines or body.translate(None, _HEX) != newlines:
        raise ValueError("a line is not a lower-case sha256 hex")
    return body.decode("ascii").split("\n")[:lines]
