"""``_core.pread_nowait``: what the page cache holds, read without waiting, on both cores.

Both cores read with ``preadv2(RWF_NOWAIT)`` on Linux (the pure one through
``os.preadv``): the same bytes as ``os.pread`` when the data is cached, None
when it would have to come from the disk, the same errors for bad arguments.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocistore import _core

DATA = os.urandom((3 << 20) + 12345)
NOWAIT = sys.platform.startswith("linux") and hasattr(os, "RWF_NOWAIT")


@pytest.fixture(scope="module")
def cached_fd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    path = tmp_path_factory.mktemp("readat") / "blob"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    os.pread(fd, len(DATA), 0)  # in the page cache (just written, and read once)
    yield fd
    os.close(fd)


@pytest.mark.skipif(not NOWAIT, reason="RWF_NOWAIT is Linux only")
def test_cached_data_is_read_whole(cached_fd: int) -> None:
    got = _core.pread_nowait(cached_fd, 2 << 20, 1000)
    assert type(got) is bytes and got == DATA[1000 : 1000 + (2 << 20)]
    assert _core.pread_nowait(cached_fd, len(DATA), 0) == DATA


@pytest.mark.skipif(not NOWAIT, reason="RWF_NOWAIT is Linux only")
@settings(max_examples=60, deadline=None)
@given(offset=st.integers(0, len(DATA) + 10), length=st.integers(0, 1 << 20))
def test_same_bytes_as_pread(cached_fd: int, offset: int, length: int) -> None:
    assert _core.pread_nowait(cached_fd, length, offset) == os.pread(cached_fd, length, offset)


def test_end_of_file_and_empty_reads(cached_fd: int) -> None:
    for length, offset in ((10, len(DATA)), (10, len(DATA) + 5), (0, 0)):
        # the end of the file is known without waiting (None: a platform that cannot tell)
        assert _core.pread_nowait(cached_fd, length, offset) == (b"" if NOWAIT else None)
    if NOWAIT:
        assert _core.pread_nowait(cached_fd, 100, len(DATA) - 10) == DATA[-10:]


@pytest.mark.skipif(not NOWAIT, reason="RWF_NOWAIT is Linux only")
def test_data_not_in_the_page_cache_is_none(tmp_path: Path) -> None:
    path = tmp_path / "cold"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        got = _core.pread_nowait(fd, 1 << 20, 1 << 20)
        if got is not None:  # a filesystem that keeps everything in memory (tmpfs)
            assert got == DATA[1 << 20 : 2 << 20]
            pytest.skip("this filesystem does not drop cached pages")
        assert os.pread(fd, 1 << 20, 1 << 20) == DATA[1 << 20 : 2 << 20]  # now cached
        assert _core.pread_nowait(fd, 1 << 20, 1 << 20) == DATA[1 << 20 : 2 << 20]
    finally:
        os.close(fd)


@pytest.mark.parametrize(("length", "offset"), [(-1, 0), (1, -1)])
def test_negative_arguments(cached_fd: int, length: int, offset: int) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        _core.pread_nowait(cached_fd, length, offset)


def test_bad_fd(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError) as info:
        _core.pread_nowait(fd, 10, 0)
    assert info.value.errno == errno.EBADF


def test_directory_is_left_to_the_blocking_read(tmp_path: Path) -> None:
    """A file that cannot be read without waiting (here: a directory) is None, not data."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        try:
            got = _core.pread_nowait(fd, 10, 0)
        except OSError as exc:
            assert exc.errno == errno.EISDIR
        else:
            assert got is None
        with pytest.raises(IsADirectoryError):
            os.pread(fd, 10, 0)  # what the caller then does says what is wrong
    finally:
        os.close(fd)
