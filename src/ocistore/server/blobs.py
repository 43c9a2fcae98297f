"""``/v2/<name>/blobs/<digest>``: HEAD, GET (with Range and If-None-Match) and DELETE."""

from __future__ import annotations

import os
from typing import BinaryIO

from ocistore.digest import Digest
from ocistore.server.context import Ctx
from ocistore.server.http import BlobBody, Response
from ocistore.server.ranges import RangeNotSatisfiable, parse_range

__all__ = ["delete_blob", "etag_matches", "get_blob", "read_at"]


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
    head = ctx.req.method == "HEAD"
    dgst = Digest.parse(ctx.route.digest)
    blobs = ctx.repo.blobs
    desc = blobs.stat(dgst)
    headers = [
        ("Docker-Content-Digest", str(dgst)),
        ("ETag", f'"{dgst}"'),
        ("Cache-Control", "max-age=31536000"),
        ("Accept-Ranges", "bytes"),
    ]
    if etag_matches(ctx.req.header("if-none-match"), str(dgst)):
        return Response(304, headers)
    if ctx.svc.registry.redirect:
        url = blobs.redirect_url(dgst, ctx.req.method)
        if url:
            return Response(307, [*headers, ("Location", url)])
    size = desc.size
    try:
        rng = parse_range(ctx.req.header("range"), size)
    except RangeNotSatisfiable:
        return Response(416, [*headers, ("Content-Range", f"bytes */{size}")])
    headers.append(("Content-Type", "application/octet-stream"))
    status, first, length = 200, 0, size
    if rng is not None:
        status, first, length = 206, rng.first, rng.length
        headers.append(("Content-Range", rng.content_range(size)))
    if head or length == 0:
        return Response(status, [*headers, ("Content-Length", str(length))])
    reader = blobs.open(dgst)
    return Response(status, headers, blob=BlobBody(reader, first, length))


async def delete_blob(ctx: Ctx) -> Response:
    dgst = Digest.parse(ctx.route.digest)
    await ctx.run(ctx.repo.blobs.delete, dgst)
    return Response(202, [("Docker-Content-Digest", str(dgst)), ("Content-Length", "0")])
