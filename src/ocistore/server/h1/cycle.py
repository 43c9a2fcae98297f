"""One request and its response: the ASGI ``receive`` and ``send`` of a single HTTP exchange.

The connection (:mod:`.protocol`) feeds the request body in as it is parsed
(:meth:`Cycle.feed`), and the app takes it with :meth:`Cycle.receive`; the
app's messages become bytes on the wire in :meth:`Cycle.send`. The head is
held back until the first body message, so a small response leaves in one
write. Responses are framed by the app's ``content-length``; without one,
HTTP/1.1 gets chunked encoding and HTTP/1.0 a close-delimited body.

``http.response.zerocopysend`` (the ASGI extension: ``file``, ``offset``,
``count``, ``more_body``) sends a file range: a small one, when the page
cache holds it, is read on the loop without waiting; anything else is
written from a mapping of the file by a thread (:mod:`.sendrange`).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ocistore.server.h1.framing import CONTINUE, LAST_CHUNK, chunk, status_line
from ocistore.server.h1.sendrange import SendTimeout

if TYPE_CHECKING:
    from ocistore.server.h1.protocol import H1Protocol

__all__ = ["SMALL_READ", "ClientDisconnected", "Cycle"]

SMALL_READ: Final = 256 << 10
"""File ranges up to this size are read on the loop when cached (a thread hop costs more)."""

_DISCONNECT: Final = {"type": "http.disconnect"}
_NO_BODY_STATUS: Final = frozenset({204, 304})


class ClientDisconnected(ConnectionError):
    """``send`` after the client went away (ASGI: an ``OSError`` subclass)."""


class Cycle:
    """State of one request/response exchange on a connection."""

    __slots__ = (
        "_final_sent",
        "_waiter",
        "body",
        "body_complete",
        "buffered",
        "chunked",
        "complete",
        "conn",
        "disconnected",
        "expect_continue",
        "head",
        "head_only",
        "http10",
        "keep_alive",
        "remaining",
        "scope",
        "started",
    )

    def __init__(
        self,
        conn: H1Protocol,
        scope: dict[str, Any],
        *,
        keep_alive: bool,
        expect_continue: bool,
        http10: bool,
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.http10 = http10
        self.head_only = scope["method"] == "HEAD"
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.body_complete = False
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.remaining: int | None = None
        self.head: bytes | None = None
        self._final_sent = False
        self._waiter: asyncio.Future[None] | None = None

    # --- fed by the connection ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.body.append(data)
        self.buffered += len(data)
        self._wake()

    def end_body(self) -> None:
        self.body_complete = True
        self._wake()

    def lost(self) -> None:
        """The connection is gone: wake a waiting ``receive`` with a disconnect."""
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    # --- ASGI receive ------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            # The client waits for a go-ahead before sending the body: give it
            # only now that the app asks for the body (not if it answers first).
            self.expect_continue = False
            if not self.body_complete and not self.started and not self.disconnected:
                self.conn.write(CONTINUE)
        while not self.body and not self.disconnected:
            if self.body_complete and not self._final_sent:
                self._final_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.complete:
                return _DISCONNECT
            self.conn.want_body()
            waiter = self.conn.loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        if self.body:
            data = self.body.popleft()
            self.buffered -= len(data)
            self.conn.body_taken(self)
            more = bool(self.body) or not self.body_complete
            if not more:
                self._final_sent = True
            return {"type": "http.request", "body": data, "more_body": more}
        return _DISCONNECT

    # --- ASGI send ---------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        try:
            await self._send(message)
        except SendTimeout as exc:
            self.conn.send_timed_out(self, exc)
            raise

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self._start(message["status"], message.get("headers", ()))
        elif kind == "http.response.body":
            self._check_open(kind)
            self._write_body(message.get("body", b""), bool(message.get("more_body", False)))
            if self.conn.write_paused:
                await self.conn.drain()
        elif kind == "http.response.zerocopysend":
            self._check_open(kind)
            await self._send_file(message)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _check_open(self, kind: str) -> None:
        if not self.started:
            raise RuntimeError(f"{kind} before http.response.start")
        if self.complete:
            raise RuntimeError(f"{kind} after the response was complete")

    def _start(self, status: int, headers: Any) -> None:
        self.started = True
        parts = [status_line(status)]
        length: int | None = None
        chunked = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue  # the connection's own header is written below
            parts.append(b"%s: %s\r\n" % (name, value))
        if self.head_only or status in _NO_BODY_STATUS or status < 200:
            self.remaining = 0
            self.head_only = True
        elif length is not None:
            self.remaining = length
        elif chunked:
            self.chunked = True
        elif self.http10:
            self.keep_alive = False  # the body ends where the connection does
        else:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        if not self.body_complete:
            # The app answers before it has the whole body: the rest (maybe
            # gigabytes, maybe never sent after a withheld 100) is not read.
            self.keep_alive = False
        if not self.keep_alive or self.conn.closing:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        elif self.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.head = b"".join(parts)

    def _take_head(self) -> bytes:
        head = self.head
        self.head = None
        return head or b""

    def _count(self, n: int) -> None:
        if self.remaining is not None and not self.head_only:
            if n > self.remaining:
                raise RuntimeError(
                    f"the app sent {n} bytes with {self.remaining} left of content-length"
                )
            self.remaining -= n

    def _write_body(self, body: bytes, more: bool) -> None:
        if self.head_only:
            body = b""
        self._count(len(body))  # before the head is taken: an overrun leaves it unsent
        head = self._take_head()
        if self.chunked:
            tail = b"" if more else LAST_CHUNK
            if body:
                self.conn.writelines((head, *chunk(body), tail))
            else:
                self.conn.write(head + tail)
        elif len(body) <= 16384:
            self.conn.write(head + body if head else body)
        else:
            self.conn.writelines((head, body))
        if not more:
            self._finish()

    async def _send_file(self, message: dict[str, Any]) -> None:
        file = message["file"]
        more = bool(message.get("more_body", False))
        fd = file.fileno()
        offset = message.get("offset")
        if offset is None:
            offset = file.tell()
        count = message.get("count")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if self.head_only or count <= 0:
            self._write_body(b"", more)
            return
        self._count(count)
        head = self._take_head()
        if self.chunked:
            head += b"%x\r\n" % count
        data = _read_cached(fd, offset, count) if count <= SMALL_READ else None
        if data is not None:
            self.conn.writelines((head, data))
        else:
            if head:
                self.conn.write(head)
            sent = await self.conn.send_file(fd, offset, count)
            if sent < count:
                self.keep_alive = False
                self.conn.abort_after_cycle()
                raise OSError(f"the file ended {count - sent} bytes before the range sent")
        if self.chunked:
            self.conn.write(b"\r\n" if more else b"\r\n" + LAST_CHUNK)
        if not more:
            self._finish()
        elif self.conn.write_paused:
            await self.conn.drain()

    def _finish(self) -> None:
        self.complete = True
        if self.remaining and not self.head_only:
            self.keep_alive = False  # fewer bytes than announced: only closing ends it
        self._wake()


_NOWAIT: Final = getattr(os, "RWF_NOWAIT", 0)


def _read_cached(fd: int, offset: int, count: int) -> bytearray | None:
    """The range's bytes if the page cache holds all of them, read without waiting; else None."""
    if not _NOWAIT:
        return None
    buf = bytearray(count)
    try:
        n = os.preadv(fd, [buf], offset, _NOWAIT)
    except OSError:
        return None
    return buf if n == count else None
