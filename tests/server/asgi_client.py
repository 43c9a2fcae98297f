"""An in-process ASGI client for the registry app: no sockets, no threads of its own.

``body`` may be bytes or a list of chunks (each sent as one ``http.request``
message); ``disconnect_after`` ends the body with ``http.disconnect`` after
that many chunks; after ``stall_after`` chunks the next receive sets
``stalled`` and waits for the ``stall`` event (forever if nobody sets it: to
trip the idle timeout, or to hold a request open while another runs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]


class Client:
    def __init__(self, app: Callable[..., Awaitable[None]], host: str = "registry.test") -> None:
        self.app = app
        self.host = host

    def request(self, method: str, url: str, **kw: Any) -> Reply:
        return asyncio.run(self.arequest(method, url, **kw))

    def __getattr__(self, name: str) -> Callable[..., Reply]:
        if name.upper() in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"):
            return lambda url, **kw: self.request(name.upper(), url, **kw)
        raise AttributeError(name)

    async def arequest(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | Sequence[bytes] = b"",
        disconnect_after: int | None = None,
        stall: asyncio.Event | None = None,
        stall_after: int = 0,
        stalled: asyncio.Event | None = None,
        chunked: bool = False,
    ) -> Reply:
        parts = urlsplit(url)
        chunks = [body] if isinstance(body, bytes | bytearray) else list(body)
        hdrs = {"host": self.host, **{k.lower(): v for k, v in (headers or {}).items()}}
        if "content-length" not in hdrs and not chunked and sum(map(len, chunks)):
            hdrs["content-length"] = str(sum(map(len, chunks)))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()],
            "server": ("127.0.0.1", 5000),
            "client": ("127.0.0.1", 40000),
        }
        sent = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if stall is not None and sent == stall_after:
                if stalled is not None:
                    stalled.set()  # the app asks for the chunk the client holds back
                await stall.wait()
            if disconnect_after is not None and sent >= disconnect_after:
                sent += 1
                return {"type": "http.disconnect"}
            if sent < len(chunks):
                chunk = chunks[sent]
                sent += 1
                return {
                    "type": "http.request",
                    "body": bytes(chunk),
                    "more_body": sent < len(chunks),
                }
            sent += 1
            if sent == 1:
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)  # a real server never sends more after the body
            return {"type": "http.disconnect"}

        status = 0
        out_headers: list[tuple[str, str]] = []
        out_body = bytearray()

        async def send(msg: dict[str, Any]) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                out_headers.extend((k.decode().lower(), v.decode()) for k, v in msg["headers"])
            elif msg["type"] == "http.response.body":
                out_body.extend(msg.get("body", b""))

        await self.app(scope, receive, send)
        return Reply(status, dict(out_headers), bytes(out_body), out_headers)
