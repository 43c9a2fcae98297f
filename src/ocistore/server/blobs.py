"""``/v2/<name>/blobs/<digest>``: HEAD, GET (with Range and If-None-Match) and DELETE.

HEAD and GET are as hot as a GET manifest, so their headers are built encoded
(``Response.raw_headers``) and the data is opened with the descriptor the one
stat returned (``open_data``), not through a second stat. When the storage
layer redirects (a driver with ``url_for``, redirects not disabled), a GET is
answered ``307`` to the driver's URL after that stat; HEAD is answered here.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Final

from ocistore.digest import Digest
from ocistore.server.context import Ctx
from ocistore.server.http import BlobBody, RawHeaders, Response
from ocistore.server.ranges import RangeNotSatisfiable, parse_range

__all__ = ["delete_blob", "etag_matches", "get_blob", "read_at"]

_IMMUTABLE: Final = [(b"cache-control", b"max-age=31536000"), (b"accept-ranges", b"bytes")]
_OCTETS: Final = (b"content-type", b"application/octet-stream")
_EMPTY: Final = (b"content-length", b"0")


def etag_matches(if_none_match: str | None, digest: str) -> bool:
    """If-None-Match names this digest (quoted or not, or ``*``), as distribution's etagMatch."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip().removeprefix("W/")
        if tag in ("*", digest, f'"{digest}"'):
            return True
    return False


def read_at(reader: BinaryIO, pos: int, n: int) -> bytes:
    """``n`` bytes at ``pos``: ``pread`` when the reader is a real file, else seek and read."""
    try:
        fd = reader.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0:
        return os.pread(fd, n, pos)
    reader.seek(pos)
    return reader.read(n)


async def get_blob(ctx: Ctx) -> Response:
    req = ctx.req
    dgst = Digest.parse(ctx.route.digest)
    blobs = ctx.repo.blobs
    desc = blobs.stat(dgst)
    d = dgst.encode("ascii")
    headers: RawHeaders = [(b"docker-content-digest", d), (b"etag", b'"' + d + b'"'), *_IMMUTABLE]
    if_none_match = req.header("if-none-match")
    if if_none_match and etag_matches(if_none_match, dgst):
        return Response(304, raw_headers=[*headers, _EMPTY])
    if req.method == "GET" and blobs.blobstore.redirects:
        # Range included: the client re-sends it to the URL. HEAD stays here.
        url = blobs.blobstore.redirect_url(desc.digest)
        if url:
            return Response(307, [("Location", url)], raw_headers=[*headers, _EMPTY])
    size = desc.size
    range_header = req.header("range")
    rng = None
    if range_header:
        try:
            rng = parse_range(range_header, size)
        except RangeNotSatisfiable:
            return Response(
                416, [("Content-Range", f"bytes */{size}")], raw_headers=[*headers, _EMPTY]
            )
    headers.append(_OCTETS)
    status, first, length = 200, 0, size
    if rng is not None:
        status, first, length = 206, rng.first, rng.length
        headers.append((b"content-range", rng.content_range(size).encode("ascii")))
    headers.append((b"content-length", b"%d" % length))
    if req.method == "HEAD" or length == 0:
        return Response(status, raw_headers=headers)
    reader = blobs.blobstore.open_data(desc.digest)  # the stat above checked the link
    return Response(status, raw_headers=headers, blob=BlobBody(reader, first, length))


async def delete_blob(ctx: Ctx) -> Response:
    dgst = Digest.parse(ctx.route.digest)
    await ctx.run(ctx.repo.blobs.delete, dgst)
    return Response(202, [("Docker-Content-Digest", str(dgst)), ("Content-Length", "0")])
