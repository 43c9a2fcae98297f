"""The h1 server's request framing under arbitrary TCP segmentation.

Content-Length bodies bypass the parser (``H1Protocol._take_body``), so where
a head ends, where a body ends and the next head starts, and where a chunked
body gives way to a Content-Length one must all be found by the server
itself, whatever the segment boundaries. A stream of pipelined requests of
every kind is sent cut at random points, each piece only once the server has
read all before it (so it reads them as separate segments); the echo app must
see every body exactly and answer in order.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocistore.server.h1 import H1Settings
from ocistore.server.h1.protocol import H1Protocol
from waiting import wait_until

from .h1_harness import Conn, H1Server, Receive, Scope, Send

pytestmark = pytest.mark.one_core


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = bytearray()
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    digest = hashlib.sha256(body).hexdigest().encode()
    out = b"%s %s %d %s" % (scope["method"].encode(), scope["raw_path"], len(body), digest)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(out))]})  # fmt: skip
    await send({"type": "http.response.body", "body": out})


@dataclass
class Reads:
    total: int = 0  # bytes the server's connections have read (on its loop)

    def send_read(self, conn: Conn, data: bytes) -> None:
        """Send ``data`` and wait until the server has read it: one segment per call."""
        want = self.total + len(data)
        conn.send(data)
        wait_until(lambda: self.total == want, f"the server read {len(data)} more bytes")


@pytest.fixture(scope="module")
def reads() -> Iterator[Reads]:
    seen = Reads()
    real = H1Protocol.data_received

    def counting(self: H1Protocol, data: bytes) -> None:
        seen.total += len(data)
        real(self, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(H1Protocol, "data_received", counting)
        yield seen


@pytest.fixture(scope="module")
def server(reads: Reads) -> Iterator[H1Server]:
    srv = H1Server(_echo, H1Settings(shutdown_grace=2.0)).start()
    yield srv
    srv.stop()


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = [], 0
    for size in sizes:
        piece = body[pos : pos + size]
        if not piece:
            break
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        pos += len(piece)
    if pos < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - pos, body[pos:]))
    return b"".join(out) + b"0\r\n\r\n"


_request = st.tuples(
    st.sampled_from(["get", "length", "chunked"]),
    st.binary(max_size=3000),
    st.lists(st.integers(1, 700), max_size=4),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    requests=st.lists(_request, min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 20000), max_size=8),
)
def test_pipelined_requests_cut_anywhere(
    server: H1Server, reads: Reads, requests: list[tuple[str, bytes, list[int]]], cuts: list[int]
) -> None:
    stream = bytearray()
    expected = []
    for i, (kind, body, sizes) in enumerate(requests):
        path = b"/r%d" % i
        if kind == "get":
            stream += b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path
            body = b""
            method = b"GET"
        elif kind == "length":
            stream += b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (
                path,
                len(body),
            )
            stream += body
            method = b"PUT"
        else:
            stream += b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" % path
            stream += _chunked(body, sizes)
            method = b"POST"
        digest = hashlib.sha256(body).hexdigest().encode()
        expected.append(b"%s %s %d %s" % (method, path, len(body), digest))
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    with server.connect() as conn:
        for a, b in itertools.pairwise(points):
            reads.send_read(conn, bytes(stream[a:b]))
        got = [conn.read_response().body for _ in expected]
    assert got == expected


def test_head_terminator_split_in_every_place(server: H1Server, reads: Reads) -> None:
    body = b"x" * 10
    raw = b"PUT /p HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n" + body
    raw += b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n"
    head_end = raw.index(b"\r\n\r\n")
    for cut in range(head_end - 2, head_end + 6):
        with server.connect() as conn:
            reads.send_read(conn, raw[:cut])
            conn.send(raw[cut:])
            first = conn.read_response().body
            second = conn.read_response().body
        assert first.startswith(b"PUT /p 10 "), (cut, first)
        assert second.startswith(b"GET /after 0 "), (cut, second)
