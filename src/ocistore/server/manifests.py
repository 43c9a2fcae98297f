"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE by tag or digest.

Accept negotiation: a manifest is served in the media type it was pushed as
(nothing is converted). A client whose Accept lists manifest media types, none
of them this one's (and no wildcard), gets MANIFEST_UNKNOWN, as distribution
answers; a client that sends no Accept, or a wildcard, gets the manifest.

A GET or HEAD by a reference that is neither a valid tag nor a valid digest is
MANIFEST_UNKNOWN (404): nothing can be stored under it. A PUT names what it
creates, so there an invalid tag is TAG_INVALID and a malformed digest DIGEST_INVALID.

A GET or HEAD is the hottest request a registry serves, so its path is short:
the tag resolves through the stat cache (:meth:`TagStore.resolve
<ocistore.storage.tagstore.TagStore.resolve>`), the repository's link and the
blob's data are checked (``manifests.exists``, also from the stat cache),
and the answer comes from :data:`PAYLOADS`: the payload with its response
headers already encoded, kept by digest. In distribution's order, a manifest
the Accept header refuses is MANIFEST_UNKNOWN before If-None-Match is looked at,
and a 304 needs a manifest the repository has.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from threading import Lock
from typing import Final, NamedTuple

from ocistore.digest import Digest
from ocistore.errors import DigestError, ManifestTooLarge, ManifestUnknown, TagInvalid
from ocistore.manifest import HANDLERS, MAX_MANIFEST_SIZE, parse_manifest
from ocistore.manifest.handlers import table_version
from ocistore.reference import validate_tag
from ocistore.server.blobs import etag_matches
from ocistore.server.context import Ctx, lru_hit
from ocistore.server.errors import ApiError, digest_invalid
from ocistore.server.http import RawHeaders, Response

__all__ = [
    "PAYLOADS",
    "PayloadCache",
    "Served",
    "accepts",
    "delete_manifest",
    "get_manifest",
    "put_manifest",
    "split_reference",
]

_WILDCARDS: Final = frozenset({"*/*", "application/*"})


class Served(NamedTuple):
    """A manifest as served: media type, exact payload, and the response headers, encoded."""

    media_type: str
    payload: bytes
    headers: RawHeaders
    """Docker-Content-Digest, ETag, Content-Type, Content-Length (for GET and HEAD alike)."""

    @classmethod
    def make(cls, digest: str, media_type: str, payload: bytes) -> Served:
        d = digest.encode("ascii")
        headers = [
            (b"docker-content-digest", d),
            (b"etag", b'"' + d + b'"'),
            (b"content-type", media_type.encode("latin-1")),
            (b"content-length", b"%d" % len(payload)),
        ]
        return cls(media_type, payload, headers)


class PayloadCache:
    """Recently served manifests by digest (:class:`Served`), bounded in payload bytes.

    Why it is safe: a digest names its bytes forever, and every GET still asks
    the repository whether it links the manifest and whether the blob's data
    is there (``manifests.exists``: the stat cache, which inotify empties when
    the data goes) before a cached payload is served, so a deleted or foreign
    manifest never leaks. Why: parsing a manifest again on every pull, and
    encoding its headers, cost more than the rest of the request.
    """

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Served] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()

    def get(self, digest: str) -> Served | None:
        return lru_hit(self._entries, digest)

    def put(self, digest: str, media_type: str, payload: bytes) -> Served:
        """Remember (if small enough) and return what serving ``payload`` sends."""
        served = Served.make(digest, media_type, payload)
        if len(payload) > self.max_bytes // 4:
            return served
        with self._lock:
            known = self._entries.get(digest)
            if known is not None:
                return known
            self._entries[digest] = served
            self._bytes += len(payload)
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= len(old.payload)
        return served


PAYLOADS: Final = PayloadCache()


def split_reference(reference: str) -> tuple[str | None, Digest | None]:
    """``(tag, None)`` or ``(None, digest)``; a reference with ':' must be a digest."""
    if ":" in reference:
        return None, Digest.parse(reference)
    return validate_tag(reference), None


_ACCEPT_CACHED_MAX: Final = 1024
"""Longest Accept header whose answer is memoized (real clients send a few hundred bytes):
the memo then holds at most 1024 x 1 KiB, whatever clients send."""


def accepts(accept_header: str | None, media_type: str) -> bool:
    """Whether a client sending ``Accept: accept_header`` can take ``media_type``.

    Memoized for headers of ordinary length: a client sends the same Accept
    header with every request, and splitting it again each time was a
    noticeable part of a GET manifest.
    """
    if accept_header is not None and len(accept_header) > _ACCEPT_CACHED_MAX:
        return _accepts(accept_header, media_type)
    return _accepts_cached(accept_header, media_type, table_version())


