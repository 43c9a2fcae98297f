"""A fill's clients are sent ranges of the file the fill writes, never a short complete body.

In process, without a network: a :class:`~ocistore.proxy.fill.Fill` advanced
by hand, its responses sent by ``send_response`` to a recording ASGI ``send``,
once as ``zerocopysend`` ranges (ocistore's own server) and once as body
messages (any other server); and :class:`~ocistore.proxy.fill.Fills` with a
fake upstream and upload, for what a failed fill leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import BlobInvalidDigest
from ocistore.proxy.fill import Fill, FillFailed, Fills
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


class _Writer:
    """The upload a fill writes: a real file; ``cancel`` waits for ``release`` (set by the test)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.hash = hashlib.sha256()
        self.cancelling = threading.Event()
        self.release = threading.Event()
        self.committed = False

    def fileno(self) -> int:
        return self.fd

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return os.write(self.fd, data)

    def running_digest(self) -> Digest:
        return Digest("sha256:" + self.hash.hexdigest())

    def commit(self, desc: Descriptor) -> Descriptor:
        self.committed = True
        os.close(self.fd)
        return desc

    def cancel(self) -> None:
        self.cancelling.set()
        assert self.release.wait(30)
        os.close(self.fd)


class _Upstream:
    """An upstream GET whose body is ``body`` (in 100 KiB reads), sent once ``go`` is set."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.go = asyncio.Event()
        self.content_length = len(DATA)
        self.raw = self
        self.content = self

    def detach_body(self) -> None:
        return None  # read through aiohttp (as a TLS or chunked body is)

    async def iter_chunks(self) -> Any:
        await self.go.wait()
        for i in range(0, len(self.body), 100 << 10):
            yield self.body[i : i + (100 << 10)], False

    @contextlib.asynccontextmanager
    async def open(self) -> Any:
        yield self


def test_a_failed_fill_lets_go_before_it_cleans_up(tmp_path: Path) -> None:
    """A client retrying while the failed upload is still being removed starts a new fill."""

    async def main() -> None:
        fills = Fills(str(tmp_path / "spool"))
        writers: list[_Writer] = []

        def create() -> _Writer:
            writers.append(_Writer(tmp_path / f"upload-{len(writers)}"))
            return writers[-1]

        store = types.SimpleNamespace(create=create)
        committed: list[Descriptor] = []

        async def on_commit(desc: Descriptor, names: set[str]) -> None:
            committed.append(desc)

        async def run(fn: Any, *args: Any) -> Any:
            return await asyncio.to_thread(fn, *args)

        wrong = _Upstream(DATA[:-1] + bytes([DATA[-1] ^ 1]))
        first = fills.start(DIGEST, "a/b", wrong.open, store, run, on_commit)
        wrong.go.set()
        with pytest.raises(BlobInvalidDigest):
            await asyncio.wait_for(first.finished(), 30)
        assert await asyncio.to_thread(writers[0].cancelling.wait, 30)
        assert fills.get(DIGEST) is None  # gone while its upload is still being cancelled
        right = _Upstream(DATA)
        second = fills.start(DIGEST, "a/b", right.open, store, run, on_commit)
        assert second is not first and fills.get(DIGEST) is second
        writers[0].release.set()
        assert first.task is not None
        await asyncio.wait_for(first.task, 30)
        assert fills.get(DIGEST) is second  # the failed fill's end left the new one alone
        right.go.set()
        await asyncio.wait_for(second.finished(), 30)
        assert committed == [Descriptor(digest=DIGEST, size=len(DATA))]
        assert fills.get(DIGEST) is None

    asyncio.run(main())
