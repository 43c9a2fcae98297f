"""The HTTP/1.1 server ``ocistore.server.h1`` on the wire (RFC 9112, ASGI 3.0 / spec 2.4).

Each test runs ``serve_asgi`` in a thread (``h1_harness.H1Server``) with a small
raw ASGI app and talks to it over plain sockets, so the exact bytes the server
writes are checked: scope, keep-alive, pipelining, request bodies (Content-Length,
chunked, Expect: 100-continue), response framing, the ``zerocopysend`` extension,
malformed requests, timeouts, disconnects, app errors, flow control, shutdown.
The server does not touch the storage core: the tests run once.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import http.client
import os
import queue
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ocistore.server.h1 import H1Settings
from waiting import wait_until

from .h1_harness import (
    IO_TIMEOUT,
    STOP_TIMEOUT,
    App,
    Conn,
    H1Server,
    Message,
    Receive,
    Scope,
    Send,
    request,
)

pytestmark = pytest.mark.one_core

MiB = 1 << 20
Serve = Callable[..., H1Server]


# -- fixtures and small apps --------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start servers with ``serve(app, rcvbuf=None, **settings)``; all are stopped afterwards."""
    servers: list[H1Server] = []

    def start(app: App, *, rcvbuf: int | None = None, **settings: Any) -> H1Server:
        settings.setdefault("shutdown_grace", 2.0)
        server = H1Server(app, H1Settings(**settings), rcvbuf=rcvbuf)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


async def read_body(receive: Receive) -> bytes:
    """The whole request body: http.request messages until more_body is False."""
    parts = []
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        assert isinstance(msg.get("body", b""), bytes), msg
        parts.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(parts)


async def respond(
    send: Send,
    status: int = 200,
    body: bytes = b"",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    length: bool = True,
) -> None:
    hs = list(headers or [])
    if length:
        hs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the request body (for GET: the path)."""
    body = await read_body(receive)
    await respond(send, 200, body or scope["path"].encode())


async def digest_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``<sha256 hex> <length>`` of the request body, hashing as it arrives."""
    h = hashlib.sha256()
    n = 0
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        h.update(msg["body"])
        n += len(msg["body"])
        if not msg.get("more_body", False):
            break
    await respond(send, 200, f"{h.hexdigest()} {n}".encode())


def digest_line(data: bytes) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}".encode()


def assert_serves(server: H1Server) -> None:
    """A fresh connection still gets a complete answer."""
    with server.connect() as c:
        c.send(request("GET", "/alive", headers=[("Connection", "close")]))
        resp = c.read_response()
        assert resp.status == 200, resp
        assert resp.complete


def unread(sock: socket.socket) -> int:
    """How many received bytes wait in ``sock`` to be read (FIONREAD)."""
    count: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    return count


def assert_ends_cleanly(c: Conn) -> None:
    """No stray byte follows the responses read so far, and the connection still serves.

    A last request asks the server to close after answering: a byte written after
    the previous response would come before this one's status line and break its
    parse, and nothing may follow it but the end of the connection.
    """
    assert c.available() == b"", f"stray bytes after the last response: {c.buf[:200]!r}"
    c.send(request("GET", "/last", headers=[("Connection", "close")]))
    resp = c.read_response()
    assert resp.status == 200 and resp.complete, resp
    assert c.closed_by_peer()


def routed(routes: Mapping[str, App], default: App = echo_app) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await routes.get(scope["path"], default)(scope, receive, send)

    return app


# -- 1. scope ------------------------------------------------------------------------------


def test_scope_of_an_http11_request(serve: Serve) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(dict(scope))
        await read_body(receive)
        await respond(send, 200, b"ok")

    server = serve(app)
    with server.connect() as c:
        c.send(
            b"PUT /v2/a%20b/c%2Fd/%C3%A9?x=1&y=%20z HTTP/1.1\r\n"
            b"Host: example.test\r\nX-Foo: Bar\r\nx-foo: second\r\nAccept: */*\r\n"
            b"Content-Length: 2\r\n\r\nhi"
        )
        assert c.read_response().status == 200
        client_addr = c.sock.getsockname()
    (scope,) = scopes
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "PUT"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/v2/a b/c/d/é"
    assert scope["raw_path"] == b"/v2/a%20b/c%2Fd/%C3%A9"
    assert scope["query_string"] == b"x=1&y=%20z"
    assert scope["root_path"] == ""
    assert [tuple(h) for h in scope["headers"]] == [
        (b"host", b"example.test"),
        (b"x-foo", b"Bar"),
        (b"x-foo", b"second"),
        (b"accept", b"*/*"),
        (b"content-length", b"2"),
    ]
    for name, value in scope["headers"]:
        assert type(name) is bytes and type(value) is bytes
    assert tuple(scope["server"]) == ("127.0.0.1", server.port)
    assert tuple(scope["client"]) == client_addr
    assert "http.response.zerocopysend" in scope["extensions"]


