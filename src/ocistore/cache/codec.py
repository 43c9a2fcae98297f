"""Binary keys and values of the LMDB descriptor cache (no JSON, no pickle).

Keys sort by scope, so one repository's entries are contiguous::

    global key      alg(1) raw-digest(32|64)
    repository key  repo-id(4, big-endian) alg(1) raw-digest(32|64)

``alg`` is 1 for sha256, 2 for sha512, 3 for blake3; the raw digest is the
encoded hex decoded to bytes (32 bytes for sha256 and blake3, 64 for sha512).
Repository ids come from a name table (never a hash of the name: a hash can be
made to collide, and the scope decides what a repository may see).

Values start with a flags byte: the high nibble is the format version (1), bit 0
says an alias digest follows, bit 1 says the media type is inline::

    entry       flags(1) size(8, little-endian u64) media [alias]
    membership  flags(1) media
    media       id(4, LE u32, from the media-type table)  |  len(2, LE u16) utf-8
    alias       alg(1) raw-digest             the descriptor's own (canonical) digest

Decoding is strict: a value of the wrong length, version or flags raises
:class:`CorruptEntry`, which the cache treats as a miss. Values are bytes from
a file any local process can write; they are parsed, never evaluated.
"""

from __future__ import annotations

import struct
from typing import Final

from ocistore.digest import Digest

VERSION: Final = 1
_VERSION_BITS: Final = VERSION << 4
FLAG_ALIAS: Final = 0x01
FLAG_INLINE_MEDIA: Final = 0x02
_KNOWN_FLAGS: Final = FLAG_ALIAS | FLAG_INLINE_MEDIA

ALGORITHM_IDS: Final[dict[str, int]] = {"sha256": 1, "sha512": 2, "blake3": 3}
ALGORITHMS: Final[dict[int, tuple[str, int]]] = {
    1: ("sha256", 32),
    2: ("sha512", 64),
    3: ("blake3", 32),
}
_ALG_PREFIX: Final[dict[str, bytes]] = {a: bytes((i,)) for a, i in ALGORITHM_IDS.items()}

SIZE_MAX: Final = (1 << 63) - 1
REPO_ID_MAX: Final = (1 << 32) - 1

_HEADER = struct.Struct("<BQ")
_PLAIN = struct.Struct("<BQI")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_REPO = struct.Struct(">I")

MediaRef = int | str
"""A media type as stored: an id from the media-type table, or the text inline."""


class CorruptEntry(ValueError):
    """A stored key or value does not follow this format."""


def digest_key(dgst: Digest) -> bytes:
    """The global key of a validated digest."""
    alg, _, encoded = dgst.partition(":")
    return _ALG_PREFIX[alg] + bytes.fromhex(encoded)


def repository_key(repo_id: int, dgst: Digest) -> bytes:
    """The repository-scoped key: the repository id, then the global key."""
    return _REPO.pack(repo_id) + digest_key(dgst)


def repository_prefix(repo_id: int) -> bytes:
    return _REPO.pack(repo_id)


def pack_repo_id(repo_id: int) -> bytes:
    if not 0 < repo_id <= REPO_ID_MAX:
        raise ValueError(f"repository id {repo_id} out of range")
    return _REPO.pack(repo_id)


def unpack_repo_id(value: bytes) -> int:
    if len(value) != _REPO.size:
        raise CorruptEntry(f"repository id of {len(value)} bytes")
    (repo_id,) = _REPO.unpack(value)
    if repo_id == 0:
        raise CorruptEntry("repository id 0")
    return int(repo_id)


def key_digest(key: bytes) -> Digest:
    """The digest a global key (or the tail of a repository key) names."""
    if not key:
        raise CorruptEntry("empty key")
    alg = ALGORITHMS.get(key[0])
    if alg is None:
        raise CorruptEntry(f"unknown algorithm id {key[0]}")
    name, length = alg
    if len(key) != 1 + length:
        raise CorruptEntry(f"{name} key of {len(key) - 1} digest bytes, expected {length}")
    return _digest(name, key[1:])


def _digest(algorithm: str, raw: bytes) -> Digest:
    # Built from raw bytes of the right length: valid by construction, no re-parse.
    return str.__new__(Digest, f"{algorithm}:{raw.hex()}")


