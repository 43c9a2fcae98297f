"""Strict reading of a manifest's JSON: every field checked, every error naming the field.

Go's ``encoding/json`` refuses a value of the wrong type for a typed field and reads a
missing or ``null`` field as the zero value; these helpers do the same, so a payload
distribution accepts is accepted here and one it refuses raises
:class:`~ocistore.errors.ManifestInvalid` with the field's path in the reason (for
example ``layers[2].digest``). Nothing here raises anything else, whatever the input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import DigestError, ManifestInvalid

#: Largest value Go's int64 ``size`` field can hold.
INT64_MAX: Final = (1 << 63) - 1

EMPTY_ANNOTATIONS: Final[Mapping[str, str]] = MappingProxyType({})

_PLATFORM_STRINGS: Final = ("architecture", "os", "os.version", "variant")
_PLATFORM_LISTS: Final = ("os.features", "features")
_PLAIN_KEYS: Final = frozenset(("mediaType", "digest", "size"))


def invalid(reason: str) -> NoReturn:
    raise ManifestInvalid(reason)


def _reject_constant(name: str) -> NoReturn:
    invalid(f"invalid JSON: {name} is not a JSON number")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                invalid(f"invalid JSON: duplicate key {key!r} in an object")
            seen.add(key)
    return obj


def load_object(payload: bytes, *, unique_keys: bool = True) -> dict[str, Any]:
    """Decode ``payload`` as one UTF-8 JSON object (what every manifest is).

    ``unique_keys``: an object naming a key twice, at any depth, is refused.
    Decoders disagree on which value wins (Python's and Go's the last, others
    the first), so a registry that picked one would verify a different
    manifest than some client pulls. Stored payloads (written by another
    registry) are read with ``unique_keys=False``, as they always were.
    """
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        invalid(f"payload is not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        doc = json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_pairs if unique_keys else None,
        )
    except ManifestInvalid:
        raise
    except RecursionError:
        invalid("invalid JSON: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and ints beyond the digit limit
        invalid(f"invalid JSON: {exc}")
    if not isinstance(doc, dict):
        invalid(f"manifest must be a JSON object, not {_json_type(doc)}")
    return doc


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def get_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    """A string field; missing or null reads as ``""``."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        invalid(f"{where}{key}: expected a string, got {_json_type(value)}")
    return value


def get_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    """A non-negative int64 field; missing or null reads as 0 (Go's zero value)."""
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        invalid(f"{where}{key}: expected an integer, got {_json_type(value)}")
    if value < 0:
        invalid(f"{where}{key}: must be >= 0, got {value}")
    if value > INT64_MAX:
        invalid(f"{where}{key}: {value} does not fit in 64 bits")
    return value


def get_schema_version(obj: Mapping[str, Any]) -> int:
    """``schemaVersion`` as Go's int would read it (negative values allowed, refused later)."""
    value = obj.get("schemaVersion")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        invalid(f"schemaVersion: expected an integer, got {_json_type(value)}")
    if not -(1 << 63) <= value <= INT64_MAX:
        invalid(f"schemaVersion: {value} does not fit in 64 bits")
    return value


def get_str_list(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        invalid(f"{where}{key}: expected an array of strings, got {_json_type(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            invalid(f"{where}{key}[{i}]: expected a string, got {_json_type(item)}")
    return tuple(value)


def get_annotations(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    """A string-to-string map, returned read-only (empty when missing)."""
    value = obj.get(key)
    if value is None:
        return EMPTY_ANNOTATIONS
    if not isinstance(value, dict):
        invalid(f"{where}{key}: expected an object, got {_json_type(value)}")
    for name, item in value.items():
        if not isinstance(item, str):
            invalid(f"{where}{key}[{name!r}]: expected a string, got {_json_type(item)}")
    return MappingProxyType(dict(value))


def get_platform(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        invalid(f"{where}{key}: expected an object, got {_json_type(value)}")
    inner = f"{where}{key}."
    for name in _PLATFORM_STRINGS:
        get_str(value, name, inner)
    for name in _PLATFORM_LISTS:
        get_str_list(value, name, inner)
    return MappingProxyType(dict(value))


def get_object(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        invalid(f"{where}{key}: expected an object, got {_json_type(value)}")
    return value


def _plain(obj: object) -> tuple[str, int, str] | None:
    """``(digest, size, mediaType)`` of a descriptor holding just those, each of the right
    type and the size in range (the digest unchecked); None for any other object."""
    if type(obj) is dict and obj.keys() == _PLAIN_KEYS:
        raw, size, media_type = obj["digest"], obj["size"], obj["mediaType"]
        typed = type(raw) is str and type(media_type) is str
        if typed and type(size) is int and 0 <= size <= INT64_MAX:
            return raw, size, media_type
    return None


def plain_digest(obj: object) -> Digest | None:
    """The digest of a descriptor :func:`parse_descriptor` would short-cut and accept (the
    plain shape, a valid digest), else None: the caller takes the long way."""
    plain = _plain(obj)
    if plain is None:
        return None
    try:
        return Digest(plain[0])
    except DigestError:
        return None


def parse_descriptor(obj: object, where: str) -> Descriptor:
    """A descriptor object; ``where`` is its path, e.g. ``"layers[0]"``.

    The digest must parse (:mod:`ocistore.digest`: format and algorithm), the size must
    be a non-negative integer; ``urls``, ``annotations``, ``platform`` and
    ``artifactType`` are type-checked. A digest error becomes ManifestInvalid with the
    digest error's reason.
    """
    plain = _plain(obj)
    if plain is not None:  # the common shape (every layer of every image), short-cut
        raw, size, media_type = plain
        try:
            digest = Digest(raw)
        except DigestError as exc:
            invalid(f"{where}.digest: {exc}")
        return Descriptor(digest=digest, size=size, media_type=media_type)
    if not isinstance(obj, dict):
        invalid(f"{where}: expected a descriptor object, got {_json_type(obj)}")
    prefix = f"{where}."
    raw_digest = obj.get("digest")
    if raw_digest is None:
        invalid(f"{prefix}digest: missing")
    if not isinstance(raw_digest, str):
        invalid(f"{prefix}digest: expected a string, got {_json_type(raw_digest)}")
    try:
        digest = Digest(raw_digest)
    except DigestError as exc:
        invalid(f"{prefix}digest: {exc}")
    annotations = get_annotations(obj, "annotations", prefix)
    return Descriptor(
        digest=digest,
        size=get_int(obj, "size", prefix),
        media_type=get_str(obj, "mediaType", prefix),
        urls=get_str_list(obj, "urls", prefix),
        annotations=annotations or None,
        platform=get_platform(obj, "platform", prefix),
        artifact_type=get_str(obj, "artifactType", prefix),
    )


def get_descriptor(obj: Mapping[str, Any], key: str) -> Descriptor | None:
    """An optional descriptor field (``config``, ``subject``)."""
    value = obj.get(key)
    if value is None:
        return None
    return parse_descriptor(value, key)


def get_descriptors(obj: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        invalid(f"{key}: expected an array of descriptors, got {_json_type(value)}")
    return tuple(parse_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value))
