"""Request bodies into blob writers: the body pump, the idle watch, and large bodies end to end."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ocistore.server.http import SEND_CHUNK, ClientIdle, Request
from ocistore.server.pump import BATCH, BodyPump
from ocistore.storage.blobwriter import BlobWriter
from waiting import async_wait_until

from .asgi_client import Client
from .conftest import sha256
from .helpers import path_of, start

REPO = "library/pump"


def _chunks(total: int, seed: int = 1) -> list[bytes]:
    """Chunks of uneven sizes (as a server delivers them), ``total`` bytes in all."""
    out, n, i = [], 0, seed
    while n < total:
        size = min(total - n, 1 + (i * 7919) % 70_000)
        out.append(os.urandom(size))
        n += size
        i += 1
    return out


class Recorder:
    """A write function that records what it got, on which thread, and how far behind it was."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.parts: list[bytes] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail_at = fail_at
        self.put_bytes = 0  # updated by the producer
        self.max_behind = 0

    def __call__(self, data: bytes) -> int:
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and len(self.parts) == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.delay:
            time.sleep(self.delay)  # a slow disk, so the producer gets ahead: what is tested
        written = sum(map(len, self.parts))
        self.max_behind = max(self.max_behind, self.put_bytes - written)
        self.parts.append(bytes(data))
        return len(data)


def _run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


# --- BodyPump ----------------------------------------------------------------


def test_pump_writes_everything_in_order_on_its_own_thread() -> None:
    chunks = _chunks(5 * BATCH)
    rec = Recorder()

    async def go() -> None:
        pump = BodyPump(rec, None)
        for c in chunks:
            await pump.put(c)
        await pump.finish()

    _run(go)
    assert b"".join(rec.parts) == b"".join(chunks)
    assert rec.threads == {"ocistore-body"}


def test_small_body_needs_no_thread() -> None:
    rec = Recorder()

    async def go() -> None:
        pump = BodyPump(rec, None)
        await pump.put(b"a" * 100)
        await pump.put(b"b" * 100)
        await pump.finish()

    _run(go)
    assert rec.parts == [b"a" * 100, b"b" * 100]
    assert "ocistore-body" not in rec.threads


def test_pump_bounds_what_waits_for_the_writer() -> None:
    chunks = _chunks(300_000)
    rec = Recorder(delay=0.002)

    async def go() -> None:
        pump = BodyPump(rec, None, batch=5_000, high_water=20_000, low_water=10_000)
        for c in chunks:
            rec.put_bytes += len(c)
            await pump.put(c)
        await pump.finish()

    _run(go)
    assert b"".join(rec.parts) == b"".join(chunks)
    # At most the high-water mark, one batch being gathered and the chunk that crossed it.
    assert rec.max_behind <= 20_000 + 5_000 + max(map(len, chunks))


def test_failed_write_stops_the_pump_and_is_raised() -> None:
    rec = Recorder(fail_at=3)
    puts = 0

    async def go() -> None:
        nonlocal puts
        pump = BodyPump(rec, None, batch=1_000, high_water=4_000, low_water=2_000)
        with pytest.raises(OSError) as info:
            for _ in range(10_000):
                puts += 1
                await pump.put(b"x" * 1_000)
        assert info.value.errno == errno.ENOSPC
        with pytest.raises(OSError):
            await pump.finish()

    _run(go)
    assert len(rec.parts) == 3  # nothing written after the failure
    assert puts < 100  # the producer heard of it promptly


def test_abort_waits_for_the_write_in_progress_and_drops_the_rest() -> None:
    started, release = threading.Event(), threading.Event()
    parts: list[bytes] = []
    order: list[str] = []

    def write(data: bytes) -> int:
        started.set()
        release.wait(10)
        parts.append(data)
        order.append("write returned")
        return len(data)

    async def aborting(pump: BodyPump) -> None:
        await pump.abort()
        order.append("abort returned")

    async def go() -> None:
        pump = BodyPump(write, None, batch=10, high_water=1 << 20, low_water=1 << 19)
        await pump.put(b"1" * 10)  # handed over: the thread starts writing and blocks
        await pump.put(b"2" * 10)
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        abort = asyncio.create_task(aborting(pump))
        await asyncio.sleep(0)  # one turn of the loop: abort runs until it has to wait
        # The write is held until now: only an abort that waits for it is still running.
        assert not abort.done(), "abort returned with a write in progress"
        release.set()
        await abort

    _run(go)
    assert order == ["write returned", "abort returned"]  # never abandoned
    assert parts == [b"1" * 10]


