"""A fill that reads the upstream's socket itself: whole, cut short, silent, or cancelled.

In process: :class:`~ocistore.proxy.fill.Fills` with a real upload (a
filesystem store) and a fake upstream response whose ``detach_body`` hands
over what "aiohttp" held and one end of a socket pair, the test playing the
upstream on the other end. Whatever happens, the blob is committed whole and
verified, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.proxy import fill as fill_module
from ocistore.proxy.fill import STEP, Fill, FillFailed, Fills
from ocistore.storage import Registry

DATA = os.urandom((9 << 20) + 4321)  # a few hops of the fill
DIGEST = Digest("sha256:" + hashlib.sha256(DATA).hexdigest())
HELD = 1000  # what aiohttp had read with the head


class _Response:
    """The upstream's answer: ``HELD`` bytes already read, the rest on ``sock``."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.content_length = len(DATA)
        self.timeout = timeout
        self.sock = sock
        self.raw = self
        self.closed = False

    def detach_body(self) -> tuple[bytes, int]:
        return DATA[:HELD], os.dup(self.sock.fileno())

    def close(self) -> None:
        self.closed = True


async def _fill(
    tmp_path: Path, resp: _Response, second_hop: asyncio.Event | None = None
) -> tuple[Fill, Fills, list[Descriptor], Any]:
    """A fill of ``resp``; ``second_hop`` is set when its second socket hop starts."""
    blobs = Registry(FilesystemDriver(str(tmp_path / "root"))).repository("a/b").blobs
    committed: list[Descriptor] = []

    @contextlib.asynccontextmanager
    async def open_upstream() -> AsyncIterator[_Response]:
        yield resp

    async def on_commit(desc: Descriptor, names: set[str]) -> None:
        committed.append(desc)

    hops = 0

    async def run(fn: Any, *args: Any) -> Any:
        nonlocal hops
        if getattr(fn, "__name__", "") == "write_from":
            hops += 1
            if hops == 2 and second_hop is not None:
                second_hop.set()
        return await asyncio.to_thread(fn, *args)

    fills = Fills(str(tmp_path / "spool"))
    fill = fills.start(DIGEST, "a/b", open_upstream, blobs, run, on_commit)
    return fill, fills, committed, blobs


def _uploads(tmp_path: Path) -> list[str]:
    root = tmp_path / "root/docker/registry/v2/repositories/a/b/_uploads"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_the_body_is_read_from_the_socket_and_committed(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            resp = _Response(b, timeout=30.0)
            fill, fills, committed, _ = await _fill(tmp_path, resp)
            # the upstream sends the body and then more (the next response on the
            # connection, say): the fill takes exactly Content-Length bytes
            await asyncio.to_thread(a.sendall, DATA[HELD:] + b"extra")
            await asyncio.wait_for(fill.finished(), 30)
        assert [(d.digest, d.size) for d in committed] == [(DIGEST, len(DATA))]
        hexd = DIGEST.encoded
        data = tmp_path / f"root/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
        assert data.read_bytes() == DATA
        assert resp.closed  # the connection is never reused
        assert fills.get(DIGEST) is None

    asyncio.run(main())


def test_a_body_cut_short_is_never_committed(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with b:
            b.setblocking(False)
            resp = _Response(b, timeout=30.0)
            fill, _, committed, blobs = await _fill(tmp_path, resp)
            await asyncio.to_thread(a.sendall, DATA[HELD : len(DATA) // 2])
            a.close()
            try:
                await asyncio.wait_for(fill.finished(), 30)
            except FillFailed as exc:
                assert f"ended after {len(DATA) // 2} of {len(DATA)} bytes" in str(exc)
            else:
                raise AssertionError("a fill of a body cut short succeeded")
        assert fill.task is not None
        await asyncio.wait_for(fill.task, 30)
        assert committed == []
        assert not blobs.registry.blobs.exists(DIGEST)
        assert _uploads(tmp_path) == []  # the upload was cancelled
        assert resp.closed

    asyncio.run(main())


def test_a_silent_upstream_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fill_module, "WAIT", 0.2)

    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            resp = _Response(b, timeout=0.4)
            fill, _, committed, _ = await _fill(tmp_path, resp)
            await asyncio.to_thread(a.sendall, DATA[HELD : 5 << 20])  # then nothing
            try:
                await asyncio.wait_for(fill.finished(), 30)
            except FillFailed as exc:
                assert "(TimeoutError)" in str(exc)
            else:
                raise AssertionError("a fill of a silent upstream succeeded")
            assert fill.progress == 5 << 20
        assert committed == []

    asyncio.run(main())


def test_a_cancelled_fill_wakes_its_reading_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hop that would wait an hour for the silent upstream: only being woken ends it.
    monkeypatch.setattr(fill_module, "WAIT", 3600.0)

    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            resp = _Response(b, timeout=7200.0)
            second_hop = asyncio.Event()
            fill, _, committed, _ = await _fill(tmp_path, resp, second_hop)
            await asyncio.to_thread(a.sendall, DATA[HELD : HELD + STEP])  # one hop, then silence
            await asyncio.wait_for(second_hop.wait(), 30)
            assert fill.progress == HELD + STEP
            assert fill.task is not None
            fill.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(fill.task, 30)
            assert isinstance(fill.error, asyncio.CancelledError)
            # the upstream is still open, yet a read meets the end at once: the fill shut
            # the socket for reading to wake its hop
            assert b.recv(1) == b""
        assert committed == []
        assert _uploads(tmp_path) == []

    asyncio.run(main())
