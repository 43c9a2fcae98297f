"""Large pieces are hashed on the writing thread while a helper thread writes them (``SPLIT_MIN``)."""

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
from ocistore.storage import blobwriter as bw
from ocistore.storage.blobwriter import SPLIT_MIN


@pytest.fixture
def written_on(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records (thread name, size) of every write the helpers make."""
    calls: list[tuple[str, int]] = []
    real = durable.write_all

    def record(fd: int, view: memoryview) -> int:
        calls.append((threading.current_thread().name, view.nbytes))
        return real(fd, view)

    monkeypatch.setattr(bw, "write_all", record)
    return calls


def test_large_pieces_are_written_by_helpers(
    tmp_path: Path, written_on: list[tuple[str, int]]
) -> None:
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    data = os.urandom(3 * SPLIT_MIN + 12345)
    with blobs.create() as w:
        w.write(data[:100])  # small: hashed and written in one call, no helper
        w.write(memoryview(data)[100 : 100 + SPLIT_MIN])
        w.write(data[100 + SPLIT_MIN :])
        desc = w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    assert desc.digest == Digest.from_bytes(data)
    assert w.reread_bytes == 0  # the running hash was right
    assert sum(n for _, n in written_on) == len(data) - 100
    assert all(name.startswith("ocistore-write") for name, _ in written_on)
    blob = blobs.get(desc.digest)
    assert blob == data


def test_a_failed_helper_write_leaves_the_file_as_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    data = os.urandom(2 * SPLIT_MIN)
    real = durable.write_all

    def half_then_full(fd: int, view: memoryview) -> int:
        real(fd, view[: view.nbytes // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    w = blobs.create()
    w.write(data[:SPLIT_MIN])
    monkeypatch.setattr(bw, "write_all", half_then_full)
    with pytest.raises(OSError, match="No space"):
        w.write(data[SPLIT_MIN:])
    monkeypatch.undo()
    kept = SPLIT_MIN + SPLIT_MIN // 2
    assert w.size == kept  # what reached the file, not what was hashed
    assert not w.hashing
    w.close()
    w = blobs.resume(w.id)
    assert w.size == kept
    desc = w.commit(Descriptor(Digest.from_bytes(data[:kept]), kept))
    assert desc.digest == Digest.from_bytes(data[:kept])


def test_hashing_failure_waits_for_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper is done with the buffer before the error propagates."""
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    released = threading.Event()
    real = durable.write_all

    def slow(fd: int, view: memoryview) -> int:
        n = real(fd, view)
        released.set()
        return n

    class Broken:
        def update(self, data: Any) -> None:
            raise RuntimeError("hasher broke")

    monkeypatch.setattr(bw, "write_all", slow)
    w = blobs.create()
    w._hasher = Broken()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="hasher broke"):
        w.write(os.urandom(SPLIT_MIN))
    assert released.is_set()
    assert w.size == SPLIT_MIN and not w.hashing
    w.cancel()


def test_helpers_are_made_again_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    inherited = ThreadPoolExecutor(1)
    monkeypatch.setattr(bw, "_helpers", (os.getpid() + 1, inherited))
    pool = bw._write_helpers()
    assert pool is not inherited
    assert bw._write_helpers() is pool
    inherited.shutdown()
