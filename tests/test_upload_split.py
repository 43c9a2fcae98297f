"""Large pieces are hashed on the writing thread while other threads write them.

``bytes`` go through the upload's write-behind thread (one piece in flight);
other buffers through the shared helpers (the call waits for its write).
"""

from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, durable
from ocistore.storage import Registry
from ocistore.storage import writebehind as wb
from ocistore.storage.blobwriter import (
    SPLIT_MIN,
    WRITE_BEHIND_PIECE,
    WRITEBACK_CHUNK,
    BlobWriter,
)


@pytest.fixture
def written_on(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records (thread name, size) of every write the helper threads make."""
    calls: list[tuple[str, int]] = []
    real = durable.write_all

    def record(fd: int, view: memoryview) -> int:
        calls.append((threading.current_thread().name, view.nbytes))
        return real(fd, view)

    monkeypatch.setattr(wb, "write_all", record)
    return calls


@pytest.fixture
def blobs(tmp_path: Path) -> Any:
    return Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs


def test_pieces_go_to_the_right_threads_in_order(
    blobs: Any, written_on: list[tuple[str, int]]
) -> None:
    data = os.urandom(3 * WRITE_BEHIND_PIECE + 3 * SPLIT_MIN + 12345)
    cut1, cut2 = 100, 100 + SPLIT_MIN
    cut3 = cut2 + 2 * WRITE_BEHIND_PIECE + 777
    with blobs.create() as w:
        w.write(data[:cut1])  # small: hashed and written in one call, no helper
        w.write(memoryview(data)[cut1:cut2])  # a reusable buffer: a shared helper
        w.write(data[cut2:cut3])  # bytes: written behind, in pieces
        w.write(bytearray(data[cut3:]))  # a reusable buffer again: after what is in flight
        desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert desc.digest == Digest.from_bytes(data)
    assert w.reread_bytes == 0  # the running hash was right
    with blobs.open(desc.digest) as f:
        assert f.read() == data
    # bytes went to the upload's write-behind lane (the core's), the rest to the shared helpers
    assert all(name.startswith("ocistore-write") for name, _ in written_on)
    shared = [n for _, n in written_on]
    assert shared[0] == SPLIT_MIN  # the memoryview, whole
    assert sum(shared[1:]) == len(data) - cut3  # the bytearray, in writeback slices
    assert all(n <= WRITEBACK_CHUNK for n in shared[1:])


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
    data = os.urandom(4 * WRITE_BEHIND_PIECE)
    w = blobs.create()
    w._write_behind_lane = lambda fd, writeback: FailingLane(fd, writeback, fail_at=3)
    with pytest.raises(OSError, match="No space"):  # raised by the write or by close
        w.write(data)
        w.close()
    kept = 2 * WRITE_BEHIND_PIECE + WRITE_BEHIND_PIECE // 2
    assert w.size == kept  # what reached the file (nothing after the failed piece)
    assert not w.hashing
    w.close()
    w = blobs.resume(w.id)
    assert w.size == kept
    desc = w.commit(Descriptor(Digest.from_bytes(data[:kept]), kept))
    assert desc.digest == Digest.from_bytes(data[:kept])


def test_a_failure_found_by_close_keeps_the_upload_resumable(blobs: Any) -> None:
    data = os.urandom(WRITE_BEHIND_PIECE)
    w = blobs.create()
    w._write_behind_lane = lambda fd, writeback: FailingLane(fd, writeback, fail_at=1)
    w.write(data)  # one piece in flight: its failure shows at close
    with pytest.raises(OSError, match="No space"):
        w.close()
    assert (w.size, w.hashing) == (len(data) // 2, False)
    w.close()  # now closed for good, at what is on disk
    assert blobs.resume(w.id).size == len(data) // 2


def test_a_failed_shared_helper_write_leaves_the_file_as_the_truth(
    blobs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(2 * SPLIT_MIN)
    real = durable.write_all

    def half_then_full(fd: int, view: memoryview) -> int:
        real(fd, view[: view.nbytes // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    w = blobs.create()
    w.write(bytearray(data[:SPLIT_MIN]))
    monkeypatch.setattr(wb, "write_all", half_then_full)
    with pytest.raises(OSError, match="No space"):
        w.write(bytearray(data[SPLIT_MIN:]))
    monkeypatch.undo()
    kept = SPLIT_MIN + SPLIT_MIN // 2
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
            w.write(make(os.urandom(SPLIT_MIN)))
        assert w.size == SPLIT_MIN and not w.hashing
        w.cancel()


def test_cancel_with_writes_in_flight(blobs: Any, tmp_path: Path) -> None:
    w = blobs.create()
    w.write(os.urandom(3 * WRITE_BEHIND_PIECE))
    w.cancel()
    assert not list((tmp_path / "root").rglob("data"))


def test_helpers_are_made_again_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    inherited = ThreadPoolExecutor(1)
    monkeypatch.setattr(wb._helpers, "_made", (os.getpid() + 1, inherited))
    pool = wb._helpers.get()
    assert pool is not inherited
    assert wb._helpers.get() is pool
    inherited.shutdown()
