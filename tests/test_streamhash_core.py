"""``_core.copy_hashed``: a stream copied into a file and hashed on the way, on both cores.

What a pull-through cache does with an upstream body. Each core must stop at
the same points (the length reached, the stream's end, no byte for ``wait``
seconds) and return the same ``(copied, ended)``; every byte it counts is in
the file and in the hash, whatever pieces the stream arrives in and whether
the descriptor is blocking or not.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocistore import _core

DATA = os.urandom((3 << 20) + 777)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "upload", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    yield fd
    os.close(fd)


def _feed(sock: socket.socket, data: bytes, *, close: bool) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("blocking", [True, False])
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_copies_and_hashes_to_the_end(
    tmp_path: Path, out: int, blocking: bool, algorithm: str
) -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(blocking)
        feeder = _feed(a, DATA, close=True)
        h = _core.Sha256(b"prefix") if algorithm == "sha256" else _core.Sha512(b"prefix")
        buf = bytearray(64 << 10)
        copied, ended = _core.copy_hashed(h, b.fileno(), out, len(DATA) + 10, buf, 10.0)
        feeder.join()
    assert (copied, ended) == (len(DATA), True)
    assert (tmp_path / "upload").read_bytes() == DATA
    assert h.hexdigest() == hashlib.new(algorithm, b"prefix" + DATA).hexdigest()


def test_stops_at_the_length_and_goes_on(tmp_path: Path, out: int) -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(False)
        feeder = _feed(a, DATA, close=True)
        h = _core.Sha256()
        buf = bytearray(100_000)
        first = _core.copy_hashed(h, b.fileno(), out, 1_000_001, buf, 10.0)
        second = _core.copy_hashed(h, b.fileno(), out, len(DATA) - 1_000_001, buf, 10.0)
        third = _core.copy_hashed(h, b.fileno(), out, 5, buf, 10.0)
        feeder.join()
    assert (first, second, third) == ((1_000_001, False), (len(DATA) - 1_000_001, False), (0, True))
    assert (tmp_path / "upload").read_bytes() == DATA
    assert h.hexdigest() == hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize("blocking", [True, False])
def test_returns_what_came_when_the_stream_falls_silent(
    tmp_path: Path, out: int, blocking: bool
) -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(blocking)
        a.sendall(DATA[:5000])  # and then nothing, the stream stays open
        h = _core.Sha256()
        copied, ended = _core.copy_hashed(h, b.fileno(), out, len(DATA), bytearray(4096), 0.05)
    assert (copied, ended) == (5000, False)
    assert (tmp_path / "upload").read_bytes() == DATA[:5000]
    assert h.hexdigest() == hashlib.sha256(DATA[:5000]).hexdigest()


def test_a_slow_stream_reports_what_came_within_the_wait(tmp_path: Path, out: int) -> None:
    """Bytes that keep trickling in never leave the copy waiting past ``wait``."""
    a, b = socket.socketpair()
    stop = threading.Event()

    def trickle() -> None:
        for i in range(len(DATA)):
            if stop.wait(0.005):
                return
            a.sendall(DATA[i : i + 1])

    feeder = threading.Thread(target=trickle, daemon=True)
    with a, b:
        feeder.start()
        h = _core.Sha256()
        copied, ended = _core.copy_hashed(h, b.fileno(), out, len(DATA), bytearray(4096), 0.2)
        stop.set()
        feeder.join()
    assert not ended and copied < len(DATA)
    assert (tmp_path / "upload").read_bytes() == DATA[:copied]
    assert h.hexdigest() == hashlib.sha256(DATA[:copied]).hexdigest()


SMALL = DATA[:200_000]


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(0, len(SMALL)), max_size=6),
    bufsize=st.one_of(st.integers(61, 4096), st.integers(4096, 300_000)),
)
def test_any_pieces_any_buffer(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int], bufsize: int
) -> None:
    path = tmp_path_factory.mktemp("pieces") / "upload"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    bounds = [0, *sorted(cuts), len(SMALL)]
    r, w = os.pipe()
    try:

        def feed() -> None:
            for lo, hi in itertools.pairwise(bounds):
                view = memoryview(SMALL)[lo:hi]
                while view.nbytes:
                    view = view[os.write(w, view) :]
            os.close(w)

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        h = _core.Sha256()
        got = _core.copy_hashed(h, r, fd, len(SMALL), bytearray(bufsize), 10.0)
        t.join()
    finally:
        os.close(r)
        os.close(fd)
    assert got == (len(SMALL), False)
    assert path.read_bytes() == SMALL
    assert h.hexdigest() == hashlib.sha256(SMALL).hexdigest()


def test_other_hashers_are_fed_through_update(tmp_path: Path, out: int) -> None:
    a, b = socket.socketpair()
    with a, b:
        feeder = _feed(a, DATA[:300_000], close=True)
        h = hashlib.blake2b()
        got = _core.copy_hashed(h, b.fileno(), out, 300_000, bytearray(70_000), 10.0)
        feeder.join()
    assert got == (300_000, False)
    assert h.hexdigest() == hashlib.blake2b(DATA[:300_000]).hexdigest()


def test_bad_arguments(out: int) -> None:
    a, b = socket.socketpair()
    with a, b:
        for length, wait in ((-1, 1.0), (1, -1.0)):
            with pytest.raises(ValueError, match="length and wait must be >= 0"):
                _core.copy_hashed(_core.Sha256(), b.fileno(), out, length, bytearray(10), wait)
        for buf in (bytearray(), b"read-only", memoryview(bytearray(10)).toreadonly()):
            with pytest.raises(ValueError, match="buffer must be a writable buffer"):
                _core.copy_hashed(_core.Sha256(), b.fileno(), out, 10, buf, 1.0)


def test_read_and_write_errors(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:  # a closed source
        _core.copy_hashed(_core.Sha256(), r, 1, 10, bytearray(10), 1.0)
    assert info.value.errno == errno.EBADF
    a, b = socket.socketpair()
    ro = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT, 0o600)
    with a, b:
        a.sendall(b"x" * 100)
        with pytest.raises(OSError) as info:  # a destination that cannot be written
            _core.copy_hashed(_core.Sha256(), b.fileno(), ro, 100, bytearray(10), 1.0)
        assert info.value.errno == errno.EBADF
    os.close(ro)
