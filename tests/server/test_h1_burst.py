"""Finished responses go out together once the loop has run every ready request.

``H1Protocol`` holds a response's final bytes (``write_final``) until the
requests that became ready in the same loop pass have all run, then writes
them back to back: a client waiting on many connections is woken once per
burst instead of once per response. These tests drive the protocol on a
real uvloop loop through recording transports, so the order of app calls,
writes and closes is seen exactly.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import uvloop

from ocistore.server.h1 import H1Settings
from ocistore.server.h1.protocol import H1Protocol, ServerState

from .h1_harness import Receive, Scope, Send

pytestmark = pytest.mark.one_core

Event = tuple[str, int, bytes]


class Recording:
    """The transport calls the protocol makes, as ("write" | "close" | "abort", conn, bytes)."""

    def __init__(self, conn: int, events: list[Event], done: asyncio.Event, closes: int) -> None:
        self.conn = conn
        self.events = events
        self.done = done
        self.closes = closes
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000 + self.conn) if name in ("sockname", "peername") else default

    def write(self, data: bytes) -> None:
        self.events.append(("write", self.conn, bytes(data)))
        self._check()

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def close(self) -> None:
        self.events.append(("close", self.conn, b""))
        self.closing = True
        self._check()

    def abort(self) -> None:
        self.events.append(("abort", self.conn, b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def _check(self) -> None:
        if sum(kind != "app" for kind, _, _ in self.events) >= self.closes:
            self.done.set()


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _run(requests: list[bytes], expected_events: int) -> list[Event]:
    """Feed each connection its bytes in one loop pass; the events once ``expected_events`` ran."""
    events: list[Event] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(("app", int(scope["path"][1:].split("/")[0]), scope["path"].encode()))
        await _app(scope, receive, send)

    async def main() -> None:
        done = asyncio.Event()
        with ThreadPoolExecutor(1) as pool:
            state = ServerState(app, H1Settings(), asyncio.get_running_loop(), pool)
            protocols = []
            for i, data in enumerate(requests):
                protocol = H1Protocol(state)
                protocol.connection_made(Recording(i, events, done, expected_events))  # type: ignore[arg-type]
                protocols.append((protocol, data))
            for protocol, data in protocols:
                protocol.data_received(data)
            await asyncio.wait_for(done.wait(), 10)
            for protocol, _ in protocols:
                protocol.connection_lost(None)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    return events


def _get(conn: int, *extra: bytes, path: str = "") -> bytes:
    return b"GET /%d%s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (conn, path.encode(), b"".join(extra))


def test_responses_of_one_pass_are_written_after_every_request_ran() -> None:
    events = _run([_get(i) for i in range(4)], expected_events=4)
    assert [(kind, conn) for kind, conn, _ in events] == [
        *(("app", i) for i in range(4)),
        *(("write", i) for i in range(4)),
    ]
    for _, conn, data in events[4:]:
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n/%d" % conn)


def test_a_held_response_goes_out_before_the_close_it_precedes() -> None:
    events = _run([_get(0, b"Connection: close\r\n"), _get(1)], expected_events=3)
    assert [(kind, conn) for kind, conn, _ in events if kind != "app"] in (
        [("write", 0), ("close", 0), ("write", 1)],
        [("write", 0), ("write", 1), ("close", 0)],
    )
    assert events.index(("close", 0, b"")) > next(
        i for i, e in enumerate(events) if e[:2] == ("write", 0)
    )


def test_pipelined_responses_keep_their_order() -> None:
    pipelined = _get(0, path="/a") + _get(0, path="/b") + _get(0, path="/c")
    events = _run([pipelined], expected_events=3)
    writes = [data.rsplit(b"\r\n\r\n", 1)[1] for kind, _, data in events if kind == "write"]
    assert writes == [b"/0/a", b"/0/b", b"/0/c"]


def test_half_close_releases_the_held_response_before_the_transport_closes() -> None:
    events: list[Event] = []

    async def main() -> None:
        done = asyncio.Event()
        with ThreadPoolExecutor(1) as pool:
            state = ServerState(_app, H1Settings(), asyncio.get_running_loop(), pool)
            protocol = H1Protocol(state)
            protocol.connection_made(Recording(0, events, done, 1))  # type: ignore[arg-type]
            protocol.data_received(_get(0))
            for _ in range(100):  # one loop pass at a time, until the response is held
                if protocol.running is None and state.held:
                    break
                await asyncio.sleep(0)
            assert protocol.running is None and state.held == [protocol]
            assert events == []
            protocol.eof_received()
            assert [kind for kind, _, _ in events] == ["write"]
            protocol.connection_lost(None)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