def _accepts(accept_header: str | None, media_type: str, _version: int = 0) -> bool:
    # _version: the handler table's, so that a memoized answer ends with a registration.
    if not accept_header:
        return True
    offered = set()
    for part in accept_header.split(","):
        mt = part.split(";", 1)[0].strip().lower()
        if mt:
            offered.add(mt)
    if not offered or offered & _WILDCARDS or media_type in offered:
        return True
    # Accept headers naming no registered manifest type at all (e.g. only
    # application/json) come from generic HTTP tools: serve what there is.
    return offered.isdisjoint(HANDLERS)


_accepts_cached: Final = functools.lru_cache(maxsize=1024)(_accepts)


async def get_manifest(ctx: Ctx) -> Response:
    reference = ctx.route.reference
    repo = ctx.repo
    try:
        dgst = Digest.parse(reference) if ":" in reference else repo.tags.resolve(reference)
    except (DigestError, TagInvalid):
        # Neither a tag nor a digest names no manifest: 404, as the spec's conformance
        # asks (400 TAG_INVALID is for a PUT, where the reference would be created).
        raise ApiError(
            "MANIFEST_UNKNOWN",
            {"name": repo.name, "reference": reference},
            message="manifest unknown: the reference is neither a valid tag nor a valid digest",
        ) from None
    served = PAYLOADS.get(dgst)
    if served is None:
        m = repo.manifests.get(dgst)  # linked here, data there (ManifestUnknown if not)
        served = PAYLOADS.put(dgst, m.media_type, m.payload)
    elif not repo.manifests.exists(dgst):  # asked even on a payload cache hit
        raise ManifestUnknown(repo.name, dgst)
    req = ctx.req
    accept = req.header("accept")
    if accept and not accepts(accept, served.media_type):
        raise ApiError(
            "MANIFEST_UNKNOWN",
            {"mediaType": served.media_type, "accept": accept},
            message=f"manifest is {served.media_type}, which the Accept header does not allow",
        )
    if_none_match = req.header("if-none-match")
    if if_none_match and etag_matches(if_none_match, dgst):
        return Response(304, raw_headers=[*served.headers[:2], (b"content-length", b"0")])
    return Response(200, raw_headers=served.headers, body=served.payload)


async def put_manifest(ctx: Ctx) -> Response:
    try:
        tag, ref_digest = split_reference(ctx.route.reference)
    except DigestError as exc:
        raise digest_invalid(exc) from None
    repo = ctx.repo
    try:
        declared = ctx.req.content_length
    except ValueError as exc:
        raise ApiError("SIZE_INVALID", str(exc)) from None
    if declared is not None and declared > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(declared, MAX_MANIFEST_SIZE)
    payload = await ctx.req.read_body(MAX_MANIFEST_SIZE, ctx.svc.idle_timeout)
    if payload is None:
        raise ManifestTooLarge(MAX_MANIFEST_SIZE + 1, MAX_MANIFEST_SIZE)
    content_type = (ctx.req.header("content-type") or "").split(";", 1)[0].strip() or None
    m = parse_manifest(payload, content_type)
    if ref_digest is not None:
        computed = (
            m.digest
            if ref_digest.algorithm == m.digest.algorithm
            else Digest.from_bytes(payload, ref_digest.algorithm)
        )
        if computed != ref_digest:
            raise ApiError(
                "DIGEST_INVALID",
                {"digest": str(ref_digest), "computed": str(computed)},
                message="manifest digest does not match the reference",
            )
    dgst = await ctx.run(repo.manifests.put, payload, media_type=content_type, tag=tag)
    named = ref_digest or dgst
    headers = [
        ("Location", ctx.url(f"/v2/{repo.name}/manifests/{named}")),
        ("Docker-Content-Digest", str(named)),
        ("Content-Length", "0"),
    ]
    if m.subject is not None:
        headers.append(("OCI-Subject", str(m.subject.digest)))
    return Response(201, headers)


async def delete_manifest(ctx: Ctx) -> Response:
    tag, dgst = split_reference(ctx.route.reference)
    repo = ctx.repo
    untagged: tuple[str, ...] = ()
    if tag is not None:
        await ctx.run(repo.tags.untag, tag)
    else:
        if ctx.svc.events:  # the tags go with the manifest: each is an event of its own
            with contextlib.suppress(Exception):  # the delete below reports what is wrong
                untagged = tuple(await ctx.run(repo.tags.lookup, dgst))
        await ctx.run(repo.manifests.delete, dgst)
    return Response(202, [("Content-Length", "0")], untagged=untagged)
