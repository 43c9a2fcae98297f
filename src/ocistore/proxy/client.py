"""The upstream registry, seen through aiohttp (chosen by ``benchmarks/proxy_clients.py``).

:class:`UpstreamClient` asks one remote registry for manifests, blobs and tag
lists of a repository, authenticating as :mod:`.auth` describes, following
redirects itself (at most :data:`MAX_REDIRECTS`, a loop is an error, and the
``Authorization`` header never goes to another host: blob GETs are often
redirected to object storage), and failing any read that sees no byte for
``timeout`` seconds. Every failure is an :class:`UpstreamError` whose message
names the upstream by host and never carries credentials or tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from ocistore.proxy.auth import TokenCache, basic_header, parse_challenges
from ocistore.proxy.config import Upstream

__all__ = ["MAX_REDIRECTS", "UpstreamClient", "UpstreamError", "UpstreamResponse"]

log = logging.getLogger("ocistore.proxy")

MAX_REDIRECTS: Final = 5
READ_BUFFER: Final = 1 << 20
"""Body bytes aiohttp buffers before it stops reading the socket (twice this, in fact).

Its default (64 KiB) paused and resumed the socket every few reads of a blob
body; this size lowered the proxy's CPU per GiB of a cold pull (BENCHMARKS.md,
"Proxy mode: ocistore and the Go registry as pull-through caches").
"""
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class UpstreamError(Exception):
    """The upstream failed or refused: ``status`` is its HTTP status (0: it could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)

    @property
    def unreachable(self) -> bool:
        """Nothing usable came back (connection, timeout, 5xx, 429): a cached copy may stand in."""
        return self.status == 0 or self.status >= 500 or self.status == 429


