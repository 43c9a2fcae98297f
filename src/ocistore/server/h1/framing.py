"""Encoding a response's head and body framing (RFC 9112), once per response, in bytes."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

__all__ = ["CONTINUE", "LAST_CHUNK", "STATUS_LINES", "chunk", "status_line"]

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"

STATUS_LINES: Final[dict[int, bytes]] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}
"""Every standard status line, made once (a response then costs one dict lookup)."""


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``; a non-standard status gets an empty reason."""
    line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"HTTP status {status!r} is not a three-digit code")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def chunk(data: bytes) -> Iterable[bytes]:
    """One chunk of a ``transfer-encoding: chunked`` body (nothing for empty data: that would end it)."""
    if not data:
        return ()
    return (b"%x\r\n" % len(data), data, b"\r\n")
