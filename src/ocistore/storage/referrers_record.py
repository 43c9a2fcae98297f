"""What the referrers index has already looked at: two small files under ``_referrers/_seen``.

Manifests with a ``subject`` pushed by another program on the same root (the Go
registry during a rolling switch) get a revision under ``_manifests/revisions``
but no referrers entry. To find them without reading every manifest on every
referrers request, the index remembers which revisions it has looked at:

``_seen/revisions``
    ``ocistore-referrers-seen 1`` then one sha256 hex per line, sorted: the
    revisions whose subject (or lack of one) is recorded. A revision is added
    only after its referrers entry is written.
``_seen/listing``
    ``ocistore-referrers-listing 1``, then ``sha256 <count> <fingerprint>`` of
    the listing of ``_manifests/revisions/sha256`` those revisions came from,
    then one line per *pending* revision: one listed whose data could not be
    read (deleted and collected) and that must be looked at again once its data
    is back.

A request lists ``_manifests/revisions/sha256`` once; when its fingerprint
equals the recorded one, nothing is new. The fingerprint is xxHash (XXH3, 128
bits) of the listing: it only detects change and never names content. Both files
are plain text, parsed strictly: a damaged file reads as absent, which costs one
more pass over the manifests and never loses a referrer. Nothing is pickled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import xxhash

__all__ = [
    "LISTING_HEADER",
    "SEEN_HEADER",
    "ListingRecord",
    "fingerprint",
    "format_listing",
    "format_seen",
    "parse_listing",
    "parse_seen",
]

SEEN_HEADER: Final = b"ocistore-referrers-seen 1\n"
LISTING_HEADER: Final = b"ocistore-referrers-listing 1\n"
_HEX: Final = b"0123456789abcdef"
_SUMMARY: Final = re.compile(rb"sha256 (0|[1-9][0-9]{0,17}) ([0-9a-f]{32})\n")


@dataclass(frozen=True, slots=True)
class ListingRecord:
    """The listing last indexed: its size, fingerprint and the revisions still unread."""

    count: int
    fingerprint: str
    pending: frozenset[str]


def fingerprint(listing: Sequence[str]) -> str:
    """Change detector over a sorted listing (paths as the driver returns them)."""
    return xxhash.xxh3_128_hexdigest("\n".join(listing).encode())


def format_seen(hexes: Iterable[str]) -> bytes:
    """The record of ``hexes`` (written in the order given: the listing's, already sorted)."""
    body = "\n".join(hexes)
    return SEEN_HEADER + (body + "\n" if body else "").encode("ascii")


def parse_seen(data: bytes) -> set[str]:
    """The recorded revisions; :class:`ValueError` naming what is wrong."""
    if not data.startswith(SEEN_HEADER):
        raise ValueError("no 'ocistore-referrers-seen 1' header")
    return set(_hex_lines(data[len(SEEN_HEADER) :]))


def format_listing(record: ListingRecord) -> bytes:
    lines = [f"sha256 {record.count} {record.fingerprint}\n"]
    lines.extend(f"{h}\n" for h in sorted(record.pending))
    return LISTING_HEADER + "".join(lines).encode("ascii")


def parse_listing(data: bytes) -> ListingRecord:
    """The recorded listing; :class:`ValueError` naming what is wrong."""
    if not data.startswith(LISTING_HEADER):
        raise ValueError("no 'ocistore-referrers-listing 1' header")
    summary = _SUMMARY.match(data, len(LISTING_HEADER))
    if summary is None:
        raise ValueError("no 'sha256 <count> <fingerprint>' line")
    return ListingRecord(
        count=int(summary.group(1)),
        fingerprint=summary.group(2).decode("ascii"),
        pending=frozenset(_hex_lines(data[summary.end() :])),
    )


def _hex_lines(body: bytes) -> list[str]:
    """``body`` as lines of 64 lower-case hex digits each, or :class:`ValueError`.

    Checked with whole-buffer operations (records hold one line per revision:
    a per-line regular expression cost more than the rest of a refresh).
    """
    lines, rest = divmod(len(body), 65)
    newlines = b"\n" * lines
    if rest or body[64::65] != newlines or body.translate(None, _HEX) != newlines:
        raise ValueError("a line is not a lower-case sha256 hex")
    return body.decode("ascii").split("\n")[:lines]
