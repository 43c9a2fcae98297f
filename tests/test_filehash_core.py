"""``_core.hash_file``: a file's range hashed in place, and a file cut short reported, on both cores.

The native core maps ranges of 256 KiB and more (16 MiB at a time) and hashes
them without a copy; a page cut away under the mapping raises SIGBUS, which
it must catch in the thread that made it and turn into ``FileTruncated``,
while a SIGBUS anywhere else must still end the process as it would have.
The pure core reads with ``preadv``. Digests must equal hashlib's for every
range, both sides of the mapping threshold and of a window boundary.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import core_env
from ocistore import _core
from ocistore.errors import FileTruncated, RegistryError

MAP_MIN = 256 << 10
WINDOW = 16 << 20
DATA = os.urandom(WINDOW + (1 << 20) + 4321)  # crosses one window boundary


@pytest.fixture(scope="module")
def data_fd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    path = tmp_path_factory.mktemp("filehash") / "blob"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


def _hashers() -> list[tuple[Any, str]]:
    return [(_core.Sha256(), "sha256"), (_core.Sha512(), "sha512")]


def test_whole_file_and_boundaries(data_fd: int) -> None:
    ranges = [
        (0, len(DATA)),
        (1, len(DATA) - 1),
        (0, MAP_MIN - 1),
        (0, MAP_MIN),
        (4095, MAP_MIN + 1),
        (WINDOW - 5, 10),
        (WINDOW - MAP_MIN, 2 * MAP_MIN),
        (len(DATA), 0),
        (7, 0),
    ]
    for offset, length in ranges:
        for h, name in _hashers():
            _core.hash_file(h, data_fd, offset, length)
            want = hashlib.new(name, DATA[offset : offset + length]).hexdigest()
            assert h.hexdigest() == want, (name, offset, length)


@settings(max_examples=40)
@given(
    offset=st.integers(0, len(DATA)),
    length=st.one_of(st.integers(0, 2 * MAP_MIN), st.integers(0, len(DATA))),
    prefix=st.binary(max_size=200),
)
def test_same_digest_as_hashlib(data_fd: int, offset: int, length: int, prefix: bytes) -> None:
    length = min(length, len(DATA) - offset)
    h = _core.Sha256(prefix)  # hashing goes on from the hasher's state
    _core.hash_file(h, data_fd, offset, length)
    assert h.hexdigest() == hashlib.sha256(prefix + DATA[offset : offset + length]).hexdigest()
    h.update(b"after")  # and the hasher goes on after it
    want = hashlib.sha256(prefix + DATA[offset : offset + length] + b"after").hexdigest()
    assert h.hexdigest() == want


def test_other_hashers_are_fed_through_update(data_fd: int) -> None:
    h = hashlib.blake2b()
    _core.hash_file(h, data_fd, 3, MAP_MIN * 2)
    assert h.hexdigest() == hashlib.blake2b(DATA[3 : 3 + MAP_MIN * 2]).hexdigest()


@pytest.mark.parametrize("length", [10, MAP_MIN, 3 * MAP_MIN])
def test_a_range_past_the_end_is_truncated(data_fd: int, length: int) -> None:
    with pytest.raises(FileTruncated) as info:
        _core.hash_file(_core.Sha256(), data_fd, len(DATA) - length + 1, length)
    assert (info.value.expected, info.value.size) == (len(DATA) + 1, len(DATA))
    assert isinstance(info.value, OSError) and isinstance(info.value, RegistryError)
    assert str(info.value) == f"file ended before byte {len(DATA) + 1}: it is {len(DATA)} bytes now"


def test_bad_arguments(data_fd: int) -> None:
    for offset, length in ((-1, 10), (0, -1)):
        with pytest.raises(ValueError, match="offset and length must be >= 0"):
            _core.hash_file(_core.Sha256(), data_fd, offset, length)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    for length in (0, 10, MAP_MIN):  # a closed descriptor, however short the range
        with pytest.raises(OSError) as info:
            _core.hash_file(_core.Sha256(), r, 0, length)
        assert info.value.errno == errno.EBADF


def test_a_pipe_is_an_error_not_a_crash() -> None:
    r, w = os.pipe()
    try:
        for length in (10, MAP_MIN):
            with pytest.raises(OSError) as info:
                _core.hash_file(_core.Sha256(), r, 0, length)
            assert info.value.errno == errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)


class TruncatingHasher:
    """A hasher whose first update cuts the file short: the next read meets its end."""

    def __init__(self, path: Path, size: int) -> None:
        self.inner = hashlib.sha256()
        self.path, self.size, self.updates = path, size, 0

    def update(self, data: Any, /) -> None:
        self.updates += 1
        if self.updates == 1:
            os.truncate(self.path, self.size)
        self.inner.update(data)


def test_a_file_truncated_between_reads_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA[: 4 << 20])
    fd = os.open(path, os.O_RDONLY)
    try:
        h = TruncatingHasher(path, 1 << 20)
        with pytest.raises(FileTruncated) as info:
            _core.hash_file(h, fd, 0, 4 << 20)
    finally:
        os.close(fd)
    assert (info.value.expected, info.value.size) == (4 << 20, 1 << 20)
    assert h.updates >= 2


def _native() -> Any:
    from ocistore._native import _hashing

    return _hashing


@pytest.mark.native_only
@pytest.mark.parametrize("cut", [0, 1, (2 << 20) + 17, WINDOW + 5])
def test_a_mapped_file_truncated_underneath_is_reported_not_a_crash(
    tmp_path: Path, cut: int
) -> None:
    native = _native()
    assert native._can_map()
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    wfd = os.open(path, os.O_WRONLY)
    try:
        for _ in range(2):  # twice in one thread: the fault left SIGBUS unblocked
            path.write_bytes(DATA)
            before = native._mapped_faults()
            # the window is mapped (and populated) first, then the file is cut, then hashed
            native._truncate_when_mapped(wfd, cut)
            with pytest.raises(FileTruncated) as info:
                _core.hash_file(_core.Sha256(), fd, 0, len(DATA))
            assert native._mapped_faults() == before + 1
            assert (info.value.expected, info.value.size) == (len(DATA), cut)
    finally:
        native._truncate_when_mapped(-1, 0)
        os.close(wfd)
        os.close(fd)


@pytest.mark.native_only
def test_threads_hash_side_by_side(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        p = tmp_path / f"blob{i}"
        p.write_bytes(DATA[i * 1000 : i * 1000 + (3 << 20)])
        paths.append(p)
    results: dict[int, str] = {}

    def work(i: int) -> None:
        fd = os.open(paths[i], os.O_RDONLY)
        try:
            for _ in range(5):
                h = _core.Sha256()
                _core.hash_file(h, fd, 0, 3 << 20)
                results[i] = h.hexdigest()
        finally:
            os.close(fd)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, p in enumerate(paths):
        assert results[i] == hashlib.sha256(p.read_bytes()).hexdigest()


_UNGUARDED = textwrap.dedent(
    """
    import faulthandler, mmap, os, sys
    from ocistore import _core
    from ocistore._native import _hashing
    path, mode = sys.argv[1], sys.argv[2]
    with open(path, "wb") as f:
        f.write(b"x" * (1 << 20))
    fd = os.open(path, os.O_RDWR)
    h = _core.Sha256()
    _core.hash_file(h, fd, 0, 1 << 20)  # the guard's handler is in place from here on
    if mode == "later-faulthandler":
        faulthandler.enable()
        # another handler took SIGBUS: hashing still works, by reading
        assert not _hashing._can_map()
        h = _core.Sha256()
        _core.hash_file(h, fd, 0, 1 << 20)
        assert h.hexdigest() == __import__("hashlib").sha256(b"x" * (1 << 20)).hexdigest()
    m = mmap.mmap(fd, 1 << 20, access=mmap.ACCESS_READ)
    os.ftruncate(fd, 0)
    print("touching", flush=True)
    m[500000]  # a fault outside any guarded window
    print("survived", flush=True)
    """
)


@pytest.mark.native_only
@pytest.mark.parametrize("mode", ["plain", "faulthandler", "later-faulthandler"])
def test_a_sigbus_elsewhere_still_ends_the_process(tmp_path: Path, mode: str) -> None:
    argv = [sys.executable]
    if mode == "faulthandler":
        argv += ["-X", "faulthandler"]
    proc = subprocess.run(
        [*argv, "-c", _UNGUARDED, str(tmp_path / "blob"), mode],
        env=core_env("native"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout == "touching\n", proc.stderr
    assert proc.returncode == -7  # SIGBUS, the default action
    if mode != "plain":
        assert "Fatal Python error: Bus error" in proc.stderr