@pytest.mark.parametrize("total", [5 * BATCH, 300, 0])
def test_then_runs_after_the_last_write_on_the_writing_thread(total: int) -> None:
    chunks = _chunks(total) if total else []
    rec = Recorder()
    seen: list[tuple[int, str]] = []

    def then() -> None:
        seen.append((sum(map(len, rec.parts)), threading.current_thread().name))

    async def go() -> None:
        pump = BodyPump(rec, None)
        for c in chunks:
            await pump.put(c)
        await pump.finish(then=then)

    _run(go)
    assert b"".join(rec.parts) == b"".join(chunks)
    (after, thread) = seen[0]
    assert len(seen) == 1 and after == total  # once, after everything was written
    assert thread == "ocistore-body" if total > BATCH else thread != "MainThread"


@pytest.mark.parametrize("total", [5 * BATCH, 300])
def test_then_is_skipped_after_a_failed_write(total: int) -> None:
    rec = Recorder(fail_at=0)
    called = []

    async def go() -> None:
        pump = BodyPump(rec, None)
        with pytest.raises(OSError):
            for c in _chunks(total):
                await pump.put(c)
            await pump.finish(then=lambda: called.append(1))

    _run(go)
    assert called == []


@pytest.mark.parametrize("total", [5 * BATCH, 300])
def test_a_failing_then_is_raised_by_finish(total: int) -> None:
    def then() -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def go() -> None:
        pump = BodyPump(Recorder(), None)
        for c in _chunks(total):
            await pump.put(c)
        with pytest.raises(OSError, match="Input/output"):
            await pump.finish(then=then)

    _run(go)


# --- the idle watch ----------------------------------------------------------


def _request(messages: list[dict[str, Any] | float]) -> Request:
    """A request whose receive() returns ``messages`` in turn (a float: sleep that long first)."""
    items = list(messages)

    async def receive() -> dict[str, Any]:
        while items and isinstance(items[0], float):
            await asyncio.sleep(items.pop(0))  # type: ignore[arg-type]  # a stalling client
        if not items:
            await asyncio.sleep(3600)  # a client that sends nothing more
        msg = items.pop(0)
        assert isinstance(msg, dict)
        return msg

    scope = {"type": "http", "method": "PATCH", "path": "/", "headers": []}
    return Request(scope, receive)


def _body(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


def test_idle_client_is_noticed() -> None:
    req = _request([_body(b"a"), 3600.0, _body(b"b", more=False)])

    async def go() -> list[bytes]:
        got = []
        with pytest.raises(ClientIdle):
            async for chunk in req.stream(0.1):
                got.append(chunk)
        return got

    assert _run(go) == [b"a"]  # raised while the client stalled, before "b" could come


def test_only_waiting_for_the_client_counts_as_idle() -> None:
    req = _request([_body(b"a"), _body(b"b"), _body(b"c", more=False)])

    async def go() -> list[bytes]:
        got = []
        async for chunk in req.stream(0.3):
            got.append(chunk)
            # The consumer is slower than the idle limit (not the client's fault): what
            # is tested; the sleep is a lower bound, so no load can make it shorter.
            await asyncio.sleep(0.6)
        return got

    assert _run(go) == [b"a", b"b", b"c"]


def test_other_cancellations_stay_cancellations() -> None:
    req = _request([_body(b"a")])
    got: list[bytes] = []

    async def go() -> None:
        async def consume() -> None:
            async for chunk in req.stream(30.0):
                got.append(chunk)

        task = asyncio.create_task(consume())
        # Once "a" is in, the stream waits for a client that sends nothing more.
        await async_wait_until(lambda: got == [b"a"], 'the stream yielded "a"')
        await asyncio.sleep(0)  # and is back waiting in receive()
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(go)


# --- end to end --------------------------------------------------------------


def test_large_monolithic_upload_and_reads(client: Client) -> None:
    chunks = _chunks(2 * SEND_CHUNK + 12_345)
    data = b"".join(chunks)
    dgst = sha256(data)
    r = client.post(f"/v2/{REPO}/blobs/uploads/?digest={dgst}", body=chunks)
    assert r.status == 201, r.body
    r = client.get(f"/v2/{REPO}/blobs/{dgst}")
    assert (r.status, r.body == data) == (200, True)
    first, last = SEND_CHUNK - 100, SEND_CHUNK + 99  # across a message boundary
    r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"Range": f"bytes={first}-{last}"})
    assert (r.status, r.body) == (206, data[first : last + 1])


