"""A fill's clients are sent ranges of the file the fill writes, never a short complete body.

In process, without a network: a :class:`~ocistore.proxy.fill.Fill` advanced
by hand, its responses sent by ``send_response`` to a recording ASGI ``send``,
once as ``zerocopysend`` ranges (ocistore's own server) and once as body
messages (any other server).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from ocistore.digest import Digest
from ocistore.proxy.fill import Fill, FillFailed
from ocistore.server import blobs
from ocistore.server.http import Response, StreamRange, send_response

DATA = os.urandom(3 << 20 | 12345)
DIGEST = Digest("sha256:" + hashlib.sha256(DATA).hexdigest())


async def _read(reader: Any, pos: int, n: int) -> bytes:
    return await asyncio.to_thread(blobs.read_at, reader, pos, n)


class Recorder:
    """An ASGI ``send`` that keeps the body, resolving ``zerocopysend`` ranges as a server would."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.kinds: list[str] = []
        self.complete = False
        self.changed = asyncio.Event()

    async def __call__(self, msg: dict[str, Any]) -> None:
        self.kinds.append(msg["type"])
        if msg["type"] == "http.response.zerocopysend":
            self.body += os.pread(msg["file"].fileno(), msg["count"], msg["offset"])
        elif msg["type"] == "http.response.body":
            self.body += msg.get("body", b"")
        if msg["type"] != "http.response.start" and not msg.get("more_body", False):
            self.complete = True
        self.changed.set()

    async def until(self, n: int) -> None:
        while len(self.body) < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)


def _fill(tmp_path: Path) -> tuple[Fill, int]:
    fill = Fill(DIGEST)
    fd = os.open(tmp_path / "upload", os.O_RDWR | os.O_CREAT, 0o600)
    fill.fd = fd
    fill.size = len(DATA)
    return fill, fd


def _arrive(fill: Fill, fd: int, end: int) -> None:
    os.pwrite(fd, DATA[fill.progress : end], fill.progress)
    fill.progress = end
    fill.notify()


@pytest.mark.parametrize("zerocopy", [True, False], ids=["zerocopysend", "body-messages"])
def test_a_range_follows_the_fill_and_ends_after_verification(
    tmp_path: Path, zerocopy: bool
) -> None:
    first, length = 1000, len(DATA) - 2000
    end = first + length

    async def main() -> None:
        fill, fd = _fill(tmp_path)
        rec = Recorder()
        resp = Response(206, stream=fill.body(first, length, _read))
        task = asyncio.create_task(send_response(rec, resp, read=_read, zerocopy=zerocopy))
        _arrive(fill, fd, 1 << 20)
        await rec.until((1 << 20) - first)
        _arrive(fill, fd, len(DATA))
        await rec.until(length - 1)  # all but the range's last byte: the fill is not verified
        assert not rec.complete and len(rec.body) == length - 1
        fill.verified = True
        fill.notify()
        await asyncio.wait_for(task, 30)
        assert rec.complete and bytes(rec.body) == DATA[first:end]
        kind = "http.response.zerocopysend" if zerocopy else "http.response.body"
        assert kind in rec.kinds
        os.close(fd)

    asyncio.run(main())


@pytest.mark.parametrize("zerocopy", [True, False], ids=["zerocopysend", "body-messages"])
def test_a_failed_fill_cuts_its_responses(tmp_path: Path, zerocopy: bool) -> None:
    async def main() -> None:
        fill, fd = _fill(tmp_path)
        rec = Recorder()
        resp = Response(200, stream=fill.body(0, len(DATA), _read))
        task = asyncio.create_task(send_response(rec, resp, read=_read, zerocopy=zerocopy))
        _arrive(fill, fd, len(DATA))  # every byte arrived, but the fill fails (say, the digest)
        await rec.until(len(DATA) - 1)
        fill.error = FillFailed("the upstream sent bytes that do not match")
        fill.notify()
        with pytest.raises(FillFailed):
            await asyncio.wait_for(task, 30)
        assert not rec.complete and len(rec.body) == len(DATA) - 1
        os.close(fd)

    asyncio.run(main())


def test_a_stream_range_past_the_file_end_is_an_error(tmp_path: Path) -> None:
    """Without zerocopysend a range the file does not hold fails the response (never short)."""
    path = tmp_path / "short"
    path.write_bytes(b"x" * 10)

    async def pieces(fd: int) -> Any:
        yield StreamRange(fd, 0, 20)

    async def main() -> None:
        fd = os.open(path, os.O_RDONLY)
        rec = Recorder()
        try:
            with pytest.raises(OSError, match="ended at 10 of 20"):
                await send_response(rec, Response(200, stream=pieces(fd)), read=_read)
        finally:
            os.close(fd)
        assert not rec.complete and bytes(rec.body) == b"x" * 10

    asyncio.run(main())
