"""A send timeout for ASGI servers that have none (granian): the app bounds each send.

ocistore's own server cuts a client that takes no bytes of a response for
``limits.sendtimeout`` (:mod:`ocistore.server.h1`). granian has no such
setting, but its ``send`` waits while the client is not reading (it buffers
a few MiB, then applies backpressure), so the app bounds every ``send``
itself: one that has not returned within the timeout raises
:class:`ClientSendTimeout`, the app stops the response (logged at INFO as a
client timeout, never as an application error), and granian closes the
connection of the unfinished response.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ocistore.server.http import Send

__all__ = ["ClientSendTimeout", "bounded_send"]


class ClientSendTimeout(TimeoutError):
    """The client took no bytes of the response for the send timeout: it is not reading."""


def bounded_send(send: Send, timeout: float) -> Send:
    """``send`` that raises :class:`ClientSendTimeout` after ``timeout`` seconds without progress."""

    async def send_bounded(message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(timeout):
                await send(message)
        except TimeoutError:
            raise ClientSendTimeout(
                f"client timeout: the client took no data for {timeout:g}s"
            ) from None

    return send_bounded
