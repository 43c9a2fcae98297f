"""One HTTP/1.1 connection: parsing requests (httptools), running the app, keep-alive and timeouts.

Requests on a connection are served one at a time, in order: a pipelined
request waits (parsed, its body buffered up to the high-water mark) until the
response before it is complete. Reading stops while a request's buffered
body is above ``body_high_water`` or a pipelined request waits, so a client
can never make the server hold more than that.

One timer per connection enforces ``keepalive_timeout`` while it is idle and
``header_timeout`` from the first byte of a request until its headers are
complete; it is re-armed only when it fires early, not per request. While a
request is being served no timer runs: the app bounds its own waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import unquote

import httptools

from ocistore.server.h1.cycle import Cycle
from ocistore.server.h1.framing import status_line
from ocistore.server.h1.sendrange import MappedRange, SendTimeout, write_some
from ocistore.server.h1.settings import H1Settings

__all__ = ["ASGIApp", "H1Protocol", "ServerState"]

log = logging.getLogger("ocistore.server")

ASGIApp = Any
_ASGI: Final = {"version": "3.0", "spec_version": "2.4"}
_METHODS: Final = {
    m.encode("ascii"): m
    for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
}
_IDLE, _HEAD, _BUSY = 0, 1, 2
"""Connection phases for the timer: between requests, reading a request's head, serving."""


@dataclass(slots=True)
class ServerState:
    """What every connection of one server shares."""

    app: ASGIApp
    settings: H1Settings
    loop: asyncio.AbstractEventLoop
    send_executor: Executor
    connections: set[H1Protocol] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False
    tls: bool = False
    """Connections are HTTPS: ``scheme`` is https and no ``zerocopysend`` is offered."""
    held: list[H1Protocol] = field(default_factory=list)
    """Connections holding a finished response until the loop's ready requests have run."""

    def hold(self, conn: H1Protocol) -> None:
        if not self.held:
            self.loop.call_soon(self._release_held)
        self.held.append(conn)

    def _release_held(self) -> None:
        held, self.held = self.held, []
        for conn in held:
            conn.release()


