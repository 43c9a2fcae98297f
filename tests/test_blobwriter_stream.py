"""``BlobWriter.write_from``: an upload fed from a stream (the proxy's fill), on both cores.

The bytes of earlier ``write`` calls go first, the running hash covers both,
and a commit finds the digest without reading the data again; a failed read
leaves the writer honest (no running digest, the file's size); a driver
without a file descriptor refuses with a clear error.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, InMemoryDriver
from ocistore.storage import Registry

DATA = os.urandom((2 << 20) + 123)


def _digest(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def test_a_stream_after_writes_commits_without_a_reread(tmp_path: Path) -> None:
    blobs = Registry(FilesystemDriver(str(tmp_path))).repository("a/b").blobs
    writer = blobs.create()
    writer.write(DATA[:1000])
    a, b = socket.socketpair()
    with a, b:
        feeder = threading.Thread(target=a.sendall, args=(DATA[1000:],), daemon=True)
        feeder.start()
        buf = bytearray(64 << 10)
        got = writer.write_from(b.fileno(), 1 << 20, buf, 10.0)
        rest = writer.write_from(b.fileno(), len(DATA), buf, 0.2)  # the peer falls silent
        feeder.join()
    assert got == (1 << 20, False)
    assert rest == (len(DATA) - 1000 - (1 << 20), False)
    assert writer.size == len(DATA)
    assert writer.running_digest() == _digest(DATA)
    desc = writer.commit(Descriptor(digest=_digest(DATA), size=len(DATA)))
    assert writer.reread_bytes == 0
    assert blobs.get(desc.digest) == DATA


def test_a_failed_read_drops_the_running_hash(tmp_path: Path) -> None:
    blobs = Registry(FilesystemDriver(str(tmp_path))).repository("a/b").blobs
    writer = blobs.create()
    writer.write(b"abc")
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        writer.write_from(r, 10, bytearray(10), 1.0)
    assert writer.running_digest() is None
    assert writer.size == 3
    writer.cancel()


def test_a_driver_without_a_descriptor_is_refused() -> None:
    writer = Registry(InMemoryDriver()).repository("a/b").blobs.create()
    with pytest.raises(ValueError, match="has no file descriptor"):
        writer.write_from(0, 10, bytearray(10), 1.0)
    writer.cancel()
