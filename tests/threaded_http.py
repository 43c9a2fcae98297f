"""A threaded HTTP server on 127.0.0.1 for the small peers tests start (token service, relays,
webhook receivers): started in a daemon thread, stopped and joined on exit.

The handler reaches the object it serves as ``self.owner`` (:class:`QuietHandler`).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and knows the ``owner`` its server was given."""

    @property
    def owner(self) -> Any:
        return getattr(self.server, "owner", None)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the peers keep their own record


class ThreadedServer:
    """``with ThreadedServer(Handler, owner=x) as s:`` serves ``Handler`` at ``s.url``.

    ``port`` 0 takes a free port; a port chosen in advance lets a test bring
    an endpoint up after a client started knocking on it.
    """

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, owner: object = None, port: int = 0
    ) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.server.owner = owner  # type: ignore[attr-defined]
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the socket and wait for the serving thread."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