def test_disconnect_after_megabytes_keeps_every_byte_received(client: Client) -> None:
    chunks = _chunks(3 * BATCH)
    loc = path_of(start(client, REPO).header("Location") or "")
    keep = len(chunks) - 3
    r = client.patch(loc, body=chunks, disconnect_after=keep)
    assert r.status == 0
    received = sum(map(len, chunks[:keep]))
    uuid = loc.split("/")[-1].split("?")[0]
    r = client.get(f"/v2/{REPO}/blobs/uploads/{uuid}")
    assert (r.status, r.header("Range")) == (204, f"0-{received - 1}")
    rest = chunks[keep:]
    loc = path_of(r.header("Location") or "")
    r = client.put(loc + f"&digest={sha256(b''.join(chunks))}", body=rest)
    assert r.status == 201, r.body


def test_disk_full_in_the_middle_of_a_large_body(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = _chunks(3 * BATCH)
    loc = path_of(start(client, REPO).header("Location") or "")
    real_write = BlobWriter.write
    calls = 0

    def filling(self: BlobWriter, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(BlobWriter, "write", filling)
    r = client.patch(loc, body=chunks)
    assert (r.status, r.error_codes) == (507, ["UNAVAILABLE"])
    monkeypatch.setattr(BlobWriter, "write", real_write)
    written = sum(map(len, chunks[:20]))
    r = client.get(loc.split("?")[0])
    assert (r.status, r.header("Range")) == (204, f"0-{written - 1}")
    loc = path_of(r.header("Location") or "")
    r = client.put(loc + f"&digest={sha256(b''.join(chunks))}", body=chunks[20:])
    assert r.status == 201, r.body


def test_large_body_from_a_slow_writer_is_complete(client: Client) -> None:
    """The writer falls behind (backpressure engages) and nothing is lost or reordered."""
    chunks = _chunks(2 * BATCH, seed=5)
    real_write = BlobWriter.write

    def slow(self: BlobWriter, data: Any) -> int:
        time.sleep(0.001)  # a slow disk, so backpressure engages: what is tested
        return real_write(self, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BlobWriter, "write", slow)
        dgst = sha256(b"".join(chunks))
        r = client.post(f"/v2/{REPO}/blobs/uploads/?digest={dgst}", body=chunks)
    assert r.status == 201, r.body


def test_patch_whose_close_fails_is_not_acknowledged(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 202 unless the bytes are durable: a failing fsync at close is the client's error too."""
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"a" * 1000)
    assert r.status == 202
    loc = path_of(r.header("Location") or "")
    real_close = BlobWriter.close_deferring_state

    def failing_close(self: BlobWriter) -> Any:
        real_close(self)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(BlobWriter, "close_deferring_state", failing_close)
    r = client.patch(loc, body=_chunks(3 * BATCH))
    assert r.status >= 500
    monkeypatch.setattr(BlobWriter, "close_deferring_state", real_close)
    uuid = loc.split("/")[-1].split("?")[0]
    r = client.get(f"/v2/{REPO}/blobs/uploads/{uuid}")
    assert r.status == 204  # the upload is still there (and its lock was released)
