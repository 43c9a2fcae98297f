"""The blob writer starts writeback as data arrives (a hint only: durability still comes from fsync).

These tests write reusable buffers, which the writer writes itself. ``bytes``
go through the core's write-behind lane, which starts writeback of each
piece on its own thread (tests/test_writebehind_core.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, InMemoryDriver
from ocistore.storage import Registry
from ocistore.storage.blobwriter import WRITEBACK_CHUNK


@pytest.fixture
def kicks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = _core.start_writeback

    def record(fd: int, offset: int, length: int) -> bool:
        calls.append((offset, length))
        return bool(real(fd, offset, length))

    monkeypatch.setattr(_core, "start_writeback", record)
    return calls


def test_writeback_covers_what_was_written_in_order(tmp_path: Path, kicks: list[Any]) -> None:
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    data = os.urandom(2 * WRITEBACK_CHUNK + 12345)
    with blobs.create() as w:
        w.write(data[:100])  # small writes accumulate
        w.write(memoryview(data)[100:])  # a large one is written in slices
        upload_id = w.id
    # contiguous, each at least a chunk, covering all but the last partial chunk
    assert [o for o, _ in kicks] == [0, kicks[0][1]]
    assert all(n >= WRITEBACK_CHUNK for _, n in kicks)
    assert len(data) - WRITEBACK_CHUNK < sum(n for _, n in kicks) <= len(data)
    covered = sum(n for _, n in kicks)
    w = blobs.resume(upload_id)  # a resumed writer starts after what is there
    w.write(bytearray(WRITEBACK_CHUNK))
    assert covered < len(data)  # the rest was made durable by close (fsync) ...
    assert kicks[-1] == (len(data), WRITEBACK_CHUNK)  # ... so a resumed writer starts at the end
    w.cancel()


def test_failing_hint_is_dropped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(fd: int, offset: int, length: int) -> bool:
        calls.append(offset)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_core, "start_writeback", broken)
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    data = os.urandom(3 * WRITEBACK_CHUNK)
    with blobs.create() as w:
        w.write(bytearray(data))
        desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert calls == [0]  # tried once, then left alone
    assert desc.size == len(data)


def test_no_fd_no_hint(kicks: list[Any]) -> None:
    blobs = Registry(InMemoryDriver()).repository("a").blobs
    data = os.urandom(WRITEBACK_CHUNK + 1)
    with blobs.create() as w:
        w.write(data)
        assert w.commit(Descriptor(Digest.from_bytes(data), len(data))).size == len(data)
    assert kicks == []


def test_bytes_go_to_a_lane_that_starts_writeback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lanes: list[tuple[int, bool]] = []
    real = _core.WriteBehind

    def lane(fd: int, writeback: bool) -> Any:
        lanes.append((fd, writeback))
        return real(fd, writeback)

    monkeypatch.setattr(_core, "WriteBehind", lane)
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    data = os.urandom(3 * WRITEBACK_CHUNK)
    with blobs.create() as w:
        w.write(data)
        desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert desc.size == len(data)
    assert len(lanes) == 1 and lanes[0][1] is True