@dataclass(slots=True)
class UpstreamResponse:
    """An answer whose body has not been read: status, headers and the aiohttp response."""

    status: int
    headers: Mapping[str, str]
    raw: aiohttp.ClientResponse
    timeout: float | None = None
    """Seconds a body read may wait for a byte (the client's ``timeout``)."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def detach_body(self) -> tuple[bytes, int | None] | None:
        """Take the rest of the body away from aiohttp, to read it from the socket itself.

        Returns the body bytes aiohttp holds already and a duplicate of the
        connection's socket descriptor (None when those bytes are the whole
        body), which the caller reads the rest from and closes. aiohttp stops
        reading the socket; the connection is closed, never reused, when the
        response is released. None when the body cannot be read so (TLS, a
        chunked body, no socket): the caller reads it through aiohttp.
        """
        raw = self.raw
        if raw.headers.get("Transfer-Encoding") is not None:
            return None
        content = raw.content
        if content.exception() is not None:
            return None  # aiohttp's read raises it
        conn = raw.connection
        if conn is None:  # the whole body arrived with the head
            return (content.read_nowait(-1), None) if content.is_eof() else None
        transport = conn.transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return None
        sock = transport.get_extra_info("socket")
        if sock is None:
            return None
        # No await between these: what aiohttp read so far is all in ``content``.
        held = content.read_nowait(-1)
        if content.is_eof():
            return held, None
        transport.pause_reading()
        return held, os.dup(sock.fileno())

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise UpstreamError(f"upstream sent Content-Length {value!r}", self.status)
        return int(value)


class UpstreamClient:
    """One upstream registry: one connection pool, one token cache, one remembered challenge."""

    def __init__(self, upstream: Upstream, *, timeout: float, connect_timeout: float) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tokens = TokenCache()
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._token_locks: dict[str, asyncio.Lock] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.timeout
                ),
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                read_bufsize=READ_BUFFER,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- one request, authenticated, redirects followed ---------------------------------

    @asynccontextmanager
    async def request(
        self, method: str, path: str, *, scope: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        """``method path`` at the upstream; the body is left for the caller to read."""
        resp = await self._send(method, path, scope, dict(headers or {}))
        try:
            yield resp
        finally:
            resp.raw.release()

    async def _send(
        self, method: str, path: str, scope: str, headers: dict[str, str]
    ) -> UpstreamResponse:
        url = self.upstream.remoteurl + path
        auth = await self._authorization(scope)
        resp = await self._follow(method, url, headers, auth)
        if resp.status == 401:
            challenge = resp.header("WWW-Authenticate") or ""
            resp.raw.release()
            self._remember(challenge)
            auth = await self._authorization(scope, renew=True)
            if auth is None:
                raise UpstreamError(f"{self.upstream.host} asks for credentials", 401)
            resp = await self._follow(method, url, headers, auth)
            if resp.status == 401:
                resp.raw.release()
                raise UpstreamError(f"{self.upstream.host} refused the credentials", 401)
        return resp

    async def _follow(
        self, method: str, url: str, headers: dict[str, str], auth: str | None
    ) -> UpstreamResponse:
        origin = _origin(url)
        seen: list[str] = []
        for _ in range(MAX_REDIRECTS + 1):
            send = dict(headers)
            if auth is not None and _origin(url) == origin:
                send["Authorization"] = auth
            try:
                raw = await self._client().request(method, url, headers=send, allow_redirects=False)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise UpstreamError(
                    f"{self.upstream.host} unreachable: {type(exc).__name__}"
                ) from None
            if raw.status not in _REDIRECTS:
                return UpstreamResponse(raw.status, raw.headers, raw, self.timeout)
            location = raw.headers.get("Location")
            raw.release()
            if not location:
                raise UpstreamError(
                    f"{self.upstream.host} redirected without a Location", raw.status
                )
            seen.append(url)
            url = urljoin(url, location)
            if url in seen:
                raise UpstreamError(
                    f"{self.upstream.host} answered with a redirect loop", raw.status
                )
            if urlsplit(url).scheme not in ("http", "https"):
                raise UpstreamError(
                    f"{self.upstream.host} redirected to a non-HTTP URL", raw.status
                )
        raise UpstreamError(f"{self.upstream.host}: more than {MAX_REDIRECTS} redirects", 310)

    # --- authentication --------------------------------------------------------------

    def _remember(self, header: str) -> None:
        for c in parse_challenges(header):
            if c.scheme in ("bearer", "basic"):
                self._challenge = (c.scheme, c.params)
                return
        self._challenge = None

    async def _authorization(self, scope: str, *, renew: bool = False) -> str | None:
        """The Authorization value for ``scope`` under the last challenge (None: anonymous)."""
        up = self.upstream
        if self._challenge is None:
            return None
        scheme, params = self._challenge
        if scheme == "basic":
            return basic_header(up.username, up.password) if up.username else None
        realm = params.get("realm", "")
        service = params.get("service", "")
        if not realm:
            raise UpstreamError(f"{up.host} sent a Bearer challenge without a realm", 401)
        if renew:
            self.tokens.forget(realm, service, scope)
        token = self.tokens.get(realm, service, scope)
        if token is None:
            lock = self._token_locks.setdefault(scope, asyncio.Lock())
            async with lock:  # one token request per scope, however many wait for it
                token = self.tokens.get(realm, service, scope)
                if token is None:
                    token, expires_in = await self._fetch_token(realm, service, scope)
                    self.tokens.put(realm, service, scope, token, expires_in)
        return f"Bearer {token}"

    async def _fetch_token(self, realm: str, service: str, scope: str) -> tuple[str, float]:
        up = self.upstream
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {}
        if up.username:
            headers["Authorization"] = basic_header(up.username, up.password)
        host = _origin(realm)
        try:
            async with self._client().get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise UpstreamError(f"token server {host} answered {resp.status}", resp.status)
                doc: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise UpstreamError(f"token server {host} failed: {type(exc).__name__}") from None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"token server {host} sent no token", 401)
        expires = doc.get("expires_in")
        return token, float(expires) if isinstance(expires, int | float) else 0.0


def _origin(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}"


async def read_limited(resp: UpstreamResponse, limit: int, what: str, host: str) -> bytes:
    """The whole body if at most ``limit`` bytes and as long as announced; else UpstreamError."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise UpstreamError(f"{host}: {what} is {declared} bytes, over the {limit}-byte limit", 502)
    parts: list[bytes] = []
    total = 0
    try:
        async for chunk in resp.raw.content.iter_any():
            total += len(chunk)
            if total > limit:
                raise UpstreamError(f"{host}: {what} is over the {limit}-byte limit", 502)
            parts.append(chunk)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise UpstreamError(f"{host}: {what} cut short: {type(exc).__name__}") from None
    if declared is not None and total != declared:
        raise UpstreamError(f"{host}: {what} is {total} bytes, announced {declared}", 502)
    return b"".join(parts)