def scope_of(serve: Serve, raw: bytes, *, head: bool = False) -> Scope:
    """The scope the server gives an app for the request ``raw`` (answered 200)."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(dict(scope))
        await respond(send, 200, b"ok")

    server = serve(app)
    with server.connect() as c:
        c.send(raw)
        assert c.read_response(head=head).status == 200
    (scope,) = scopes
    return scope


def test_scope_of_an_http10_request_without_query(serve: Serve) -> None:
    scope = scope_of(serve, b"HEAD /plain HTTP/1.0\r\n\r\n", head=True)
    assert scope["http_version"] == "1.0"
    assert scope["method"] == "HEAD"
    assert scope["path"] == "/plain"
    assert scope["raw_path"] == b"/plain"
    assert scope["query_string"] == b""
    assert list(scope["headers"]) == []


def test_header_values_exclude_surrounding_whitespace(serve: Serve) -> None:
    # RFC 9110 5.5 / RFC 9112 5.1: optional whitespace around a field value is not part of it.
    scope = scope_of(
        serve, b"GET / HTTP/1.1\r\nHost: t\r\nX-A:   spaced value \t \r\nX-B:tight\r\n\r\n"
    )
    headers = [tuple(h) for h in scope["headers"]]
    assert headers[1:] == [(b"x-a", b"spaced value"), (b"x-b", b"tight")]


def test_scope_of_an_absolute_form_target(serve: Serve) -> None:
    # RFC 9112 3.2.2: a server must accept the absolute form (what proxies send).
    scope = scope_of(
        serve, b"GET http://example.test/v2/a%20b?n=1 HTTP/1.1\r\nHost: example.test\r\n\r\n"
    )
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (
        "/v2/a b",
        b"/v2/a%20b",
        b"n=1",
    )


# -- 2. keep-alive -------------------------------------------------------------------------


def test_http11_connection_serves_several_requests(serve: Serve) -> None:
    server = serve(echo_app)
    with server.connect() as c:
        for i in range(5):
            c.send(request("GET", f"/r{i}"))
            resp = c.read_response()
            assert (resp.status, resp.body) == (200, f"/r{i}".encode())
            assert resp.header(b"connection") is None  # HTTP/1.1 keeps it open by default
        assert_ends_cleanly(c)


@pytest.mark.parametrize("token", ["close", "Close"])
def test_connection_close_request_closes_after_the_response(serve: Serve, token: str) -> None:
    server = serve(echo_app)
    with server.connect() as c:
        c.send(request("GET", "/one"))
        assert c.read_response().body == b"/one"
        c.send(request("GET", "/two", headers=[("Connection", token)]))
        resp = c.read_response()
        assert resp.body == b"/two"
        assert resp.header(b"connection") == b"close"
        assert c.closed_by_peer()


def test_http10_request_closes_by_default(serve: Serve) -> None:
    server = serve(echo_app)
    with server.connect() as c:
        c.send(b"GET /old HTTP/1.0\r\n\r\n")
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"/old")
        assert resp.header(b"connection") == b"close"
        assert c.closed_by_peer()


def test_http10_keep_alive_request_keeps_the_connection(serve: Serve) -> None:
    # apachebench -k sends HTTP/1.0 requests with Connection: keep-alive.
    server = serve(echo_app)
    with server.connect() as c:
        for i in range(3):
            c.send(f"GET /ab{i} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".encode())
            resp = c.read_response()
            assert (resp.status, resp.body) == (200, f"/ab{i}".encode())
            assert resp.header(b"connection") == b"keep-alive"
            assert resp.header(b"content-length") == str(len(resp.body)).encode()
        c.send(b"GET /last HTTP/1.0\r\n\r\n")
        assert c.read_response().body == b"/last"
        assert c.closed_by_peer()


def test_http_client_keep_alive(serve: Serve) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a" * 10, "more_body": True})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    server = serve(app)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=IO_TIMEOUT)
    try:
        for i in range(3):
            conn.request("POST", "/chunked", body=f"body{i}".encode())
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == b"a" * 10 + f"body{i}".encode()
            assert resp.getheader("transfer-encoding") == "chunked"
    finally:
        conn.close()


# -- 3. pipelining -------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        # A slow first answer: the ones after it must still wait their turn. No
        # assertion depends on how long it takes.
        await asyncio.sleep(0.05)
        await respond(send, 200, b"slow first")

    async def unframed(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"got:", "more_body": True})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    server = serve(routed({"/one": slow, "/two": unframed}))
    with server.connect() as c:
        c.send(
            request("GET", "/one")
            + request("POST", "/two", body=b"hello")
            + request("GET", "/three")
            + request("HEAD", "/four")
            + request("GET", "/five")
        )
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
        r4, r5 = c.read_response(head=True), c.read_response()
        assert (r1.status, r1.body) == (200, b"slow first")
        assert (r2.status, r2.body, r2.chunked) == (201, b"got:hello", True)
        assert (r3.status, r3.body) == (200, b"/three")
        assert (r4.status, r4.header(b"content-length")) == (200, b"5")
        assert (r5.status, r5.body) == (200, b"/five")
        assert_ends_cleanly(c)


# -- 4. request bodies ---------------------------------------------------------------------


def test_content_length_body_is_delivered_exactly(serve: Serve) -> None:
    server = serve(echo_app)
    body = bytes(range(256)) * 40
    with server.connect() as c:
        c.send(request("POST", "/", body=body))
        assert c.read_response().body == body
        c.send(request("POST", "/", body=b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"))
        assert c.read_response().body == b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"


def test_body_sent_in_many_small_pieces(serve: Serve) -> None:
    server = serve(echo_app)
    body = random.Random(1).randbytes(3000)
    data = request("POST", "/pieces", body=body)
    with server.connect() as c:
        for i in range(0, len(data), 37):
            c.send(data[i : i + 37])
            # A client that trickles its body, so the server's reads see small
            # pieces; the answer must not depend on how they were cut.
            time.sleep(0.001)
        resp = c.read_response()
        assert resp.body == body
        c.send(request("GET", "/after"))
        assert c.read_response().body == b"/after"


def test_64_mib_body(serve: Serve) -> None:
    server = serve(digest_app)
    body = random.Random(2).randbytes(64 * MiB)
    with server.connect() as c:
        c.send(request("PUT", "/big", body=body))
        assert c.read_response().body == digest_line(body)


def test_chunked_body_is_delivered_decoded(serve: Serve) -> None:
    server = serve(echo_app)
    pieces = [b"hello", b" ", b"x" * 4096, random.Random(3).randbytes(70000), b"end"]
    chunks = [
        (f"{len(p):X}" if i % 2 else f"{len(p):x};ext=1").encode() + b"\r\n" + p + b"\r\n"
        for i, p in enumerate(pieces)
    ]
    head = b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with server.connect() as c:
        c.send(head + b"".join(chunks) + b"0\r\n\r\n")
        assert c.read_response().body == b"".join(pieces)
        # the framing sent a few bytes at a time, then a request on the same connection
        data = head + b"".join(chunks[:3]) + b"0\r\n\r\n"
        for i in range(0, len(data), 7):
            c.send(data[i : i + 7])
        assert c.read_response().body == b"".join(pieces[:3])
        c.send(request("GET", "/next"))
        assert c.read_response().body == b"/next"


def test_chunked_body_with_trailer(serve: Serve) -> None:
    server = serve(echo_app)
    with server.connect() as c:
        c.send(
            b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n" + request("GET", "/next")
        )
        assert c.read_response().body == b"abc"
        assert c.read_response().body == b"/next"


@pytest.mark.parametrize(
    "data",
    [request("GET", "/"), request("POST", "/", length=True), request("DELETE", "/", length=True)],
    ids=["no-length", "length-0-post", "length-0-delete"],
)
def test_empty_body_is_one_final_message(serve: Serve, data: bytes) -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        msg = await receive()
        seen.append(dict(msg))
        await respond(send, 200, b"ok")

    server = serve(app)
    with server.connect() as c:
        c.send(data)
        assert c.read_response().status == 200
    (msg,) = seen
    assert msg["type"] == "http.request"
    assert msg.get("body", b"") == b""
    assert msg.get("more_body", False) is False


# -- 5. Expect: 100-continue ---------------------------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def test_100_continue_is_sent_when_the_app_first_receives(serve: Serve) -> None:
    started, gate = threading.Event(), threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        if not gate.is_set():
            await asyncio.to_thread(gate.wait, IO_TIMEOUT)
        await respond(send, 200, await read_body(receive))

    server = serve(app)
    with server.connect() as c:
        c.send(request("PUT", "/", headers=[("Expect", "100-continue"), ("Content-Length", "5")]))
        assert started.wait(IO_TIMEOUT)
        # The app runs and has not asked for the body: the 100 is not on the wire.
        assert c.available() == b"", f"sent before the app asked for the body: {c.buf!r}"
        gate.set()
        assert c.read_until(b"\r\n\r\n") == CONTINUE
        c.send(b"hello")
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"hello")
        # the connection is still usable, and a second expect gets its own 100
        c.send(request("PUT", "/", headers=[("Expect", "100-continue"), ("Content-Length", "3")]))
        assert c.read_until(b"\r\n\r\n") == CONTINUE
        c.send(b"abc")
        assert c.read_response().body == b"abc"


def test_no_100_continue_when_the_app_answers_without_reading(serve: Serve) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 413, b"too large")

    server = serve(routed({"/": app}))
    with server.connect() as c:
        c.send(
            request("PUT", "/", headers=[("Expect", "100-continue"), ("Content-Length", "100000")])
        )
        resp = c.read_response(skip_1xx=False)
        assert resp.raw_head.startswith(b"HTTP/1.1 413 "), resp.raw_head
        assert resp.body == b"too large"
        assert c.closed_by_peer()
    assert_serves(server)


def test_unread_body_closes_the_connection_after_the_response(serve: Serve) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 401, b"denied")

    server = serve(app)
    with server.connect() as c:
        c.send(request("PUT", "/", headers=[("Content-Length", "1000000")]) + b"x" * 10)
        resp = c.read_response()
        assert (resp.status, resp.body) == (401, b"denied")
        assert c.closed_by_peer()


# -- 6. response framing -------------------------------------------------------------------


def test_app_content_length_is_used_as_is(serve: Serve) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"11"), (b"x-app", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"world", "more_body": False})

    server = serve(app)
    with server.connect() as c:
        for _ in range(2):
            c.send(request("GET", "/"))
            resp = c.read_response()
            assert resp.raw_head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert resp.header(b"content-length") == b"11"
            assert resp.header(b"transfer-encoding") is None
            assert resp.header(b"x-app") == b"1"
            assert resp.body == b"hello world"
        assert_ends_cleanly(c)


def test_app_content_length_bounds_the_body(serve: Serve) -> None:
    """Fewer bytes than announced: the connection closes; more: they never reach the wire."""

    async def short(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
        )
        await send({"type": "http.response.body", "body": b"12345", "more_body": False})

    async def long(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
        )
        await send({"type": "http.response.body", "body": b"1234567890", "more_body": False})

    server = serve(routed({"/short": short, "/long": long}))
    with server.connect() as c:
        c.send(request("GET", "/short") + request("GET", "/next"))
        resp = c.read_response()
        assert (resp.status, resp.complete, resp.body) == (200, False, b"12345")
        assert c.read_to_eof() == b""
    with server.connect() as c:
        # Nothing of the response had left when the app overran its length: an error
        # response, as for an app that fails before it starts one.
        c.send(request("GET", "/long") + request("GET", "/next"))
        resp = c.read_response()
        assert resp.raw_head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), resp.raw_head
        assert resp.complete
        assert c.read_to_eof() == b""
    assert_serves(server)


def unframed_app(parts: list[bytes], status: int = 200) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i, part in enumerate(parts):
            more = i < len(parts) - 1
            await send({"type": "http.response.body", "body": part, "more_body": more})

    return app


PARTS = [b"hello", b"", b" world", random.Random(4).randbytes(100000), b"!"]


def test_http11_response_without_length_is_chunked(serve: Serve) -> None:
    server = serve(unframed_app(PARTS))
    with server.connect() as c:
        for _ in range(2):
            c.send(request("GET", "/"))
            resp = c.read_response()
            assert resp.header(b"transfer-encoding") == b"chunked"
            assert resp.header(b"content-length") is None
            assert resp.complete and resp.body == b"".join(PARTS)
            assert resp.raw_body.endswith(b"\r\n0\r\n\r\n")
        assert_ends_cleanly(c)


def test_http11_empty_response_without_length(serve: Serve) -> None:
    server = serve(unframed_app([b""]))
    with server.connect() as c:
        c.send(request("GET", "/") + request("GET", "/"))
        for _ in range(2):
            resp = c.read_response()
            assert resp.status == 200 and resp.body == b""
            assert resp.header(b"content-length") is None
            assert (resp.chunked, resp.raw_body) == (True, b"0\r\n\r\n")


def test_http10_response_without_length_is_close_delimited(serve: Serve) -> None:
    server = serve(unframed_app(PARTS))
    with server.connect() as c:
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = c.read_response()
        assert resp.header(b"transfer-encoding") is None
        assert resp.header(b"content-length") is None
        assert resp.body == b"".join(PARTS)  # read to EOF: the server closed


def test_head_response_carries_no_body(serve: Serve) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/framed":
            await read_body(receive)
            await respond(send, 200, b"hello")
        else:
            await unframed_app([b"part one", b"part two"])(scope, receive, send)

    server = serve(app)
    with server.connect() as c:
        c.send(
            request("HEAD", "/framed") + request("HEAD", "/unframed") + request("GET", "/framed")
        )
        r1 = c.read_response(head=True)
        assert r1.header(b"content-length") == b"5"
        r2 = c.read_response(head=True)
        assert r2.status == 200
        # any body byte after either head would break the parse of the third response
        r3 = c.read_response()
        assert (r3.status, r3.body) == (200, b"hello")
        assert_ends_cleanly(c)


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_no_body(serve: Serve, status: int) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/bare":
            await unframed_app([b""], status)(scope, receive, send)
        elif scope["path"] == "/length":  # 304 with the selected representation's length
            await read_body(receive)
            headers = [(b"content-length", b"1234"), (b"etag", b'"x"')]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await echo_app(scope, receive, send)

    server = serve(app)
    with server.connect() as c:
        c.send(request("GET", "/bare") + request("GET", "/other"))
        r1 = c.read_response()
        assert r1.status == status
        if status == 204:  # RFC 9110 8.6, RFC 9112 6.1: neither header in a 204
            assert r1.header(b"transfer-encoding") is None
            assert r1.header(b"content-length") is None
        assert (c.read_response().body) == b"/other"
        if status == 304:
            c.send(request("GET", "/length") + request("GET", "/other"))
            assert c.read_response().status == 304
            assert c.read_response().body == b"/other"
        assert_ends_cleanly(c)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (200, b"OK"),
        (201, b"Created"),
        (202, b"Accepted"),
        (204, b"No Content"),
        (206, b"Partial Content"),
        (301, b"Moved Permanently"),
        (307, b"Temporary Redirect"),
        (308, b"Permanent Redirect"),
        (400, b"Bad Request"),
        (401, b"Unauthorized"),
        (403, b"Forbidden"),
        (404, b"Not Found"),
        (405, b"Method Not Allowed"),
        (409, b"Conflict"),
        (429, b"Too Many Requests"),
        (500, b"Internal Server Error"),
        (503, b"Service Unavailable"),
    ],
)
def test_status_line_has_the_standard_reason(serve: Serve, status: int, reason: bytes) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, status, b"" if status == 204 else b"x")

    server = serve(app)
    with server.connect() as c:
        c.send(request("GET", "/"))
        resp = c.read_response()
        assert resp.raw_head.split(b"\r\n", 1)[0] == b"HTTP/1.1 %d %s" % (status, reason)


# -- 7. http.response.zerocopysend ---------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(5).randbytes(MiB + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


Part = tuple[str, Any, Any]  # ("body", bytes, None) or ("file", offset, count)


def file_app(path: Path, parts: list[Part], *, length: int | None, log: list[Any]) -> App:
    """Sends ``parts`` from one open file; logs whether the file is still open afterwards."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        headers = [] if length is None else [(b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with open(path, "rb") as f:
            for i, (kind, a, b) in enumerate(parts):
                more = i < len(parts) - 1
                if kind == "body":
                    await send({"type": "http.response.body", "body": a, "more_body": more})
                else:
                    msg = {"type": "http.response.zerocopysend", "file": f, "more_body": more}
                    await send({**msg, "offset": a, "count": b})
            try:
                log.append((f.closed, os.fstat(f.fileno()).st_size))
            except OSError as exc:  # the descriptor was closed under the app
                log.append(exc)

    return app


