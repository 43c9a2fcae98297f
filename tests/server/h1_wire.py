"""The h1 server's framing decisions for a byte stream, in-process and deterministic.

``serve_bytes`` hands the bytes to a real :class:`H1Protocol` over a fake
transport (in pieces, as a socket would: a paused transport gets nothing
until the server resumes it) and runs the loop until nothing more can
happen, so the outcome never depends on timing: the requests the app was
given (method, target, whole body) in order, the status lines written, and
whether the server closed the connection. ``h11_decisions`` is the same
stream read by h11, a maintained HTTP/1.1 parser, as a server would.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import h11

from ocistore.server.h1 import H1Settings
from ocistore.server.h1.protocol import H1Protocol, ServerState

Request = tuple[str, str, bytes]
"""What a server made of one request: method, target, and the whole body."""

_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


@dataclass
class Outcome:
    requests: list[Request]
    statuses: list[int]
    closed: bool


@dataclass
class _Transport:
    """Just enough of an asyncio transport for :class:`H1Protocol`."""

    protocol: H1Protocol | None = None
    out: bytearray = field(default_factory=bytearray)
    closed: bool = False
    paused: bool = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.out += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            loop = asyncio.get_running_loop()
            loop.call_soon(self._lost)

    abort = close

    def _lost(self) -> None:
        if self.protocol is not None:
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 5000)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the body never completed: not a request the app was given
            body += msg.get("body", b"")
            if not msg.get("more_body", False):
                break
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        self.requests.append((scope["method"], target, body))
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


async def _settle() -> None:
    """Let every ready callback and task run until they all wait for input."""
    for _ in range(64):
        await asyncio.sleep(0)


async def _serve(pieces: list[bytes], settings: H1Settings) -> Outcome:
    loop = asyncio.get_running_loop()
    app = _Recorder()
    state = ServerState(app=app, settings=settings, loop=loop, send_executor=None)  # type: ignore[arg-type]
    proto = H1Protocol(state)
    transport = _Transport(proto)
    proto.connection_made(transport)  # type: ignore[arg-type]
    for piece in pieces:
        await _settle()
        if transport.closed or transport.paused:
            break  # the server reads no more: what is left is never seen
        proto.data_received(piece)
    await _settle()
    closed = transport.closed
    if not transport.closed:
        transport.close()
    await _settle()
    for task in list(state.tasks):
        task.cancel()
    await _settle()
    statuses = [int(m.group(1)) for m in _STATUS.finditer(bytes(transport.out))]
    return Outcome(app.requests, statuses, closed)


def serve_bytes(pieces: list[bytes], settings: H1Settings | None = None) -> Outcome:
    """What ocistore's server does with ``pieces`` arriving one after another."""
    return asyncio.run(_serve(pieces, settings or H1Settings(shutdown_grace=1.0)))


def h11_decisions(data: bytes) -> tuple[list[Request], bool]:
    """The requests h11 reads from ``data`` (answering each with a 200), and whether it
    refused the stream (a protocol error) rather than running out of bytes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    out: list[Request] = []
    method = target = b""
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return out, True
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return out, False
        if isinstance(event, h11.Request):
            method, target, body = event.method, event.target, bytearray()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append((method.decode("latin-1"), target.decode("latin-1"), bytes(body)))
            status = 405 if method == b"CONNECT" else 200  # h11 takes a 2xx as a tunnel
            conn.send(h11.Response(status_code=status, headers=[("content-length", "2")]))
            conn.send(h11.Data(data=b"ok"))
            conn.send(h11.EndOfMessage())
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return out, False  # h11 closes here (Connection: close, HTTP/1.0)
            conn.start_next_cycle()
