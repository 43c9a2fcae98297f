"""A tiny HTTP client on ``http.client``, so the tests control every header and byte they send.

Why not requests: the differential tests must send exactly the same request to
two servers (no added Accept-Encoding, no retries, no redirects followed, no
body re-encoding) and see exactly what came back.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

CLOSED = 0
"""The status recorded when the server closed the connection without an answer."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str
    truncated: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        return json.loads(self.body)

    def error_codes(self) -> list[str]:
        """The ``code`` of every error in a spec error body ([] when the body is not one)."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return []
        if not isinstance(body, dict):
            return []
        return [e.get("code", "") for e in body.get("errors", []) if isinstance(e, dict)]

    def location(self) -> str:
        """The Location header resolved against the request URL (servers may send it relative)."""
        loc = self.header("Location")
        assert loc, f"no Location in {self.status} answer to {self.url}"
        return urljoin(self.url, loc)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url} {self.body[:200]!r}>"


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """Send one request on a fresh connection and read the whole answer."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", f"tests talk to loopback only, not {url}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        # A server may answer early (a body over its limit) and close: read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(method, target, body=body, headers=headers or {})
        try:
            resp = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return Response(CLOSED, http.client.HTTPMessage(), b"", url)
        truncated = False
        try:
            data = b"" if method == "HEAD" else resp.read()
        except http.client.IncompleteRead as exc:
            # Go 2.8.2 answers an unsatisfiable Range with a 416 whose Content-Length is
            # the blob's size but whose body is a short message: keep what came.
            data, truncated = exc.partial, True
        return Response(resp.status, resp.headers, data, url, truncated)
    finally:
        conn.close()


def retarget(location: str, base: str) -> str:
    """The same path and query on another server: what a load balancer does with a Location."""
    parts = urlsplit(location)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
