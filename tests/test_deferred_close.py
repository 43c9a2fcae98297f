"""Freeing a removed upload's blocks happens off the request (``durable.close_later``)."""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path
from queue import SimpleQueue

import pytest

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, durable
from ocistore.errors import BlobInvalidLength
from ocistore.storage import Registry
from ocistore.storage import blobwriter as blobwriter_module


def _wait_for_eof(fd: int) -> bytes:
    """Read ``fd`` until EOF (the other end closed); generous timeout, no timing assertion."""
    ready, _, _ = select.select([fd], [], [], 60)
    assert ready, "the write end was never closed"
    return os.read(fd, 16)


def test_close_later_closes() -> None:
    r, w = os.pipe()
    try:
        durable.close_later(w)
        assert _wait_for_eof(r) == b""
    finally:
        os.close(r)


def test_close_later_starts_its_own_thread_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    # A closer inherited through fork has no thread behind its queue: a new one is started.
    orphan: SimpleQueue[int] = SimpleQueue()
    monkeypatch.setattr(durable._closer, "_made", (os.getpid() + 1, orphan))
    r, w = os.pipe()
    try:
        durable.close_later(w)
        assert _wait_for_eof(r) == b""
        assert orphan.empty()
    finally:
        os.close(r)


class _Handed:
    """Records the fds handed to close_later, with the file they still hold open."""

    def __init__(self) -> None:
        self.files: list[os.stat_result] = []
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.files.append(os.fstat(fd))
        os.close(fd)


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> _Handed:
    rec = _Handed()
    monkeypatch.setattr(blobwriter_module, "close_later", rec)
    monkeypatch.setattr("ocistore.driver.filesystem_writer.close_later", rec)
    return rec


def test_commit_of_a_blob_already_stored_frees_the_upload_in_the_background(
    tmp_path: Path, handed: _Handed
) -> None:
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    data = os.urandom(100_000)
    desc = Descriptor(Digest.from_bytes(data), len(data))
    blobs.put("application/octet-stream", data)
    with blobs.create() as w:
        w.write(data)
        upload_dir = tmp_path / "root/docker/registry/v2/repositories/a/_uploads" / w.id
        assert w.commit(desc).digest == desc.digest
    assert not upload_dir.exists()  # removed before commit returns
    # the upload's data was unlinked while a duplicate fd kept it for close_later
    (upload,) = [st for st in handed.files if st.st_size == len(data) and st.st_nlink == 0]
    assert upload.st_size == len(data)
    assert blobs.get(desc.digest) == data


def test_commit_of_a_new_blob_hands_over_the_blob_file(tmp_path: Path, handed: _Handed) -> None:
    root = tmp_path / "root"
    blobs = Registry(FilesystemDriver(root)).repository("a").blobs
    data = os.urandom(1000)
    with blobs.create() as w:
        w.write(data)
        w.commit(Descriptor(Digest.from_bytes(data), len(data)))
    hex_ = Digest.from_bytes(data).encoded
    stored = os.stat(root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data")
    assert [(st.st_ino, st.st_nlink) for st in handed.files] == [(stored.st_ino, 1)]


def test_failed_commit_still_releases_the_duplicate(tmp_path: Path, handed: _Handed) -> None:
    blobs = Registry(FilesystemDriver(tmp_path / "root")).repository("a").blobs
    with blobs.create() as w:
        w.write(b"abc")
        with pytest.raises(BlobInvalidLength):
            w.commit(Descriptor(Digest.from_bytes(b"abc"), 4))
    assert len(handed.files) == 1


def test_filesystem_writer_cancel_unlinks_now_and_frees_later(
    tmp_path: Path, handed: _Handed
) -> None:
    fs = FilesystemDriver(tmp_path / "root")
    w = fs.writer("/u/data")
    w.write(b"x" * 5000)
    w.cancel()
    assert not (tmp_path / "root/u/data").exists()
    assert [(st.st_size, st.st_nlink) for st in handed.files] == [(5000, 0)]