class H1Protocol(asyncio.Protocol):
    """An HTTP/1.x server connection for an ASGI app."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.settings = state.settings
        self.loop = state.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.running: Cycle | None = None
        self.parsing: Cycle | None = None
        self.queued: deque[Cycle] = deque()
        self.closing = False
        self.write_paused = False
        self.read_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_raw = 0
        self._in_head = False
        self._eof = False
        self._phase = _IDLE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._abort_after = False
        self._completed = 0
        self._body_left = 0
        self._body_next = 0
        self._parser_owns_body = False
        self._refused = False
        self._tail = b""
        self._rejected: tuple[int, str] | None = None
        self._last = False  # the request being parsed is the connection's last
        self._discard = False
        self._reject_after: bytes | None = None
        self._held: bytes | None = None

    # --- connection events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server = _addr(transport.get_extra_info("sockname"))
        self.client = _addr(transport.get_extra_info("peername"))
        if len(self.state.connections) >= self.settings.max_connections:
            log.info(
                "connection from %s refused: %d open", self.client, len(self.state.connections)
            )
            self._refused = True
            self.transport.write(_error_response(503, "too many connections, retry later"))
            self.transport.close()
            return
        self.state.connections.add(self)
        self._set_phase(_HEAD)  # a new connection owes us a request

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.closing = True
        self._cancel_timer()
        for cycle in (self.running, self.parsing, *self.queued):
            if cycle is not None:
                cycle.lost()
        self.queued.clear()
        self._resume_drain()

    def eof_received(self) -> bool | None:
        # A half-close ends the request stream: a body still expected never comes,
        # but the response in progress may still go out (True keeps the transport
        # open for writing); the connection closes after it.
        self._eof = True
        self.release()  # returning None closes the transport: the held response goes first
        if self.parsing is not None:
            self.parsing.lost()
        self._no_more_requests()
        if self.running is not None and not self.running.complete and not self.state.tls:
            return True  # (a TLS transport cannot stay half-open: it closes after the response)
        return None

    def data_received(self, data: bytes) -> None:
        while data and not self._refused:
            if self._body_left:
                data = self._take_body(data)
            elif self._parser_owns_body:
                self._feed(data)  # a chunked body: the parser decodes it
                return
            else:
                data = self._feed_head(data)

    def _feed_head(self, data: bytes) -> bytes:
        """Parse up to the end of the next head; return what follows it (its body, or more)."""
        buf = self._tail + data if self._tail else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._tail = buf[-3:]
            self._feed(data)
            return b""
        cut = end + 4 - len(self._tail)
        self._tail = b""
        self._feed(data[:cut] if cut < len(data) else data)
        if self._body_next and not self._refused:
            # The parser has exactly this head: the body comes past it (_take_body).
            self._body_left, self._body_next = self._body_next, 0
            self._parser_owns_body = False
        return data[cut:]

    def _feed(self, data: bytes) -> None:
        began_before = self._in_head
        self._completed = 0
        self._body_next = 0
        if self.parsing is None and self._phase == _IDLE:
            self._set_phase(_HEAD)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switches here: the request is answered as plain HTTP/1.1,
            # and the connection closed after it.
            if self.parsing is not None:
                self.parsing.keep_alive = False
            self._no_more_requests()
            return
        except httptools.HttpParserCallbackError:
            if self._discard:
                # Bytes after a request that ends the connection (an Upgrade or a
                # CONNECT): never parsed as requests, never answered.
                self._refused = True
                self._pause_reading()
                return
            rejected = self._rejected or (400, "malformed request")
            self._reject(*rejected)
            return
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed request: {exc}")
            return
        if self._in_head and (began_before or not self._completed):
            # A head still incomplete after this data, which began before it or at
            # its start (no message ended in it): all of the data is head, some of
            # it a field the parser is still accumulating.
            self._head_raw += len(data)
        if max(self._head_raw, self._head_bytes) > self.settings.max_header_bytes:
            self._reject(431, "request line and headers too large")

    def _take_body(self, data: bytes) -> bytes:
        """Hand a Content-Length body's bytes to its request as they came; return what follows.

        The parser never sees these bytes (it would copy each of them once more
        into a new ``bytes``); it is replaced by a fresh one when the body ends.
        """
        n = self._body_left
        body, rest = (data, b"") if len(data) <= n else (data[:n], data[n:])
        self._body_left = n - len(body)
        self.on_body(body)
        if not self._body_left:
            self.parser = httptools.HttpRequestParser(self)
            self.on_message_complete()
        return rest

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._resume_drain()

    # --- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._last:
            self._discard = True
            raise _Rejected  # nothing after the connection's last request is parsed
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._head_raw = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > self.settings.max_request_line:
            self._rejected = (414, "request target too long")
            raise _Rejected

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools strips a value's leading whitespace only (RFC 9110 5.5: both).
        self._headers.append((name.lower(), value.rstrip(b" \t")))
        self._head_bytes += len(name) + len(value) + 4
        if len(self._headers) > self.settings.max_headers:
            self._rejected = (431, "too many header fields")
            raise _Rejected

    def on_headers_complete(self) -> None:
        parser = self.parser
        if self._head_bytes > self.settings.max_header_bytes:
            self._rejected = (431, "request line and headers too large")
            raise _Rejected  # stops the parser: nothing of this request reaches the app
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._rejected = (505, f"HTTP/{version} is not supported")
            if version == "0.9":
                self._rejected = (400, "the request line has no HTTP version")
            raise _Rejected
        try:
            length, chunked, expect, upgrade = _framing(self._headers, version)
        except _Rejected as exc:
            self._rejected = (exc.args[0], exc.args[1])
            raise
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        url = self._url
        if url[:1] != b"/" and url != b"*":
            parsed = httptools.parse_url(url)  # absolute form: GET http://host/path
            raw_path, query = parsed.path or b"/", parsed.query or b""
        else:
            raw_path, _, query = url.partition(b"?")
            raw_path = raw_path.partition(b"#")[0]
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": "https" if self.state.tls else "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
            "extensions": {} if self.state.tls else {"http.response.zerocopysend": {}},
        }
        if method == "CONNECT" or upgrade:
            # ocistore never switches protocols nor tunnels: the request is answered
            # as plain HTTP/1.1 and the connection ends with it, so no byte sent after
            # it (which the client meant for another protocol) is read as a request.
            self._last = True
        cycle = Cycle(
            self,
            scope,
            keep_alive=parser.should_keep_alive() and not self.closing and not self._last,
            expect_continue=expect and version == "1.1",
            http10=version == "1.0",
        )
        self._in_head = False
        self.parsing = cycle
        self._parser_owns_body = chunked or length > 0
        self._body_next = 0 if chunked else length  # _feed_head may take it past the parser
        if self.running is None:
            self._run(cycle)
        else:
            self.queued.append(cycle)
            self._pause_reading()  # one request ahead is enough

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.feed(body)
            if cycle.buffered > self.settings.body_high_water:
                self._pause_reading()

    def on_message_complete(self) -> None:
        self._completed += 1
        self._parser_owns_body = False
        cycle = self.parsing
        self.parsing = None
        if cycle is not None:
            cycle.end_body()

    # --- serving -----------------------------------------------------------------------

    def _run(self, cycle: Cycle) -> None:
        self.running = cycle
        self._set_phase(_BUSY)
        task = self.loop.create_task(self._serve(cycle))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _serve(self, cycle: Cycle) -> None:
        try:
            await self.state.app(cycle.scope, cycle.receive, cycle.send)
        except Exception as exc:
            if cycle.disconnected:
                log.debug("%s %s: client gone: %s", cycle.scope["method"], cycle.scope["path"], exc)
            else:
                log.error(
                    "%s %s: the app failed: %s",
                    cycle.scope["method"],
                    cycle.scope["path"],
                    exc,
                    exc_info=exc,
                )
            self._app_failed(cycle)
        else:
            if not cycle.complete and not cycle.disconnected:
                log.error(
                    "%s %s: the app returned without completing its response",
                    cycle.scope["method"],
                    cycle.scope["path"],
                )
                self._app_failed(cycle)
        finally:
            self._cycle_done(cycle)

    def _app_failed(self, cycle: Cycle) -> None:
        cycle.keep_alive = False
        unsent = not cycle.started or cycle.head is not None  # no byte of it went out
        if unsent and not cycle.disconnected:
            self.write(_error_response(500, "internal server error"))
            cycle.complete = True
        elif not cycle.complete:
            self._abort_after = True  # a truncated response: only closing can end it

    def _cycle_done(self, cycle: Cycle) -> None:
        self.running = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._reject_after is not None and (not cycle.started or cycle.complete):
            # A malformed request after (or inside) this one: its error goes out
            # even when the app, told of a disconnect, gave up without answering.
            self.write(self._reject_after)
            self._end()
            return
        if self._abort_after:
            self._end(abort=True)
            return
        if self._reject_after is not None:
            self._end()
            return
        if (
            not cycle.keep_alive
            or not cycle.complete
            or self.closing
            or self._eof
            or not cycle.body_complete
        ):
            self._no_more_requests()
            self._end()
            return
        if self.queued:
            self._run(self.queued.popleft())
            self._resume_reading()
            return
        self._resume_reading()
        self._set_phase(_HEAD if self.parsing is not None else _IDLE)

    def abort_after_cycle(self) -> None:
        """The response cannot be completed correctly: reset the connection when the app is done."""
        self._abort_after = True

    def _no_more_requests(self) -> None:
        self.closing = True
        self.queued.clear()
        self.parsing = None

    def _reject(self, status: int, reason: str) -> None:
        """Answer a request that cannot be parsed or is too large, and close.

        With a response in progress, the error follows it (the request before
        a malformed pipelined one is still answered), and a request whose body
        turned out malformed gets a disconnect from ``receive``.
        """
        transport = self.transport
        if self.parsing is not None:
            self.parsing.lost()
        self._no_more_requests()
        self._refused = True  # nothing more is read from this connection
        self._body_left = 0
        if transport is None or transport.is_closing():
            return
        log.debug("connection from %s: %d %s", self.client, status, reason)
        if self.running is None:
            self.write(_error_response(status, reason))
            self._end()
        else:
            self._reject_after = _error_response(status, reason)
            self._pause_reading()

    def shutdown(self) -> None:
        """The server stops: close at once when idle, else after the response in progress."""
        self.closing = True
        if self.running is None and self.transport is not None:
            self._end()

    def _end(self, abort: bool = False) -> None:
        """Close (or reset) the connection, after its held response: every close goes here."""
        self.release()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    # --- used by the cycles ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self.release()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def writelines(self, data: Any) -> None:
        if self._held is not None:
            self.release()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(data)

    def write_final(self, data: bytes) -> None:
        """A response's last bytes, held until the loop has run every ready request.

        The held responses then go out back to back, so a client waiting on
        several connections is woken once per burst rather than once per
        response (a wake-up on another CPU costs more than the write itself).
        Any other write or a close on the connection releases them first.
        """
        if self._held is None:
            self._held = data
            self.state.hold(self)
        else:
            self._held += data

    def release(self) -> None:
        """Write the held response now (in order, before anything else on the connection)."""
        held = self._held
        if held is not None:
            self._held = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(held)

    async def drain(self) -> None:
        """Wait until the transport takes writes again; :class:`SendTimeout` if it never does."""
        if not self.write_paused or self.transport is None or self.transport.is_closing():
            return
        await self._drained()

    async def _drained(self) -> None:
        """Wait for the next ``resume_writing`` (or the end), at most the send timeout."""
        if self._drain is None:
            self._drain = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), self.settings.send_timeout)
        except TimeoutError:
            raise SendTimeout(
                f"the client took no data for {self.settings.send_timeout:g}s"
            ) from None

    def send_timed_out(self, cycle: Cycle, exc: SendTimeout) -> None:
        """The client stopped reading a response: a client's timeout, not the app's failure.

        Logged at INFO; the connection is reset at once (the response cannot be
        completed), and the app learns of it as a disconnect.
        """
        log.info(
            "%s %s: client timeout, connection closed: %s",
            cycle.scope["method"],
            cycle.scope["path"],
            exc,
        )
        cycle.lost()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _resume_drain(self) -> None:
        d, self._drain = self._drain, None
        if d is not None and not d.done():
            d.set_result(None)

    async def send_file(self, fd: int, offset: int, count: int) -> int:
        """Write a file range straight to the socket (on a thread), after what is buffered."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.release()
        if transport.get_write_buffer_size():
            await self._flush()
        sock = transport.get_extra_info("socket")
        dup = os.dup(sock.fileno())
        try:
            rng = MappedRange(fd, offset, count)
            try:
                sent = 0
                while sent < rng.length:
                    sent = await self.loop.run_in_executor(
                        self.state.send_executor, write_some, dup, rng, sent
                    )
                    if sent < rng.length:
                        await self._writable(dup)
                return rng.length
            finally:
                rng.close()
        finally:
            os.close(dup)

    async def _writable(self, fd: int) -> None:
        """Wait until the socket (``fd``, a duplicate) has room; :class:`SendTimeout` if never."""
        ready: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_writer(fd, wake)
        try:
            await asyncio.wait_for(ready, self.settings.send_timeout)
        except TimeoutError:
            raise SendTimeout(
                f"the client took no data for {self.settings.send_timeout:g}s"
            ) from None
        finally:
            self.loop.remove_writer(fd)

    async def _flush(self) -> None:
        """Wait until the transport's buffer is empty (bytes must leave in order)."""
        transport = self.transport
        assert transport is not None
        high, low = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0, low=0)  # pause now, resume when empty
        try:
            while transport.get_write_buffer_size() and not transport.is_closing():
                await self._drained()
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits(high=high, low=low)
        if transport.is_closing():
            raise ConnectionResetError("the connection closed while its buffer drained")

    def want_body(self) -> None:
        """The app waits for body bytes: make sure the socket is being read."""
        if self.running is not None and not self.queued:
            self._resume_reading()

    def body_taken(self, cycle: Cycle) -> None:
        if (
            self.read_paused
            and cycle is self.parsing
            and cycle.buffered <= self.settings.body_high_water // 2
            and not self.queued
        ):
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closing:
            self.read_paused = False
            self.transport.resume_reading()

    # --- timer -------------------------------------------------------------------------

    def _set_phase(self, phase: int) -> None:
        self._phase = phase
        if phase == _BUSY:
            self._deadline = 0.0
            return
        timeout = (
            self.settings.header_timeout if phase == _HEAD else self.settings.keepalive_timeout
        )
        self._deadline = self.loop.time() + timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._deadline == 0.0 or self._phase == _BUSY:
            return  # serving: re-armed when the connection is idle again
        if self.loop.time() >= self._deadline:
            if self.transport is not None and not self.transport.is_closing():
                log.debug("connection from %s: %s timeout", self.client, _PHASES[self._phase])
                self._no_more_requests()
                self._end()
            return
        self._timer = self.loop.call_at(self._deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_PHASES: Final = {_IDLE: "keep-alive", _HEAD: "header"}


class _Rejected(Exception):
    """Raised in a parser callback to stop parsing a request that is refused.

    With ``(status, reason)``, that is the answer; without, ``H1Protocol._rejected`` is.
    """


def _framing(headers: list[tuple[bytes, bytes]], version: str) -> tuple[int, bool, bool, bool]:
    """The request body's Content-Length (0 if none), whether it is chunked, whether
    the client expects a 100 Continue before sending it, and whether it asks for an
    Upgrade (one pass).

    The parser has already refused malformed or conflicting Content-Lengths. A
    Transfer-Encoding other than exactly one ``chunked`` is refused here, before
    the app runs (:class:`_Rejected`): RFC 9112 6.1 wants 501 for a transfer
    coding the server does not implement, and ocistore implements none but
    chunked (a ``gzip, chunked`` body would otherwise be taken as plain chunked
    with its gzip coding silently dropped). With a Content-Length as well, or in
    an HTTP/1.0 request, the framing is ambiguous: 400 (RFC 9112 6.1, 6.3).
    """
    found = dict(headers)
    if len(found) == len(headers):
        # No name repeated (nearly every request): four look-ups, not a comparison of
        # every header's name with each of four; a repeated name takes the loop below.
        value = found.get(b"content-length")
        has_length = value is not None
        length = int(value) if value is not None else 0
        value = found.get(b"transfer-encoding")
        codings = [] if value is None else [value]
        value = found.get(b"expect")
        expect = value is not None and value.lower() == b"100-continue"
        upgrade = b"upgrade" in found
        return _checked(length, has_length, codings, expect, upgrade, version)
    length = 0
    expect = upgrade = has_length = False
    codings = []
    for name, value in headers:
        if name == b"content-length":
            length = int(value)
            has_length = True
        elif name == b"transfer-encoding":
            codings.append(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            expect = True
        elif name == b"upgrade":
            upgrade = True
    return _checked(length, has_length, codings, expect, upgrade, version)


def _checked(
    length: int, has_length: bool, codings: list[bytes], expect: bool, upgrade: bool, version: str
) -> tuple[int, bool, bool, bool]:
    """:func:`_framing`'s answer from what the headers say, or :class:`_Rejected`."""
    chunked = False
    if codings:
        if has_length:
            raise _Rejected(400, "both Content-Length and Transfer-Encoding")
        if version == "1.0":
            raise _Rejected(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) != 1 or codings[0].strip(b" \t").lower() != b"chunked":
            shown = b", ".join(codings).decode("latin-1")
            raise _Rejected(501, f"Transfer-Encoding {shown!r}: only chunked is implemented")
        chunked = True
    return length, chunked, expect, upgrade


def _addr(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def _error_response(status: int, reason: str) -> bytes:
    body = reason.encode("latin-1", "replace") + b"\n"
    return b"%scontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status_line(status),
        len(body),
        body,
    )
