"""ocistore's HTTP/1.1 server: an ASGI server on uvloop and httptools, made for a blob store.

Why not an existing ASGI server: a blob GET is a file range, and the
servers measured here (granian, uvicorn) take a response body only as
``bytes``, so every pulled byte was first copied out of the page cache into
Python and then again by the server. This one implements the ASGI
``http.response.zerocopysend`` extension by writing the range to the socket
from a mapping of the file (:mod:`.sendrange`; BENCHMARKS.md, "HTTP: the
server stack"). Everything else is the plain ASGI 3.0 HTTP protocol, and the
registry app still runs under any ASGI server. It speaks HTTP/1.x and the
ASGI ``http`` and ``lifespan`` scopes only (no websockets, no HTTP/2).

Pieces: :mod:`.settings` (limits, timeouts), :mod:`.protocol` (one
connection: parsing, keep-alive, pipelining, timers), :mod:`.cycle` (one
request's ``receive``/``send``), :mod:`.framing` (response heads, chunked
encoding), :mod:`.sendrange` (file ranges from a thread), :mod:`.serve` (one
worker's loop, lifespan, graceful stop), :mod:`.supervisor` (several worker
processes on one socket).
"""

from ocistore.server.h1.cycle import ClientDisconnected
from ocistore.server.h1.serve import run_worker, serve_asgi
from ocistore.server.h1.settings import H1Settings

__all__ = ["ClientDisconnected", "H1Settings", "run_worker", "serve_asgi"]