def expected(data: bytes, parts: list[Part]) -> bytes:
    out = []
    for kind, a, b in parts:
        if kind == "body":
            out.append(a)
        else:
            start = a or 0
            out.append(data[start:] if b is None else data[start : start + b])
    return b"".join(out)


SENDS: dict[str, list[Part]] = {
    "whole": [("file", 0, None)],
    "none-offset": [("file", None, None)],
    "inner-range": [("file", 100, 1000)],
    "tail": [("file", MiB + 100, None)],
    "exact-tail": [("file", MiB, 123)],
    "several": [("file", 0, 10), ("file", 500, 100), ("file", 10, 5), ("file", 7, MiB)],
    "mixed": [
        ("body", b"<", None),
        ("file", 5, 100),
        ("body", b"|", None),
        ("file", 0, None),
        ("body", b">", None),
    ],
}


@pytest.mark.parametrize("name", list(SENDS))
@pytest.mark.parametrize("framing", ["length", "chunked", "http10"])
def test_zerocopysend_sends_the_file_range(
    serve: Serve, data_file: tuple[Path, bytes], name: str, framing: str
) -> None:
    path, data = data_file
    parts = SENDS[name]
    want = expected(data, parts)
    log: list[Any] = []
    length = len(want) if framing == "length" else None
    server = serve(file_app(path, parts, length=length, log=log))
    with server.connect() as c:
        if framing == "http10":
            c.send(b"GET / HTTP/1.0\r\n\r\n")
        else:
            c.send(request("GET", "/") + request("GET", "/"))
        for _ in range(1 if framing == "http10" else 2):
            resp = c.read_response()
            assert resp.complete
            assert resp.chunked == (framing == "chunked")
            assert len(resp.body) == len(want)
            assert resp.body == want
    calls = 1 if framing == "http10" else 2
    wait_until(lambda: len(log) == calls, f"the app returned from its {calls} responses")
    assert all(entry == (False, len(data)) for entry in log), "the server closed the app's file"


