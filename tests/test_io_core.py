"""``_core.start_writeback``: a hint on both cores, with the same checks and errors.

The native core starts writeback with ``sync_file_range`` (True on a regular
file on Linux); the pure core cannot and says so (False). Neither changes
what a file holds, and both refuse bad arguments alike.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ocistore import _core


def _file_with(tmp_path: Path, data: bytes) -> int:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    return fd


def test_regular_file(core: ModuleType, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    fd = _file_with(tmp_path, data)
    try:
        took = _core.start_writeback(fd, 0, len(data))
        whole = _core.start_writeback(fd, 0, 0)  # 0: to the end of the file
        tail = _core.start_writeback(fd, 1 << 20, 10)
        os.fsync(fd)
    finally:
        os.close(fd)
    expected = _core.BACKEND == "native" and sys.platform.startswith("linux")
    assert (took, whole, tail) == (expected, expected, expected)
    assert (tmp_path / "f").read_bytes() == data


def test_past_the_end_and_read_only_fd(core: ModuleType, tmp_path: Path) -> None:
    fd = _file_with(tmp_path, b"abc")
    os.close(fd)
    ro = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        result = _core.start_writeback(ro, 1 << 40, 1 << 20)
    finally:
        os.close(ro)
    assert result is (_core.BACKEND == "native" and sys.platform.startswith("linux"))


def test_pipe_cannot_take_the_hint(core: ModuleType) -> None:
    r, w = os.pipe()
    try:
        assert _core.start_writeback(w, 0, 0) is False
    finally:
        os.close(r)
        os.close(w)


def test_bad_fd_is_an_os_error(core: ModuleType, tmp_path: Path) -> None:
    fd = _file_with(tmp_path, b"x")
    os.close(fd)  # now a closed descriptor
    with pytest.raises(OSError) as info:
        _core.start_writeback(fd, 0, 0)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize(("offset", "length"), [(-1, 0), (0, -1)])
def test_negative_arguments(core: ModuleType, tmp_path: Path, offset: int, length: int) -> None:
    fd = _file_with(tmp_path, b"x")
    try:
        with pytest.raises(ValueError, match="must be >= 0"):
            _core.start_writeback(fd, offset, length)
    finally:
        os.close(fd)
