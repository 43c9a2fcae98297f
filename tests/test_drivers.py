"""Run the driver conformance suite against both drivers, plus filesystem-only guarantees."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocistore.driver import FilesystemDriver, InMemoryDriver, StorageDriver
from s3_peer import new_bucket, s3_endpoint  # noqa: F401 (fixtures)
from suites.driver_suite import DriverSuite


@pytest.fixture(params=["filesystem", "inmemory", "s3"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    if request.param == "filesystem":
        return FilesystemDriver(tmp_path / "root")
    if request.param == "s3":
        from ocistore.driver.s3 import S3Driver
        from ocistore.driver.s3_options import parse_s3_options

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("new_bucket")()
        return S3Driver(parse_s3_options(endpoint.params(bucket, rootdirectory="/registry")))
    return InMemoryDriver()


class TestDriverConformance(DriverSuite):
    pass


# --- filesystem only -------------------------------------------------------------


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemDriver:
    return FilesystemDriver(tmp_path / "root")


def test_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "root"
    d = FilesystemDriver(root)
    assert root.is_dir()
    assert d.root == str(root)
    assert d.list("/") == []


def test_layout_matches_distribution(fs: FilesystemDriver, tmp_path: Path) -> None:
    """Driver path /docker/registry/v2/... is <root>/docker/registry/v2/... on disk."""
    link = "/docker/registry/v2/repositories/library/alpine/_layers/sha256/" + "a" * 64 + "/link"
    fs.put_content(link, b"sha256:" + b"a" * 64)
    on_disk = tmp_path / "root" / link.lstrip("/")
    assert on_disk.read_bytes() == b"sha256:" + b"a" * 64
    assert fs.full_path(link) == str(on_disk)
    # and what another program writes there is what the driver reads
    (tmp_path / "root" / "docker" / "other").write_bytes(b"from outside")
    assert fs.get_content("/docker/other") == b"from outside"


def test_reader_is_a_real_file(fs: FilesystemDriver) -> None:
    """The server can sendfile() from the reader's descriptor."""
    fs.put_content("/blob", b"0123456789")
    with fs.reader("/blob", 4) as r:
        assert isinstance(r, io.FileIO)
        assert os.lseek(r.fileno(), 0, os.SEEK_CUR) == 4
        assert r.read() == b"456789"


def test_writer_exposes_its_fd(fs: FilesystemDriver) -> None:
    with fs.writer("/f") as w:
        fd = w.fileno()
        assert isinstance(fd, int)
        os.write(fd, b"direct")
        assert w.size == 6
        w.commit()
    assert fs.get_content("/f") == b"direct"


def test_dropped_writer_releases_its_fd(fs: FilesystemDriver) -> None:
    w = fs.writer("/f")
    fd = w.fileno()
    assert fd is not None
    del w
    with pytest.raises(OSError):
        os.fstat(fd)


class Recorder:
    """Records durability-relevant os calls, in order, as (name, path-or-fd-target)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self._fds: dict[int, str] = {}
        real_open, real_fsync, real_replace, real_mkdir = os.open, os.fsync, os.replace, os.mkdir

        def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            fd = real_open(path, flags, mode, **kw)
            self._fds[fd] = os.fspath(path)
            return fd

        def fake_fsync(fd: int) -> None:
            self.calls.append(("fsync", self._fds.get(fd, f"fd{fd}")))
            real_fsync(fd)

        def fake_replace(src: Any, dst: Any, **kw: Any) -> None:
            self.calls.append(("replace", os.fspath(dst)))
            real_replace(src, dst, **kw)

        def fake_mkdir(path: Any, mode: int = 0o777, **kw: Any) -> None:
            self.calls.append(("mkdir", os.fspath(path)))
            real_mkdir(path, mode, **kw)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "fsync", fake_fsync)
        monkeypatch.setattr(os, "replace", fake_replace)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    yield Recorder(monkeypatch)


def test_put_content_is_durable_in_order(
    fs: FilesystemDriver, recorder: Recorder, tmp_path: Path
) -> None:
    root = str(tmp_path / "root")
    fs.put_content("/a/b/file", b"data")
    calls = recorder.calls
    # new directories: each created, then its parent fsynced, top down
    assert calls[:4] == [
        ("mkdir", f"{root}/a"),
        ("fsync", root),
        ("mkdir", f"{root}/a/b"),
        ("fsync", f"{root}/a"),
    ]
    # then the data is fsynced in a temporary file before it replaces the target,
    # and the directory is fsynced after the rename
    kind, temp = calls[4]
    assert kind == "fsync" and os.path.dirname(temp) == f"{root}/a/b" and temp != f"{root}/a/b/file"
    assert calls[5:] == [("replace", f"{root}/a/b/file"), ("fsync", f"{root}/a/b")]
    assert fs.list("/a/b") == ["/a/b/file"]


def test_put_content_failure_leaves_old_content(
    fs: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs.put_content("/f", b"old")

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        fs.put_content("/f", b"new")
    monkeypatch.undo()
    assert fs.get_content("/f") == b"old"
    assert fs.list("/") == ["/f"]  # the temporary file is gone


def test_writer_commit_syncs_file_then_new_directory(
    fs: FilesystemDriver, recorder: Recorder, tmp_path: Path
) -> None:
    root = str(tmp_path / "root")
    fs.put_content("/d/existing", b"")
    recorder.calls.clear()
    with fs.writer("/d/new") as w:
        w.write(b"x")
        assert recorder.calls == []  # no fsync per write
        w.commit()
    assert recorder.calls == [("fsync", f"{root}/d/new"), ("fsync", f"{root}/d")]


def test_writer_close_is_durable_and_cheap_when_clean(
    fs: FilesystemDriver, recorder: Recorder, tmp_path: Path
) -> None:
    root = str(tmp_path / "root")
    fs.put_content("/d/f", b"abc")
    recorder.calls.clear()
    with fs.writer("/d/f", append=True) as w:
        w.write(b"def")
    assert recorder.calls == [("fsync", f"{root}/d/f")]  # existing file: no directory sync
    recorder.calls.clear()
    fs.writer("/d/f", append=True).close()
    assert recorder.calls == []  # nothing written, nothing to sync


def test_move_syncs_both_directories(
    fs: FilesystemDriver, recorder: Recorder, tmp_path: Path
) -> None:
    root = str(tmp_path / "root")
    fs.put_content("/uploads/u1/data", b"blob")
    fs.put_content("/blobs/x", b"")
    recorder.calls.clear()
    fs.move("/uploads/u1/data", "/blobs/ab/data")
    assert recorder.calls == [
        ("mkdir", f"{root}/blobs/ab"),
        ("fsync", f"{root}/blobs"),
        ("replace", f"{root}/blobs/ab/data"),
        ("fsync", f"{root}/blobs/ab"),
        ("fsync", f"{root}/uploads/u1"),
    ]


def test_cancel_does_not_remove_a_replacement(fs: FilesystemDriver) -> None:
    w = fs.writer("/f")
    w.write(b"abandoned")
    fs.put_content("/f", b"replacement")
    w.cancel()
    assert fs.get_content("/f") == b"replacement"


def test_inmemory_cancel_does_not_remove_a_replacement() -> None:
    d = InMemoryDriver()
    w = d.writer("/f")
    w.write(b"abandoned")
    d.put_content("/f", b"replacement")
    w.cancel()
    assert d.get_content("/f") == b"replacement"
