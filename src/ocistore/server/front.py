"""What the app refuses or bounds before routing, whatever server runs it.

ocistore's own server (:mod:`ocistore.server.h1`) already refuses these at
the framing level; granian, uvicorn or any other ASGI server may not, so the
app checks again on every request (a header scan, no allocation when clean):

- a ``Transfer-Encoding`` other than exactly ``chunked``: 501 (RFC 9112 6.1:
  a transfer coding the server does not implement), the body left unread and
  the connection closed;
- ``Upgrade`` (any protocol) and ``CONNECT``: ocistore never switches
  protocols nor tunnels, so the request is answered as plain HTTP/1.1 with
  ``Connection: close``: bytes the client sends after it, meant for another
  protocol, must never be read as further requests;
- a repository name that only appears once the path is percent-decoded
  (``/v2/a%2fb/tags/list`` must not name ``a/b``): NAME_INVALID.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ocistore.server.errors import ApiError
from ocistore.server.routes import Route, match

__all__ = ["encoded_name", "must_close", "unimplemented_coding"]

_CLOSE_METHODS: Final = frozenset({"CONNECT"})


def unimplemented_coding(
    scope: dict[str, Any], headers: Mapping[bytes, bytes] | None = None
) -> ApiError | None:
    """A 501 when the request's Transfer-Encoding is anything but one ``chunked``.

    ``headers``: the request's headers by name, repeated ones joined with
    ``b", "`` (:attr:`~ocistore.server.http.Request.raw_headers`), when the
    caller has them; else the scope's list is scanned. Both give the same
    answer: joined values are never exactly ``chunked``.
    """
    if headers is not None:
        value = headers.get(b"transfer-encoding")
        codings = [] if value is None else [value]
    else:
        codings = [v for k, v in scope.get("headers", ()) if k == b"transfer-encoding"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0].strip(b" \t").lower() == b"chunked":
        return None
    shown = b", ".join(codings).decode("latin-1")
    return ApiError(
        "UNSUPPORTED",
        {"transfer-encoding": shown, "reason": "only chunked is implemented"},
        message="transfer coding not implemented",
        status=501,
        headers=[("Connection", "close")],
    )


def must_close(scope: dict[str, Any], headers: Mapping[bytes, bytes] | None = None) -> bool:
    """Whether the connection must end with this request (an Upgrade or a CONNECT).

    ``headers`` as for :func:`unimplemented_coding`.
    """
    if scope.get("method") in _CLOSE_METHODS:
        return True
    if headers is not None:
        return b"upgrade" in headers
    return any(k == b"upgrade" for k, _ in scope.get("headers", ()))


def encoded_name(scope: dict[str, Any], path: str, route: Route) -> ApiError | None:
    """NAME_INVALID when ``route.name`` was spelled with percent-escapes in the raw path.

    ``path`` is the decoded path the route was matched on (the mount prefix
    removed). The raw path is matched the same way: its name must be the same
    string, so an escape inside a name (``%2f``, ``%5c``, ``%2e``, or even an
    escaped letter) is refused rather than decoded into another repository.
    Escapes after the name (a digest's ``%3A``) are left to the handlers.
    """
    raw = scope.get("raw_path")
    if not route.name or not isinstance(raw, bytes) or b"%" not in raw:
        return None
    text = raw.decode("latin-1")
    root: str = scope.get("root_path", "")
    if root and text.startswith(root):
        text = text[len(root) :]  # the mount prefix: the host's, spelled as configured
    raw_route = match(text)
    if raw_route is not None and raw_route.kind == route.kind and raw_route.name == route.name:
        return None
    return ApiError(
        "NAME_INVALID",
        {
            "name": route.name,
            "reason": f"the repository name is percent-encoded in the request path {text!r}: "
            "escapes are not decoded into a name",
        },
    )
