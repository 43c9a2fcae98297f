"""The ASGI surface: a request with a streaming body, and responses to send.

Plain ASGI 3.0, so any ASGI server runs the app. A request body is consumed
as it arrives (:meth:`Request.stream`), each wait bounded by the idle
timeout. A blob goes as one file range to a server that offers the
``http.response.zerocopysend`` extension (ocistore's own,
:mod:`ocistore.server.h1`), and in :data:`SEND_CHUNK` messages to any other.
Never buffers a whole blob, never blocks the event loop on the disk, and
never sends an extension message the server did not offer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final
from urllib.parse import parse_qs

from ocistore import _core

__all__ = [
    "BlobBody",
    "ClientGone",
    "ClientIdle",
    "RawHeaders",
    "Receive",
    "Request",
    "Response",
    "Scope",
    "Send",
    "StreamRange",
    "send_response",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]
"""Response headers as ASGI sends them: lower-case names and values, encoded."""

SEND_CHUNK: Final = 2 << 20
"""Bytes per ``http.response.body`` message of a blob (servers without zerocopysend).

Each message is read on the event loop with ``_core.pread_nowait`` when the
page cache holds it (no thread hand-off, never a wait for the disk), else
with ``os.pread`` in the thread pool; a reader without a file descriptor
(the in-memory driver) always goes to the pool. Large enough that the
per-message costs stay small, and below the worker's malloc mmap threshold
(:data:`ocistore.server.memory.MMAP_THRESHOLD`), so a message reuses heap
memory instead of mapping fresh pages (BENCHMARKS.md, "Pulls without
zerocopysend").
"""


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


class ClientIdle(Exception):
    """No body bytes arrived within the idle timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"no data from the client for {timeout:g}s")


