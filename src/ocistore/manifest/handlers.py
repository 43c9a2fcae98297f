"""Manifest media types and their handlers (distribution's ``RegisterManifestSchema``).

A handler turns a payload of its media type into a :class:`~ocistore.manifest.Manifest`
and, before that manifest is stored, checks that what it references exists. The
table is one per process, shared by the storage layer and the HTTP API; the four
built-in types (OCI manifest and index, Docker schema 2 manifest and manifest list)
are registered through :func:`register_manifest_type` when this module is imported,
exactly as a host registers its own types, usually at import time too.

Rules for a registered type:

- Its payloads must declare the type in their ``mediaType`` field: the store keeps
  only the bytes and reading a manifest back picks the handler from that field.
  Only the two OCI types may leave it out (they are recognised by their shape).
- ``from_document`` refuses bad input with :class:`~ocistore.errors.ManifestInvalid`
  naming the field (the helpers of :mod:`ocistore.manifest.document` do that); a
  ``ValueError``, ``TypeError`` or ``LookupError`` it lets escape is turned into
  ManifestInvalid naming the media type, so a client never gets a server error for
  its own bad payload.
- The returned manifest carries the registered ``media_type`` and the exact payload;
  its ``references()`` is what must exist before it is stored and what it keeps.
- ``schemaVersion`` is the type's own business (1 means Docker schema 1, refused,
  only for the built-in and unregistered types).
- Replacing a built-in type's handler (``replace=True``) also changes how payloads
  without ``mediaType`` are read, since those are sniffed as the OCI types.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Protocol

from ocistore.errors import ManifestInvalid
from ocistore.manifest import mediatypes
from ocistore.manifest.base import Manifest
from ocistore.manifest.index import ManifestList, OCIIndex
from ocistore.manifest.oci import OCIManifest
from ocistore.manifest.schema2 import Schema2Manifest
from ocistore.manifest.verify import ManifestExists, StatBlobs, VerifyContext

__all__ = [
    "HANDLERS",
    "ManifestHandler",
    "manifest_handler",
    "register_manifest_type",
    "table_version",
    "unregister_manifest_type",
    "verify_manifest",
]


class ManifestHandler(Protocol):
    """What :func:`register_manifest_type` takes: parse one media type, verify its references.

    A :class:`~ocistore.manifest.Manifest` subclass is one by itself (its
    classmethods); any object with these two methods will do.
    """

    def from_document(self, doc: dict[str, Any], payload: bytes) -> Manifest:
        """The manifest in ``payload`` (``doc`` is its decoded JSON object).

        Raise :class:`~ocistore.errors.ManifestInvalid` naming the field at fault.
        The result's ``media_type`` is the registered type, its ``payload`` is
        ``payload`` and its ``digest`` that payload's sha256.
        """
        ...

    def verify(self, manifest: Manifest, ctx: VerifyContext) -> None:
        """Raise :class:`~ocistore.errors.ManifestBlobUnknown` (listing what is missing)
        or :class:`~ocistore.errors.ManifestInvalid` unless ``manifest`` may be stored.
        """
        ...


#: Types recognised by their shape when a payload has no ``mediaType``.
SNIFFED_TYPES: Final = frozenset({mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX})

# RFC 6838 type/subtype names, lower-case (what mediatypes.normalize produces).
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")

_lock = threading.Lock()
_handlers: dict[str, ManifestHandler] = {}

#: The registered handlers by media type: a read-only, live view.
HANDLERS: Final[Mapping[str, ManifestHandler]] = MappingProxyType(_handlers)
_changes = 0


def register_manifest_type(
    media_type: str, handler: ManifestHandler, *, replace: bool = False
) -> ManifestHandler | None:
    """Make ``handler`` the handler of ``media_type``, process-wide; return the one replaced.

    ``media_type`` is a bare, lower-case ``type/subtype`` (no parameters). A second
    registration for one type raises ValueError naming the type and the handler
    already there, unless ``replace=True`` (which also registers a new type); then
    the previous handler is returned, so that it can be put back. Docker schema 1
    types are refused (schema 1 is refused on purpose). Raises TypeError if
    ``handler`` lacks ``from_document`` or ``verify``.
    """
    _check_media_type(media_type)
    for method in ("from_document", "verify"):
        if not callable(getattr(handler, method, None)):
            raise TypeError(
                f"manifest handler {handler!r} for {media_type!r} has no {method}() method"
            )
    with _lock:
        previous = _handlers.get(media_type)
        if previous is not None and not replace:
            raise ValueError(
                f"manifest media type {media_type!r} already has a handler ({previous!r}); "
                "pass replace=True to replace it"
            )
        _handlers[media_type] = handler
        _changed()
    return previous


def unregister_manifest_type(media_type: str) -> ManifestHandler:
    """Remove ``media_type``'s handler and return it; payloads of that type are then refused.

    Raises LookupError if the type has no handler.
    """
    with _lock:
        handler = _handlers.pop(media_type, None)
        _changed()
    if handler is None:
        raise LookupError(f"manifest media type {media_type!r} has no handler")
    return handler


def table_version() -> int:
    """A number that changes whenever a type is registered or removed (for memos)."""
    return _changes


def _changed() -> None:
    global _changes
    _changes += 1


def manifest_handler(media_type: str) -> ManifestHandler | None:
    """The handler registered for ``media_type`` (a Content-Type value is normalized first)."""
    return _handlers.get(mediatypes.normalize(media_type))


def verify_manifest(
    m: Manifest,
    *,
    stat_blobs: StatBlobs,
    manifest_exists: ManifestExists,
    urls_allow: Sequence[re.Pattern[str]] | None = None,
    urls_deny: Sequence[re.Pattern[str]] | None = None,
    validate_index_children: bool = True,
    index_platforms: Sequence[Mapping[str, str]] | None = None,
) -> None:
    """Raise if ``m`` references something the repository lacks or a URL it refuses.

    Calls the ``verify`` of the handler registered for ``m.media_type`` (see
    :mod:`ocistore.manifest.verify` for the built-in rules); ManifestInvalid if the
    type has no handler any more. ``stat_blobs`` receives every digest to look up
    in one call; ``manifest_exists`` tells whether a digest is a manifest of the
    repository; the other arguments are the registry's options.
    """
    handler = _handlers.get(m.media_type)
    if handler is None:
        raise ManifestInvalid(f"unsupported manifest media type {m.media_type!r}")
    handler.verify(
        m,
        VerifyContext(
            stat_blobs=stat_blobs,
            manifest_exists=manifest_exists,
            urls_allow=urls_allow,
            urls_deny=urls_deny,
            validate_index_children=validate_index_children,
            index_platforms=index_platforms,
        ),
    )


def _check_media_type(media_type: object) -> None:
    if not isinstance(media_type, str):
        raise TypeError(f"manifest media type must be a str, not {type(media_type).__name__}")
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise ValueError(
            f"manifest media type {media_type!r}: expected a lower-case type/subtype "
            "without parameters, e.g. 'application/vnd.example.manifest.v1+json'"
        )
    if media_type in mediatypes.SCHEMA1_TYPES:
        raise ValueError(
            f"manifest media type {media_type!r}: Docker schema 1 is refused on purpose"
        )


_BUILTIN: Final = (
    (mediatypes.OCI_MANIFEST, OCIManifest),
    (mediatypes.OCI_INDEX, OCIIndex),
    (mediatypes.DOCKER_MANIFEST, Schema2Manifest),
    (mediatypes.DOCKER_MANIFEST_LIST, ManifestList),
)
#: The built-in handlers (by identity): trusted to return what they were given.
BUILTIN_IDS: Final = frozenset(id(handler) for _, handler in _BUILTIN)

for _type, _handler in _BUILTIN:
    register_manifest_type(_type, _handler)
