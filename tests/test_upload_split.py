"""An upload's bytes are hashed on the writing thread while its write-behind lane appends them.

Every buffer goes through the lane (the core's ``WriteBehind``) in pieces of
``PIECE``: ``bytes`` may still be in flight when ``write`` returns, any other
buffer is written by then. A driver without a file descriptor is written
through on the calling thread.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, InMemoryDriver, durable
from ocistore.storage import Registry
from ocistore.storage.blobwriter import PIECE, BlobWriter


class RecordingLane:
    """The core's lane, recording what it is asked (pieces, waits)."""

    def __init__(self, real: Any, calls: list[tuple[Any, ...]], fd: int, writeback: bool) -> None:
        self.calls = calls
        self.real = real(fd, writeback)
        calls.append(("start", writeback))

    def submit(self, data: Any, offset: int) -> None:
        self.calls.append(("submit", offset, memoryview(data).nbytes))
        self.real.submit(data, offset)

    def settle(self, in_flight: int = 0) -> None:
        self.calls.append(("settle", in_flight))
        self.real.settle(in_flight)

    def abandon(self) -> None:
        self.calls.append(("abandon",))
        self.real.abandon()

    def close(self) -> None:
        self.calls.append(("close",))
        self.real.close()


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    real = _core.WriteBehind
    monkeypatch.setattr(_core, "WriteBehind", lambda fd, wb: RecordingLane(real, calls, fd, wb))
    return calls


@pytest.fixture
def blobs(tmp_path: Path) -> Any:
    return Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs


def test_every_buffer_goes_through_one_lane_in_order(
    blobs: Any, lane_calls: list[tuple[Any, ...]]
) -> None:
    data = os.urandom(3 * PIECE + PIECE // 2 + 12345)
    cut1, cut2 = 100, 100 + PIECE // 4
    cut3 = cut2 + 2 * PIECE + 777
    with blobs.create() as w:
        w.write(data[:cut1])  # small bytes
        w.write(memoryview(data)[cut1:cut2])  # a view: reusable by the caller
        w.write(data[cut2:cut3])  # bytes: in pieces, the last may be in flight on return
        w.write(bytearray(data[cut3:]))  # reusable again
        desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert desc.digest == Digest.from_bytes(data)
    assert w.reread_bytes == 0  # the running hash was right
    with blobs.open(desc.digest) as f:
        assert f.read() == data
    assert lane_calls[0] == ("start", True)  # one lane for the writer, starting writeback
    assert [c[0] for c in lane_calls].count("start") == 1
    assert lane_calls[-1] == ("close",)  # commit waited for every write
    submits = [c for c in lane_calls if c[0] == "submit"]
    offsets = [c[1] for c in submits]
    sizes = [c[2] for c in submits]
    assert offsets == [sum(sizes[:i]) for i in range(len(sizes))]  # contiguous, in order
    assert sum(sizes) == len(data) and max(sizes) <= PIECE
    assert sizes[2:5] == [PIECE, PIECE, 777]  # the large bytes, cut into pieces


def test_a_reusable_buffer_is_written_before_write_returns(
    blobs: Any, lane_calls: list[tuple[Any, ...]]
) -> None:
    w = blobs.create()
    w.write(os.urandom(10))  # bytes: no wait for the last piece
    assert lane_calls[-1] == ("settle", 1)
    buffer = bytearray(os.urandom(PIECE + 1))
    w.write(buffer)
    assert lane_calls[-1] == ("settle", 0)  # every piece written: the caller may reuse it
    buffer[:] = b"\0" * len(buffer)
    w.close()
    w = blobs.resume(w.id)
    assert w.size == 10 + PIECE + 1
    w.cancel()


class FailingLane:
    """A lane honouring the core's contract whose ``fail_at``-th piece fails half-way."""

    def __init__(self, fd: int, writeback: bool, fail_at: int) -> None:
        self.fd, self.fail_at, self.count = fd, fail_at, 0
        self.error: OSError | None = None

    def submit(self, data: Any, offset: int) -> None:
        self.count += 1
        if self.error is not None:
            return  # nothing after a failure is written
        view = memoryview(data)
        if self.count < self.fail_at:
            durable.write_all(self.fd, view)
            return
        durable.write_all(self.fd, view[: view.nbytes // 2])
        self.error = OSError(errno.ENOSPC, "No space left on device")

    def settle(self, in_flight: int = 0) -> None:
        # As if the failing write were still under way until everything is waited for.
        if in_flight == 0 and self.error is not None:
            error, self.error = self.error, None
            raise error

    def abandon(self) -> None:
        self.error = None

    def close(self) -> None:
        self.settle()


def test_a_failed_write_behind_leaves_the_file_as_the_truth(blobs: Any) -> None:
    data = os.urandom(4 * PIECE)
    w = blobs.create()
    w._write_behind_lane = lambda fd, writeback: FailingLane(fd, writeback, fail_at=3)
    with pytest.raises(OSError, match="No space"):  # raised by the write or by close
        w.write(data)
        w.close()
    kept = 2 * PIECE + PIECE // 2
    assert w.size == kept  # what reached the file (nothing after the failed piece)
    assert not w.hashing
    w.close()
    w = blobs.resume(w.id)
    assert w.size == kept
    desc = w.commit(Descriptor(Digest.from_bytes(data[:kept]), kept))
    assert desc.digest == Digest.from_bytes(data[:kept])


def test_a_failure_found_by_close_keeps_the_upload_resumable(blobs: Any) -> None:
    data = os.urandom(PIECE)
    w = blobs.create()
    w._write_behind_lane = lambda fd, writeback: FailingLane(fd, writeback, fail_at=1)
    w.write(data)  # one piece in flight: its failure shows at close
    with pytest.raises(OSError, match="No space"):
        w.close()
    assert (w.size, w.hashing) == (len(data) // 2, False)
    w.close()  # now closed for good, at what is on disk
    assert blobs.resume(w.id).size == len(data) // 2


def test_a_failed_write_of_a_reusable_buffer_is_raised_by_that_write(blobs: Any) -> None:
    data = os.urandom(2 * PIECE)
    w = blobs.create()
    w._write_behind_lane = lambda fd, writeback: FailingLane(fd, writeback, fail_at=2)
    w.write(bytearray(data[:PIECE]))
    with pytest.raises(OSError, match="No space"):
        w.write(bytearray(data[PIECE:]))
    kept = PIECE + PIECE // 2
    assert w.size == kept and not w.hashing
    w.close()
    desc = blobs.resume(w.id).commit(Descriptor(Digest.from_bytes(data[:kept]), kept))
    assert desc.digest == Digest.from_bytes(data[:kept])


def test_hashing_failure_waits_for_the_write(blobs: Any) -> None:
    """The writes under way finish before the error propagates; the file is the truth."""

    class Broken:
        def update(self, data: Any) -> None:
            raise RuntimeError("hasher broke")

    for make in (bytes, bytearray):
        w: BlobWriter = blobs.create()
        w._hasher = Broken()  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="hasher broke"):
            w.write(make(os.urandom(PIECE)))
        assert w.size == PIECE and not w.hashing
        w.cancel()


def test_cancel_with_writes_in_flight(blobs: Any, tmp_path: Path) -> None:
    w = blobs.create()
    w.write(os.urandom(3 * PIECE))
    w.cancel()
    assert not list((tmp_path / "root").rglob("data"))


def test_a_resumed_writer_that_does_not_hash_still_writes_behind(
    tmp_path: Path, lane_calls: list[tuple[Any, ...]]
) -> None:
    registry = Registry(FilesystemDriver(tmp_path / "root"), resumable_digest=False)
    blobs = registry.repository("a").blobs
    data = os.urandom(PIECE + 5)
    with blobs.create() as w:
        w.write(data[:5])
    w = blobs.resume(w.id)
    assert not w.hashing  # no state: commit re-reads
    w.write(data[5:])
    desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert desc.digest == Digest.from_bytes(data) and w.reread_bytes == len(data)
    assert ("submit", 5, PIECE) in lane_calls


def test_no_file_descriptor_is_written_through(lane_calls: list[tuple[Any, ...]]) -> None:
    blobs = Registry(InMemoryDriver()).repository("a").blobs
    data = os.urandom(PIECE + 1)
    with blobs.create() as w:
        w.write(data[:10])
        w.write(bytearray(data[10:]))
        desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert desc.size == len(data) and w.reread_bytes == 0
    assert lane_calls == []