def test_zerocopysend_in_a_head_response_sends_no_bytes(
    serve: Serve, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    log: list[Any] = []
    server = serve(file_app(path, [("file", 0, None)], length=len(data), log=log))
    with server.connect() as c:
        c.send(request("HEAD", "/") + request("GET", "/"))
        assert c.read_response(head=True).header(b"content-length") == str(len(data)).encode()
        assert c.read_response().body == data


def test_zerocopysend_256_mib_to_a_slow_reader(serve: Serve, tmp_path: Path) -> None:
    # The app closes its file as soon as its last send returns: the server must not
    # need the descriptor after that, however far behind the client is.
    path = tmp_path / "big"
    h = hashlib.sha256()
    base = random.Random(6).randbytes(MiB)
    size = 256 * MiB
    with open(path, "wb") as f:
        for i in range(size // MiB):
            block = i.to_bytes(8, "big") + base[8:]
            h.update(block)
            f.write(block)
    log: list[Any] = []
    big = file_app(path, [("file", 0, None)], length=size, log=log)
    server = serve(routed({"/big": big}))
    with server.connect() as c:
        c.send(request("GET", "/big"))
        resp = c.read_head()
        assert resp.header(b"content-length") == str(size).encode()
        # The client reads nothing more: once the body has begun to arrive, the
        # server has to wait for it ...
        wait_until(lambda: len(c.buf) + unread(c.sock) > 0, "the body began to arrive")
        assert_serves(server)  # ... without blocking anyone else
        got = hashlib.sha256(c.buf)
        n = len(c.buf)
        c.buf = b""
        chunk = bytearray(MiB)
        view = memoryview(chunk)
        while n < size:
            k = c.sock.recv_into(view, min(MiB, size - n))
            if k == 0:
                raise AssertionError(f"connection closed after {n} of {size} bytes")
            got.update(view[:k])
            n += k
        assert got.hexdigest() == h.hexdigest()
        c.send(request("GET", "/after"))
        assert c.read_response().body == b"/after"
    wait_until(lambda: bool(log), "the app returned from its response")
    assert log == [(False, size)]


def test_zerocopysend_range_past_the_end_closes_the_connection(
    serve: Serve, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    log: list[Any] = []
    server = serve(
        routed({"/short": file_app(path, [("file", len(data) - 100, 1000)], length=1000, log=log)})
    )
    with server.connect() as c:
        c.send(request("GET", "/short"))
        # The head is out before the range turns out short: the bytes the file has
        # follow it, then the connection ends (only that can mark the body short).
        resp = c.read_response()
        assert resp.status == 200
        assert not resp.complete
        assert resp.body == data[len(data) - 100 :]
        assert c.closed_by_peer()
    assert_serves(server)


# -- 8. malformed requests ------------------------------------------------------------------

BAD_REQUESTS = {
    "garbage-line": b"GARBAGE\r\n\r\n",
    "no-version": b"GET /\r\nHost: t\r\n\r\n",
    "header-no-colon": b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
    "space-in-name": b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n",
    "length-abc": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "length-negative": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "length-twice": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_malformed_request_gets_400_and_close(serve: Serve, name: str) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await echo_app(scope, receive, send)

    server = serve(app)
    with server.connect() as c:
        c.send(BAD_REQUESTS[name])
        resp = c.read_response()
        assert resp.raw_head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), resp.raw_head
        assert c.closed_by_peer()
    assert calls == []
    assert_serves(server)


def test_malformed_request_after_a_good_one(serve: Serve) -> None:
    server = serve(echo_app)
    with server.connect() as c:
        c.send(request("GET", "/good") + b"NOT HTTP AT ALL\r\n\r\n")
        assert c.read_response().body == b"/good"
        assert c.read_response().status == 400
        assert c.closed_by_peer()


def test_malformed_pipelined_request_does_not_cut_the_response_before_it(serve: Serve) -> None:
    payload = random.Random(9).randbytes(8 * MiB)

    async def big(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await respond(send, 200, payload)

    server = serve(routed({"/big": big}))
    with server.connect() as c:
        # Both arrive in one read: the 400 is pending before the app even starts.
        c.send(request("GET", "/big") + b"NOT HTTP AT ALL\r\n\r\n")
        # The server is writing the answer (far more than the socket holds) before
        # the client reads a byte.
        wait_until(lambda: unread(c.sock) > 0, "the answer began to arrive")
        resp = c.read_response()
        assert resp.complete, f"got {len(resp.body)} of {len(payload)} body bytes"
        assert resp.body == payload


def test_bad_chunk_size_ends_the_connection(serve: Serve) -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            seen.append(msg)
            if msg["type"] != "http.request" or not msg.get("more_body"):
                break
        await respond(send, 200, b"ok")

    server = serve(app)
    with server.connect() as c:
        c.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
        )
        # RFC 9112 7.1: a chunk size is hex digits; the framing is lost, so the
        # server answers 400 and closes (the app's own answer cannot go out).
        resp = c.read_response()
        assert resp.raw_head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), resp.raw_head
        assert c.closed_by_peer()
    # the app had the chunk before the bad one, then a disconnect: never a final body
    assert seen == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert_serves(server)


OVERSIZE = {
    "long-header": request("GET", "/", headers=[("X-Big", "v" * 8000)]),
    "many-headers": request("GET", "/", headers=[(f"X-H{i}", "v" * 30) for i in range(200)]),
    "long-target": request("GET", "/" + "p" * 8000),
    "header-without-end": b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 6000,
}


@pytest.mark.parametrize("name", list(OVERSIZE))
def test_oversized_head_gets_431_and_close(serve: Serve, name: str) -> None:
    server = serve(echo_app, max_header_bytes=4096)
    with server.connect() as c:
        c.send(request("GET", "/fine", headers=[("X-Ok", "v" * 3000)]))
        assert c.read_response().body == b"/fine"
        c.send(OVERSIZE[name])
        resp = c.read_response()
        assert resp.raw_head.startswith(b"HTTP/1.1 431 "), resp.raw_head
        assert c.closed_by_peer()
    assert_serves(server)


# -- 9. timeouts ----------------------------------------------------------------------------

FAST_TIMEOUTS = {"header_timeout": 0.5, "keepalive_timeout": 0.5}


def assert_closed_without_answer(c: Conn) -> None:
    """The server ends the connection without a byte (it sends no 408: RFC 9110 15.5.9
    allows one, but a client that sent nothing, or half a head, has no request to answer).
    """
    data = c.read_to_eof()
    assert data == b"", data[:200]


def test_silent_connection_is_closed(serve: Serve) -> None:
    server = serve(echo_app, **FAST_TIMEOUTS)
    with server.connect() as c:
        assert_closed_without_answer(c)


def test_half_request_line_is_closed(serve: Serve) -> None:
    server = serve(echo_app, **FAST_TIMEOUTS)
    with server.connect() as c:
        c.send(b"GET /slo")
        assert_closed_without_answer(c)
    assert_serves(server)


def test_trickled_headers_are_closed(serve: Serve) -> None:
    server = serve(echo_app, **FAST_TIMEOUTS)
    with server.connect() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            try:
                c.send(b"a")
            except OSError:  # reset / broken pipe: closed
                break
            ready, _, _ = select.select([c.sock], [], [], 0.1)
            if ready:
                assert_closed_without_answer(c)
                break
        else:
            raise AssertionError("a connection trickling its headers was never closed")


def test_idle_keep_alive_connection_is_closed(serve: Serve) -> None:
    server = serve(echo_app, **FAST_TIMEOUTS)
    with server.connect() as c:
        c.send(request("GET", "/once"))
        assert c.read_response().body == b"/once"
        assert c.read_to_eof() == b""


def test_slow_app_is_not_cut_off_by_the_timers(serve: Serve) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body == b"x":
            # Longer than both timers: part of what is tested, not a wait for anything.
            await asyncio.sleep(1.5)
        await respond(send, 200, b"late " + body)

    server = serve(app, **FAST_TIMEOUTS)
    with server.connect() as c:
        c.send(request("POST", "/", body=b"x"))
        assert c.read_response().body == b"late x"
        c.send(request("POST", "/", body=b"y"))  # still a usable connection
        assert c.read_response().body == b"late y"


def test_slow_body_upload_is_not_cut_off_by_the_timers(serve: Serve) -> None:
    server = serve(echo_app, **FAST_TIMEOUTS)
    body = b"0123456789abcdef"
    with server.connect() as c:
        c.send(request("PUT", "/", headers=[("Content-Length", str(len(body)))]))
        for i in range(0, len(body), 2):
            # A client that trickles its body for longer than the timers: part of
            # what is tested, not a wait for anything.
            time.sleep(0.1)
            c.send(body[i : i + 2])
        assert c.read_response().body == body


# -- 10. client disconnects -----------------------------------------------------------------


def test_disconnect_mid_body_is_reported_to_the_app(serve: Serve) -> None:
    first = threading.Event()
    messages: queue.Queue[Any] = queue.Queue()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            msg = await asyncio.wait_for(receive(), IO_TIMEOUT)
            messages.put(msg)
            first.set()
            if msg["type"] != "http.request":
                break
        # a second receive after the disconnect says the same
        messages.put(await asyncio.wait_for(receive(), IO_TIMEOUT))
        try:
            await respond(send, 200, b"nobody listens")
        except OSError as exc:
            messages.put(exc)
        else:
            messages.put("no-op")

    server = serve(routed({"/": app}))
    c = server.connect()
    c.send(request("PUT", "/", headers=[("Content-Length", "100000")]) + b"x" * 1000)
    assert first.wait(IO_TIMEOUT)
    c.close()
    got = [messages.get(timeout=IO_TIMEOUT)]
    while got[-1]["type"] == "http.request":
        assert got[-1]["more_body"] is True
        got.append(messages.get(timeout=IO_TIMEOUT))
    assert b"".join(m["body"] for m in got[:-1]) == b"x" * 1000
    assert got[-1] == {"type": "http.disconnect"}
    assert messages.get(timeout=IO_TIMEOUT) == {"type": "http.disconnect"}
    outcome = messages.get(timeout=IO_TIMEOUT)
    # ASGI 2.4: send on a closed connection raises an OSError subclass.
    assert isinstance(outcome, OSError), outcome
    assert_serves(server)


def test_receive_after_the_response_returns_disconnect(serve: Serve) -> None:
    after: queue.Queue[Any] = queue.Queue()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await respond(send, 200, b"done")
        try:
            after.put(await asyncio.wait_for(receive(), 5))
        except TimeoutError:
            after.put("receive blocked after the response")

    server = serve(app)
    with server.connect() as c:
        c.send(request("POST", "/", body=b"abc"))
        assert c.read_response().body == b"done"
        assert after.get(timeout=IO_TIMEOUT) == {"type": "http.disconnect"}
        c.send(request("GET", "/"))  # the connection itself is still open
        assert c.read_response().body == b"done"
        assert after.get(timeout=IO_TIMEOUT) == {"type": "http.disconnect"}


def test_send_to_a_vanished_client_does_not_hang_or_crash(serve: Serve) -> None:
    outcome: queue.Queue[Any] = queue.Queue()
    size = 1024 * MiB

    async def big(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunk = b"z" * MiB
        try:
            for _ in range(size // MiB):
                msg = {"type": "http.response.body", "body": chunk, "more_body": True}
                await asyncio.wait_for(send(msg), IO_TIMEOUT)
        except OSError as exc:
            outcome.put(exc)
        except TimeoutError:
            outcome.put("send hung after the client left")
        else:
            outcome.put("no-op")

    server = serve(routed({"/big": big}))
    c = server.connect()
    c.send(request("GET", "/big"))
    assert c.read_head().status == 200
    c.read_exact(MiB)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # reset, with most of the body unsent
    result = outcome.get(timeout=3 * IO_TIMEOUT)
    # ASGI 2.4: send on a closed connection raises an OSError subclass.
    assert isinstance(result, OSError), result
    assert_serves(server)


# -- 11. app errors -------------------------------------------------------------------------


async def fail_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("app failed before the response started")


async def fail_after_start(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-length", b"100")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
    raise RuntimeError("app failed mid-response")


async def fail_after_start_unframed(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
    raise RuntimeError("app failed mid-response")


async def return_silently(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def return_mid_response(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-length", b"100")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})


ERROR_APPS: dict[str, App] = {
    "/before": fail_before_start,
    "/after": fail_after_start,
    "/after-unframed": fail_after_start_unframed,
    "/silent": return_silently,
    "/return-mid": return_mid_response,
}


@pytest.mark.parametrize("path", ["/before", "/silent"])
def test_app_failing_before_the_response_gets_500(serve: Serve, path: str) -> None:
    server = serve(routed(ERROR_APPS))
    with server.connect() as c:
        c.send(request("GET", path))
        resp = c.read_response()
        assert resp.raw_head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert resp.complete
        assert c.closed_by_peer()
    assert_serves(server)


@pytest.mark.parametrize("path", ["/after", "/after-unframed", "/return-mid"])
def test_app_failing_mid_response_truncates_it(serve: Serve, path: str) -> None:
    server = serve(routed(ERROR_APPS))
    with server.connect() as c:
        c.send(request("GET", path))
        resp = c.read_response()
        assert resp.status == 200
        assert not resp.complete, "a failed response must not look complete"
        assert resp.body == b"0123456789"  # what the app sent before it failed
        assert c.read_to_eof() == b""
    assert_serves(server)


# -- 12. flow control -----------------------------------------------------------------------


def test_slow_reader_gets_a_64_mib_body_intact(serve: Serve) -> None:
    async def slow_digest(scope: Scope, receive: Receive, send: Send) -> None:
        h = hashlib.sha256()
        n = 0
        next_pause = 0
        while True:
            msg = await receive()
            h.update(msg["body"])
            n += len(msg["body"])
            if n >= next_pause:
                # A slow consumer, so the body backs up: part of what is tested.
                await asyncio.sleep(0.01)
                next_pause += MiB
            if not msg.get("more_body"):
                break
        await respond(send, 200, f"{h.hexdigest()} {n}".encode())

    server = serve(slow_digest, body_high_water=MiB)
    body = random.Random(7).randbytes(64 * MiB)
    with server.connect() as c:
        c.send(request("PUT", "/", body=body))
        assert c.read_response().body == digest_line(body)


def test_server_stops_reading_while_the_app_does_not_receive(serve: Serve) -> None:
    gate = threading.Event()

    async def gated(scope: Scope, receive: Receive, send: Send) -> None:
        if not gate.is_set():
            await asyncio.to_thread(gate.wait, IO_TIMEOUT)
        await digest_app(scope, receive, send)

    # a small receive buffer on the accepted socket, so TCP's own buffering stays small
    server = serve(gated, body_high_water=MiB, rcvbuf=256 << 10)
    body = random.Random(8).randbytes(64 * MiB)
    data = request("PUT", "/", body=body)
    with server.connect() as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
        c.sock.settimeout(0.5)
        sent = 0
        try:
            view = memoryview(data)
            while sent < len(data):
                sent += c.sock.send(view[sent : sent + MiB])
        except TimeoutError:
            pass  # nobody reads: the server holds us back
        assert sent < 16 * MiB, f"the server buffered {sent} bytes for an app that does not read"
        gate.set()
        c.sock.settimeout(IO_TIMEOUT)
        c.sock.sendall(data[sent:])
        assert c.read_response().body == digest_line(body)


# -- 13. shutdown ---------------------------------------------------------------------------


def refuses_new_connections(server: H1Server) -> bool:
    """A new connection is refused: the listening socket closed when stopping began."""
    try:
        c = server.connect()
    except ConnectionRefusedError:
        return True
    c.close()
    return False


def test_stop_lets_the_request_in_flight_finish(serve: Serve) -> None:
    started, release = threading.Event(), threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        if scope["path"] == "/slow":
            started.set()
            await asyncio.to_thread(release.wait, IO_TIMEOUT)
        await respond(send, 200, b"finished " + scope["path"].encode())

    server = serve(app, shutdown_grace=10.0)
    busy = server.connect()
    idle = server.connect()
    idle.send(request("GET", "/idle"))
    assert idle.read_response().body == b"finished /idle"
    busy.send(request("GET", "/slow"))
    assert started.wait(IO_TIMEOUT)
    server.request_stop()
    assert idle.closed_by_peer(), "an idle keep-alive connection stays open after stop"
    assert refuses_new_connections(server), "a connection made after stop was accepted"
    # The app is held until now: serve_asgi is still running, and the answer
    # below can only come from a server that waited for it.
    assert not server.returned.is_set(), "serve_asgi returned with a request in flight"
    release.set()
    resp = busy.read_response()
    assert (resp.status, resp.body) == (200, b"finished /slow")
    assert busy.closed_by_peer()
    busy.close()
    idle.close()
    server.stop(timeout=5.0)


def test_stop_closes_idle_connections_at_once(serve: Serve) -> None:
    server = serve(echo_app, shutdown_grace=30.0)
    used = server.connect()
    fresh = server.connect()
    used.send(request("GET", "/used"))
    assert used.read_response().body == b"/used"
    server.request_stop()
    assert used.closed_by_peer()
    assert fresh.closed_by_peer()
    used.close()
    fresh.close()
    server.stop(timeout=5.0)  # well inside shutdown_grace: nobody was in flight


def test_stop_gives_up_on_requests_after_the_grace(serve: Serve) -> None:
    started = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.sleep(3600)  # an app that never answers: what the grace is for

    server = serve(app, shutdown_grace=0.5)
    with server.connect() as c:
        c.send(request("GET", "/forever"))
        assert started.wait(IO_TIMEOUT)
        server.stop(timeout=IO_TIMEOUT)
        c.read_to_eof()  # the connection ends too


# -- concurrency smoke ----------------------------------------------------------------------


def test_many_concurrent_connections(serve: Serve) -> None:
    server = serve(echo_app)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with server.connect() as c:
                for i in range(5):
                    body = f"{k}-{i}".encode() * 100
                    c.send(request("POST", "/", body=body))
                    assert c.read_response().body == body
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT)
    assert errors == []


# -- run_worker ----------------------------------------------------------------------------

WORKER_SCRIPT = """
import socket, sys
from ocistore.server.h1 import H1Settings, run_worker

events = []

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            events.append(msg["type"])
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                print("events", " ".join(events), flush=True)
                return
    body = " ".join(events).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
print("port", sock.getsockname()[1], flush=True)
run_worker(lambda: app, sock, H1Settings(shutdown_grace=2.0))
print("returned", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_worker_runs_the_lifespan_around_serving(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("port "), line
        port = int(line.split()[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"lifespan.startup")
        conn.close()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out.splitlines() == ["events lifespan.startup lifespan.shutdown", "returned"]
