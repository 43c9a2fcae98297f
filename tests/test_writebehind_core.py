"""``_core.WriteBehind``: the same lane on both cores (a C thread in the native one)."""

from __future__ import annotations

import errno
import gc
import os
from pathlib import Path
from types import ModuleType

import pytest

from ocistore import _core
from ocistore._core_py import io as _core_py_io
from waiting import wait_until

MiB = 1 << 20


def _open(tmp_path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    return os.open(tmp_path / "f", flags, 0o644)


@pytest.mark.parametrize("writeback", [True, False])
def test_pieces_are_appended_in_order(core: ModuleType, tmp_path: Path, writeback: bool) -> None:
    data = os.urandom(9 * MiB + 321)
    fd = _open(tmp_path)
    try:
        lane = _core.WriteBehind(fd, writeback)
        offset = 0
        for start in range(0, len(data), 700_000):
            piece = data[start : start + 700_000]
            lane.submit(piece, offset)
            offset += len(piece)
            lane.settle(1)
        lane.close()
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(data)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


def test_more_pieces_than_slots_without_settling(core: ModuleType, tmp_path: Path) -> None:
    """submit waits for room by itself; the buffers live until written."""
    parts = [os.urandom(100_000 + i) for i in range(20)]
    fd = _open(tmp_path)
    try:
        lane = _core.WriteBehind(fd, True)
        offset = 0
        for part in parts:
            lane.submit(memoryview(part), offset)
            offset += len(part)
        del part
        gc.collect()
        lane.close()
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)


def test_a_failed_write_is_raised_once_and_stops_the_lane(core: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    fd = os.open(tmp_path / "f", os.O_RDONLY)  # every write fails (EBADF)
    try:
        lane = _core.WriteBehind(fd, True)
        lane.submit(b"a" * 10, 0)
        lane.submit(b"b" * 10, 10)
        with pytest.raises(OSError) as info:
            lane.settle(0)
        assert info.value.errno == errno.EBADF
        lane.settle(0)  # reported once
        lane.close()
    finally:
        os.close(fd)


def test_pieces_after_a_failure_are_not_written(core: ModuleType, tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)  # writes to w fail with EPIPE (SIGPIPE is ignored by Python)
    try:
        lane = _core.WriteBehind(w, False)
        for i in range(6):
            lane.submit(b"x" * 1000, i * 1000)
        with pytest.raises(OSError) as info:
            lane.close()
        assert info.value.errno == errno.EPIPE
    finally:
        os.close(w)


def test_abandon_ignores_a_failure(core: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        lane = _core.WriteBehind(fd, False)
        lane.submit(b"a" * 10, 0)
        lane.abandon()
        lane.settle(0)  # a stopped lane has nothing to wait for
        lane.abandon()
        lane.close()
    finally:
        os.close(fd)


def test_misuse(core: ModuleType, tmp_path: Path) -> None:
    fd = _open(tmp_path)
    try:
        lane = _core.WriteBehind(fd, False)
        with pytest.raises(ValueError, match="in_flight"):
            lane.settle(-1)
        with pytest.raises(TypeError):
            lane.submit("text", 0)
        lane.close()
        with pytest.raises(ValueError, match="closed"):
            lane.submit(b"late", 0)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b""


def test_dropped_lane_finishes_its_writes(core: ModuleType, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    fd = _open(tmp_path)
    try:
        lane = _core.WriteBehind(fd, True)
        lane.submit(data, 0)
        del lane
        gc.collect()
        # the pure core's thread ends on its own once done
        wait_until(lambda: os.fstat(fd).st_size == len(data), "the dropped lane wrote it all")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.one_core
def test_writeback_is_started_every_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hints cover what was written, in order, at least a MiB each (the pure lane's, observable).

    The native lane starts writeback with ``sync_file_range`` at the same
    points, out of sight of Python.
    """
    hints: list[tuple[int, int]] = []

    def record(fd: int, offset: int, length: int) -> bool:
        hints.append((offset, length))
        return True

    monkeypatch.setattr(_core_py_io, "start_writeback", record)
    fd = _open(tmp_path)
    try:
        lane = _core_py_io.WriteBehind(fd, True)
        start, piece = 5000, 300_000  # the lane takes offsets as given: a resumed upload's
        for i in range(10):
            lane.submit(b"x" * piece, start + i * piece)
        lane.close()
    finally:
        os.close(fd)
    assert [o for o, _ in hints] == [
        start + sum(n for _, n in hints[:i]) for i in range(len(hints))
    ]
    assert all(n >= MiB for _, n in hints)
    assert 10 * piece - MiB < sum(n for _, n in hints) <= 10 * piece


@pytest.mark.one_core
def test_a_failing_hint_is_dropped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken(fd: int, offset: int, length: int) -> bool:
        calls.append(offset)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_core_py_io, "start_writeback", broken)
    data = os.urandom(3 * MiB)
    fd = _open(tmp_path)
    try:
        lane = _core_py_io.WriteBehind(fd, True)
        for i in range(3):
            lane.submit(data[i * MiB : (i + 1) * MiB], i * MiB)
        lane.close()  # no error: the hint is only a hint
    finally:
        os.close(fd)
    assert calls == [0]  # tried once, then left alone
    assert (tmp_path / "f").read_bytes() == data
