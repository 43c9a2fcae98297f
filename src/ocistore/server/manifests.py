"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE by tag or digest.

Accept negotiation: a manifest is served in the media type it was pushed as
(nothing is converted). A client whose Accept lists manifest media types, none
of them this one's (and no wildcard), gets MANIFEST_UNKNOWN, as distribution
answers; a client that sends no Accept, or a wildcard, gets the manifest.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Final

from ocistore.digest import Digest
from ocistore.errors import DigestError, ManifestTooLarge
from ocistore.manifest import MAX_MANIFEST_SIZE, mediatypes, parse_manifest
from ocistore.reference import validate_tag
from ocistore.server.blobs import etag_matches
from ocistore.server.context import Ctx
from ocistore.server.errors import ApiError
from ocistore.server.http import Response

__all__ = ["accepts", "delete_manifest", "get_manifest", "put_manifest", "split_reference"]

_WILDCARDS: Final = frozenset({"*/*", "application/*"})


class PayloadCache:
    """Recently served manifests by digest: (media type, exact payload), bounded in bytes.

    Why it is safe: a digest names its bytes forever, and every GET still asks
    the repository whether it links the manifest (``manifests.stat``) before a
    cached payload is served, so a deleted or foreign manifest never leaks.
    Why: parsing a manifest again on every pull costs more than the rest of the request.
    """

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()

    def get(self, digest: str) -> tuple[str, bytes] | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
            return entry

    def put(self, digest: str, media_type: str, payload: bytes) -> None:
        if len(payload) > self.max_bytes // 4:
            return
        with self._lock:
            if digest in self._entries:
                return
            self._entries[digest] = (media_type, payload)
            self._bytes += len(payload)
            while self._bytes > self.max_bytes:
                _, (_, old) = self._entries.popitem(last=False)
                self._bytes -= len(old)


PAYLOADS: Final = PayloadCache()


def split_reference(reference: str) -> tuple[str | None, Digest | None]:
    """``(tag, None)`` or ``(None, digest)``; a reference with ':' must be a digest."""
    if ":" in reference:
        return None, Digest.parse(reference)
    return validate_tag(reference), None


def accepts(accept_header: str | None, media_type: str) -> bool:
    """Whether a client sending ``Accept: accept_header`` can take ``media_type``."""
    if not accept_header:
        return True
    offered = set()
    for part in accept_header.split(","):
        mt = part.split(";", 1)[0].strip().lower()
        if mt:
            offered.add(mt)
    if not offered or offered & _WILDCARDS or media_type in offered:
        return True
    # Accept headers naming no manifest type at all (e.g. only application/json)
    # come from generic HTTP tools: serve what there is.
    return not (offered & mediatypes.MANIFEST_TYPES)


async def get_manifest(ctx: Ctx) -> Response:
    head = ctx.req.method == "HEAD"
    tag, dgst = split_reference(ctx.route.reference)
    repo = ctx.repo
    if tag is not None:
        dgst = repo.tags.get(tag).digest
    assert dgst is not None
    headers = [("Docker-Content-Digest", str(dgst)), ("ETag", f'"{dgst}"')]
    if etag_matches(ctx.req.header("if-none-match"), str(dgst)):
        return Response(304, headers)
    repo.manifests.stat(dgst)  # linked here (ManifestUnknown otherwise), even on a cache hit
    cached = PAYLOADS.get(dgst)
    if cached is None:
        m = repo.manifests.get(dgst)
        cached = (m.media_type, m.payload)
        PAYLOADS.put(dgst, m.media_type, m.payload)
    media_type, payload = cached
    if not accepts(ctx.req.header("accept"), media_type):
        raise ApiError(
            "MANIFEST_UNKNOWN",
            {"mediaType": media_type, "accept": ctx.req.header("accept")},
            message=f"manifest is {media_type}, which the Accept header does not allow",
        )
    headers.append(("Content-Type", media_type))
    if head:
        return Response(200, [*headers, ("Content-Length", str(len(payload)))])
    return Response(200, headers, body=payload)


async def put_manifest(ctx: Ctx) -> Response:
    try:
        tag, ref_digest = split_reference(ctx.route.reference)
    except DigestError as exc:
        raise ApiError("DIGEST_INVALID", str(exc)) from None
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
    if tag is not None:
        await ctx.run(repo.tags.untag, tag)
    else:
        await ctx.run(repo.manifests.delete, dgst)
    return Response(202, [("Content-Length", "0")])
