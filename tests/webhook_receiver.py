"""A webhook receiver for the notification tests: records every envelope it is sent.

It answers with the statuses it is told (``fail_first`` 500s, then 200), can
hold every request until released (a hanging endpoint), and can be started on
a port chosen in advance, so a test can let a registry queue events for an
endpoint that is down and bring it up later.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from redis_peer import free_port
from threaded_http import QuietHandler, ThreadedServer


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    fail_first: int = 0
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    hang: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    _http: ThreadedServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in arrival order (duplicates of a retried event included)."""
        with self._lock:
            return [e for env in self.envelopes for e in env["events"]]

    def unique_events(self) -> list[dict[str, Any]]:
        """The events with redeliveries removed (by ``id``), first arrival kept."""
        seen: set[str] = set()
        out = []
        for e in self.events():
            if e["id"] not in seen:
                seen.add(e["id"])
                out.append(e)
        return out

    def start(self) -> Receiver:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.attempts += 1
                    attempt = receiver.attempts
                receiver.arrived.set()
                if receiver.hang:
                    receiver.release.wait()
                if attempt <= receiver.fail_first:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.envelopes.append(json.loads(body))
                    receiver.content_types.append(self.headers.get("Content-Type", ""))
                    receiver.headers.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._http = ThreadedServer(Handler, port=self.port).start()
        return self

    def stop(self) -> None:
        self.release.set()
        http, self._http = self._http, None
        if http is not None:
            http.stop()
