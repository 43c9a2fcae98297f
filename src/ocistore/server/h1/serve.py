"""Serving an ASGI app on a listening socket: one worker's event loop, lifespan and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final

from ocistore.server.ctxpool import ContextThreadPool
from ocistore.server.h1.protocol import ASGIApp, H1Protocol, ServerState
from ocistore.server.h1.settings import H1Settings

__all__ = ["SEND_THREADS", "run_worker", "serve_asgi"]

log = logging.getLogger("ocistore.server")

SEND_THREADS: Final = 64
"""Threads that write file ranges to sockets; one per blob GET in flight, more wait their turn."""


async def serve_asgi(
    app: ASGIApp,
    sock: socket.socket,
    settings: H1Settings,
    *,
    stopping: asyncio.Event,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve ``app`` on the listening ``sock`` until ``stopping`` is set, then stop gracefully.

    Once stopping: no new connections; idle ones are closed; requests in
    flight get ``settings.shutdown_grace`` seconds to finish (their connections
    close after the response), then whatever is left is cut. The lifespan
    protocol is the caller's business (:func:`run_worker`). With ``tls``
    every connection is HTTPS (its handshake bounded by the header timeout),
    and ``zerocopysend`` is not offered: file bytes must go through the
    encryption, so they are sent as body messages.
    """
    loop = asyncio.get_running_loop()
    executor = ContextThreadPool(max_workers=SEND_THREADS, thread_name_prefix="ocistore-send")
    state = ServerState(
        app=app, settings=settings, loop=loop, send_executor=executor, tls=tls is not None
    )
    server = await loop.create_server(
        lambda: H1Protocol(state),
        sock=sock,
        backlog=2048,
        ssl=tls,
        ssl_handshake_timeout=settings.header_timeout if tls is not None else None,
    )
    try:
        await stopping.wait()
    finally:
        state.stopping = True
        server.close()
        for conn in list(state.connections):
            conn.shutdown()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_drained(state), settings.shutdown_grace)
        for conn in list(state.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=5.0)
        executor.shutdown(wait=False, cancel_futures=True)


async def _drained(state: ServerState) -> None:
    while state.connections or state.tasks:
        await asyncio.sleep(0.05)


def run_worker(
    app_factory: Callable[[], ASGIApp],
    sock: socket.socket,
    settings: H1Settings,
    *,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run one worker: a uvloop event loop serving the app until SIGTERM or SIGINT.

    The app is made here (after any fork: its threads, LMDB environment and
    inotify watches belong to this process), gets the ASGI lifespan startup
    before the first connection is accepted and the shutdown after the last
    one is finished.
    """
    import uvloop

    uvloop.run(_worker(app_factory, sock, settings, tls))


async def _worker(
    app_factory: Callable[[], ASGIApp],
    sock: socket.socket,
    settings: H1Settings,
    tls: ssl.SSLContext | None,
) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    app = app_factory()
    lifespan = _Lifespan(app)
    await lifespan.startup()
    try:
        await serve_asgi(app, sock, settings, stopping=stopping, tls=tls)
    finally:
        await lifespan.shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class _Lifespan:
    """The ASGI lifespan protocol from the server's side (an app without one is fine)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is not None and reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the app failed to start: {reply.get('message', '')}")

    async def shutdown(self) -> None:
        if self.task is None or not self.supported or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self._reply()
        await asyncio.wait([self.task], timeout=5.0)

    async def _reply(self) -> dict[str, Any] | None:
        assert self.task is not None
        get = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([get, self.task], return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        self.supported = False  # the app returned or raised: no lifespan support
        return None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception as exc:
            log.debug("the app has no lifespan support: %s", exc)
