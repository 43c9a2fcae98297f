"""``/v2/<name>/tags/list`` and ``/v2/_catalog``, paginated with ``n``/``last`` and ``Link``.

A Link (``<path?n=N&last=L>; rel="next"``) is sent only when more entries
follow, so a client stops at the last page without an extra empty request.
A bad ``n`` (not a number, negative, or over the catalog's maximum) is
PAGINATION_NUMBER_INVALID, as in distribution.
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import urlencode

from ocistore.server.context import Ctx
from ocistore.server.errors import ApiError
from ocistore.server.http import Response

__all__ = ["CATALOG_DEFAULT", "CATALOG_MAX", "get_catalog", "get_tags"]

CATALOG_DEFAULT: Final = 100
CATALOG_MAX: Final = 1000


def _parse_n(raw: str | None, maximum: int | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise ApiError("PAGINATION_NUMBER_INVALID", {"n": raw}) from None
    if n < 0 or (maximum is not None and n > maximum):
        raise ApiError("PAGINATION_NUMBER_INVALID", {"n": n, "max": maximum})
    return n


def _link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


def _json(obj: object, link: str | None) -> Response:
    headers = [("Content-Type", "application/json")]
    if link:
        headers.append(("Link", link))
    return Response(200, headers, body=json.dumps(obj, separators=(",", ":")).encode())


async def get_tags(ctx: Ctx) -> Response:
    n = _parse_n(ctx.req.arg("n"), None)
    last = ctx.req.arg("last") or None
    repo = ctx.repo
    tags = repo.tags.all()  # NameUnknown for a repository with no tags
    if last is not None:
        tags = [t for t in tags if t > last]
    link = None
    if n is not None:
        if len(tags) > n and n > 0:
            link = _link(f"{ctx.req.root_path}/v2/{repo.name}/tags/list", n, tags[n - 1])
        tags = tags[:n]
    return _json({"name": repo.name, "tags": tags}, link)


async def get_catalog(ctx: Ctx) -> Response:
    n = _parse_n(ctx.req.arg("n"), CATALOG_MAX)
    if n is None:
        n = CATALOG_DEFAULT
    last = ctx.req.arg("last") or None
    repos: list[str] = []
    if n > 0:
        repos = await ctx.run(ctx.svc.registry.repositories, n=n + 1, last=last)
    link = None
    if len(repos) > n:
        repos = repos[:n]
        link = _link(f"{ctx.req.root_path}/v2/_catalog", n, repos[-1])
    return _json({"repositories": repos}, link)
