"""A reverse proxy that counts what a registry sends: every answer's status and body bytes.

Put in front of ``ocistore serve`` (127.0.0.1, a free port), it relays each
request to the server and records ``(method, path, status, body bytes)``.
Bytes a client fetches from S3 after a 307 never pass through it, so the body
bytes of the blob GETs it saw are exactly the blob data ocistore sent: the
wire-level count the redirect tests and their claim of "0 bytes" rest on.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from typing import Final

from threaded_http import QuietHandler, ThreadedServer

HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    body_bytes: int
    location: str | None

    @property
    def blob_digest(self) -> str | None:
        """The digest of a ``/v2/<name>/blobs/<digest>`` request, else None (uploads too)."""
        _, sep, tail = self.path.partition("/blobs/")
        if not sep or tail.startswith("uploads"):
            return None
        return tail.split("?", 1)[0]


class CountingProxy:
    """``with CountingProxy(port) as proxy:`` relays 127.0.0.1:proxy.port to the server's port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._http = ThreadedServer(_Handler, owner=self)
        self.port = self._http.port
        self.url = self._http.url

    def __enter__(self) -> CountingProxy:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def blob_gets(self) -> list[Exchange]:
        """Every GET of a blob (not of an upload) the server answered."""
        with self._lock:
            return [e for e in self.exchanges if e.method == "GET" and e.blob_digest]

    def blob_bytes(self) -> int:
        """Body bytes of every blob GET answer: the blob data that went through the server."""
        return sum(e.body_bytes for e in self.blob_gets())

    def reset(self) -> None:
        with self._lock:
            self.exchanges.clear()


class _Handler(QuietHandler):  # quiet: the exchanges are the record
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._relay()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET

    def _relay(self) -> None:
        proxy: CountingProxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():  # repeated ones (Accept) each on its own
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()  # empty for HEAD, 204, 304
        finally:
            conn.close()
        proxy.record(
            Exchange(self.command, self.path, resp.status, len(data), resp.getheader("Location"))
        )
        self.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