class _IdleWatch:
    """Cancels the current task when one receive waits longer than ``timeout`` seconds.

    ``asyncio.wait_for`` around every receive would do the same, but it wraps
    each receive in a new Task: thousands per GiB of body, measurable beside
    the hashing. Here one timer per request re-arms itself only when it fires
    early, and a receive costs two attribute writes and a clock read.
    """

    __slots__ = ("_deadline", "_fired", "_handle", "_loop", "_task", "_waiting", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline = 0.0
        self._waiting = False
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    def waiting(self) -> None:
        """A receive starts: it must end within the timeout."""
        self._deadline = self._loop.time() + self.timeout
        self._waiting = True
        if self._handle is None:
            self._handle = self._loop.call_at(self._deadline, self._check)

    def got(self) -> None:
        self._waiting = False

    def expired(self) -> bool:
        """Whether the cancellation being handled is ours; if so it is withdrawn."""
        if not self._fired:
            return False
        self._fired = False
        if self._task is not None:
            self._task.uncancel()
        return True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if not self._waiting:
            return  # re-armed by the next receive
        if self._loop.time() >= self._deadline:
            self._fired = True
            if self._task is not None:
                self._task.cancel()
        else:
            self._handle = self._loop.call_at(self._deadline, self._check)


class Request:
    """One HTTP request: method, path, query, headers, and a body read on demand."""

    __slots__ = (
        "_done",
        "_headers",
        "_query",
        "_raw",
        "_receive",
        "method",
        "path",
        "received",
        "root_path",
        "scope",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        self._done = False
        self.received = 0  # body bytes read so far
        self.method: str = scope["method"]
        # Mounted under a prefix, the path includes the ASGI root_path (as
        # Starlette and uvicorn send it); routes match the rest, and URLs the
        # app makes carry the prefix again.
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
            path = path[len(root) :] or "/"
        self.path = path
        self.root_path = root
        # Headers and query are decoded on first use: a HEAD or GET that reads
        # one or two headers should not pay for all of them.
        self._headers: dict[str, str] | None = None
        self._query: dict[str, list[str]] | None = None
        self._raw: dict[bytes, bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Every header, lower-case names, repeated ones joined with ``", "``."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for k, v in self.scope.get("headers", ()):
                key = k.decode("latin-1").lower()
                val = v.decode("latin-1")
                headers[key] = f"{headers[key]}, {val}" if key in headers else val
            self._headers = headers
        return self._headers

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            raw: bytes = self.scope.get("query_string", b"")
            self._query = parse_qs(raw.decode("latin-1"), keep_blank_values=True) if raw else {}
        return self._query

    @property
    def raw_headers(self) -> dict[bytes, bytes]:
        """Every header as sent, by its (lower-case) name; repeated ones joined with ``b", "``.

        Built once per request in one pass (``dict()`` over the ASGI list);
        only a request that repeats a name takes the slower joining pass. A
        lookup then costs the same however many headers the request carries
        (a large ``Authorization`` or many proxy headers).
        """
        raw = self._raw
        if raw is None:
            pairs = self.scope.get("headers", ())
            if not isinstance(pairs, list | tuple):
                pairs = list(pairs)
            raw = dict(pairs)
            if len(raw) != len(pairs):
                raw = _joined(pairs)
            self._raw = raw
        return raw

    def header(self, name: str) -> str | None:
        """Header ``name`` (lower case), repeated ones joined with ``", "``; None when absent.

        Looked up in :attr:`raw_headers` (whose names the ASGI spec requires
        in lower case) unless every header was already decoded: a GET manifest
        reads a few headers, and decoding all of them cost more than that.
        """
        if self._headers is not None:
            return self._headers.get(name)
        value = (self._raw if self._raw is not None else self.raw_headers).get(
            name.encode("latin-1")
        )
        return None if value is None else value.decode("latin-1")

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (None when absent)."""
        values = self.query.get(name)
        return values[0] if values else None

    def base_url(self) -> str:
        """``scheme://host`` the client used (for absolute Location headers, as distribution sends)."""
        scheme = self.headers.get("x-forwarded-proto") or self.scope.get("scheme", "http")
        host = self.headers.get("x-forwarded-host") or self.headers.get("host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}"

    @property
    def content_length(self) -> int | None:
        """The declared body length; ValueError when it is not a non-negative integer."""
        raw = self.headers.get("content-length")
        if raw is None:
            return None
        raw = raw.strip()
        if not raw.isdigit():
            raise ValueError(f"Content-Length {raw!r} is not a non-negative integer")
        return int(raw)

    async def stream(self, idle_timeout: float | None) -> AsyncGenerator[bytes, None]:
        """The body's chunks as they arrive; raises :class:`ClientGone` / :class:`ClientIdle`.

        Only time spent waiting for the client counts towards ``idle_timeout``
        (not time the consumer spends between chunks, writing them).
        """
        watch = _IdleWatch(idle_timeout) if idle_timeout else None
        try:
            while not self._done:
                if watch is None:
                    msg = await self._receive()
                else:
                    watch.waiting()
                    try:
                        msg = await self._receive()
                    except asyncio.CancelledError:
                        if watch.expired():
                            raise ClientIdle(watch.timeout) from None
                        raise
                    finally:
                        watch.got()
                if msg["type"] == "http.disconnect":
                    self._done = True
                    raise ClientGone("client disconnected mid-body")
                body = msg.get("body", b"")
                if not msg.get("more_body", False):
                    self._done = True
                if body:
                    self.received += len(body)
                    yield body
        finally:
            if watch is not None:
                watch.close()

    async def read_body(self, limit: int, idle_timeout: float | None) -> bytes | None:
        """The whole body if it is at most ``limit`` bytes, else None (the rest is drained)."""
        parts: list[bytes] = []
        total = 0
        async for chunk in self.stream(idle_timeout):
            total += len(chunk)
            if total <= limit:
                parts.append(chunk)
        if total > limit:
            return None
        return b"".join(parts)

    async def drain(self, idle_timeout: float | None) -> None:
        """Read and drop what is left of the body (so keep-alive can go on)."""
        async for _ in self.stream(idle_timeout):
            pass

    @property
    def body_done(self) -> bool:
        return self._done


def _joined(pairs: Sequence[Sequence[bytes]]) -> dict[bytes, bytes]:
    """Headers by name with a repeated name's values joined by ``b", "`` in their order."""
    out: dict[bytes, bytes] = {}
    for k, v in pairs:
        out[k] = out[k] + b", " + v if k in out else v
    return out


@dataclass(slots=True)
class BlobBody:
    """A part of an open blob to send: ``length`` bytes from ``offset``; the reader is closed after."""

    reader: BinaryIO
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StreamRange:
    """A piece of a streamed body that is in a file: ``length`` bytes of ``fd`` from ``offset``.

    Sent as one ``zerocopysend`` range when the server offers it (no copy
    through Python), else read in :data:`SEND_CHUNK` messages. The stream
    that yields it keeps ``fd`` open until it is resumed.
    """

    fd: int
    offset: int
    length: int

    def fileno(self) -> int:
        return self.fd


@dataclass(slots=True)
class Response:
    """What to send. ``raw_headers`` are sent first as they are (already encoded, with
    their own Content-Length: nothing is computed for them); ``headers`` follow."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    blob: BlobBody | None = None
    raw_headers: RawHeaders | None = None
    untagged: tuple[str, ...] = ()  # a manifest delete's removed tags, for its events
    stream: AsyncIterator[bytes | StreamRange] | None = None
    """A body produced as it is sent (the proxy's blob fill); raising from it ends the
    response short, so the connection is closed rather than the response completed."""

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self


def _fileno(reader: BinaryIO) -> int:
    """The reader's file descriptor, or -1 when it has none (the in-memory driver)."""
    try:
        return reader.fileno()
    except (AttributeError, OSError, ValueError):
        return -1


async def send_response(
    send: Send,
    resp: Response,
    *,
    head: bool = False,
    read: Callable[[BinaryIO, int, int], Awaitable[bytes]] | None = None,
    zerocopy: bool = False,
) -> None:
    """Send ``resp``; a blob body is read in chunks through ``read`` (an executor hop).

    With ``zerocopy`` (the server offers ASGI's ``http.response.zerocopysend``,
    as ``ocistore serve``'s own server does) a blob in a real file is instead
    handed to the server as one file range, which it sends without copying it
    through Python. ``Content-Length`` is always set: from the blob's length,
    else the body's. For HEAD only the headers go out.
    """
    headers: Sequence[tuple[str, str]] = resp.headers
    raw = resp.raw_headers
    if raw is None:
        raw = []
        if not any(k.lower() == "content-length" for k, _ in headers):
            length = resp.blob.length if resp.blob is not None else len(resp.body)
            headers = [*headers, ("Content-Length", str(length))]
    else:
        raw = raw.copy()
    for k, v in headers:  # a loop, not a comprehension: no frame for one or two headers
        raw.append((k.encode("latin-1"), v.encode("latin-1")))
    try:
        await send({"type": "http.response.start", "status": resp.status, "headers": raw})
        if head or resp.status == 304 or resp.status == 204:
            await send({"type": "http.response.body", "body": b""})
            return
        if resp.stream is not None:
            await _send_stream(send, resp.stream, read, zerocopy)
            return
        if resp.blob is None:
            await send({"type": "http.response.body", "body": resp.body})
            return
        blob = resp.blob
        pos, end = blob.offset, blob.offset + blob.length
        if read is None:
            raise RuntimeError("a blob response needs a reader function")
        fd = _fileno(blob.reader)
        if zerocopy and fd >= 0 and blob.length > 0:
            await send(
                {
                    "type": "http.response.zerocopysend",
                    "file": blob.reader,
                    "offset": pos,
                    "count": blob.length,
                    "more_body": False,
                }
            )
            return
        nowait = _core.pread_nowait
        while pos < end:
            n = min(SEND_CHUNK, end - pos)
            chunk = nowait(fd, n, pos) if fd >= 0 else None
            if not chunk:  # not in the page cache (or the end): a blocking read, off the loop
                chunk = await read(blob.reader, pos, n)
            if not chunk:
                raise OSError(f"blob ended at {pos} of {end} bytes")
            pos += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
        if blob.length == 0:
            await send({"type": "http.response.body", "body": b""})
    finally:
        if resp.blob is not None:
            resp.blob.reader.close()
        if resp.stream is not None and isinstance(resp.stream, AsyncGenerator):
            await resp.stream.aclose()


async def _send_stream(
    send: Send,
    stream: AsyncIterator[bytes | StreamRange],
    read: Callable[[Any, int, int], Awaitable[bytes]] | None,
    zerocopy: bool,
) -> None:
    """Each piece of ``stream`` as it comes; the end only once the stream ends.

    Bytes go as one body message; a :class:`StreamRange` as one file range
    with ``zerocopy``, else in :data:`SEND_CHUNK` messages read like a blob's.
    """
    async for piece in stream:
        if isinstance(piece, StreamRange):
            if not piece.length:
                continue
            if zerocopy:
                await send(
                    {
                        "type": "http.response.zerocopysend",
                        "file": piece,
                        "offset": piece.offset,
                        "count": piece.length,
                        "more_body": True,
                    }
                )
                continue
            if read is None:
                raise RuntimeError("a file range in a stream needs a reader function")
            pos, end = piece.offset, piece.offset + piece.length
            while pos < end:
                n = min(SEND_CHUNK, end - pos)
                chunk = _core.pread_nowait(piece.fd, n, pos) or await read(piece, pos, n)
                if not chunk:
                    raise OSError(f"a streamed file ended at {pos} of {end} bytes")
                pos += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        elif piece:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
