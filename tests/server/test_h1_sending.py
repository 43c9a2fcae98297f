"""How the h1 server's sending threads behave with clients that read slowly or not at all.

A file range is written by a thread (``sendrange.write_some``) that gives the
wait for a full socket back to the event loop after a while: a stalled
client must neither lose bytes when it resumes, nor hold a thread, nor keep
its connection past the send timeout.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocistore.server.h1 import H1Settings
from ocistore.server.h1.protocol import H1Protocol
from ocistore.server.h1.sendrange import SendTimeout
from ocistore.server.h1.serve import SEND_THREADS
from waiting import wait_until

from .h1_harness import Closed, H1Server, Receive, Scope, Send

pytestmark = pytest.mark.one_core

SIZE = 24 << 20


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("h1send") / "blob"
    path.write_bytes(os.urandom(SIZE))
    return path


def _file_app(path: Path) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        with path.open("rb") as f:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % SIZE)]})  # fmt: skip
            await send({"type": "http.response.zerocopysend", "file": f, "offset": 0,
                        "count": SIZE, "more_body": False})  # fmt: skip

    return app


@pytest.fixture
def server(blob: Path) -> Iterator[H1Server]:
    srv = H1Server(_file_app(blob), H1Settings(send_timeout=1.0, shutdown_grace=2.0))  # type: ignore[arg-type]
    yield srv.start()
    srv.stop()


@dataclass
class Parking:
    """What the connections' sends do with a full socket (counted on the server's loop)."""

    parks: int = 0  # times a sending thread handed the wait for room to the loop
    parked: int = 0  # connections waiting for room now
    timeouts: int = 0  # connections given up after the send timeout


@pytest.fixture
def parking(monkeypatch: pytest.MonkeyPatch) -> Parking:
    """Instruments ``H1Protocol._writable``, the loop's wait for a full socket to take data."""
    seen = Parking()
    real = H1Protocol._writable

    async def writable(self: H1Protocol, fd: int) -> None:
        seen.parks += 1
        seen.parked += 1
        try:
            await real(self, fd)
        except SendTimeout:
            seen.timeouts += 1
            raise
        finally:
            seen.parked -= 1

    monkeypatch.setattr(H1Protocol, "_writable", writable)
    return seen


def _small_rcvbuf(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)


def test_a_client_that_pauses_gets_every_byte(
    server: H1Server, blob: Path, parking: Parking
) -> None:
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        # the client reads nothing until the sending thread has parked
        wait_until(lambda: parking.parked == 1, "the send parked on the full socket")
        resp = conn.read_response()
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(blob.read_bytes()).digest()


def test_a_client_that_never_reads_is_dropped_after_the_send_timeout(
    server: H1Server, parking: Parking
) -> None:
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        # the client reads nothing until the server gave up on it (send_timeout is 1 s)
        wait_until(lambda: parking.timeouts == 1, "the send timed out")
        with pytest.raises(Closed):
            while True:
                conn._fill()
    with server.connect() as other:  # and everyone else is still served
        other.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert len(other.read_response().body) == SIZE


def test_stalled_clients_do_not_hold_the_sending_threads(blob: Path, parking: Parking) -> None:
    srv = H1Server(_file_app(blob), H1Settings(send_timeout=30.0, shutdown_grace=2.0))  # type: ignore[arg-type]
    srv.start()
    stalled = []
    try:
        for _ in range(SEND_THREADS + 8):
            s = socket.create_connection((srv.host, srv.port))
            _small_rcvbuf(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            stalled.append(s)
        # every one of them has filled its socket and parked
        wait_until(lambda: parking.parked == len(stalled), "every stalled send parked")
        with srv.connect() as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert len(conn.read_response().body) == SIZE  # within the harness's IO timeout
    finally:
        for s in stalled:
            s.close()
        srv.stop()