def _pack_media(media: MediaRef) -> tuple[int, bytes]:
    if isinstance(media, int):
        if not 0 < media <= REPO_ID_MAX:
            raise ValueError(f"media type id {media} out of range")
        return 0, _U32.pack(media)
    data = media.encode("utf-8")
    if not data or len(data) > 0xFFFF:
        raise ValueError(f"inline media type of {len(data)} bytes")
    return FLAG_INLINE_MEDIA, _U16.pack(len(data)) + data


def _unpack_media(value: bytes, offset: int, inline: bool) -> tuple[MediaRef, int]:
    if not inline:
        end = offset + _U32.size
        if len(value) < end:
            raise CorruptEntry("truncated media type id")
        (media_id,) = _U32.unpack_from(value, offset)
        if media_id == 0:
            raise CorruptEntry("media type id 0")
        return int(media_id), end
    if len(value) < offset + _U16.size:
        raise CorruptEntry("truncated media type length")
    (length,) = _U16.unpack_from(value, offset)
    start = offset + _U16.size
    end = start + length
    if length == 0 or len(value) < end:
        raise CorruptEntry("truncated or empty inline media type")
    try:
        return value[start:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise CorruptEntry("inline media type is not UTF-8") from None


def _check_flags(flags: int, allowed: int) -> None:
    if flags >> 4 != VERSION:
        raise CorruptEntry(f"format version {flags >> 4}, expected {VERSION}")
    if flags & 0x0F & ~allowed:
        raise CorruptEntry(f"unknown flags {flags:#04x}")


def pack_entry(size: int, media: MediaRef, alias: Digest | None = None) -> bytes:
    """A global entry: ``alias`` is the descriptor's digest when the key is another one."""
    if not 0 <= size <= SIZE_MAX:
        raise ValueError(f"size {size} out of range")
    flag, media_bytes = _pack_media(media)
    if alias is None:
        return _HEADER.pack(_VERSION_BITS | flag, size) + media_bytes
    return _HEADER.pack(_VERSION_BITS | flag | FLAG_ALIAS, size) + media_bytes + digest_key(alias)


def unpack_entry(value: bytes) -> tuple[int, MediaRef, Digest | None]:
    """``(size, media, alias)`` of a global entry; raises :class:`CorruptEntry`."""
    if len(value) == _PLAIN.size and value[0] == _VERSION_BITS:
        # The common entry: no alias, media type from the table.
        _, size, media_id = _PLAIN.unpack(value)
        if media_id and size <= SIZE_MAX:
            return size, media_id, None
    if len(value) < _HEADER.size:
        raise CorruptEntry(f"entry of {len(value)} bytes")
    flags, size = _HEADER.unpack_from(value)
    _check_flags(flags, _KNOWN_FLAGS)
    if size > SIZE_MAX:
        raise CorruptEntry(f"size {size} out of range")
    media, end = _unpack_media(value, _HEADER.size, bool(flags & FLAG_INLINE_MEDIA))
    alias = None
    if flags & FLAG_ALIAS:
        alias = key_digest(value[end:])
    elif end != len(value):
        raise CorruptEntry(f"{len(value) - end} trailing bytes")
    return int(size), media, alias


def pack_membership(media: MediaRef) -> bytes:
    """A repository entry: membership plus the repository-local media type."""
    flag, media_bytes = _pack_media(media)
    return bytes((_VERSION_BITS | flag,)) + media_bytes


def unpack_membership(value: bytes) -> MediaRef:
    if not value:
        raise CorruptEntry("empty membership value")
    flags = value[0]
    _check_flags(flags, FLAG_INLINE_MEDIA)
    media, end = _unpack_media(value, 1, bool(flags & FLAG_INLINE_MEDIA))
    if end != len(value):
        raise CorruptEntry(f"{len(value) - end} trailing bytes")
    return media


def pack_u32(n: int) -> bytes:
    return _U32.pack(n)


def unpack_u32(value: bytes) -> int:
    if len(value) != _U32.size:
        raise CorruptEntry(f"u32 of {len(value)} bytes")
    return int(_U32.unpack(value)[0])


_U64 = struct.Struct("<Q")


def pack_u64(n: int) -> bytes:
    return _U64.pack(n)


def unpack_u64(value: bytes) -> int:
    if len(value) != _U64.size:
        raise CorruptEntry(f"u64 of {len(value)} bytes")
    return int(_U64.unpack(value)[0])
