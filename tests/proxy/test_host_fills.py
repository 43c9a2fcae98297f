"""The host-wide fill without a network: the per-digest lock, the state, and a follower.

The "filler" here is the test itself, in the same process (``flock`` locks
belong to open file descriptions, so a second descriptor conflicts as another
process's would).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocistore.digest import Digest
from ocistore.proxy.fill import FillFailed
from ocistore.proxy.host import HostFills, RemoteFill
from ocistore.server.http import StreamRange

DATA = bytes(range(256)) * 64
DIGEST = Digest("sha256:" + hashlib.sha256(DATA).hexdigest())


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def test_one_leader_at_a_time(tmp_path: Path) -> None:
    host = HostFills(str(tmp_path))
    lock = host.try_lead(DIGEST)
    assert lock is not None
    assert host.try_lead(DIGEST) is None
    host.release(DIGEST, lock)
    assert os.listdir(host.dir) == []
    again = host.try_lead(DIGEST)
    assert again is not None
    host.release(DIGEST, again)


class Filler:
    """The leader's side: a file written piece by piece and a published state."""

    def __init__(self, tmp_path: Path) -> None:
        self.host = HostFills(str(tmp_path))
        lock = self.host.try_lead(DIGEST)
        assert lock is not None
        self.lock = lock
        self.fd = os.open(tmp_path / "upload", os.O_RDWR | os.O_CREAT, 0o600)
        self.committed = False
        self.took_over = 0

    def publish(self, verified: bool) -> None:
        self.host.publish(DIGEST, self.fd, len(DATA), "fill-1", verified)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def follower(self) -> RemoteFill:
        def take_over() -> None:
            self.took_over += 1

        return RemoteFill(
            HostFills(self.host.dir.removesuffix("/proxy-fills")),
            DIGEST,
            lambda: self.committed,
            take_over,
            lambda: open(os.devnull, "rb"),
        )

    def close(self) -> None:
        os.close(self.fd)


async def _follow(filler: Filler, got: bytearray, cond: asyncio.Condition) -> None:
    follower = filler.follower()
    assert await follower.open(asyncio.get_running_loop().time() + 30) == "follow"
    async for piece in follower.body(0, len(DATA), run):
        # The follower hands out ranges of the filler's file (sent without a copy).
        chunk = (
            os.pread(piece.fd, piece.length, piece.offset)
            if isinstance(piece, StreamRange)
            else piece
        )
        async with cond:
            got += chunk
            cond.notify_all()


async def _received(got: bytearray, cond: asyncio.Condition, n: int) -> None:
    async with cond:
        await asyncio.wait_for(cond.wait_for(lambda: len(got) >= n), 30)


def test_last_byte_waits_for_verified(tmp_path: Path) -> None:
    filler = Filler(tmp_path)

    async def main() -> None:
        got, cond = bytearray(), asyncio.Condition()
        filler.publish(False)
        task = asyncio.create_task(_follow(filler, got, cond))
        filler.write(DATA[:1000])
        await _received(got, cond, 1000)
        filler.write(DATA[1000:])
        await _received(got, cond, len(DATA) - 1)
        assert not task.done() and len(got) == len(DATA) - 1
        filler.publish(True)
        await asyncio.wait_for(task, 30)
        assert bytes(got) == DATA

    asyncio.run(main())
    filler.host.release(DIGEST, filler.lock)
    filler.close()


def test_filler_gone_cuts_the_response(tmp_path: Path) -> None:
    filler = Filler(tmp_path)

    async def main() -> None:
        got, cond = bytearray(), asyncio.Condition()
        filler.publish(False)
        task = asyncio.create_task(_follow(filler, got, cond))
        filler.write(DATA)
        await _received(got, cond, len(DATA) - 1)
        os.close(filler.lock)  # as if killed: state left, lock dropped, nothing committed
        with pytest.raises(FillFailed):
            await asyncio.wait_for(task, 30)
        assert len(got) == len(DATA) - 1
        assert filler.took_over == 1

    asyncio.run(main())
    filler.close()


@pytest.mark.parametrize("right", [True, False], ids=["right-bytes", "wrong-bytes"])
def test_unseen_verification_is_checked_by_hashing(tmp_path: Path, right: bool) -> None:
    filler = Filler(tmp_path)

    async def main() -> None:
        got, cond = bytearray(), asyncio.Condition()
        filler.publish(False)
        task = asyncio.create_task(_follow(filler, got, cond))
        filler.write(DATA if right else DATA[:-1] + b"\0")
        await _received(got, cond, len(DATA) - 1)
        filler.committed = True  # by this fill or another: the file must prove it
        filler.host.release(DIGEST, filler.lock)
        if right:
            await asyncio.wait_for(task, 30)
            assert bytes(got) == DATA
        else:
            with pytest.raises(FillFailed):
                await asyncio.wait_for(task, 30)
            assert len(got) == len(DATA) - 1

    asyncio.run(main())
    filler.close()
