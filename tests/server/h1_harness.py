"""A harness for ``ocistore.server.h1``: the server in a thread, raw-socket clients.

``H1Server`` binds 127.0.0.1:0, runs ``serve_asgi`` on a uvloop loop in a thread and
stops it through the ``stopping`` event, re-raising whatever ``serve_asgi`` raised.
``Conn`` speaks HTTP/1.1 over a plain socket so the tests see the exact bytes the
server writes: ``read_response`` parses one response (Content-Length, chunked or
close-delimited body, no body for HEAD/1xx/204/304) and keeps what follows it for
the next call, which is what pipelining and keep-alive tests need.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvloop

from ocistore.server.h1 import H1Settings, serve_asgi

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

IO_TIMEOUT = 10.0  # no socket operation of a test waits longer than this
STOP_TIMEOUT = 15.0  # serve_asgi must return this long after `stopping` is set


class H1Server:
    """``serve_asgi(app, sock, settings)`` on its own uvloop loop in a thread."""

    def __init__(self, app: App, settings: H1Settings, *, rcvbuf: int | None = None) -> None:
        self.app = app
        self.settings = settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:  # accepted sockets inherit it (and lose autotuning)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.host, self.port = self.sock.getsockname()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.returned = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="h1-server", daemon=True)

    def start(self) -> H1Server:
        self._thread.start()
        if not self._ready.wait(IO_TIMEOUT):
            raise RuntimeError("the server loop did not start")
        return self

    def _run(self) -> None:
        try:
            uvloop.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
            self.returned.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self._ready.set()
        await serve_asgi(self.app, self.sock, self.settings, stopping=self.stopping)

    def request_stop(self) -> None:
        """Set ``stopping`` (from the test thread); does not wait."""
        assert self.loop is not None and self.stopping is not None
        if self.returned.is_set():
            return
        try:
            self.loop.call_soon_threadsafe(self.stopping.set)
        except RuntimeError:
            # serve_asgi returned and the loop closed after ``returned`` was checked
            if not self.loop.is_closed():
                raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Set ``stopping``, wait for ``serve_asgi`` to return, re-raise its error."""
        self.request_stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"serve_asgi did not return within {timeout}s of stopping")
        self.sock.close()
        if self.error is not None:
            raise self.error

    def connect(self) -> Conn:
        return Conn(socket.create_connection((self.host, self.port), timeout=IO_TIMEOUT))


@dataclass
class Response:
    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw_head: bytes = b""
    raw_body: bytes = b""
    chunked: bool = False
    complete: bool = True  # False: the connection ended before the framing said it would
    extra: dict[str, Any] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), None when absent; fails on duplicates."""
        values = self.header_all(name)
        assert len(values) <= 1, f"header {name!r} appears {len(values)} times"
        return values[0] if values else None

    def header_all(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]


class Closed(Exception):
    """The peer ended the connection (EOF or reset) before the expected bytes arrived."""


class Conn:
    """One client connection with a read buffer kept across responses."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, size: int = 1 << 20) -> bytes:
        try:
            data = self.sock.recv(size)
        except ConnectionResetError:
            data = b""
        if not data:
            raise Closed(f"connection closed; {len(self.buf)} unread bytes buffered")
        self.buf += data
        return data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        out, _, self.buf = self.buf.partition(marker)
        return out + marker

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        while True:
            try:
                self._fill()
            except Closed:
                out, self.buf = self.buf, b""
                return out

    def read_head(self) -> Response:
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        assert version in (b"HTTP/1.1", b"HTTP/1.0"), lines[0]
        assert len(code) == 3 and code.isdigit(), lines[0]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and name == name.strip() and name, f"bad response header line {line!r}"
            headers.append((name.lower(), value.strip(b" \t")))
        return Response(version, int(code), reason, headers, raw_head=raw)

    def read_response(self, *, head: bool = False, skip_1xx: bool = True) -> Response:
        """One response; ``head`` for a response to HEAD (no body whatever the headers say)."""
        resp = self.read_head()
        while skip_1xx and 100 <= resp.status < 200:
            resp = self.read_head()
        if head or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        te = resp.header(b"transfer-encoding")
        length = resp.header(b"content-length")
        if te is not None:
            assert te.lower() == b"chunked", te
            assert length is None, "both content-length and transfer-encoding"
            resp.chunked = True
            self._read_chunked(resp)
        elif length is not None:
            assert length.isdigit(), length
            n = int(length)
            got = b""
            try:
                got = self.read_exact(n)
            except Closed:
                got, self.buf = self.buf, b""
                resp.complete = False
            resp.body = resp.raw_body = got
        else:
            resp.body = resp.raw_body = self.read_to_eof()
        return resp

    def _read_chunked(self, resp: Response) -> None:
        parts: list[bytes] = []
        raw: list[bytes] = []
        try:
            while True:
                line = self.read_until(b"\r\n")
                raw.append(line)
                size_text = line[:-2].split(b";", 1)[0].strip()
                assert size_text and all(c in b"0123456789abcdefABCDEF" for c in size_text), line
                size = int(size_text, 16)
                if size == 0:
                    while True:  # trailer section, ends with an empty line
                        trailer = self.read_until(b"\r\n")
                        raw.append(trailer)
                        if trailer == b"\r\n":
                            break
                    break
                data = self.read_exact(size + 2)
                raw.append(data)
                assert data.endswith(b"\r\n"), "chunk data not followed by CRLF"
                parts.append(data[:-2])
        except Closed:
            raw.append(self.buf)
            self.buf = b""
            resp.complete = False
        resp.body = b"".join(parts)
        resp.raw_body = b"".join(raw)

    def closed_by_peer(self, timeout: float = IO_TIMEOUT) -> bool:
        """True when the server closes the connection within ``timeout`` with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT)
        if data:
            self.buf += data
            raise AssertionError(f"expected the connection to close, got bytes {self.buf[:200]!r}")
        return True

    def available(self) -> bytes:
        """The bytes that have arrived and not been read yet, without waiting for more."""
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(IO_TIMEOUT)
        return self.buf


def request(
    method: str = "GET",
    target: str = "/",
    *,
    version: str = "1.1",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    length: bool | None = None,
) -> bytes:
    """Request bytes; a Content-Length header is added when there is a body (or ``length``)."""
    lines = [f"{method} {target} HTTP/{version}", "Host: test"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if length or (length is None and body):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
